"""Diagnostics: make the classic failure modes of training visible, in numbers and in words.

What is measured, per layer and per epoch (`python -m jaxmlp.train --diagnose`):

- gradient norm |dL/d(W, b)| of each layer, on every `NORM_EVERY`-th step (kept for the
  plots), and its mean over the epoch;
- update-to-parameter ratio |update| / |params|: how much one step changes a layer
  (around 1e-3 is healthy; 1e-1 means the weights are thrashing, 1e-7 that they hardly move);
- activation mean and std, and the fraction of dead units (ReLU: output 0 for every example of
  a fixed evaluation batch, so no gradient ever reaches their weights) or saturated units
  (tanh/sigmoid: in the flat part of the curve for nearly every example);
- the fraction of examples whose outputs are all zero, and how concentrated the predictions are;
- the first non-finite value: which step, which layer, which quantity (layer outputs, loss,
  gradient, update, in the order a step computes them).

Everything per step is computed inside the jitted `lax.scan` epoch (no host round trip per
step); the activation statistics are computed once per epoch on a fixed evaluation batch (the
first `PROBE_SIZE` training examples). `diagnose(...)` turns the numbers into a short
plain-language report, using the thresholds named below.

Pieces for other code (a sweep can vmap them): `summarize_step` (pure, per step),
`probe_stats` (pure, per evaluation), `make_epoch_with_diagnostics` (the epoch, returning
`EpochDiagnostics` beside the usual metrics), `diagnose` (numbers -> findings). `Recorder` is
the side-effecting edge that `train.run` uses: it writes `diagnostics.jsonl`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp.config import Config
from jaxmlp.losses import Batch, per_example_loss, predict_labels, predictions, reduce_examples
from jaxmlp.model import ACTIVATIONS, Params

# --- thresholds: every judgement in the report is one of these numbers ---------------------------

# The evaluation ("probe") batch for activation statistics: the first training examples.
PROBE_SIZE = 1024
# A unit is "flat" for an example where the slope of its nonlinearity is below this fraction of
# the steepest slope: almost no gradient passes through it there.
FLAT_SLOPE = 0.05
# tanh/sigmoid unit counted as saturated when flat for at least this share of the examples.
SATURATED_SHARE = 0.9
# An output counts as zero below this magnitude.
ZERO_OUTPUT = 1e-6
# Report a layer when at least this fraction of its units is dead / saturated.
DEAD_WARN = 0.5
SATURATED_WARN = 0.5
# Report when at least this fraction of examples gets all-zero outputs.
ZERO_OUTPUTS_WARN = 0.5
# Outputs "do not depend on the input" when their spread across examples is below this
# fraction of their overall spread (a healthy network: ~0.3 to 1).
CONSTANT_OUTPUTS = 1e-3
# Gradient norm of layer 1 relative to the last layer: below is vanishing, above is exploding.
VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
# |update| / |params| per step: above thrashes (the step rewrites a tenth of the weights), below
# the weights hardly move.
UPDATE_RATIO_HIGH = 0.1
UPDATE_RATIO_LOW = 1e-6
# "Collapsed": at least this share of the evaluation batch predicted as one class.
COLLAPSE_SHARE = 0.9
# "Not learning": accuracy within this margin of chance (1 / classes).
CHANCE_MARGIN = 0.05
# "The loss fell": relative fall of the training loss, from the initialisation (or the first
# epoch) to the last epoch.
LOSS_FELL = 0.2
# "Low accuracy": below this, even if above chance (a working MLP gets > 0.9 on MNIST,
# Fashion-MNIST and digits).
LOW_ACCURACY = 0.5
# "Overfitting": training accuracy this much above test accuracy.
OVERFIT_GAP = 0.1
# Learning rates that are large for each optimizer on unit-scaled inputs (a hint, not a rule).
LARGE_LR = {"sgd": 0.5, "momentum": 0.1, "adam": 1e-2}
# Gradient and update norms are measured on every NORM_EVERY-th step. Measured on the default
# MNIST run (2-core CPU): norms at every step cost ~15% of the epoch's time, because each is a
# memory-bound pass over all parameters; every 4th step costs ~5% (with the per-step
# finiteness checks) and still gives ~120 points per epoch for the plot and for the means.
NORM_EVERY = 4
# --overfit N: give up after this many full-batch steps.
OVERFIT_MAX_STEPS = 2000

# The steepest slope of each nonlinearity (sigmoid's is 1/4, at 0); "flat" is relative to it.
MAX_SLOPE = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, "gelu": 1.0}
# Which failure a nonlinearity can show: relu/gelu units die (flat on the negative side, output
# ~0), tanh/sigmoid units saturate (flat at both ends, output near its limits).
DYING = ("relu", "gelu")
SATURATING = ("tanh", "sigmoid")

DIAGNOSTICS = "diagnostics.jsonl"


# --- per step: pure functions of one training step's values --------------------------------------


class StepStats(NamedTuple):
    grad_norm: jax.Array  # (layers,) |dL/d(W_l, b_l)|
    update_norm: jax.Array  # (layers,) |update_l|
    nonfinite: jax.Array  # int32: index in `nonfinite_order` of the first non-finite value, or -1


def layer_norms(tree: Params) -> jax.Array:
    """(layers,) the L2 norm of each layer's weights and bias together."""
    return jnp.stack([jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in layer.values()))
                      for layer in tree])


def safe_layer_norms(tree: Params) -> jax.Array:
    """`layer_norms`, except that finite entries never make a non-finite norm: where the sum of
    squares overflows float32 (entries beyond ~1e19, common just before a divergence), the norm
    is recomputed scaled by the largest entry. Non-finite entries give NaN. The careful branch
    runs only when the fast norm is not finite (`lax.cond`), so it costs nothing otherwise."""

    def one(layer: dict[str, jax.Array]) -> jax.Array:
        leaves = list(layer.values())
        fast = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in leaves))

        def careful() -> jax.Array:
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))
            big = jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in leaves]))
            big = jnp.where(finite & (big > 0), big, 1.0)
            norm = big * jnp.sqrt(sum(jnp.sum(jnp.square(v / big)) for v in leaves))
            return jnp.where(finite, norm, jnp.nan).astype(fast.dtype)

        return jax.lax.cond(jnp.isfinite(fast), lambda: fast, careful)

    return jnp.stack([one(layer) for layer in tree])


