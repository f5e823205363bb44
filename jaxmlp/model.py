"""The multilayer perceptron: parameters are a plain pytree, the forward pass a pure function.

`params` is a list with one `{"w": (fan_in, fan_out), "b": (fan_out,)}` per layer. Nothing else:
no classes, no hidden state, so `jax.grad`, `jax.jit`, `jax.vmap` and optax all see a pytree of
arrays and the layout is what you would write on paper.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
}

# Each scheme's weight std is sqrt(gain / fan). He keeps the variance of relu activations
# constant through depth (relu zeroes half of them, hence the 2); Glorot balances the forward and
# backward pass for tanh; LeCun is the fan-in version for activations with unit gain.
_VARIANCE_SCALING = {
    "he": (2.0, "fan_in"),
    "glorot": (1.0, "fan_avg"),
    "lecun": (1.0, "fan_in"),
}


def init_mlp(
    key: jax.Array,
    layer_sizes: Sequence[int],
    init: str = "he",
    scale: float | jax.Array = 1.0,
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """Initial parameters for an MLP with `layer_sizes = [inputs, hidden..., outputs]`.

    Weights: `he`, `glorot`, `lecun` draw from a normal with the scheme's std (times `scale`);
    `normal` draws from N(0, scale^2), the naive choice a first MLP often makes. Biases start at 0.
    `scale` may be a traced value, so a sweep can vmap over initialisation scales.

    When `key` or `scale` is a tracer (inside `jit` or `vmap`), this is `_init_layer` for each
    layer, compiled into the caller's program. Called on concrete values, as a run does before
    its first epoch, it gives bitwise what `_init_layer` run op by op gives, from two compiled
    programs (`_init_concrete`) instead of one small program per operation and weight shape,
    which made the initialisation most of a cold start.
    """
    if init not in (*_VARIANCE_SCALING, "normal"):
        raise ValueError(f"unknown init {init!r}; choose he, glorot, lecun or normal")
    shapes = tuple((int(a), int(b)) for a, b in itertools.pairwise(layer_sizes))
    if not shapes:
        return []
    traced = isinstance(key, jax.core.Tracer) or isinstance(scale, jax.core.Tracer)
    if not traced and _bits_by_flat_index(key):
        return _init_concrete(key, shapes, init, scale, dtype)
    keys = jax.random.split(key, len(shapes))
    return [_init_layer(k, shape, init, scale, dtype)
            for k, shape in zip(keys, shapes, strict=True)]


def _init_layer(
    key: jax.Array, shape: tuple[int, int], init: str, scale: float | jax.Array, dtype: jnp.dtype
) -> dict[str, jax.Array]:
    """One layer as `jax.nn.initializers.variance_scaling(gain, mode, "normal")` (or
    `normal(1.0)`) draws it, times `scale`; `tests/test_model.py` holds the two to the same bits."""
    fan_in, fan_out = shape
    if init == "normal":
        std = jnp.array(1.0, dtype)
    else:
        std = jnp.sqrt(jnp.array(_variance(init, fan_in, fan_out), dtype))
    b = jnp.zeros((fan_out,), dtype)
    scale = jnp.asarray(scale, dtype)
    if not _bits_by_flat_index(key):
        return {"w": jax.random.normal(key, shape, dtype) * std * scale, "b": b}
    # The same numbers, drawn and scaled flat: XLA:CPU compiles the threefry rounds for a
    # (fan_in, 10) array several times slower than for a flat one (in a sweep program of
    # 784-64-10, the (64, 10) draw was 1.2 s of 2.4 s of compiling). Reshaped only after the
    # multiplies, where it changes nothing XLA may fold (reshaping before them changes the bits
    # of vmapped runs).
    w = jax.random.normal(key, (fan_in * fan_out,), dtype) * std * scale
    return {"w": w.reshape(shape), "b": b}


# --- the same numbers, compiled as two programs -------------------------------------------------
# Run op by op, `_init_layer` compiles threefry and the inverse error function once per weight
# shape, and every multiply and zeros of a new shape is a program of its own: 20 programs and
# most of a cold start for the default network (benchmarks/README.md, "Cold compilation: where
# the seconds go").
# One program for the whole initialisation is not bitwise the same: XLA rewrites a chain of
# multiplies by scalars when it can fold one of them, here the scheme's std into the normal
# draw's own sqrt(2), one rounding instead of two. So the draw is one program and the scaling
# another, with a barrier between its two multiplies to keep the op-by-op code's two roundings
# whatever XLA learns to fold. `tests/test_model.py` holds the two to the same bits.


def _bits_by_flat_index(key: jax.Array) -> bool:
    """Whether an entry's random bits depend only on its key and flat index: true of JAX's
    default PRNG (threefry with `jax_threefry_partitionable`, the default since JAX 0.5)."""
    return str(jax.random.key_impl(key)) == "threefry2x32" and jax.config.jax_threefry_partitionable


def _init_concrete(
    key: jax.Array, shapes: tuple[tuple[int, int], ...], init: str, scale: float | jax.Array,
    dtype: jnp.dtype,
) -> Params:
    normals = _standard_normals(key, shapes, dtype)
    variances = [1.0 if init == "normal" else _variance(init, *shape) for shape in shapes]
    return _scale_weights(normals, jnp.asarray(variances, dtype), jnp.asarray(scale, dtype),
                          shapes)


def _variance(init: str, fan_in: int, fan_out: int) -> float:
    """The weight variance before `scale`, computed as `variance_scaling` computes it."""
    gain, mode = _VARIANCE_SCALING[init]
    return gain / (fan_in if mode == "fan_in" else (fan_in + fan_out) / 2)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _standard_normals(
    key: jax.Array, shapes: tuple[tuple[int, int], ...], dtype: jnp.dtype
) -> jax.Array:
    """Row i, cut to `shapes[i]`, is bitwise `jax.random.normal(split(key)[i], shapes[i])`:
    with bits by flat index, one draw of the largest layer's size serves every layer (for a
    moment, memory for that many times the largest layer)."""
    size = max(fan_in * fan_out for fan_in, fan_out in shapes)
    keys = jax.random.split(key, len(shapes))
    return jax.vmap(lambda k: jax.random.normal(k, (size,), dtype))(keys)


@functools.partial(jax.jit, static_argnums=3)
def _scale_weights(
    normals: jax.Array, variances: jax.Array, scale: jax.Array,
    shapes: tuple[tuple[int, int], ...],
) -> Params:
    params = []
    for z, variance, (fan_in, fan_out) in zip(normals, variances, shapes, strict=True):
        z = z[: fan_in * fan_out].reshape(fan_in, fan_out)
        w = jax.lax.optimization_barrier(z * jnp.sqrt(variance)) * scale
        params.append({"w": w, "b": jnp.zeros((fan_out,), normals.dtype)})
    return params


def mlp_apply(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Raw outputs (logits) of the MLP for inputs `x` of shape (batch, features).

    Every layer but the last is `activation(x @ w + b)`; the last is linear, because turning
    outputs into probabilities is the loss's business (see `jaxmlp.losses`).
    """
    act = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    last = params[-1]
    return x @ last["w"] + last["b"]


