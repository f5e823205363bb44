"""What a network is doing, measured: per-step statistics and probes of the parameters.

The one definition of each quantity that `--diagnose`, the plots and the sweeps' probe columns
read (all pure functions, to jit or vmap):

- per step (`step_statistics`, handed to `loop.make_step`): per-layer gradient and update norms
  on every `NORM_EVERY`-th step, and the first non-finite value (which quantity, which layer);
  `summarize_epoch` reduces an epoch's steps to `EpochDiagnostics`.
- per probe (`probe_stats` on a fixed batch, the first `PROBE_EXAMPLES` training images):
  activation statistics, *stuck* units (dead relu/gelu units, saturated tanh/sigmoid units),
  blocked unit-example pairs, input-blind examples, all-zero outputs, collapsed predictions.

A unit's slope at an example is the derivative of its nonlinearity there: how much gradient
passes back through it. The slope is *flat* below `FLAT_SLOPE` of the nonlinearity's steepest
slope, and a unit is *stuck* when it is flat on at least `STUCK_SHARE` of the examples: it then
barely learns. For relu and gelu a stuck unit is dead (off on nearly every input); for tanh and
sigmoid it is saturated. One rule for both, so the sweeps' `dead_units` column and the
`--diagnose` report always agree about the same network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmlp.config import Config
from jaxmlp.loop import DeviceData, Hyper, StepValues, scale_inputs
from jaxmlp.losses import Batch, Reduction, per_example_loss, predict_labels, predictions
from jaxmlp.model import ACTIVATIONS, Params, forward
from jaxmlp.pick import Options, Pick, activation_fn, activation_value, with_loss

# --- definitions: every probe is one of these numbers ---------------------------------------------

# The probe batch: the first training images, scaled as training scales them.
PROBE_EXAMPLES = 1000
# Flat: the slope |act'(z)| is below this fraction of the nonlinearity's steepest slope.
FLAT_SLOPE = 0.01
# Stuck: flat on at least this share of the probe examples.
STUCK_SHARE = 0.99
# An output counts as zero below this magnitude (a printed 0.0000).
ZERO_OUTPUT = 1e-4
# The steepest slope of each nonlinearity: sigmoid's is 1/4 (at 0), gelu's ~1.129 (at z ~ 1.5;
# tests/test_probes.py checks every entry against the derivative itself).
MAX_SLOPE = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, "gelu": 1.1289}
# Which failure a nonlinearity shows: relu/gelu units die (flat on the negative side, output
# ~0), tanh/sigmoid units saturate (flat at both ends, output near its limits).
DYING = ("relu", "gelu")
SATURATING = ("tanh", "sigmoid")
# Gradient and update norms are measured on every NORM_EVERY-th step: each is a pass over all
# parameters, so every step would cost a large share of the epoch (benchmarks/README.md, "What
# changed for speed"); every 4th still gives ~120 points an epoch for the plot and the means.
NORM_EVERY = 4


# --- per step -----------------------------------------------------------------------------------


class StepStats(NamedTuple):
    grad_norm: jax.Array  # (layers,) |dL/d(W_l, b_l)|, NaN on unmeasured steps
    update_norm: jax.Array  # (layers,) |update_l|, NaN on unmeasured steps
    nonfinite: jax.Array  # int32: index in `nonfinite_order` of the first non-finite value, or -1


def safe_layer_norms(tree: Params) -> jax.Array:
    """(layers,) the L2 norm of each layer's weights and bias together. Finite entries make a
    finite norm even where the sum of squares overflows float32 (entries beyond ~1e19, common
    just before a divergence): the norm is then recomputed scaled by the largest entry, and is
    infinite only when the norm itself is past float32's ~3e38. Non-finite entries give NaN.
    The careful branch runs only when the fast norm is not finite (`lax.cond`), so it costs
    nothing otherwise."""

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


def summarize_step(values: StepValues, measure: jax.Array | bool = True) -> StepStats:
    """The numbers one step is summarised by: reductions over values the step has anyway.

    The activations (hidden layers, then the logits) and the loss are checked at every step
    (cheap: batch-sized). The gradient and update norms, a pass over all parameters each, are
    computed only where `measure` is true (NaN elsewhere; `lax.cond` really skips the work). A
    norm from `safe_layer_norms` is non-finite exactly when some entry is, so the norms double
    as finiteness checks. A non-finite gradient on an unmeasured step shows up at the next
    step, as non-finite outputs of the forward pass.
    """
    grads, updates, activations = values.grads, values.updates, values.activations
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
    ok = jnp.concatenate([act_ok, jnp.isfinite(values.loss)[None],
                          jnp.isfinite(grad_norm)[::-1] | ~measure,
                          jnp.isfinite(update_norm) | ~measure])
    code = jnp.where(jnp.all(ok), -1, jnp.argmin(ok)).astype(jnp.int32)
    return StepStats(grad_norm, update_norm, code)


def step_statistics(norm_every: int = NORM_EVERY) -> Callable[[StepValues], StepStats]:
    """The `stats` function for `loop.make_step`: norms measured on every `norm_every`-th step."""
    return lambda values: summarize_step(values, values.step % norm_every == 0)


class EpochDiagnostics(NamedTuple):
    grad_norm: jax.Array  # (layers,) mean over the measured steps with a finite norm
    grad_norm_max: jax.Array  # (layers,)
    update_norm: jax.Array  # (layers,) mean over the measured steps with a finite norm
    step_grad_norm: jax.Array  # (measured steps, layers): steps 0, k, 2k, ... (k = norm_every)
    nonfinite_step: jax.Array  # 0-based step of the first non-finite value, or -1
    nonfinite_code: jax.Array  # its index in `nonfinite_order`, or -1


def _finite_mean(x: jax.Array) -> jax.Array:
    """Mean over axis 0 of the finite entries (NaN where there are none)."""
    ok = jnp.isfinite(x)
    return jnp.sum(jnp.where(ok, x, 0.0), axis=0) / jnp.sum(ok, axis=0)


def summarize_epoch(stats: StepStats, norm_every: int = NORM_EVERY) -> EpochDiagnostics:
    """An epoch's stacked `StepStats` (leading axis: steps) reduced to its diagnostics."""
    bad = stats.nonfinite >= 0
    first = jnp.argmax(bad)
    grad_norm = stats.grad_norm[::norm_every]
    return EpochDiagnostics(
        grad_norm=_finite_mean(grad_norm),
        grad_norm_max=jnp.max(jnp.where(jnp.isfinite(grad_norm), grad_norm, -jnp.inf), axis=0),
        update_norm=_finite_mean(stats.update_norm[::norm_every]),
        step_grad_norm=grad_norm,
        nonfinite_step=jnp.where(jnp.any(bad), first, -1).astype(jnp.int32),
        nonfinite_code=jnp.where(jnp.any(bad), stats.nonfinite[first], -1).astype(jnp.int32),
    )