def nonfinite_order(num_layers: int) -> list[tuple[str, int]]:
    """(quantity, 1-based layer) in the order a step computes them: the forward pass layer by
    layer, the loss (layer 0), gradients from the last layer down (backprop), then updates.

    New parameters are not checked separately: finite parameters plus a finite update are
    finite (short of overflowing float32's ~3e38), and if they were not, the next step's forward
    pass would report it."""
    n = num_layers
    return ([("activation", i) for i in range(1, n + 1)] + [("loss", 0)]
            + [("gradient", i) for i in range(n, 0, -1)]
            + [("update", i) for i in range(1, n + 1)])


def summarize_step(grads: Params, updates: Params, activations: Sequence[jax.Array],
                   loss: jax.Array, measure: jax.Array | bool = True) -> StepStats:
    """The numbers one step is summarised by: reductions over values the step has anyway.

    `activations` are every layer's outputs (hidden activations, then the logits), as
    `model.mlp_activations` returns them; they and the loss are checked at every step (cheap:
    batch-sized). The gradient and update norms, a pass over all parameters each, are computed
    only where `measure` is true (NaN elsewhere; `lax.cond` really skips the work). A norm
    from `safe_layer_norms` is non-finite exactly when some entry is, so the norms double as
    finiteness checks. A non-finite gradient on an unmeasured step shows up at the next step,
    as non-finite outputs of the forward pass.
    """
    n = len(grads)
    measure = jnp.asarray(measure, bool)  # `~True` on a Python bool is -2, not False

    def norms() -> tuple[jax.Array, jax.Array]:
        return safe_layer_norms(grads), safe_layer_norms(updates)

    dtype = jnp.result_type(*jax.tree.leaves(grads))

    def skipped() -> tuple[jax.Array, jax.Array]:
        return jnp.full((n,), jnp.nan, dtype), jnp.full((n,), jnp.nan, dtype)

    grad_norm, update_norm = jax.lax.cond(measure, norms, skipped)
    # A non-finite hidden activation makes the outputs non-finite too (inf * w is inf or NaN),
    # so only the small output array is checked every step; the layer-by-layer search runs
    # only on a step whose outputs are bad.
    act_ok = jax.lax.cond(
        jnp.all(jnp.isfinite(activations[-1])),
        lambda: jnp.ones(len(activations), bool),
        lambda: jnp.stack([jnp.all(jnp.isfinite(a)) for a in activations]))
    ok = jnp.concatenate([act_ok, jnp.isfinite(loss)[None],
                          jnp.isfinite(grad_norm)[::-1] | ~measure,
                          jnp.isfinite(update_norm) | ~measure])
    code = jnp.where(jnp.all(ok), -1, jnp.argmin(ok)).astype(jnp.int32)
    return StepStats(grad_norm, update_norm, code)


# --- per evaluation: activation statistics on a fixed batch ---------------------------------------


class ProbeStats(NamedTuple):
    """Statistics of the network on the evaluation batch. Per-layer arrays run over every layer
    (hidden layers, then the output layer); `dead`/`saturated` over the hidden layers only."""

    act_mean: jax.Array  # (layers,)
    act_std: jax.Array  # (layers,)
    dead: jax.Array  # (hidden,) fraction of units flat and ~0 for every example
    saturated: jax.Array  # (hidden,) fraction of units flat for >= SATURATED_SHARE of examples
    dead_units: tuple[jax.Array, ...]  # per hidden layer, (width,) bool
    param_norm: jax.Array  # (layers,)
    zero_outputs: jax.Array  # fraction of examples whose raw outputs are all ~0
    output_variation: jax.Array  # mean over outputs of their std across examples / overall std
    zero_predictions: jax.Array  # ... whose predictions (after the output transform) are all ~0
    negative_predictions: jax.Array  # ... with a prediction below 0 (sum_normalize's failure)
    top_class_share: jax.Array  # share of examples predicted as the most common class
    top_class: jax.Array  # that class
    loss: jax.Array  # mean per-example loss on the evaluation batch
    accuracy: jax.Array


def probe_stats(params: Params, batch: Batch, config: Config, num_classes: int = 10
                ) -> ProbeStats:
    """Statistics of `params` on the evaluation `batch`: a forward pass only."""
    act = ACTIVATIONS[config.activation]
    x = batch.x
    dead, saturated, dead_units, outs = [], [], [], []
    for layer in params[:-1]:
        z = x @ layer["w"] + layer["b"]
        # The slope of an elementwise function: a JVP with tangent 1 gives act'(z) everywhere.
        x, slope = jax.jvp(act, (z,), (jnp.ones_like(z),))
        outs.append(x)
        flat = jnp.abs(slope) < FLAT_SLOPE * MAX_SLOPE[config.activation]
        units_dead = jnp.all(flat & (z <= 0), axis=0)  # relu: exactly "output 0 for every x"
        dead_units.append(units_dead)
        dead.append(jnp.mean(units_dead))
        saturated.append(jnp.mean(jnp.mean(flat, axis=0) >= SATURATED_SHARE))
    logits = x @ params[-1]["w"] + params[-1]["b"]
    outs.append(logits)
    p = predictions(logits, config.output) if config.targets == "onehot" else logits
    labels = predict_labels(logits, config)
    counts = jnp.bincount(jnp.clip(labels, 0, num_classes - 1), length=num_classes)
    empty = jnp.zeros((0,), jnp.float32)
    return ProbeStats(
        act_mean=jnp.stack([jnp.mean(h) for h in outs]),
        act_std=jnp.stack([jnp.std(h) for h in outs]),
        dead=jnp.stack(dead) if dead else empty,
        saturated=jnp.stack(saturated) if saturated else empty,
        dead_units=tuple(dead_units),
        param_norm=layer_norms(params),
        zero_outputs=jnp.mean(jnp.all(jnp.abs(logits) < ZERO_OUTPUT, axis=-1)),
        output_variation=jnp.mean(jnp.std(logits, axis=0)) / (jnp.std(logits) + 1e-30),
        zero_predictions=jnp.mean(jnp.all(jnp.abs(p) < ZERO_OUTPUT, axis=-1)),
        negative_predictions=jnp.mean(jnp.any(p < 0, axis=-1)),
        top_class_share=jnp.max(counts) / batch.x.shape[0],
        top_class=jnp.argmax(counts).astype(jnp.int32),
        loss=jnp.mean(per_example_loss(logits, batch.y, config)),
        accuracy=jnp.mean(labels == batch.y),
    )


