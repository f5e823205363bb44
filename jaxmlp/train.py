"""Training: pure, jit-compiled pieces first, then the loop with its side effects at the edge.

Read top to bottom:

1. `Hyper`, `DeviceData`, `TrainState`: the values a run is a function of.
2. `make_optimizer`: optax, with the learning rate stored in the optimizer state, so it is a
   traced value (a sweep can vmap over it) instead of a constant baked into the program.
3. `make_step` / `make_epoch`: one SGD step is a pure function; one epoch is a `lax.scan` of steps
   over minibatches drawn on the device, with no host synchronisation inside.
4. `make_train(config) -> train(key, data, hyper)`: a whole run (init, epochs, evaluation) as one
   pure function of a PRNG key, to `jit` or `vmap` over seeds and hyperparameters.
5. `run`: the Python loop over epochs that owns the progress bar, metrics, checkpoints and the
   output folder; `main` is `python -m jaxmlp.train`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import checkpoint, data
from jaxmlp.config import Config, ConfigError, check_against_data, validate
from jaxmlp.losses import Batch, num_outputs, per_example_loss, predict_labels, reduce_examples
from jaxmlp.model import ACTIVATIONS, Params, init_mlp, layer_sizes, mlp_apply

# --- 1. what a run is a function of ---------------------------------------------------------------


class Hyper(NamedTuple):
    """Numeric settings that enter the compiled program as values, not constants.

    Changing them does not recompile, and `jax.vmap` can batch runs over them. Inputs reach the
    network as `pixels * input_scale + input_shift` (see `data.input_affine`).
    """

    learning_rate: jax.Array
    input_scale: jax.Array
    input_shift: jax.Array
    init_scale: jax.Array


class DeviceData(NamedTuple):
    """The data set, resident on the device: flattened uint8 pixels and int32 labels.

    Kept as uint8 (a quarter of float32's memory) and scaled per batch inside the step, where
    the conversion fuses into the first matrix product.
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


class TrainState(NamedTuple):
    params: Params
    opt_state: optax.OptState


class EpochMetrics(NamedTuple):
    """Computed on the device during an epoch; fetched once per epoch."""

    train_loss: jax.Array  # mean per-example loss over the epoch's batches
    train_accuracy: jax.Array
    step_loss: jax.Array  # (steps,) mean per-example loss of each step
    first_bad_step: jax.Array  # first step whose loss was not finite, or -1


class RunMetrics(NamedTuple):
    """Per-epoch metrics of a whole run, each of shape (epochs,)."""

    train_loss: jax.Array
    train_accuracy: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array
    first_bad_step: jax.Array


def hyper_from_config(config: Config, x_train: np.ndarray) -> Hyper:
    """The `Hyper` values a configuration asks for (the input affine map needs the training set)."""
    scale, shift = data.input_affine(config.input_scale, x_train)
    f32 = np.float32
    return Hyper(f32(config.learning_rate), f32(scale), f32(shift), f32(config.init_scale))


def device_data(dataset: data.Dataset, config: Config) -> DeviceData:
    """Flatten (28x28 -> 784), take the training subset, and put everything on the device."""
    x_train, y_train = dataset.x_train, dataset.y_train
    if config.train_subset is not None:
        x_train, y_train = x_train[: config.train_subset], y_train[: config.train_subset]
    return DeviceData(
        jax.device_put(data.flatten(x_train)),
        jax.device_put(y_train.astype(np.int32)),
        jax.device_put(data.flatten(dataset.x_test)),
        jax.device_put(dataset.y_test.astype(np.int32)),
    )


def steps_per_epoch(config: Config, num_train: int) -> int:
    return num_train // config.batch_size


# --- 2. the optimizer -----------------------------------------------------------------------------


def make_optimizer(config: Config, num_steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimizer with its schedule; the peak learning rate lives in the state.

    `optax.inject_hyperparams` rebuilds the transformation from `opt_state.hyperparams` on every
    update, so one compiled step serves every learning rate (see `init_state`).
    """
    total = config.epochs * num_steps_per_epoch
    warmup = round(config.warmup_epochs * num_steps_per_epoch)

    # The schedule's shape peaks at 1 and is scaled by the (traced) peak learning rate: optax's
    # schedule constructors branch on their peak value in Python, so it cannot be traced there.
    if config.schedule == "constant":
        shape = optax.constant_schedule(1.0)
    elif config.schedule == "cosine":
        shape = optax.cosine_decay_schedule(1.0, max(total, 1))
    else:
        shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(total, warmup + 1))

    def build(learning_rate: jax.Array) -> optax.GradientTransformation:
        def lr(count: jax.Array) -> jax.Array:
            return learning_rate * shape(count)

        if config.optimizer == "adam":
            if config.weight_decay:
                return optax.adamw(lr, weight_decay=config.weight_decay)
            return optax.adam(lr)
        momentum = config.momentum if config.optimizer == "momentum" else None
        tx = optax.sgd(lr, momentum=momentum)
        if config.weight_decay:
            tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
        return tx

    return optax.inject_hyperparams(build)(learning_rate=config.learning_rate)


def init_state(
    key: jax.Array,
    config: Config,
    hyper: Hyper,
    tx: optax.GradientTransformation,
    sizes: list[int],
) -> TrainState:
    """Fresh parameters and optimizer state, with the (possibly traced) learning rate set."""
    params = init_mlp(key, sizes, config.init, hyper.init_scale)
    opt_state = tx.init(params)
    lr = jnp.asarray(hyper.learning_rate, jnp.float32)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})
    return TrainState(params, opt_state)


def run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Split a run's key into (init key, data key); epoch e shuffles with fold_in(data key, e).

    Deriving each epoch's key from its number, not from a chain of splits, is what lets a
    resumed run draw exactly the batches an uninterrupted one would.
    """
    init_key, data_key = jax.random.split(key)
    return init_key, data_key


# --- 3. one step, one epoch -----------------------------------------------------------------------


def scale_inputs(pixels: jax.Array, hyper: Hyper) -> jax.Array:
    return pixels.astype(jnp.float32) * hyper.input_scale + hyper.input_shift


# Layers with at most this many outputs get their weight gradient as (g^T x)^T (see `_affine`).
_NARROW = 32


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _affine(x: jax.Array, w: jax.Array, b: jax.Array, narrow: bool) -> jax.Array:
    """`x @ w + b`, as in `mlp_apply`, with a hand-written backward pass for narrow layers."""
    return x @ w + b


def _affine_fwd(
    x: jax.Array, w: jax.Array, b: jax.Array, narrow: bool
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return x @ w + b, (x, w)


def _affine_bwd(
    narrow: bool, res: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    x, w = res
    if narrow:
        # The weight gradient x^T g contracts the batch axis of both operands. XLA:CPU sends
        # that to a generic kernel which, for a (512, 10) result, takes ~85 us a step (a tenth
        # of the epoch's matrix time for 0.3% of its FLOPs). Transposing the small g first
        # makes it a plain row-major product (~7 us); the barriers stop XLA from folding the
        # transposes back into the slow form. Same sums, only the rounding order differs.
        gt = jax.lax.optimization_barrier(g.T)
        dw = jax.lax.optimization_barrier(gt @ x).T
    else:
        dw = x.T @ g
    return g @ w.T, dw, jnp.sum(g, axis=0)


_affine.defvjp(_affine_fwd, _affine_bwd)


def training_activations(params: Params, x: jax.Array, activation: str) -> list[jax.Array]:
    """`model.mlp_activations` (every hidden layer's output, then the logits) for training: the
    same forward pass, same operations and values, with `_affine`'s faster weight gradient for
    narrow layers. Anything that must update parameters bit for bit as `make_step` does (e.g.
    the diagnostics step) differentiates this, not `mlp_apply`."""
    act = ACTIVATIONS[activation]
    outs = []
    for layer in params[:-1]:
        x = act(_affine(x, layer["w"], layer["b"], layer["w"].shape[-1] <= _NARROW))
        outs.append(x)
    last = params[-1]
    outs.append(_affine(x, last["w"], last["b"], last["w"].shape[-1] <= _NARROW))
    return outs


def make_step(
    config: Config, tx: optax.GradientTransformation
) -> Callable[[TrainState, Batch], tuple[TrainState, tuple[jax.Array, jax.Array]]]:
    """`step(state, batch) -> (state, (mean per-example loss, accuracy))`: one optimizer update."""

    def objective(params: Params, batch: Batch) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        logits = training_activations(params, batch.x, config.activation)[-1]
        per_example = per_example_loss(logits, batch.y, config)
        return reduce_examples(per_example, config.example_reduction), (per_example, logits)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, tuple[jax.Array, jax.Array]]:
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (_, (per_example, logits)), grads = grad_fn(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        accuracy = jnp.mean(predict_labels(logits, config) == batch.y)
        # The mean per-example loss is reported whatever the reduction, so that runs with sum
        # and mean reduction can be compared on one scale.
        return TrainState(params, opt_state), (jnp.mean(per_example), accuracy)

    return step


def epoch_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The example indices of one epoch's batches, shape (n // batch_size, batch_size).

    A fresh permutation per epoch with the last partial batch dropped. Public so that other
    implementations (the PyTorch and NumPy benchmarks) can train on exactly the same batches.
    """
    num_steps = n // batch_size
    order = jax.random.permutation(key, n)[: num_steps * batch_size]
    return order.reshape(num_steps, batch_size)


def make_epoch(
    config: Config, tx: optax.GradientTransformation
) -> Callable[[TrainState, DeviceData, Hyper, jax.Array], tuple[TrainState, EpochMetrics]]:
    """`epoch(state, data, hyper, key)`: shuffle on the device, then scan the steps.

    The whole epoch is one XLA program: batches are gathered from the resident data by index,
    nothing returns to Python until the epoch ends. The last partial batch is dropped so every
    step has the same shape (one compilation).
    """
    step = make_step(config, tx)
    batch_size = config.batch_size

    def epoch(
        state: TrainState, dev: DeviceData, hyper: Hyper, key: jax.Array
    ) -> tuple[TrainState, EpochMetrics]:
        order = epoch_order(key, dev.x_train.shape[0], batch_size)
        num_steps = order.shape[0]

        def body(
            carry: tuple[TrainState, jax.Array], xs: tuple[jax.Array, jax.Array]
        ) -> tuple[tuple[TrainState, jax.Array], tuple[jax.Array, jax.Array]]:
            state, first_bad = carry
            i, idx = xs
            batch = Batch(scale_inputs(dev.x_train[idx], hyper), dev.y_train[idx])
            state, (loss, accuracy) = step(state, batch)
            first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), i, first_bad)
            return (state, first_bad), (loss, accuracy)

        init = (state, jnp.asarray(-1, jnp.int32))
        steps = jnp.arange(num_steps, dtype=jnp.int32)
        (state, first_bad), (losses, accuracies) = jax.lax.scan(body, init, (steps, order))
        return state, EpochMetrics(jnp.mean(losses), jnp.mean(accuracies), losses, first_bad)

    return epoch


def make_evaluate(
    config: Config, chunk: int = 2000
) -> Callable[[Params, jax.Array, jax.Array, Hyper], tuple[jax.Array, jax.Array]]:
    """`evaluate(params, pixels, labels, hyper) -> (mean per-example loss, accuracy)`.

    Runs over fixed-size chunks (`lax.map`) so memory stays bounded for any data set size and
    any number of vmapped runs; the padding of the last chunk is masked out.
    """

    def evaluate(
        params: Params, pixels: jax.Array, labels: jax.Array, hyper: Hyper
    ) -> tuple[jax.Array, jax.Array]:
        n = pixels.shape[0]
        size = min(chunk, n)
        num_chunks = -(-n // size)
        pad = num_chunks * size - n
        xs = jnp.pad(pixels, ((0, pad), (0, 0))).reshape(num_chunks, size, -1)
        ys = jnp.pad(labels, (0, pad)).reshape(num_chunks, size)
        mask = (jnp.arange(num_chunks * size) < n).reshape(num_chunks, size)

        def one(args: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            x, y, m = args
            logits = mlp_apply(params, scale_inputs(x, hyper), config.activation)
            loss = jnp.sum(jnp.where(m, per_example_loss(logits, y, config), 0.0))
            correct = jnp.sum(m & (predict_labels(logits, config) == y))
            return loss, correct

        losses, corrects = jax.lax.map(one, (xs, ys, mask))
        return jnp.sum(losses) / n, jnp.sum(corrects) / n

    return evaluate


# --- 4. a whole run as one function ---------------------------------------------------------------


def model_sizes(config: Config, num_inputs: int, num_classes: int = 10) -> list[int]:
    return layer_sizes(num_inputs, config.hidden, num_outputs(config, num_classes))


def make_train(
    config: Config, num_classes: int = 10
) -> Callable[[jax.Array, DeviceData, Hyper], tuple[TrainState, RunMetrics]]:
    """`train(key, data, hyper) -> (final state, per-epoch RunMetrics)`: a whole run, pure.

        train = make_train(config)
        state, metrics = jax.jit(train)(jax.random.key(0), dev, hyper)
        # many seeds and learning rates in one program:
        jax.vmap(train, in_axes=(0, None, 0))(keys, dev, hypers)

    The data is an argument, not captured: arrays closed over by a jitted function become
    constants compiled into the program (slow to compile, duplicated in memory). It gives the same
    parameters as `python -m jaxmlp.train` with the same configuration and seed.
    """

    def train(key: jax.Array, dev: DeviceData, hyper: Hyper) -> tuple[TrainState, RunMetrics]:
        n = dev.x_train.shape[0]
        tx = make_optimizer(config, steps_per_epoch(config, n))
        epoch = make_epoch(config, tx)
        evaluate = make_evaluate(config)
        init_key, data_key = run_keys(key)
        state = init_state(init_key, config, hyper, tx, model_sizes(config, dev.x_train.shape[1],
                                                                      num_classes))

        def one_epoch(state: TrainState, e: jax.Array) -> tuple[TrainState, RunMetrics]:
            state, m = epoch(state, dev, hyper, jax.random.fold_in(data_key, e))
            test_loss, test_accuracy = evaluate(state.params, dev.x_test, dev.y_test, hyper)
            return state, RunMetrics(
                m.train_loss, m.train_accuracy, test_loss, test_accuracy, m.first_bad_step
            )

        return jax.lax.scan(one_epoch, state, jnp.arange(config.epochs))

    return train


# --- 5. the loop: progress, metrics, checkpoints -------------------------------------------------


class Diverged(RuntimeError):
    """The loss became non-finite; the message names the epoch and step."""


CHECKPOINT = "checkpoint.npz"
CONFIG_JSON = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TARGET_ACCURACY = 0.98


def load_data(config: Config, *, progress: bool) -> tuple[data.Dataset, str | None]:
    """The configured data set; with none named, MNIST, else the bundled digits and a note why."""
    if config.dataset is not None:
        ds = data.load_dataset(config.dataset, data_dir=config.data_dir, source=config.source,
                               progress=progress)
        return ds, None
    try:
        return data.load_dataset("mnist", data_dir=config.data_dir, source=config.source,
                                 progress=progress), None
    except data.DatasetNotFound as e:
        tried = "; ".join(e.tried) if e.tried else "every source"
        note = (
            f"MNIST could not be found or downloaded (tried: {tried}). Training on "
            "scikit-learn's bundled 8x8 digits instead, so this run works offline; its accuracy "
            "is not comparable with MNIST's. To get MNIST, put the four IDX files in a folder "
            "and set JAXMLP_DATA_DIR (or --data-dir), install tensorflow-datasets "
            "(pip install 'jaxmlp[tfds]') with a prepared copy, or run once with network access "
            "(the files are cached in ~/.cache/jaxmlp)."
        )
        return data.load_dataset("digits"), note


def versions() -> dict[str, str]:
    import jaxlib

    return {
        "jaxmlp": __import__("jaxmlp").__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(x: Any) -> Any:
    """Floats for JSON; non-finite values become null (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _default_out(dataset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{stamp}-{dataset}"
    k = 1
    while out.exists():
        k += 1
        out = Path("runs") / f"{stamp}-{dataset}-{k}"
    return out


def _read_config_json(out: Path) -> dict[str, Any]:
    path = out / CONFIG_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume {out}: no {CONFIG_JSON} there, so it is not a jaxmlp run "
                          "folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume {out}: {CONFIG_JSON} is corrupt ({e})") from None


def run(
    config: Config,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    max_epochs: int | None = None,
    log: Callable[[str], None] = print,
    diagnose: bool = False,
    plots: bool = False,
) -> dict[str, Any]:
    """Train one model, writing config.json, metrics.jsonl, checkpoint.npz and summary.json.

    With `resume=True`, `out` is an existing run folder and its config.json is the configuration
    (the `config` argument is ignored). `max_epochs` stops after that many epochs in this call,
    as an interruption would. `diagnose` also writes diagnostics.jsonl and logs a report (see
    `jaxmlp.diagnostics`); `plots` writes PNGs (and turns on `diagnose`, for the gradient
    plot). Returns the summary dict.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    if resume:
        if out is None:
            raise ConfigError("--resume needs the run folder to continue")
        out = Path(out)
        recorded = _read_config_json(out)
        config = Config.from_dict(recorded["config"])
        validate(config)
        config = dataclasses.replace(config, dataset=recorded["dataset"]["used"])
    else:
        validate(config)

    dataset, fallback_note = load_data(config, progress=progress)
    check_against_data(config, len(dataset.y_train))
    if fallback_note:
        log(fallback_note)
    dev = device_data(dataset, config)
    hyper = hyper_from_config(config, np.asarray(dev.x_train))
    t_data = time.perf_counter()

    if not resume:
        out = Path(out) if out is not None else _default_out(dataset.name)
        if (out / CONFIG_JSON).exists() or (out / CHECKPOINT).exists():
            raise ConfigError(f"--out {out} already holds a run; continue it with --resume {out} "
                              "or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "config": config.to_dict(),
            "dataset": {
                "requested": config.dataset,
                "used": dataset.name,
                "source": dataset.source,
                "fallback": fallback_note,
                "num_train": int(dev.x_train.shape[0]),
                "num_test": int(dev.x_test.shape[0]),
            },
            "hyper": {k: float(v) for k, v in hyper._asdict().items()},
            "versions": versions(),
            "devices": [str(d) for d in jax.devices()],
            "command": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        checkpoint.atomic_write_text(out / CONFIG_JSON, json.dumps(record, indent=2) + "\n")
        (out / METRICS).write_text("")
    assert out is not None
    out = Path(out)

    num_steps = steps_per_epoch(config, dev.x_train.shape[0])
    tx = make_optimizer(config, num_steps)
    sizes = model_sizes(config, dev.x_train.shape[1], dataset.num_classes)
    init_key, data_key = run_keys(jax.random.key(config.seed))
    state = init_state(init_key, config, hyper, tx, sizes)
    start_epoch = 0
    history: list[dict[str, Any]] = []
    if resume:
        state, meta = checkpoint.load(out / CHECKPOINT, state)
        start_epoch = int(meta["epoch"])
        # Drop metrics of epochs after the checkpoint (an interrupted epoch may have logged).
        lines = (out / METRICS).read_text().splitlines() if (out / METRICS).exists() else []
        history = [json.loads(s) for s in lines if s.strip()]
        history = [h for h in history if h.get("epoch", 0) <= start_epoch]
        checkpoint.atomic_write_text(out / METRICS, "".join(json.dumps(h) + "\n" for h in history))
        log(f"resuming {out} after epoch {start_epoch} of {config.epochs}")

    # Compile ahead of time so compilation is measured apart from training. The state is
    # donated: XLA may update parameters in place instead of allocating new buffers each epoch.
    t0 = time.perf_counter()
    diag = None
    if diagnose or plots:
        from jaxmlp import diagnostics

        diag = diagnostics.Recorder(config, out, sizes, start_epoch, dataset.num_classes)
        diag.start(state.params, dev, hyper)
    epoch_fn = jax.jit((diag.make_epoch if diag else make_epoch)(config, tx), donate_argnums=0)
    epoch_fn = epoch_fn.lower(state, dev, hyper, jax.random.fold_in(data_key, 0)).compile()
    if diag:
        epoch_fn = diag.wrap(epoch_fn)
    eval_fn = jax.jit(make_evaluate(config)).lower(state.params, dev.x_test, dev.y_test,
                                                   hyper).compile()
    compile_seconds = time.perf_counter() - t0

    end_epoch = config.epochs if max_epochs is None else min(config.epochs,
                                                             start_epoch + max_epochs)
    bar = tqdm(range(start_epoch, end_epoch), initial=start_epoch, total=config.epochs,
               desc="epochs", unit="epoch", disable=not progress, leave=True)
    train_seconds = sum(h.get("epoch_seconds", 0.0) for h in history)
    for e in bar:
        t_epoch = time.perf_counter()
        state, m = epoch_fn(state, dev, hyper, jax.random.fold_in(data_key, e))
        test_loss, test_accuracy = eval_fn(state.params, dev.x_test, dev.y_test, hyper)
        # The one host synchronisation of the epoch.
        m, test_loss, test_accuracy = jax.device_get((m, test_loss, test_accuracy))
        if diag:
            diag.end_epoch(e + 1)  # before the clock stops: its cost is part of the epoch
        seconds = time.perf_counter() - t_epoch
        train_seconds += seconds
        if m.first_bad_step >= 0:
            bad = {"epoch": e + 1, "diverged_at_step": int(m.first_bad_step) + 1,
                   "train_loss": None, "epoch_seconds": seconds}
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(bad) + "\n")
            bar.close()
            if plots and diag:  # the gradient norms leading up to the blow-up
                from jaxmlp import plots as plotting

                plotting.gradient_norms(diag.rows, out / plotting.GRADIENT_NORMS)
            kept = (f"the last good checkpoint (epoch {e}) in {out / CHECKPOINT} is intact"
                    if e > 0 else "no checkpoint was written (it diverged in the first epoch)")
            raise Diverged(
                f"the loss became non-finite (NaN or inf) at epoch {e + 1}, step "
                f"{int(m.first_bad_step) + 1} of {num_steps}; training stopped and {kept}. "
                f"Usual causes: a learning rate too large for these inputs (now "
                f"{config.learning_rate:g}; try {config.learning_rate / 10:g})"
                + (f", or unscaled inputs (--input-scale {config.input_scale}; try unit)."
                   if config.input_scale != "unit" else ".")
                + (diag.nonfinite_note() if diag else "")
            )
        row = {
            "epoch": e + 1,
            "train_loss": _jsonable(m.train_loss),
            "train_accuracy": _jsonable(m.train_accuracy),
            "test_loss": _jsonable(test_loss),
            "test_accuracy": _jsonable(test_accuracy),
            "epoch_seconds": seconds,
            "learning_rate_peak": config.learning_rate,
        }
        history.append(row)
        with open(out / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
        checkpoint.save(out / CHECKPOINT, state, {"epoch": e + 1})
        bar.set_postfix(loss=f"{m.train_loss:.4f}", train_acc=f"{m.train_accuracy:.4f}",
                        test_acc=f"{test_accuracy:.4f}")
    bar.close()
    findings = diag.report(history) if diag else []
    if diag:
        log(diag.report_text(findings))
    written: list[str] = []
    if plots:
        from jaxmlp import plots as plotting

        written = plotting.write_run_plots(out, config, state.params, dataset, dev, hyper,
                                           history, diag.rows if diag else [])
        log(f"plots: {', '.join(written)} in {out}")

    reached = [h for h in history if (h["test_accuracy"] or 0) >= TARGET_ACCURACY]
    to_target = None
    if reached:
        first = reached[0]["epoch"]
        to_target = sum(h["epoch_seconds"] for h in history if h["epoch"] <= first)
    last = history[-1] if history else {}
    summary = {
        "out": str(out),
        "dataset": dataset.name,
        "epochs_done": last.get("epoch", start_epoch),
        "epochs": config.epochs,
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "final_train_loss": last.get("train_loss"),
        "data_seconds": t_data - t_start,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - t_start,
        f"train_seconds_to_{int(TARGET_ACCURACY * 100)}pct": to_target,
    }
    if diag:
        summary["diagnosis"] = [dataclasses.asdict(f) for f in findings]
    if written:
        summary["plots"] = written
    checkpoint.atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(s: dict[str, Any]) -> str:
    acc = s["test_accuracy"]
    loss = s["final_train_loss"]
    lines = [
        f"{s['dataset']}: test accuracy {acc:.2%} after {s['epochs_done']}/{s['epochs']} epochs"
        if acc is not None else f"{s['dataset']}: no epoch completed",
        f"final train loss {loss:.4f}" if loss is not None else "",
        f"seconds: data {s['data_seconds']:.2f}, compile {s['compile_seconds']:.2f}, "
        f"train {s['train_seconds']:.2f}, wall {s['wall_seconds']:.2f}",
    ]
    t = s.get("train_seconds_to_98pct")
    if t is not None:
        lines.append(f"reached 98% test accuracy after {t:.2f} s of training")
    lines.append(f"outputs in {s['out']}")
    return "\n".join(line for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from jaxmlp import cli, compilation

    # Python start-up plus importing jax, optax and jaxmlp: everything before this line.
    import_seconds = compilation.process_age_seconds()
    compilation.tune_xla_cpu()  # before the first computation initialises XLA

    parser = argparse.ArgumentParser(
        prog="python -m jaxmlp.train",
        description="Train one MLP on MNIST-style data, with metrics and a checkpoint.",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--out", default=None,
                           help="output folder (default: a new folder under runs/)")
    run_group.add_argument("--resume", metavar="DIR", default=None,
                           help="continue the interrupted run in DIR with its own configuration")
    run_group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                           help="show a progress bar (default: on)")
    diag_group = parser.add_argument_group("diagnostics (see the README: When training goes wrong)")
    diag_group.add_argument("--diagnose", action="store_true",
                            help="record per-layer gradient norms, update ratios, activation "
                                 "statistics, dead/saturated units and the first non-finite "
                                 "value in diagnostics.jsonl, and end with a plain-language report")
    diag_group.add_argument("--plots", action="store_true",
                            help="write PNGs to the run folder: learning curves, per-layer "
                                 "gradient norms, confusion matrix, misclassified test images "
                                 "(implies --diagnose)")
    diag_group.add_argument("--overfit", type=int, metavar="N", default=None,
                            help="instead of training normally, fit the first N training "
                                 "examples (full batch, constant learning rate) until 100%% "
                                 "training accuracy; report the steps and seconds it took "
                                 "(exit 1 if it never gets there)")
    diag_group.add_argument("--overfit-steps", type=int, metavar="STEPS", default=None,
                            help="step limit for --overfit (default: 2000)")
    cli.add_dataclass_flags(parser, Config, "configuration")
    args = parser.parse_args(argv)

    if args.overfit is not None:
        if args.resume:
            cli.fail("--overfit starts from fresh parameters; drop --resume")
        from jaxmlp import diagnostics

        try:
            config = cli.dataclass_from_args(Config, args)
            result = diagnostics.run_overfit(config, args.overfit, args.out,
                                             max_steps=args.overfit_steps, progress=args.progress)
        except (ConfigError, data.DataError) as e:
            cli.fail(str(e))
        print(result.describe())
        return 0 if result.reached else 1

    if args.resume:
        given = cli.flags_given(parser, argv) & {f.name for f in dataclasses.fields(Config)}
        if given:
            flags = ", ".join("--" + g.replace("_", "-") for g in sorted(given))
            cli.fail(f"--resume takes the configuration from {args.resume}/{CONFIG_JSON}; "
                     f"drop {flags}")
        if args.out:
            cli.fail("--resume DIR writes into DIR; drop --out")
    # Before anything compiles: a second identical run loads its programs from the disk cache.
    cache_folder = compilation.enable_compilation_cache()
    try:
        config = cli.dataclass_from_args(Config, args)
        summary = run(config, args.resume or args.out, resume=bool(args.resume),
                      progress=args.progress, diagnose=args.diagnose, plots=args.plots)
    except (ConfigError, data.DataError, checkpoint.CheckpointError) as e:
        cli.fail(str(e))
    except Diverged as e:
        cli.fail(str(e), code=3)
    except KeyboardInterrupt:
        cli.fail("interrupted; finished epochs are checkpointed: continue with --resume DIR",
                 code=130)
    print(format_summary(summary))
    print(compilation.startup_line(import_seconds, summary["data_seconds"],
                                   summary["compile_seconds"], cache_folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
