"""The training loop, as pure functions: one step, one epoch, one whole run.

Read top to bottom:

1. `Hyper`, `DeviceData`, `TrainState`: the values a run is a function of.
2. `make_step` / `make_epoch`: one update differentiates `losses.loss_fn`, the objective
   `python -m jaxmlp.gradcheck` checks, with `jaxmlp.fast.dense` for each layer's product; one
   epoch is a `lax.scan` of steps (`make_steps`, which a chunk of an epoch runs too) over
   minibatches drawn on the device (`epoch_order`, the one shuffle), with no host
   synchronisation inside. `make_step(config, tx, stats)` also returns
   per-step statistics (`jaxmlp.probes` has the ones `--diagnose` records), so diagnostics reuse
   this loop. Dropout (training only) draws step i's masks from fold_in(epoch key, i).
3. `make_train(config) -> train(key, data, hyper)`: a whole run (init, epochs, evaluation) as one
   pure function of a PRNG key, to `jit` or `vmap` over seeds and hyperparameters.

Nothing here prints, writes files or waits for the device: that is `jaxmlp.runner`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import data, fast
from jaxmlp.config import INITS, Config, ConfigError
from jaxmlp.data.preprocess import permute_pixels
from jaxmlp.losses import Batch, LossAux, Reductions, loss_fn, num_outputs, predict_labels
from jaxmlp.model import Dropout, Params, init_mlp, layer_sizes
from jaxmlp.optim import make_optimizer
from jaxmlp.pick import Options, Pick, activation_index, loss_index

# --- 1. what a run is a function of ---------------------------------------------------------------


class Hyper(NamedTuple):
    """Numeric settings that enter the compiled program as values, not constants.

    Changing them does not recompile, and `jax.vmap` can batch runs over them. Inputs reach the
    network as `pixels * input_scale + input_shift` (see `data.input_affine`). The
    initialisation scheme is an index into a table of each layer's std under every scheme
    (`model.init_mlp`), so runs with different schemes share one program. The dropout
    rates only take effect where the program has dropout in it (`dropout_layers`). The two
    reductions are 1 for a mean and 0 for a sum (`losses.Reduction`), so runs with either share
    one program. `loss` and `activation` are read only by a program built for several
    (`pick.Options`, a sweep's); every other program has its configuration's compiled in.
    `hyper_from_config` is the one place they are set.
    """

    learning_rate: jax.Array
    input_scale: jax.Array
    input_shift: jax.Array
    init: jax.Array  # the scheme's index in `config.INITS` (a whole number, as every value here)
    init_scale: jax.Array
    dropout: jax.Array  # of hidden activations, while training
    input_dropout: jax.Array  # of input pixels, while training
    class_mean: jax.Array  # 1: the class reduction is a mean, 0: a sum
    example_mean: jax.Array  # 1: the example reduction is a mean, 0: a sum
    loss: jax.Array  # the (output, error) pair's index in `pick.LOSS_CHOICES`
    activation: jax.Array  # the activation's index in `config.ACTIVATIONS`

    def pick(self, options: Options | None) -> Pick | None:
        """The run's choices in a program built for `options` (None: the configuration's)."""
        return Pick(options, self.loss, self.activation) if options else None

    @property
    def reductions(self) -> Reductions:
        return Reductions(self.class_mean, self.example_mean)


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


class StepValues(NamedTuple):
    """What one step computed, handed to a `stats` function of `make_step`."""

    grads: Params
    updates: Params
    activations: list[jax.Array]  # `Forward.post`: hidden activations, then the logits
    loss: jax.Array  # the reduced loss that was differentiated
    step: jax.Array  # the step's index in its epoch (int32)


class StepMetrics(NamedTuple):
    loss: jax.Array  # mean per-example loss, whatever the reduction
    accuracy: jax.Array
    stats: Any = None  # `stats(StepValues)` when `make_step` was given one


class EpochMetrics(NamedTuple):
    """Computed on the device during an epoch; fetched once per epoch."""

    train_loss: jax.Array  # mean per-example loss over the epoch's batches
    train_accuracy: jax.Array
    step_loss: jax.Array  # (steps,) mean per-example loss of each step
    first_bad_step: jax.Array  # first step whose loss was not finite, or -1
    step_stats: Any = None  # every step's `stats`, stacked (leading axis: steps)


class RunMetrics(NamedTuple):
    """Per-epoch metrics of a whole run, each with a leading axis of length epochs."""

    train_loss: jax.Array
    train_accuracy: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array
    first_bad_step: jax.Array
    step_stats: Any = None  # (epochs, steps, ...) when `make_train` was given `step_stats`
    probe: Any = None  # (epochs + 1, ...) when given `probe`: [0] at initialisation, [e] after e


StatsFn = Callable[[StepValues], Any]
StepFn = Callable[..., tuple[TrainState, StepMetrics]]  # `make_step`'s
ProbeFn = Callable[[Params, DeviceData, Hyper], Any]


def hyper_from_config(config: Config, x_train: np.ndarray) -> Hyper:
    """The `Hyper` values a configuration asks for (the input affine map needs the training set)."""
    scale, shift = data.input_affine(config.input_scale, x_train)
    f32 = np.float32
    return Hyper(f32(config.learning_rate), f32(scale), f32(shift), f32(INITS.index(config.init)),
                 f32(config.init_scale), f32(config.dropout), f32(config.input_dropout),
                 f32(config.class_reduction == "mean"), f32(config.example_reduction == "mean"),
                 f32(loss_index(config)), f32(activation_index(config)))


def dropout_layers(config: Config) -> tuple[bool, bool]:
    """(inputs, hidden): whether the training step has input and hidden-layer dropout in it.

    The rates themselves are traced (`Hyper.dropout`, `Hyper.input_dropout`), but whether a
    rate is above 0 is structural: a program without dropout draws no random bits, which the
    default run would otherwise spend half its training time on (benchmarks/README.md,
    "Dropout: why a rate of 0 leaves it out of the program"). Rates 0.2 and 0.5 share one
    program, rates 0 and 0.5 do not.
    """
    return config.input_dropout > 0, config.dropout > 0


def device_data(dataset: data.Dataset, config: Config) -> DeviceData:
    """Flatten (28x28 -> 784), take the training subset, put the pixels in the order of
    `config.pixel_permutation` (if set: one order for every image, training and test alike), and
    put everything on the device."""
    x_train, y_train = dataset.x_train, dataset.y_train
    if config.train_subset is not None:
        x_train, y_train = x_train[: config.train_subset], y_train[: config.train_subset]
    seed = config.pixel_permutation
    return DeviceData(
        jax.device_put(permute_pixels(data.flatten(x_train), seed)),
        jax.device_put(y_train.astype(np.int32)),
        jax.device_put(permute_pixels(data.flatten(dataset.x_test), seed)),
        jax.device_put(dataset.y_test.astype(np.int32)),
    )


def steps_per_epoch(config: Config, num_train: int) -> int:
    return num_train // config.batch_size


def model_sizes(config: Config, num_inputs: int, num_classes: int = 10) -> list[int]:
    return layer_sizes(num_inputs, config.hidden, num_outputs(config, num_classes))


def run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Split a run's key into (init key, data key); epoch e shuffles with fold_in(data key, e).

    Deriving each epoch's key from its number, not from a chain of splits, is what lets a
    resumed run draw exactly the batches an uninterrupted one would.
    """
    init_key, data_key = jax.random.split(key)
    return init_key, data_key