# --- the epoch, with diagnostics ------------------------------------------------------------------


class EpochDiagnostics(NamedTuple):
    grad_norm: jax.Array  # (layers,) mean over the measured steps with a finite norm
    grad_norm_max: jax.Array  # (layers,)
    update_norm: jax.Array  # (layers,) mean over the measured steps with a finite norm
    step_grad_norm: jax.Array  # (measured steps, layers): steps 0, k, 2k, ... (k = norm_every)
    nonfinite_step: jax.Array  # 0-based step of the first non-finite value, or -1
    nonfinite_code: jax.Array  # its index in `nonfinite_order`, or -1
    probe: ProbeStats | None  # on the evaluation batch, with the parameters after the epoch


def _finite_mean(x: jax.Array) -> jax.Array:
    """Mean over axis 0 of the finite entries (NaN where there are none)."""
    ok = jnp.isfinite(x)
    return jnp.sum(jnp.where(ok, x, 0.0), axis=0) / jnp.sum(ok, axis=0)


def probe_batch(dev: Any, hyper: Any) -> Batch:
    """The fixed evaluation batch: the first `PROBE_SIZE` training examples, scaled."""
    from jaxmlp.train import scale_inputs

    n = min(PROBE_SIZE, dev.x_train.shape[0])
    return Batch(scale_inputs(dev.x_train[:n], hyper), dev.y_train[:n])


def make_diagnostic_step(
    config: Config, tx: optax.GradientTransformation
) -> Callable[[Any, Batch], tuple[Any, tuple[jax.Array, jax.Array], StepStats]]:
    """`train.make_step` that also returns `StepStats`; the update itself is the same
    computation, so parameters come out identical (tests/test_diagnostics.py checks it bitwise).
    """
    def objective(params: Params, batch: Batch
                  ) -> tuple[jax.Array, tuple[jax.Array, list[jax.Array]]]:
        # The training step's own forward pass (and custom gradient), so the update is bitwise
        # the one `train.make_step` makes.
        from jaxmlp.train import training_activations

        acts = training_activations(params, batch.x, config.activation)
        per_example = per_example_loss(acts[-1], batch.y, config)
        return reduce_examples(per_example, config.example_reduction), (per_example, acts)

    def step(state: Any, batch: Batch, measure: jax.Array | bool = True
             ) -> tuple[Any, tuple[jax.Array, jax.Array], StepStats]:
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (loss, (per_example, acts)), grads = grad_fn(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        accuracy = jnp.mean(predict_labels(acts[-1], config) == batch.y)
        stats = summarize_step(grads, updates, acts, loss, measure)
        # _replace, not TrainState(...): under `python -m jaxmlp.train` the caller's class is
        # __main__.TrainState, and scan insists that the carry keeps its exact type.
        return state._replace(params=params, opt_state=opt_state), (jnp.mean(per_example),
                                                                     accuracy), stats

    return step


def make_epoch_with_diagnostics(
    config: Config, tx: optax.GradientTransformation, num_classes: int = 10,
    with_probe: bool = True, norm_every: int = NORM_EVERY,
) -> Callable[..., tuple[Any, Any, EpochDiagnostics]]:
    """`epoch(state, data, hyper, key) -> (state, EpochMetrics, EpochDiagnostics)`.

    The same epoch as `train.make_epoch` (same shuffle, same batches, same updates), with the
    per-step statistics stacked by the scan: still one XLA program with no host synchronisation
    inside. Pure, so it can be vmapped. Gradient and update norms are measured every
    `norm_every` steps (see `NORM_EVERY`). `with_probe` adds the evaluation-batch statistics at the
    end of the epoch; `train.run` leaves it out and calls a separately compiled `make_probe`
    instead, which it needs anyway for the initial parameters (one compilation, not two).
    """
    from jaxmlp.train import EpochMetrics, epoch_order, scale_inputs

    step = make_diagnostic_step(config, tx)
    batch_size = config.batch_size

    def epoch(state: Any, dev: Any, hyper: Any, key: jax.Array
              ) -> tuple[Any, EpochMetrics, EpochDiagnostics]:
        order = epoch_order(key, dev.x_train.shape[0], batch_size)  # make_epoch's batches
        num_steps = order.shape[0]

        def body(carry: tuple[Any, jax.Array], xs: tuple[jax.Array, jax.Array]
                 ) -> tuple[tuple[Any, jax.Array], tuple[jax.Array, jax.Array, StepStats]]:
            state, first_bad = carry
            i, idx = xs
            batch = Batch(scale_inputs(dev.x_train[idx], hyper), dev.y_train[idx])
            state, (loss, accuracy), stats = step(state, batch, i % norm_every == 0)
            first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), i, first_bad)
            return (state, first_bad), (loss, accuracy, stats)

        init = (state, jnp.asarray(-1, jnp.int32))
        steps = jnp.arange(num_steps, dtype=jnp.int32)
        (state, first_bad), (losses, accuracies, stats) = jax.lax.scan(body, init, (steps, order))
        metrics = EpochMetrics(jnp.mean(losses), jnp.mean(accuracies), losses, first_bad)
        bad = stats.nonfinite >= 0
        first = jnp.argmax(bad)
        probe = (probe_stats(state.params, probe_batch(dev, hyper), config, num_classes)
                 if with_probe else None)
        grad_norm = stats.grad_norm[::norm_every]
        diag = EpochDiagnostics(
            grad_norm=_finite_mean(grad_norm),
            grad_norm_max=jnp.max(jnp.where(jnp.isfinite(grad_norm), grad_norm, -jnp.inf),
                                  axis=0),
            update_norm=_finite_mean(stats.update_norm[::norm_every]),
            step_grad_norm=grad_norm,
            nonfinite_step=jnp.where(jnp.any(bad), first, -1).astype(jnp.int32),
            nonfinite_code=jnp.where(jnp.any(bad), stats.nonfinite[first], -1).astype(jnp.int32),
            probe=probe,
        )
        return state, metrics, diag

    return epoch


