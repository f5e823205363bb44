"""The multilayer perceptron: parameters are a plain pytree, the forward pass a pure function.

`params` is a list with one `{"w": (fan_in, fan_out), "b": (fan_out,)}` per layer. Nothing else:
no classes, no hidden state, so `jax.grad`, `jax.jit`, `jax.vmap` and optax all see a pytree of
arrays and the layout is what you would write on paper.

There is one forward pass, `forward`: it returns every layer's pre-activations and activations,
what the loss, the training step, the probes and the pictures all read. The training step
computes each layer's `x @ w + b` through `jaxmlp.fast.dense`, the same sums with a faster
weight gradient; everything else uses `dense` below, the textbook one.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp.config import INITS
from jaxmlp.pick import Pick, activation_fn

Params = list[dict[str, jax.Array]]
Dense = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

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


# --- initialisation -----------------------------------------------------------------------------


def init_mlp(
    key: jax.Array,
    layer_sizes: Sequence[int],
    init: str | jax.Array = "he",
    scale: float | jax.Array = 1.0,
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """Initial parameters for an MLP with `layer_sizes = [inputs, hidden..., outputs]`.

    Weights: `he`, `glorot`, `lecun` draw from a normal with the scheme's std (times `scale`);
    `normal` draws from N(0, scale^2), the naive choice a first MLP often makes. Biases start at 0.
    `scale` may be a traced value, so a sweep can vmap over initialisation scales; so may
    `init`, as a scheme's index in `config.INITS` (`loop.Hyper.init`): each layer's std is then
    read from a table of every scheme's, and runs with different schemes share one program.

    One compiled program (`_init`), called from Python or inlined into a caller's program; the
    layers' normal numbers are consecutive pieces of one draw from `key`.
    """
    if isinstance(init, str) and init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose he, glorot, lecun or normal")
    shapes = tuple((int(a), int(b)) for a, b in itertools.pairwise(layer_sizes))
    if not shapes:
        return []
    index = INITS.index(init) if isinstance(init, str) else init
    return _init(key, jnp.asarray(scale, dtype), jnp.asarray(index, jnp.int32),
                 std_table(shapes, dtype), shapes, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _init(key: jax.Array, scale: jax.Array, index: jax.Array, table: jax.Array,
          shapes: tuple[tuple[int, int], ...], dtype: jnp.dtype) -> Params:
    """Every layer's weights from one flat draw of N(0, 1) numbers, cut in turn to each layer's
    size, scaled by its std under scheme `index` (`table[l, index]`) and reshaped. One draw
    compiles one threefry kernel whatever the depth (XLA:CPU compiles those rounds slowly, and
    a 2-D draw of a (fan_in, 10) array slower still: benchmarks/README.md, "Cold
    compilation")."""
    stds = table[:, index]
    sizes = [fan_in * fan_out for fan_in, fan_out in shapes]
    normals = jax.random.normal(key, (sum(sizes),), dtype)
    params, start = [], 0
    for layer, ((fan_in, fan_out), size) in enumerate(zip(shapes, sizes, strict=True)):
        w = normals[start:start + size] * stds[layer] * scale
        params.append({"w": w.reshape(fan_in, fan_out), "b": jnp.zeros((fan_out,), dtype)})
        start += size
    return params


def std_table(shapes: Sequence[tuple[int, int]], dtype: jnp.dtype = jnp.float32) -> np.ndarray:
    """(layers, schemes): each layer's weight std before `scale` under each of `config.INITS`,
    as `jax.nn.initializers.variance_scaling(gain, mode, "normal")` computes it (`normal`: 1);
    the square root is taken in `dtype`, correctly rounded, as XLA takes it."""
    variances = [[_variance(init, fan_in, fan_out) for init in INITS]
                 for fan_in, fan_out in shapes]
    return np.sqrt(np.asarray(variances, dtype))


def _variance(init: str, fan_in: int, fan_out: int) -> float:
    """The weight variance before `scale`, computed as `variance_scaling` computes it."""
    if init == "normal":
        return 1.0
    gain, mode = _VARIANCE_SCALING[init]
    return gain / (fan_in if mode == "fan_in" else (fan_in + fan_out) / 2)


def layer_sizes(num_inputs: int, hidden: Sequence[int], num_outputs: int) -> list[int]:
    return [num_inputs, *hidden, num_outputs]


# --- the forward pass ---------------------------------------------------------------------------


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """One layer's affine map, z = x @ w + b."""
    return x @ w + b


class Dropout(NamedTuple):
    """What a training forward pass needs to drop units: one key for the step, and a rate for
    the inputs and one for the hidden activations. A rate of None puts no dropout code in the
    program at all (not a rate of 0: see `loop.dropout_layers` for why that difference is kept)."""

    key: jax.Array
    inputs: jax.Array | float | None = None
    hidden: jax.Array | float | None = None


def dropout(key: jax.Array, x: jax.Array, rate: jax.Array | float) -> jax.Array:
    """Inverted dropout: each entry of `x` is zeroed with probability `rate` (independently),
    the survivors are divided by 1 - rate, so every entry keeps its expected value and nothing
    needs rescaling at evaluation time (which simply does not call this). `rate` may be traced
    and must be below 1."""
    # Drawn flat and reshaped: the same mask (an entry's bits depend only on the key and its
    # flat index), compiled faster under vmap (benchmarks/README.md, "Small shapes").
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.size,)).reshape(x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _maybe_drop(drop: Dropout | None, rate: jax.Array | float | None, index: int,
                x: jax.Array) -> jax.Array:
    """`x` with dropout at `rate` when there is one; layer `index`'s mask has its own key
    (fold_in(step key, index): 0 for the inputs, l for hidden layer l)."""
    if drop is None or rate is None:
        return x
    return dropout(jax.random.fold_in(drop.key, index), x, rate)


class Forward(NamedTuple):
    """Every number of one forward pass, layer by layer."""

    pre: list[jax.Array]  # z_l = a_(l-1) @ w_l + b_l for every layer; pre[-1] is the logits
    post: list[jax.Array]  # a_l = act(z_l) for every hidden layer (as the next layer got it,
    #                        dropped entries zero), then the logits

    @property
    def logits(self) -> jax.Array:
        return self.post[-1]


def forward(params: Params, x: jax.Array, activation: str = "relu",
            drop: Dropout | None = None, dense: Dense = dense, pick: Pick | None = None
            ) -> Forward:
    """The MLP on inputs `x` of shape (batch, features): every hidden layer is
    `activation(x @ w + b)`, the last is linear, because turning outputs into probabilities is
    the loss's business (see `jaxmlp.losses`).

    `drop`: dropout on the inputs and on each hidden layer's output, for training.
    `dense`: how each layer computes `x @ w + b` (`jaxmlp.fast.dense` in the training step).
    `pick`: the run's activation, in a program built for several (`jaxmlp.pick`)."""
    act = activation_fn(activation, pick, ACTIVATIONS)
    pre, post = [], []
    x = _maybe_drop(drop, drop.inputs if drop else None, 0, x)
    for i, layer in enumerate(params):
        z = dense(x, layer["w"], layer["b"])
        pre.append(z)
        if i == len(params) - 1:
            post.append(z)
            break
        x = _maybe_drop(drop, drop.hidden if drop else None, i + 1, act(z))
        post.append(x)
    return Forward(pre, post)


def mlp_apply(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Raw outputs (logits) of the MLP for inputs `x`: `forward`'s last output."""
    return forward(params, x, activation).logits
