"""Losses, built from three small choices so each can be switched and measured on its own.

    loss = reduce_examples( reduce_classes( error( predictions(logits), targets ) ) )

1. `predictions`: how raw outputs become predictions: `softmax`, `sum_normalize`, `none`.
2. `error`: per class, `cross_entropy` or `mse` against one-hot targets.
3. reductions: over classes (`sum` or `mean`), then over examples (`sum` or `mean`).

`loss_fn(params, batch, config)` composes them with the model; `jax.grad(loss_fn)` is the whole
of backpropagation. Everything here is a pure function of arrays, so every combination can be
jitted, differentiated and vmapped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp.config import Config
from jaxmlp.model import Params, mlp_apply

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


def per_example_loss(logits: jax.Array, labels: jax.Array, config: Config) -> jax.Array:
    """l_i = sum_k e_ik (class_reduction sum) or (1/K) sum_k e_ik (mean), shape (batch,).

    For softmax cross-entropy with class sum this is `optax.softmax_cross_entropy_with_integer_
    labels`, which is what is used then.
    """
    softmax_ce = config.error == "cross_entropy" and config.output == "softmax"
    if config.targets == "onehot" and softmax_ce:
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        if config.class_reduction == "mean":
            per_example = per_example / logits.shape[-1]
        return per_example
    return reduce_classes(class_errors(logits, labels, config), config.class_reduction)


def reduce_classes(errors: jax.Array, reduction: str) -> jax.Array:
    """l_i = sum_k e_ik (sum) or (1/K) sum_k e_ik (mean), shape (batch,)."""
    if reduction == "sum":
        return jnp.sum(errors, axis=-1)
    return jnp.mean(errors, axis=-1)


def reduce_examples(per_example: jax.Array, reduction: str) -> jax.Array:
    """L = sum_i l_i (sum) or (1/B) sum_i l_i (mean).

    The mean makes the loss, and so the gradient, independent of the batch size B: with sum, the
    gradient is B times larger and plain SGD's effective step grows with B.
    """
    if reduction == "sum":
        return jnp.sum(per_example)
    return jnp.mean(per_example)


def loss_from_logits(logits: jax.Array, labels: jax.Array, config: Config) -> jax.Array:
    """The scalar training loss for given outputs, as `config` composes it."""
    return reduce_examples(per_example_loss(logits, labels, config), config.example_reduction)


def loss_fn(params: Params, batch: Batch, config: Config) -> jax.Array:
    """The scalar loss of the MLP `params` on `batch`; differentiate it with `jax.grad`."""
    logits = mlp_apply(params, batch.x, config.activation)
    return loss_from_logits(logits, batch.y, config)


def predict_labels(logits: jax.Array, config: Config) -> jax.Array:
    """The predicted class: the largest output, or the rounded single output for integer targets.

    For one-hot targets the transform is monotone for softmax but not for sum_normalize (dividing
    by a negative sum reverses the order), so the argmax is taken over the predictions actually
    trained, not the logits.
    """
    if config.targets == "integer":
        return jnp.clip(jnp.round(logits[:, 0]), 0, jnp.iinfo(jnp.int32).max).astype(jnp.int32)
    return jnp.argmax(predictions(logits, config.output), axis=-1).astype(jnp.int32)