def make_probe(config: Config, num_classes: int = 10) -> Callable[[Params, Any, Any], ProbeStats]:
    """`probe(params, data, hyper) -> ProbeStats` on the evaluation batch (for initialisation)."""
    return lambda params, dev, hyper: probe_stats(params, probe_batch(dev, hyper), config,
                                                  num_classes)


def make_train_with_diagnostics(
    config: Config, num_classes: int = 10, norm_every: int = NORM_EVERY
) -> Callable[..., tuple[Any, Any, ProbeStats, EpochDiagnostics]]:
    """`train(key, data, hyper) -> (state, RunMetrics, initial ProbeStats, EpochDiagnostics)`:
    `train.make_train` with diagnostics, for sweeps (jit or vmap it like `make_train`). The
    `EpochDiagnostics` leaves gain a leading epochs axis; `rows_from_train` turns one run's
    results into diagnostics.jsonl rows, which `diagnose` reads."""
    from jaxmlp.train import (
        RunMetrics,
        init_state,
        make_evaluate,
        make_optimizer,
        model_sizes,
        run_keys,
        steps_per_epoch,
    )

    def train(key: jax.Array, dev: Any, hyper: Any
              ) -> tuple[Any, RunMetrics, ProbeStats, EpochDiagnostics]:
        n = dev.x_train.shape[0]
        tx = make_optimizer(config, steps_per_epoch(config, n))
        epoch = make_epoch_with_diagnostics(config, tx, num_classes, norm_every=norm_every)
        evaluate = make_evaluate(config)
        init_key, data_key = run_keys(key)
        sizes = model_sizes(config, dev.x_train.shape[1], num_classes)
        state = init_state(init_key, config, hyper, tx, sizes)
        initial = probe_stats(state.params, probe_batch(dev, hyper), config, num_classes)

        def one_epoch(state: Any, e: jax.Array) -> tuple[Any, tuple[RunMetrics, EpochDiagnostics]]:
            state, m, d = epoch(state, dev, hyper, jax.random.fold_in(data_key, e))
            test_loss, test_accuracy = evaluate(state.params, dev.x_test, dev.y_test, hyper)
            metrics = RunMetrics(m.train_loss, m.train_accuracy, test_loss, test_accuracy,
                                 m.first_bad_step)
            return state, (metrics, d)

        state, (metrics, diags) = jax.lax.scan(one_epoch, state, jnp.arange(config.epochs))
        return state, metrics, initial, diags

    return train


def rows_from_train(config: Config, sizes: Sequence[int], initial: ProbeStats,
                    diags: EpochDiagnostics, steps: int, norm_every: int = NORM_EVERY
                    ) -> list[dict[str, Any]]:
    """diagnostics.jsonl rows (epoch 0 = initialisation, then every epoch) from one run of
    `make_train_with_diagnostics` (index a vmapped result first)."""
    shapes = list(itertools.pairwise(sizes))
    diags = jax.device_get(diags)
    epochs = diags.grad_norm.shape[0]
    rows = [make_row(0, config, shapes, initial, grad_norm=diags.step_grad_norm[0][0],
                     norm_every=norm_every)]
    for e in range(epochs):
        d = jax.tree.map(lambda leaf, e=e: leaf[e], diags)
        rows.append(make_row(e + 1, config, shapes, d.probe, d, steps=steps,
                             norm_every=norm_every))
    return rows


# --- from device numbers to JSON rows -------------------------------------------------------------


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pack(mask: np.ndarray) -> str:
    """A boolean unit mask as hex (one bit per unit), so a row stays short for wide layers."""
    return np.packbits(np.asarray(mask, bool)).tobytes().hex()


def unpack_mask(hexstr: str, width: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexstr), np.uint8))[:width].astype(bool)


def make_row(epoch: int, config: Config, shapes: Sequence[tuple[int, int]], probe: ProbeStats,
             epoch_diag: EpochDiagnostics | None = None,
             grad_norm: Sequence[float] | None = None, steps: int = 0,
             norm_every: int = NORM_EVERY) -> dict[str, Any]:
    """One line of diagnostics.jsonl. For epoch 0 (the initial parameters, no steps yet) pass
    `grad_norm`: the first training step's, which is taken at the initial parameters."""
    probe = jax.device_get(probe)
    d = jax.device_get(epoch_diag) if epoch_diag is not None else None
    if d is not None:
        grad_norm = d.grad_norm
    layers = []
    hidden = len(shapes) - 1
    for i, shape in enumerate(shapes):
        is_hidden = i < hidden
        layers.append({
            "layer": i + 1,
            "shape": list(shape),
            "grad_norm": _num(grad_norm[i]) if grad_norm is not None else None,
            "grad_norm_max": _num(d.grad_norm_max[i]) if d is not None else None,
            # mean |update| over the epoch's steps / |params| at its end
            "update_ratio": (_num(d.update_norm[i] / max(float(probe.param_norm[i]), 1e-30))
                             if d is not None else None),
            "param_norm": _num(probe.param_norm[i]),
            "act_mean": _num(probe.act_mean[i]),
            "act_std": _num(probe.act_std[i]),
            "dead": _num(probe.dead[i]) if is_hidden and config.activation in DYING else None,
            "saturated": (_num(probe.saturated[i])
                          if is_hidden and config.activation in SATURATING else None),
        })
    first = None
    if d is not None and int(d.nonfinite_step) >= 0:
        quantity, layer = nonfinite_order(len(shapes))[int(d.nonfinite_code)]
        first = {"step": int(d.nonfinite_step) + 1, "quantity": quantity, "layer": layer}
    return {
        "epoch": epoch,
        "steps": steps,
        "norm_every": norm_every if d is not None else None,
        "layers": layers,
        "zero_outputs": _num(probe.zero_outputs),
        "output_variation": _num(probe.output_variation),
        "zero_predictions": _num(probe.zero_predictions),
        "negative_predictions": _num(probe.negative_predictions),
        "top_class": int(probe.top_class),
        "top_class_share": _num(probe.top_class_share),
        "probe_loss": _num(probe.loss),
        "probe_accuracy": _num(probe.accuracy),
        "first_nonfinite": first,
        "dead_units": ([_pack(m) for m in probe.dead_units]
                       if config.activation in DYING else None),
        # gradient norms of steps 1, 1 + norm_every, ... (1-based)
        "step_grad_norm": ([[_num(v) for v in row] for row in d.step_grad_norm.tolist()]
                           if d is not None else []),
    }