def initial_state(
    key: jax.Array, config: Config, dev: DeviceData, hyper: Hyper, num_classes: int = 10
) -> tuple[TrainState, jax.Array, optax.GradientTransformation]:
    """(state, data key, optimizer) a run starts from: the one place a run's key is split and
    its learning rate handed to the optimizer. Only `dev`'s shapes are read, so it may hold
    `jax.ShapeDtypeStruct`s (a program compiled before the data is loaded)."""
    num_train, num_inputs = dev.x_train.shape
    tx = make_optimizer(config, steps_per_epoch(config, num_train), hyper.learning_rate)
    init_key, data_key = run_keys(key)
    sizes = model_sizes(config, num_inputs, num_classes)
    params = init_mlp(init_key, sizes, hyper.init, hyper.init_scale)
    return TrainState(params, tx.init(params)), data_key, tx


# --- 2. one step, one epoch -----------------------------------------------------------------------


def scale_inputs(pixels: jax.Array, hyper: Hyper) -> jax.Array:
    return pixels.astype(jnp.float32) * hyper.input_scale + hyper.input_shift


def loss_and_grad(params: Params, batch: Batch, config: Config, reductions: Reductions,
                  drop: Dropout | None = None, pick: Pick | None = None
                  ) -> tuple[tuple[jax.Array, LossAux], Params]:
    """((loss, aux), gradient) as the training step computes them: `losses.loss_fn` with the
    reductions as values and `fast.dense` for each layer, differentiated by
    `jax.value_and_grad`. The gradient `python -m jaxmlp.gradcheck` checks."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    return grad_fn(params, batch, config, drop, reductions=reductions, dense=fast.dense,
                   pick=pick)


def make_step(config: Config, tx: optax.GradientTransformation, stats: StatsFn | None = None,
              picks: Options | None = None) -> StepFn:
    """`step(state, batch, hyper, i=0, key=None) -> (state, StepMetrics)`: one update.

    The gradient is `loss_and_grad`'s, with the run's reductions (`hyper`). With `stats`, the
    step also returns `stats(StepValues(...))`: statistics of values the step has anyway
    (gradients, updates, activations), so the update itself is the same computation.

    Dropout (`config.dropout`, `config.input_dropout` above 0; see `dropout_layers`) needs the
    step's own `key` (`make_epoch` passes fold_in(epoch key, i)); the training accuracy is then
    that of the thinned network the step trained. `picks`: the choices of the runs of a program
    built for several (`jaxmlp.pick`), each run's read from its `hyper`.
    """
    drop_inputs, drop_hidden = dropout_layers(config)

    def draw(key: jax.Array | None, hyper: Hyper) -> Dropout | None:
        if not (drop_inputs or drop_hidden):
            return None
        if key is None:
            raise ConfigError(
                "--dropout and --input-dropout need a training loop that gives every step its "
                "own key (a normal run or a sweep does); this one (--overfit, or a lockstep "
                "comparison) does not: drop the dropout settings for it")
        return Dropout(key, hyper.input_dropout if drop_inputs else None,
                       hyper.dropout if drop_hidden else None)

    def step(state: TrainState, batch: Batch, hyper: Hyper, i: jax.Array | int = 0,
             key: jax.Array | None = None) -> tuple[TrainState, StepMetrics]:
        pick = hyper.pick(picks)
        (loss, aux), grads = loss_and_grad(state.params, batch, config, hyper.reductions,
                                           draw(key, hyper), pick)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        logits = aux.forward.logits
        accuracy = jnp.mean(predict_labels(logits, config, pick) == batch.y)
        extra = None
        if stats is not None:
            extra = stats(StepValues(grads, updates, aux.forward.post, loss,
                                     jnp.asarray(i, jnp.int32)))
        # The mean per-example loss is reported whatever the reduction, so that runs with sum
        # and mean reduction over examples can be compared on one scale.
        return (TrainState(params, opt_state),
                StepMetrics(jnp.mean(aux.per_example), accuracy, extra))

    return step


def epoch_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The example indices of one epoch's batches, shape (n // batch_size, batch_size).

    A fresh permutation per epoch with the last partial batch dropped: the indices sorted by 64
    random bits each, in one sort (`jax.random.permutation` sorts twice, for twice the compile
    and run time; two of 60,000 draws tie with probability about 1e-10, and a tie only fixes
    their order). The one shuffle of the package; public so that other implementations (the
    PyTorch and NumPy benchmarks) can train on exactly the same batches.
    """
    num_steps = n // batch_size
    # Drawn flat and cut in two: the bits of a (2, n) draw (an entry's bits depend only on the
    # key and its flat index), compiled up to 3x faster under vmap when n is small
    # (benchmarks/README.md, "Small shapes").
    bits = jax.random.bits(key, (2 * n,), jnp.uint32)
    high, low = bits[:n], bits[n:]
    order = jax.lax.sort((high, low, jnp.arange(n, dtype=jnp.int32)), num_keys=2,
                         is_stable=False)[2]
    return order[: num_steps * batch_size].reshape(num_steps, batch_size)


