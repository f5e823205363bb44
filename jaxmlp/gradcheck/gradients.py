"""The gradients to check: JAX's own, and deliberately wrong ones that prove the check can fail."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmlp.config import Config
from jaxmlp.loop import loss_and_grad
from jaxmlp.losses import Batch, Reductions, loss_from_logits
from jaxmlp.model import ACTIVATIONS, Params

WRONG_KINDS = ("activation", "scale", "sign")

GradFn = Callable[[Params, Batch, Config], Params]


def jax_grad(params: Params, batch: Batch, config: Config) -> Params:
    """The gradient under test: the one the training step takes (`loop.loss_and_grad`: JAX's
    reverse-mode differentiation of `losses.loss_fn`, with `fast.dense` and the reductions as
    values, as a run and a sweep compute it)."""
    dtype = batch.x.dtype
    flags = Reductions(jnp.asarray(config.class_reduction == "mean", dtype),
                       jnp.asarray(config.example_reduction == "mean", dtype))
    return loss_and_grad(params, batch, config, flags)[1]


def wrong_grad(kind: str) -> GradFn:
    """A deliberately wrong gradient, to prove the check can fail.

    activation: backprop that forgets act'(z) in the hidden layers (treats act as if its
                derivative were 1), a classic hand-written-backprop mistake;
    scale:      the first layer's gradient 0.01% too large, a subtle mistake;
    sign:       the gradient negated, so "descent" climbs.
    """
    if kind == "activation":

        def grad(params: Params, batch: Batch, config: Config) -> Params:
            act = ACTIVATIONS[config.activation]

            @jax.custom_jvp
            def forgetful(z: jax.Array) -> jax.Array:
                return act(z)

            forgetful.defjvp(lambda primals, tangents: (act(primals[0]), tangents[0]))

            def loss(p: Params) -> jax.Array:
                x = batch.x
                for layer in p[:-1]:
                    x = forgetful(x @ layer["w"] + layer["b"])
                return loss_from_logits(x @ p[-1]["w"] + p[-1]["b"], batch.y, config)

            return jax.grad(loss)(params)

        return grad
    if kind == "scale":

        def grad(params: Params, batch: Batch, config: Config) -> Params:
            g = jax_grad(params, batch, config)
            return [{k: v * 1.0001 for k, v in g[0].items()}, *g[1:]]

        return grad
    if kind == "sign":
        return lambda params, batch, config: jax.tree.map(jnp.negative,
                                                          jax_grad(params, batch, config))
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(WRONG_KINDS)}")