def describe_nonfinite(first: dict[str, Any], epoch: int) -> str:
    q, layer = first["quantity"], first["layer"]
    where = "the loss" if q == "loss" else (
        f"the outputs of layer {layer}" if q == "activation" else f"the {q} of layer {layer}")
    why = {
        "activation": "the forward pass overflowed: weights or inputs are so large that "
                      "products exceed float32's range (~3e38)",
        "loss": "the loss itself could not be computed from finite outputs",
        "gradient": "backpropagation overflowed although the forward pass was finite",
        "update": "the optimizer turned finite gradients into a non-finite step",
    }[q]
    return (f"the first non-finite value was {where}, at epoch {epoch}, step {first['step']} "
            f"({why})")


# --- the report: numbers in, plain words out ------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    code: str  # stable identifier, e.g. "dead_units", for tests and tools
    message: str  # what the numbers show
    advice: str  # what to try

    def __str__(self) -> str:
        return f"{self.message}; {self.advice}" if self.advice else self.message


def _layer_values(row: dict[str, Any], key: str) -> list[float | None]:
    return [layer[key] for layer in row["layers"]]


def _dead_since(rows: Sequence[dict[str, Any]], layer: int) -> int | None:
    """The earliest epoch since which most (>= 90%) of the units dead at the end have been
    dead at every evaluation."""
    width = rows[-1]["layers"][layer]["shape"][1]
    masks = [unpack_mask(r["dead_units"][layer], width) for r in rows
             if r.get("dead_units") is not None]
    if not masks or not masks[-1].any():
        return None
    final = masks[-1]
    alive_since = np.ones_like(final)
    since = None
    for idx in range(len(masks) - 1, -1, -1):
        alive_since &= masks[idx]
        if alive_since[final].mean() >= 0.9:
            since = rows[idx]["epoch"]
    return since


def _step_causes(config: Config) -> list[str]:
    """What in the configuration makes the steps large, in words."""
    causes = []
    if config.input_scale == "raw":
        causes.append("the inputs are raw 0..255 (the first layer's gradient is ~255x larger)")
    if config.learning_rate >= LARGE_LR.get(config.optimizer, math.inf):
        causes.append(f"lr={config.learning_rate:g} is large for {config.optimizer}")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        causes.append(f"--example-reduction sum makes the gradient {config.batch_size}x (the "
                      f"batch size) larger than the mean would, and {config.optimizer}'s step "
                      f"with it")
    return causes


def _when(epoch: int) -> str:
    return "at initialisation," if epoch == 0 else f"at epoch {epoch},"


def _lr_hint(config: Config) -> str:
    return (f"a smaller learning rate (now {config.learning_rate:g}; try "
            f"{config.learning_rate / 10:g})")


def _step_fixes(config: Config) -> list[str]:
    """The flags that make the steps smaller, one per cause `_step_causes` can name."""
    fixes = []
    if config.input_scale == "raw":
        fixes.append("--input-scale unit")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        fixes.append("--example-reduction mean")
    fixes.append(_lr_hint(config))
    return fixes