# --- per probe: the network on a fixed batch ---------------------------------------------------


class ProbeStats(NamedTuple):
    """Statistics of the network on the probe batch. Per-layer arrays run over every layer
    (hidden layers, then the output layer); `stuck`, `stuck_units` over the hidden layers."""

    act_mean: jax.Array  # (layers,)
    act_std: jax.Array  # (layers,)
    pre_std: jax.Array  # (layers,) std of each layer's pre-activations z = x @ w + b
    stuck: jax.Array  # (hidden,) fraction of each layer's units that are stuck (see above)
    stuck_units: tuple[jax.Array, ...]  # per hidden layer, (width,) bool
    stuck_all: jax.Array  # fraction of all hidden units that are stuck (NaN with no hidden layer)
    blocked: jax.Array  # fraction of (hidden unit, example) pairs with a flat slope
    input_blind: jax.Array  # fraction of examples for which some hidden layer is entirely flat
    param_norm: jax.Array  # (layers,) `safe_layer_norms`: no float32 overflow short of ~3e38
    param_max: jax.Array  # (layers,) the largest |entry| of each layer's weights and bias
    zero_outputs: jax.Array  # fraction of examples whose raw outputs are all ~0
    output_variation: jax.Array  # mean over outputs of their std across examples / overall std
    zero_predictions: jax.Array  # ... whose predictions (after the output transform) are all ~0
    negative_predictions: jax.Array  # ... with a prediction below 0 (sum_normalize's failure)
    top_class_share: jax.Array  # share of examples predicted as the most common class
    top_class: jax.Array  # that class
    loss: jax.Array  # mean per-example loss on the probe batch
    accuracy: jax.Array