def make_steps(config: Config, tx: optax.GradientTransformation, step: StepFn | None = None
               ) -> Callable[..., tuple[TrainState, jax.Array, StepMetrics]]:
    """`steps(state, data, hyper, key, order, first=0) -> (state, first bad step, StepMetrics)`:
    scan `step` (default: `make_step(config, tx)`) over the batches of the rows of `order`, the
    first being step `first` of the epoch of `key` (a step's dropout key and statistics go by
    its place in the epoch): a whole epoch and a chunk of one (`programs.Chunks`) share it."""
    step = make_step(config, tx) if step is None else step
    dropout = any(dropout_layers(config))

    def steps(state: TrainState, dev: DeviceData, hyper: Hyper, key: jax.Array,
              order: jax.Array, first: jax.Array | int = 0
              ) -> tuple[TrainState, jax.Array, StepMetrics]:
        def body(carry: tuple[TrainState, jax.Array], xs: tuple[jax.Array, jax.Array]
                 ) -> tuple[tuple[TrainState, jax.Array], StepMetrics]:
            (state, first_bad), (i, idx) = carry, xs
            batch = Batch(scale_inputs(dev.x_train[idx], hyper), dev.y_train[idx])
            # Step i's dropout masks: a key of its own; the epoch key's own use unchanged.
            step_key = jax.random.fold_in(key, i) if dropout else None
            state, out = step(state, batch, hyper, i, step_key)
            first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(out.loss), i, first_bad)
            return (state, first_bad), out

        init = (state, jnp.asarray(-1, jnp.int32))
        index = first + jnp.arange(order.shape[0], dtype=jnp.int32)
        (state, first_bad), out = jax.lax.scan(body, init, (index, order))
        return state, first_bad, out

    return steps