def diagnose(config: Config, rows: Sequence[dict[str, Any]],
             history: Sequence[dict[str, Any]] = (), num_classes: int = 10) -> list[Finding]:
    """Read the diagnostics rows (and the per-epoch metrics) and say what looks wrong.

    Every judgement compares a number with one of the module's named thresholds.
    """
    findings: list[Finding] = []
    if not rows:
        return findings
    last = rows[-1]
    n_layers = len(last["layers"])

    bad = [r for r in rows if r.get("first_nonfinite")]
    if bad:
        r = bad[0]
        fixes = _step_fixes(config)
        message = describe_nonfinite(r["first_nonfinite"], r["epoch"])
        causes = _step_causes(config)
        if causes:
            message += "; " + " and ".join(causes)
        findings.append(Finding("nonfinite", message, "try " + " or ".join(fixes)))

    # Dead ReLUs: units whose output is 0 for every evaluation example get no gradient, ever.
    for i, frac in enumerate(_layer_values(last, "dead")):
        if frac is None or frac < DEAD_WARN:
            continue
        since = _dead_since(rows, i)
        text = f"{frac:.0%} of layer-{i + 1} units are dead (output 0 for every one of the " \
               f"evaluation examples, so their weights get no gradient)"
        if since is not None:
            text += (" since initialisation" if since == 0 else f" since epoch {since}")
        causes = _step_causes(config)
        if since == 0:
            causes.append(f"they were dead from the start (--init {config.init}, "
                          f"--init-scale {config.init_scale:g})")
        if causes:
            text += "; " + " and ".join(causes)
        advice = _step_fixes(config)
        if since == 0:
            advice.append("--init he --init-scale 1")
        advice.append("--activation gelu or tanh (no zero-gradient region)")
        findings.append(Finding("dead_units", text, "try " + ", or ".join(advice)))

    for i, frac in enumerate(_layer_values(last, "saturated")):
        if frac is None or frac < SATURATED_WARN:
            continue
        findings.append(Finding(
            "saturated_units",
            f"{frac:.0%} of layer-{i + 1} units are saturated ({config.activation} in its flat "
            f"part for >= {SATURATED_SHARE:.0%} of examples, slope < {FLAT_SLOPE:.0%} of its "
            f"maximum): little gradient passes through them",
            "try smaller inputs to the layer (--input-scale unit or standardize, a smaller "
            "--init-scale) or --activation relu"))

    # Vanishing / exploding: layer 1's gradient relative to the last layer's, at the epoch
    # where it was most extreme (often the initialisation; adam can partly recover later).
    ratios = [(r["epoch"], _layer_values(r, "grad_norm")) for r in rows]
    ratios = [(e, g[0] / g[-1], g) for e, g in ratios
              if n_layers > 1 and all(v is not None and v > 0 for v in g)]
    if ratios:
        low, high = min(ratios, key=lambda t: t[1]), max(ratios, key=lambda t: t[1])
        now = ratios[-1]
        if low[1] < VANISHING_RATIO:
            epoch, ratio, g = low
            # Backprop multiplies by act'(z) and by W^T once per layer on the way down.
            why = [f"each layer's backward pass multiplies the gradient by {config.activation}'s "
                   f"slope (at most {MAX_SLOPE[config.activation]:g})"]
            if config.init == "normal":
                why.append(f"by weights of std {config.init_scale:g} (--init normal)")
            elif config.init_scale < 1:
                why.append(f"by weights scaled down by --init-scale {config.init_scale:g}")
            fixes = []
            if config.activation in SATURATING:
                fixes.append("--activation relu")
            if config.init == "normal" or config.init_scale < 1:
                fixes.append("--init he --init-scale 1")
            if n_layers > 3:
                fixes.append("fewer layers")
            if any(f.code in ("dead_units", "saturated_units") for f in findings):
                why = ["dead or saturated units (above) pass back little or no gradient"]
                fixes = ["fixing those first"]
            else:
                why[-1] += f", {n_layers - 1} times over"
            text = (f"{_when(epoch)} the gradient norm of layer 1 was {ratio:.0e} of layer "
                    f"{n_layers}'s ({g[0]:.1e} vs {g[-1]:.1e}): vanishing gradients; "
                    + " and ".join(why))
            if now[0] != epoch:
                text += f" (at epoch {now[0]}: {now[1]:.0e})"
            findings.append(Finding("vanishing_gradients", text,
                                    "try " + ", ".join(fixes or ["fewer layers"])))
        elif high[1] > EXPLODING_RATIO:
            epoch, ratio, _ = high
            findings.append(Finding(
                "exploding_gradients",
                f"{_when(epoch)} the gradient norm of layer 1 was {ratio:.0e} times layer "
                f"{n_layers}'s: gradients grow on the way back (exploding)",
                "try a smaller --init-scale or --init he/glorot, or " + _lr_hint(config)))

    # Update sizes at their peak over the run: schedules shrink the last epochs' steps on purpose.
    peaks = [max((r["layers"][i]["update_ratio"] for r in rows
                  if r["layers"][i]["update_ratio"] is not None), default=None)
             for i in range(n_layers)]
    known = [(p, i + 1) for i, p in enumerate(peaks) if p is not None]
    if known:
        hi, k_hi = max(known)
        if hi > UPDATE_RATIO_HIGH:
            findings.append(Finding(
                "large_updates",
                f"a step changes layer {k_hi}'s weights by {hi:.0%} of their size on average (at "
                f"the peak epoch; healthy is ~0.1%): the learning rate is too large",
                "try " + _lr_hint(config)))
        elif hi < UPDATE_RATIO_LOW:
            findings.append(Finding(
                "tiny_updates",
                f"even at its peak a step changes the weights by at most {hi:.0e} of their "
                f"size: they hardly move",
                f"try a larger learning rate (now {config.learning_rate:g})"))

    # All-zero outputs (the signal died on the way forward), now or at initialisation, and
    # outputs that do not depend on the input (e.g. a dead last layer leaves only the bias).
    zero_rows = [r for r in (rows[0], last)
                 if (r.get("zero_outputs") or 0.0) >= ZERO_OUTPUTS_WARN]
    if zero_rows:
        r = zero_rows[-1]
        when = "at initialisation" if r["epoch"] == 0 else f"at epoch {r['epoch']}"
        text = (f"{when}, {r['zero_outputs']:.0%} of the evaluation examples got all-zero "
                f"outputs (every |o_k| < {ZERO_OUTPUT:g})")
        dead_last = _layer_values(r, "dead")[-2] if n_layers > 1 else None
        if dead_last is not None and dead_last >= DEAD_WARN:
            text += f"; {dead_last:.0%} of the last hidden layer is dead"
        findings.append(Finding(
            "zero_outputs", text,
            "the signal shrinks to nothing on its way forward: see the dead units or vanishing "
            "gradients above, and use --init he (or glorot for tanh/sigmoid)"))
    variation = last.get("output_variation")
    if variation is not None and variation < CONSTANT_OUTPUTS and not (
            zero_rows and zero_rows[-1] is last):
        findings.append(Finding(
            "constant_outputs",
            f"the outputs hardly depend on the input: across examples they vary by "
            f"{variation:.0e} of their spread, so every image gets the same prediction",
            "see the findings above: no signal from the input reaches the output layer"))

    if config.output == "sum_normalize":
        neg = max(rows, key=lambda r: r.get("negative_predictions") or 0.0)
        if (neg.get("negative_predictions") or 0.0) >= 0.5:
            findings.append(Finding(
                "negative_predictions",
                f"with --output sum_normalize, {_when(neg['epoch'])} "
                f"{neg['negative_predictions']:.0%} of the examples got a negative "
                f"'probability': o_k / sum(o) is a probability only if every output is "
                f"positive, and a linear output layer gives negative outputs",
                "try --output softmax (exp makes every output positive)"))

    chance = 1.0 / num_classes
    test_acc = history[-1].get("test_accuracy") if history else None
    if test_acc is not None and not bad:
        train_acc = history[-1].get("train_accuracy")
        last_loss = history[-1].get("train_loss")
        # How much the loss fell: from initialisation (the epoch-0 row) or the first epoch.
        start = [history[0].get("train_loss")]
        if rows[0]["epoch"] == 0:
            start.append(rows[0].get("probe_loss"))
        falls = [((s0 - last_loss) / s0, s0) for s0 in start if s0 and last_loss is not None]
        fell, s0 = max(falls, default=(0.0, None))
        fell_text = (f"the loss fell from {s0:.3g} to {last_loss:.3g} while "
                     if fell >= LOSS_FELL else "")
        share = last.get("top_class_share") or 0.0
        blocked = [f for f in findings if f.code in
                   ("dead_units", "saturated_units", "vanishing_gradients")]
        if any(f.code == "tiny_updates" for f in findings):
            advice = "the weights have barely moved from their random start (above)"
        elif blocked:
            advice = ("fix the problems above first: with no signal from the hidden layers "
                      "the network can only learn which class is most common")
        elif config.targets == "integer":
            advice = ("one number for the label makes '4' halfway between '3' and '5', an "
                      "order the digits do not have: try --targets onehot (the default)")
        elif config.output != "softmax" or config.error != "cross_entropy":
            advice = (f"the loss being minimised (--output {config.output} --error "
                      f"{config.error}) can fall without favouring the right class"
                      + (": o_k / sum(o) grows when the sum shrinks, whichever class is right"
                         if config.output == "sum_normalize" else "")
                      + "; try --output softmax --error cross_entropy")
        else:
            advice = "check the learning rate and --input-scale, or train longer"
        if test_acc <= chance + CHANCE_MARGIN and share >= COLLAPSE_SHARE:
            findings.append(Finding(
                "collapsed",
                f"{fell_text}test accuracy {'stayed at' if fell_text else 'is'} "
                f"{test_acc:.0%}: the outputs collapsed to one class ({share:.0%} of the "
                f"evaluation examples are predicted as {last['top_class']})", advice))
        elif test_acc <= chance + CHANCE_MARGIN:
            findings.append(Finding(
                "not_learning",
                f"{fell_text}test accuracy {'stayed at' if fell_text else 'is'} {test_acc:.0%}, "
                f"chance level for {num_classes} classes", advice))
        elif test_acc < LOW_ACCURACY:
            findings.append(Finding(
                "low_accuracy",
                f"{fell_text}test accuracy {'is only' if not fell_text else 'reached only'} "
                f"{test_acc:.0%} (a working MLP gets above 90% on these data sets)", advice))
        elif train_acc is not None and train_acc - test_acc > OVERFIT_GAP:
            findings.append(Finding(
                "overfitting",
                f"training accuracy {train_acc:.0%} vs test {test_acc:.0%}: the network "
                f"memorises the training examples",
                "try more training data (drop --train-subset), fewer epochs, or --weight-decay"))
    return findings