def _all_zero(values: jax.Array) -> jax.Array:
    return jnp.mean(jnp.max(jnp.abs(values), axis=-1) < ZERO_OUTPUT)


def probe_stats(params: Params, batch: Batch, config: Config, num_classes: int = 10,
                class_reduction: Reduction | None = None, pick: Pick | None = None
                ) -> ProbeStats:
    """Statistics of `params` on the probe `batch`: `model.forward` only (`class_reduction`:
    the loss's, default the configuration's; `pick`: the run's loss and activation in a
    program built for several, `jaxmlp.pick`)."""
    act = activation_fn(config.activation, pick, ACTIVATIONS)
    threshold = FLAT_SLOPE * activation_value(config.activation, pick, MAX_SLOPE)
    fwd = forward(params, batch.x, config.activation, pick=pick)
    logits = fwd.logits
    stuck_units, pairs = [], []
    blind = jnp.zeros(batch.x.shape[0], bool)
    for z in fwd.pre[:-1]:
        # The slope of an elementwise function: a JVP with tangent 1 gives act'(z) everywhere.
        slope = jax.jvp(act, (z,), (jnp.ones_like(z),))[1]
        flat = jnp.abs(slope) < threshold
        stuck_units.append(jnp.mean(flat, axis=0) >= STUCK_SHARE)
        pairs.append(flat)
        blind = blind | jnp.all(flat, axis=1)
    n = batch.x.shape[0]
    p = with_loss(lambda c: predictions(logits, c.output) if c.targets == "onehot" else logits,
                  config, pick)
    labels = predict_labels(logits, config, pick)
    counts = jnp.bincount(jnp.clip(labels, 0, num_classes - 1), length=num_classes)
    units = sum(s.shape[0] for s in stuck_units)
    nan = jnp.float32(jnp.nan)  # no hidden layer: no units to be stuck
    return ProbeStats(
        act_mean=jnp.stack([jnp.mean(h) for h in fwd.post]),
        act_std=jnp.stack([jnp.std(h) for h in fwd.post]),
        pre_std=jnp.stack([jnp.std(z) for z in fwd.pre]),
        stuck=jnp.stack([jnp.mean(s) for s in stuck_units]) if units else jnp.zeros((0,)),
        stuck_units=tuple(stuck_units),
        stuck_all=(jnp.asarray(sum(jnp.sum(s) for s in stuck_units) / units, jnp.float32)
                   if units else nan),
        blocked=(jnp.asarray(sum(jnp.sum(f) for f in pairs) / (units * n),
                             jnp.float32) if units else nan),
        input_blind=jnp.mean(blind) if units else nan,
        param_norm=safe_layer_norms(params),
        param_max=jnp.stack([jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in layer.values()]))
                             for layer in params]),
        zero_outputs=_all_zero(logits),
        output_variation=jnp.mean(jnp.std(logits, axis=0)) / (jnp.std(logits) + 1e-30),
        zero_predictions=_all_zero(p),
        negative_predictions=jnp.mean(jnp.any(p < 0, axis=-1)),
        top_class_share=jnp.max(counts) / n,
        top_class=jnp.argmax(counts).astype(jnp.int32),
        loss=jnp.mean(per_example_loss(logits, batch.y, config, class_reduction, pick)),
        accuracy=jnp.mean(labels == batch.y),
    )


def probe_batch(dev: DeviceData, hyper: Hyper) -> Batch:
    """The fixed probe batch: the first `PROBE_EXAMPLES` training examples, scaled."""
    n = min(PROBE_EXAMPLES, dev.x_train.shape[0])
    return Batch(scale_inputs(dev.x_train[:n], hyper), dev.y_train[:n])


def make_probe(config: Config, num_classes: int = 10, picks: Options | None = None
               ) -> Callable[[Params, DeviceData, Hyper], ProbeStats]:
    """`probe(params, data, hyper) -> ProbeStats` on the probe batch (for `loop.make_train`;
    `picks`: its runs' choices, `jaxmlp.pick`)."""
    return lambda params, dev, hyper: probe_stats(params, probe_batch(dev, hyper), config,
                                                  num_classes, hyper.class_mean,
                                                  hyper.pick(picks))
