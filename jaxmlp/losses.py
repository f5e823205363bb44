"""Losses, built from three small choices so each can be switched and measured on its own.

    loss = reduce_examples( reduce_classes( error( predictions(logits), targets ) ) )

1. `predictions`: how raw outputs become predictions: `softmax`, `sum_normalize`, `none`.
2. `error`: per class, `cross_entropy` or `mse` against one-hot targets.
3. reductions: over classes (`sum` or `mean`), then over examples (`sum` or `mean`).

`loss_fn(params, batch, config) -> (loss, aux)` composes them with the model:
`jax.grad(lambda p: loss_fn(p, batch, config)[0])` is the whole of backpropagation. Everything
here is a pure function of arrays, so every combination can be jitted, differentiated and
vmapped; the reductions may be traced values, so sum and mean share one compiled program, and
so may the loss itself (`jaxmlp.pick`), so that a sweep's runs with different losses share one.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp import model
from jaxmlp.config import Config
from jaxmlp.model import Dense, Dropout, Forward, Params
from jaxmlp.pick import Pick, with_loss

# Guard for divisions and logarithms of values that can reach 0 or go negative. Its size is chosen
# to be visible: a clamped log reads -log(1e-7) = 16.12, so a loss stuck at 16.1 (or a multiple
# of it) means "the true class got probability <= 0", a number you can diagnose, not a NaN.
EPS = 1e-7


class Batch(NamedTuple):
    """Inputs `x` (batch, features), already scaled, and integer labels `y` (batch,)."""

    x: jax.Array
    y: jax.Array


def num_outputs(config: Config, num_classes: int) -> int:
    """One output per class, or a single output when the label is regressed as a number."""
    return 1 if config.targets == "integer" else num_classes


# --- 1. from outputs to predictions -------------------------------------------------------------


def sum_normalize(outputs: jax.Array) -> jax.Array:
    """p_k = o_k / sum_j o_j: each output divided by the total.

    A natural first idea, which only gives probabilities if every output is positive. With a
    linear output layer, outputs are often negative (p_k can be < 0 or > 1) and can sum to ~0
    (p_k explodes). The division is guarded (|sum| < EPS is replaced by EPS) so that failure shows
    up as large finite numbers you can inspect rather than as inf or NaN.
    """
    total = jnp.sum(outputs, axis=-1, keepdims=True)
    safe = jnp.where(jnp.abs(total) < EPS, EPS, total)
    return outputs / safe


def predictions(logits: jax.Array, output: str) -> jax.Array:
    """Turn raw outputs into predictions: softmax p_k = exp(o_k)/sum_j exp(o_j), sum_normalize
    p_k = o_k / sum_j o_j, or none (the raw outputs themselves)."""
    if output == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if output == "sum_normalize":
        return sum_normalize(logits)
    if output == "none":
        return logits
    raise ValueError(f"unknown output {output!r}")


# --- 2. the error, per example and class ----------------------------------------------------------


def targets(labels: jax.Array, config: Config, num_outputs: int) -> jax.Array:
    """What the predictions are compared with, shape (batch, outputs): one-hot rows, or for
    integer targets the label itself as one number (batch, 1)."""
    if config.targets == "integer":
        return labels.astype(jnp.result_type(float))[:, None]
    return jax.nn.one_hot(labels, num_outputs)


def error(p: jax.Array, t: jax.Array, config: Config) -> jax.Array:
    """Per-class error of predictions `p` against targets `t`: (p_k - t_k)^2, or -t_k log p_k
    with log(p) clamped at log(EPS) (p may reach 0 or below for outputs other than softmax)."""
    if config.targets == "integer" or config.error == "mse":
        return optax.squared_error(p, t)
    return -t * jnp.log(jnp.maximum(p, EPS))


def class_errors(logits: jax.Array, labels: jax.Array, config: Config) -> jax.Array:
    """Per-example, per-class error, shape (batch, outputs).

    mse:            e_k = (p_k - t_k)^2, with t the one-hot target (or the label itself for
                    integer targets).
    cross_entropy:  e_k = -t_k log p_k, which is 0 except at the true class y: -log p_y. With
                    softmax this is computed from the logits as -(o_y - logsumexp(o)), which is
                    exact for any logits; for other outputs log(p) is clamped at log(EPS).
    """
    t = targets(labels, config, logits.shape[-1]).astype(logits.dtype)
    if config.error == "cross_entropy" and config.output == "softmax" and \
            config.targets == "onehot":
        # Numerically stable: log_softmax never forms exp(o) / sum, so no overflow or log(0).
        return -t * jax.nn.log_softmax(logits, axis=-1)
    return error(predictions(logits, config.output), t, config)


# --- 3. reductions --------------------------------------------------------------------------------

# A reduction is named ("sum" or "mean") or, inside a compiled program, a traced 0/1 value
# (1: mean; `loop.Hyper.class_mean`, `example_mean`), so that runs with sum and with mean share
# one program: a mean is the sum divided by the count, and the divisor is a value.
Reduction = str | jax.Array


def divisor(reduction: Reduction, count: int) -> float | jax.Array:
    """What a reduction divides its sum by: 1 for sum, `count` for mean."""
    if isinstance(reduction, str):
        return count if reduction == "mean" else 1
    return 1 + reduction * (count - 1)  # exact in float32 for 0 and 1


def reduce_classes(errors: jax.Array, reduction: Reduction) -> jax.Array:
    """l_i = sum_k e_ik (sum) or (1/K) sum_k e_ik (mean), shape (batch,)."""
    return jnp.sum(errors, axis=-1) / divisor(reduction, errors.shape[-1])


def reduce_examples(per_example: jax.Array, reduction: Reduction) -> jax.Array:
    """L = sum_i l_i (sum) or (1/B) sum_i l_i (mean).

    The mean makes the loss, and so the gradient, independent of the batch size B: with sum, the
    gradient is B times larger and plain SGD's effective step grows with B.
    """
    return jnp.sum(per_example) / divisor(reduction, per_example.shape[0])


def per_example_loss(logits: jax.Array, labels: jax.Array, config: Config,
                     class_reduction: Reduction | None = None, pick: Pick | None = None
                     ) -> jax.Array:
    """l_i, shape (batch,): each example's errors reduced over classes (`class_reduction`,
    default `config.class_reduction`), with `config`'s loss or the one `pick` picks
    (`jaxmlp.pick`).

    For softmax cross-entropy this is `optax.softmax_cross_entropy_with_integer_labels` (which
    computes the sum over classes), divided by the class reduction's divisor.
    """
    if pick is not None:
        return with_loss(lambda c: per_example_loss(logits, labels, c, class_reduction), config,
                         pick)
    reduction = config.class_reduction if class_reduction is None else class_reduction
    softmax_ce = config.error == "cross_entropy" and config.output == "softmax"
    if config.targets == "onehot" and softmax_ce:
        summed = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return summed / divisor(reduction, logits.shape[-1])
    return reduce_classes(class_errors(logits, labels, config), reduction)


class Reductions(NamedTuple):
    """The two reductions of a loss, each a name or a traced 0/1 value (see `Reduction`)."""

    classes: Reduction
    examples: Reduction


class LossAux(NamedTuple):
    """What `loss_fn` computed on the way to the loss."""

    per_example: jax.Array  # (batch,) l_i, after the class reduction
    forward: Forward  # every layer's pre-activations and activations; forward.logits


def loss_fn(params: Params, batch: Batch, config: Config, drop: Dropout | None = None, *,
            reductions: Reductions | None = None, dense: Dense = model.dense,
            pick: Pick | None = None) -> tuple[jax.Array, LossAux]:
    """The scalar loss of the MLP `params` on `batch`, and what it was computed from.

    This is the objective: the training step differentiates it
    (`jax.value_and_grad(loss_fn, has_aux=True)`), `python -m jaxmlp.gradcheck` checks that
    gradient against finite differences and a hand-written NumPy backprop. `reductions`
    defaults to the configuration's; `drop` and `dense` are the training step's (dropout, and
    `jaxmlp.fast.dense`); `pick`, the run's loss and activation in a program built for
    several (a sweep's: `jaxmlp.pick`).
    """
    if reductions is None:
        reductions = Reductions(config.class_reduction, config.example_reduction)
    fwd = model.forward(params, batch.x, config.activation, drop, dense, pick)
    per_example = per_example_loss(fwd.logits, batch.y, config, reductions.classes, pick)
    return reduce_examples(per_example, reductions.examples), LossAux(per_example, fwd)


def loss_from_logits(logits: jax.Array, labels: jax.Array, config: Config) -> jax.Array:
    """The scalar loss for given outputs, with the configuration's reductions."""
    return reduce_examples(per_example_loss(logits, labels, config), config.example_reduction)


def uniform_guess_loss(config: Config, num_classes: int) -> float:
    """The mean per-example loss of a network that ignores its input and predicts the same for
    every example: 1/K for every class (for integer targets, the middle label (K - 1) / 2),
    averaged over labels 0..K-1. A loss that stops there has learnt nothing about the inputs;
    for MSE with one-hot targets and class mean it is (K - 1) / K^2, 0.09 for 10 classes."""
    return float(_uniform_guess(config, num_classes))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _uniform_guess(config: Config, num_classes: int) -> jax.Array:
    k = num_outputs(config, num_classes)
    uniform = {"softmax": 0.0, "sum_normalize": 1.0, "none": 1.0 / num_classes}
    fill = (num_classes - 1) / 2 if config.targets == "integer" else uniform[config.output]
    logits = jnp.full((num_classes, k), fill, jnp.float32)
    return jnp.mean(per_example_loss(logits, jnp.arange(num_classes), config))


def predict_labels(logits: jax.Array, config: Config, pick: Pick | None = None) -> jax.Array:
    """The predicted class: the largest output, or the rounded single output for integer targets.

    For one-hot targets the transform is monotone for softmax but not for sum_normalize (dividing
    by a negative sum reverses the order), so the argmax is taken over the predictions actually
    trained, not the logits (`pick`: those of the run's loss, in a sweep program that picks).
    """
    if pick is not None:
        return with_loss(lambda c: predict_labels(logits, c), config, pick)
    if config.targets == "integer":
        return jnp.clip(jnp.round(logits[:, 0]), 0, jnp.iinfo(jnp.int32).max).astype(jnp.int32)
    return jnp.argmax(predictions(logits, config.output), axis=-1).astype(jnp.int32)