def format_report(findings: Sequence[Finding], rows: Sequence[dict[str, Any]]) -> str:
    """The end-of-run report: the findings, or the numbers that say things look healthy."""
    if not findings:
        if not rows:
            return "diagnosis: no diagnostics recorded"
        last = rows[-1]
        g = _layer_values(last, "grad_norm")
        ratio = (g[0] / g[-1]) if g and g[0] and g[-1] else float("nan")
        upd = [u for r in rows for u in _layer_values(r, "update_ratio") if u is not None]
        dead = [d for d in _layer_values(last, "dead") if d is not None]
        parts = [f"layer-1/last gradient norm ratio {ratio:.2g}"]
        if upd:
            parts.append(f"update/parameter ratio {min(upd):.0e}..{max(upd):.0e}")
        if dead:
            parts.append(f"dead units {max(dead):.0%} at most")
        return "diagnosis: nothing looks wrong (" + ", ".join(parts) + ")"
    return "diagnosis:\n" + "\n".join(f"  - {f}" for f in findings)


# --- the side-effecting edge: what train.run calls ------------------------------------------------


class Recorder:
    """Writes diagnostics.jsonl for `train.run --diagnose`, and keeps the rows for the report.

        rec = Recorder(config, out, sizes, start_epoch)
        rec.start(state.params, dev, hyper)          # statistics of the initial parameters
        epoch_fn = jax.jit(rec.make_epoch(config, tx), donate_argnums=0)...compile()
        epoch_fn = rec.wrap(epoch_fn)                # returns (state, metrics) like make_epoch
        ... state, m = epoch_fn(state, dev, hyper, key); rec.end_epoch(e + 1)

    Nothing here waits for the device except `end_epoch`, called after the epoch's one host
    synchronisation in `train.run`.
    """

    def __init__(self, config: Config, out: str | os.PathLike, sizes: Sequence[int],
                 start_epoch: int = 0, num_classes: int = 10) -> None:
        """`sizes`: the layer sizes [inputs, hidden..., outputs]."""
        self.config = config
        self.path = Path(out) / DIAGNOSTICS
        self.shapes = list(itertools.pairwise(sizes))
        self.num_classes = num_classes
        self._probe = jax.jit(make_probe(config, num_classes))
        self._pending: tuple[EpochDiagnostics, ProbeStats, int] | None = None
        self._initial: ProbeStats | None = None
        self.rows: list[dict[str, Any]] = []
        if start_epoch > 0 and self.path.exists():
            # Resuming: keep the rows up to the checkpoint, as train.run does with metrics.
            rows = [json.loads(s) for s in self.path.read_text().splitlines() if s.strip()]
            self.rows = [r for r in rows if r["epoch"] <= start_epoch]
        from jaxmlp.checkpoint import atomic_write_text

        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def make_epoch(self, config: Config, tx: optax.GradientTransformation) -> Callable[..., Any]:
        return make_epoch_with_diagnostics(config, tx, self.num_classes, with_probe=False)

    def wrap(self, epoch_fn: Callable[..., Any]) -> Callable[..., Any]:
        """Adapt the diagnostic epoch to `make_epoch`'s `(state, metrics)` result, and queue the
        probe of the new parameters; the results wait on the device until `end_epoch`."""

        def epoch(state: Any, dev: Any, hyper: Any, key: jax.Array) -> tuple[Any, Any]:
            state, metrics, diag = epoch_fn(state, dev, hyper, key)
            steps = metrics.step_loss.shape[0]  # a static shape: no device wait
            self._pending = (diag, self._probe(state.params, dev, hyper), steps)
            return state, metrics

        return epoch

    def start(self, params: Params, dev: Any, hyper: Any) -> None:
        """Probe the initial parameters (epoch 0), unless a resumed run already has them. The
        row is written with epoch 1, whose first step supplies the initial gradient norms."""
        if not self.rows:
            self._initial = self._probe(params, dev, hyper)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        assert self._pending is not None, "end_epoch without an epoch"
        (d, probe, steps), self._pending = self._pending, None
        d = jax.device_get(d)
        if self._initial is not None:
            first_step = d.step_grad_norm[0] if d.step_grad_norm.shape[0] else None
            self._append(make_row(0, self.config, self.shapes, self._initial,
                                  grad_norm=first_step))
            self._initial = None
        row = make_row(epoch, self.config, self.shapes, probe, d, steps=steps)
        self._append(row)
        return row

    def _append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def nonfinite_note(self) -> str:
        for r in self.rows:
            if r.get("first_nonfinite"):
                return " Diagnostics: " + describe_nonfinite(r["first_nonfinite"], r["epoch"]) + "."
        return ""

    def report(self, history: Sequence[dict[str, Any]]) -> list[Finding]:
        return diagnose(self.config, self.rows, history, self.num_classes)

    def report_text(self, findings: Sequence[Finding]) -> str:
        return format_report(findings, self.rows)