def epoch_metrics(out: StepMetrics, first_bad: jax.Array) -> EpochMetrics:
    """An epoch's metrics from its steps' (stacked, in order)."""
    return EpochMetrics(out.loss.mean(), out.accuracy.mean(), out.loss, first_bad, out.stats)


def make_epoch(config: Config, tx: optax.GradientTransformation, step: StepFn | None = None
               ) -> Callable[[TrainState, DeviceData, Hyper, jax.Array],
                             tuple[TrainState, EpochMetrics]]:
    """`epoch(state, data, hyper, key)`: shuffle on the device, then `make_steps` over all its
    batches. One XLA program: batches are gathered from the resident data by index, nothing
    returns to Python until the epoch ends. The last partial batch is dropped so every step has
    the same shape (one compilation)."""
    steps = make_steps(config, tx, step)

    def epoch(state: TrainState, dev: DeviceData, hyper: Hyper, key: jax.Array
              ) -> tuple[TrainState, EpochMetrics]:
        order = epoch_order(key, dev.x_train.shape[0], config.batch_size)
        state, first_bad, out = steps(state, dev, hyper, key, order)
        return state, epoch_metrics(out, first_bad)

    return epoch


def make_evaluate(
    config: Config, chunk: int = 2000, picks: Options | None = None
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
            pick = hyper.pick(picks)
            _, aux = loss_fn(params, Batch(scale_inputs(x, hyper), y), config,
                             reductions=hyper.reductions, pick=pick)
            loss = jnp.sum(jnp.where(m, aux.per_example, 0.0))
            correct = jnp.sum(m & (predict_labels(aux.forward.logits, config, pick) == y))
            return loss, correct

        sums, corrects = jax.lax.map(one, (xs, ys, mask))
        return jnp.sum(sums) / n, jnp.sum(corrects) / n

    return evaluate


# --- 3. a whole run as one function ---------------------------------------------------------------


def make_train(
    config: Config,
    num_classes: int = 10,
    *,
    step_stats: StatsFn | None = None,
    probe: ProbeFn | None = None,
    picks: Options | None = None,
) -> Callable[[jax.Array, DeviceData, Hyper], tuple[TrainState, RunMetrics]]:
    """`train(key, data, hyper) -> (final state, per-epoch RunMetrics)`: a whole run, pure.

        train = make_train(config)
        state, metrics = jax.jit(train)(jax.random.key(0), dev, hyper)
        # many seeds and learning rates in one program:
        jax.vmap(train, in_axes=(0, None, 0))(keys, dev, hypers)

    The data is an argument, not captured: arrays closed over by a jitted function become
    constants compiled into the program (slow to compile, duplicated in memory). It is the
    computation `python -m jaxmlp.train` runs for the same configuration and seed, compiled as
    one program instead of an epoch's: the parameters agree to float32 rounding
    (tests/test_train.py states the tolerance).

    `step_stats` is handed to `make_step` (its results land in `RunMetrics.step_stats`);
    `probe(params, data, hyper)` measures the parameters at initialisation and after every epoch
    (`RunMetrics.probe`). Neither changes the parameters. `picks`: the losses and activations
    of the runs a sweep's program trains, when they differ (`jaxmlp.pick`).
    """

    def train(key: jax.Array, dev: DeviceData, hyper: Hyper) -> tuple[TrainState, RunMetrics]:
        state, data_key, tx = initial_state(key, config, dev, hyper, num_classes)
        epoch = make_epoch(config, tx, make_step(config, tx, step_stats, picks))
        evaluate = make_evaluate(config, picks=picks)
        initial = probe(state.params, dev, hyper) if probe is not None else None

        def one_epoch(state: TrainState, e: jax.Array) -> tuple[TrainState, RunMetrics]:
            state, m = epoch(state, dev, hyper, jax.random.fold_in(data_key, e))
            test_loss, test_accuracy = evaluate(state.params, dev.x_test, dev.y_test, hyper)
            after = probe(state.params, dev, hyper) if probe is not None else None
            return state, RunMetrics(m.train_loss, m.train_accuracy, test_loss, test_accuracy,
                                     m.first_bad_step, m.step_stats, after)

        state, metrics = jax.lax.scan(one_epoch, state, jnp.arange(config.epochs))
        if probe is not None:
            probes = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), initial,
                                  metrics.probe)
            metrics = metrics._replace(probe=probes)
        return state, metrics

    return train