def mlp_activations(params: Params, x: jax.Array, activation: str = "relu") -> list[jax.Array]:
    """The output of every layer: hidden activations after the nonlinearity, then the logits.

    The same computation as `mlp_apply`, kept separate so the training step pays nothing for it;
    diagnostics use it to find dead or saturated units.
    """
    act = ACTIVATIONS[activation]
    outs = []
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
        outs.append(x)
    outs.append(x @ params[-1]["w"] + params[-1]["b"])
    return outs


# --- the training forward pass: same values, a faster weight gradient -------------------------


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


# --- dropout: training only ---------------------------------------------------------------------


class Dropout(NamedTuple):
    """What a training forward pass needs to drop units: one key for the step, and a rate for
    the inputs and one for the hidden activations. A rate of None puts no dropout code in the
    program at all (not a rate of 0: see `loop.make_step` for why that difference is kept)."""

    key: jax.Array
    inputs: jax.Array | float | None = None
    hidden: jax.Array | float | None = None


def dropout(key: jax.Array, x: jax.Array, rate: jax.Array | float) -> jax.Array:
    """Inverted dropout: each entry of `x` is zeroed with probability `rate` (independently),
    the survivors are divided by 1 - rate, so every entry keeps its expected value and nothing
    needs rescaling at evaluation time (which simply does not call this). `rate` may be traced
    and must be below 1."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _maybe_drop(drop: Dropout | None, rate: jax.Array | float | None, index: int,
                x: jax.Array) -> jax.Array:
    """`x` with dropout at `rate` when there is one; layer `index`'s mask has its own key
    (fold_in(step key, index): 0 for the inputs, l for hidden layer l)."""
    if drop is None or rate is None:
        return x
    return dropout(jax.random.fold_in(drop.key, index), x, rate)


def training_activations(params: Params, x: jax.Array, activation: str,
                         drop: Dropout | None = None) -> list[jax.Array]:
    """`model.mlp_activations` (every hidden layer's output, then the logits) for training: the
    same forward pass, same operations and values, with `_affine`'s faster weight gradient for
    narrow layers. Anything that must update parameters bit for bit as `loop.make_step` does
    differentiates this, not `mlp_apply`.

    `drop`: dropout on the inputs and on each hidden layer's output (the activations returned
    are the ones the next layer received, with their dropped entries zero). Without it the
    computation is exactly the one above."""
    act = ACTIVATIONS[activation]
    outs = []
    x = _maybe_drop(drop, drop.inputs if drop else None, 0, x)
    for i, layer in enumerate(params[:-1]):
        x = act(_affine(x, layer["w"], layer["b"], layer["w"].shape[-1] <= _NARROW))
        x = _maybe_drop(drop, drop.hidden if drop else None, i + 1, x)
        outs.append(x)
    last = params[-1]
    outs.append(_affine(x, last["w"], last["b"], last["w"].shape[-1] <= _NARROW))
    return outs


def layer_sizes(num_inputs: int, hidden: Sequence[int], num_outputs: int) -> list[int]:
    return [num_inputs, *hidden, num_outputs]