def read_rows(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(run_dir) / DIAGNOSTICS
    if not path.exists():
        return []
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


# --- --overfit N: can the network memorise a handful of examples? ---------------------------------


class OverfitResult(NamedTuple):
    examples: int
    reached: bool  # 100% training accuracy
    steps: int  # updates until 100% (or the limit)
    seconds: float  # of those steps, compilation excluded
    compile_seconds: float
    loss: np.ndarray  # per step, the loss before the update
    accuracy: np.ndarray  # per step, the training accuracy before the update

    def describe(self) -> str:
        start, end = self.loss[0], self.loss[self.steps - 1 if self.reached else -1]
        if self.reached:
            head = (f"overfit: 100% training accuracy on {self.examples} examples after "
                    f"{self.steps} steps ({self.seconds:.2f} s; compile {self.compile_seconds:.2f}"
                    f" s)")
        else:
            head = (f"overfit: did NOT reach 100% training accuracy on {self.examples} examples "
                    f"in {self.steps} steps ({self.seconds:.2f} s): best "
                    f"{float(np.max(self.accuracy)):.1%}. A network that cannot memorise a "
                    f"handful of examples has a bug or a setting that stops it learning: run "
                    f"with --diagnose")
        marks = []
        for level in (0.5, 0.9):
            hit = np.flatnonzero(self.accuracy >= level)
            if hit.size:
                marks.append(f"{level:.0%} after {int(hit[0])} step{'s' * (int(hit[0]) != 1)}")
        tail = f"; loss {start:.4g} -> {end:.4g}" + (f"; {', '.join(marks)}" if marks else "")
        return head + tail


def overfit(config: Config, dev: Any, hyper: Any, num_examples: int,
            max_steps: int = OVERFIT_MAX_STEPS) -> OverfitResult:
    """Full-batch training on the first `num_examples` training examples, with a constant
    learning rate, until they are all classified right or `max_steps` updates are done.

    The loop is a `lax.while_loop` inside one compiled program; the step is `train.make_step`.
    """
    from jaxmlp.train import (
        DeviceData,
        init_state,
        make_optimizer,
        make_step,
        model_sizes,
        run_keys,
        scale_inputs,
    )

    cfg = replace(config, batch_size=num_examples, train_subset=num_examples,
                  schedule="constant")
    x = dev.x_train[:num_examples]
    y = dev.y_train[:num_examples]
    small = DeviceData(x, y, dev.x_test, dev.y_test)
    tx = make_optimizer(cfg, 1)
    init_key, _ = run_keys(jax.random.key(cfg.seed))
    state = init_state(init_key, cfg, hyper, tx, model_sizes(cfg, x.shape[1]))
    step = make_step(cfg, tx)

    def loop(state: Any, small: Any, hyper: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        batch = Batch(scale_inputs(small.x_train, hyper), small.y_train)
        losses = jnp.full((max_steps,), jnp.nan, jnp.float32)
        accs = jnp.zeros((max_steps,), jnp.float32)

        def cond(c: tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]) -> jax.Array:
            _, i, acc, _, _ = c
            return (acc < 1.0) & (i < max_steps)

        def body(c: tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]
                 ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
            state, i, _, losses, accs = c
            new_state, (loss, acc) = step(state, batch)
            # The accuracy is of the parameters *before* this update: on reaching 100%, keep
            # them and stop, so `i` counts the updates that got there.
            done = acc >= 1.0
            state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, new_state)
            return (state, i + jnp.where(done, 0, 1), acc, losses.at[i].set(loss),
                    accs.at[i].set(acc))

        c = (state, jnp.asarray(0, jnp.int32), jnp.asarray(0.0, jnp.float32), losses, accs)
        _, steps, _, losses, accs = jax.lax.while_loop(cond, body, c)
        return steps, losses, accs

    t0 = time.perf_counter()
    compiled = jax.jit(loop).lower(state, small, hyper).compile()
    t1 = time.perf_counter()
    steps, losses, accs = jax.block_until_ready(compiled(state, small, hyper))
    seconds = time.perf_counter() - t1
    steps = int(steps)
    reached = steps < max_steps  # the loop stops early only on 100% accuracy
    n = min(steps + 1, max_steps)
    return OverfitResult(num_examples, reached, steps, seconds, t1 - t0,
                         np.asarray(losses)[:n], np.asarray(accs)[:n])


def run_overfit(config: Config, num_examples: int, out: str | os.PathLike | None = None, *,
                max_steps: int | None = None, progress: bool = True) -> OverfitResult:
    """`python -m jaxmlp.train --overfit N`: load the data, fit N examples, write overfit.json
    into `out` when given. Bad settings raise ConfigError before any work."""
    from jaxmlp import checkpoint, train
    from jaxmlp.config import ConfigError, check_against_data, validate

    max_steps = OVERFIT_MAX_STEPS if max_steps is None else max_steps
    for value, flag in ((num_examples, "--overfit"), (max_steps, "--overfit-steps")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{flag} must be a positive whole number, got {value!r}")
    config = replace(config, train_subset=num_examples, batch_size=num_examples,
                     schedule="constant")
    validate(config)
    dataset, note = train.load_data(config, progress=progress)
    if note:
        print(note)
    check_against_data(config, len(dataset.y_train))
    dev = train.device_data(dataset, config)
    hyper = train.hyper_from_config(config, np.asarray(dev.x_train))
    result = overfit(config, dev, hyper, num_examples, max_steps)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"config": config.to_dict(), "dataset": dataset.name,
                  "examples": num_examples, "reached": result.reached, "steps": result.steps,
                  "seconds": result.seconds, "compile_seconds": result.compile_seconds,
                  "max_steps": max_steps, "loss": [_num(v) for v in result.loss],
                  "accuracy": [_num(v) for v in result.accuracy]}
        checkpoint.atomic_write_text(out / "overfit.json", json.dumps(record) + "\n")
    return result
