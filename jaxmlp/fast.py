"""The training step's speed tricks: the same functions as the textbook ones in `jaxmlp.model`,
computed faster on XLA:CPU. `jaxmlp.loop` switches them on; `tests/test_fast.py` holds each to
the plain computation within a stated float32 tolerance.

- `dense`: a layer's `x @ w + b` whose weight gradient, for narrow layers, is computed as
  `(g^T x)^T` instead of `x^T g` (same sums, another rounding order): -8% on the reference epoch
  (benchmarks/README.md, "What changed for speed").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Layers with at most this many outputs get their weight gradient as (g^T x)^T.
NARROW = 32


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """`model.dense` (x @ w + b), with a hand-written backward pass for narrow layers."""
    return _affine(x, w, b, w.shape[-1] <= NARROW)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _affine(x: jax.Array, w: jax.Array, b: jax.Array, narrow: bool) -> jax.Array:
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
        # x^T g contracts the batch axis of both operands, which XLA:CPU sends to a slow generic
        # kernel; the small g transposed first makes it a plain row-major product. The barriers
        # stop XLA from folding the transposes back into the slow form.
        gt = jax.lax.optimization_barrier(g.T)
        dw = jax.lax.optimization_barrier(gt @ x).T
    else:
        dw = x.T @ g
    return g @ w.T, dw, jnp.sum(g, axis=0)


_affine.defvjp(_affine_fwd, _affine_bwd)
