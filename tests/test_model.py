"""`model.init_mlp` draws each layer's weights with the std JAX's own initialisers use, as one
program; `model.forward` is the one forward pass.

The reference: one flat draw of N(0, 1) numbers from the key, cut in turn to each layer's size,
times the std `jax.nn.initializers.variance_scaling` (or `normal`) gives that layer's shape,
times the scale. Tolerance for the weights: 1e-6 relative. `init_mlp` is one compiled program,
where XLA may fold the scheme's std and the scale into the normal draw's own constant (one
rounding instead of two or three: a few float32 ulps, ~6e-8 each); a wrong variance formula or
a dropped scale is off by a factor of at least sqrt(2), which 1e-6 would not hide.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp.model import dense, forward, init_mlp, mlp_apply

RTOL = 1e-6

# Untruncated normals (jax.nn.initializers.he_normal and friends truncate theirs).
INITIALISERS = {
    "he": jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
    "glorot": jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal"),
    "lecun": jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
    "normal": jax.nn.initializers.normal(stddev=1.0),
}

# Each variance formula, several layers and one, and scales that are not powers of two.
CASES = [
    ([784, 512, 512, 10], "he", 1.0),  # the default network
    ([784, 10], "lecun", 3.0),
    ([64, 32, 32, 10], "glorot", 0.3),
    ([64, 32, 10], "normal", 0.01),
]
IDS = ["-".join(map(str, c[0])) + f"-{c[1]}" for c in CASES]


def per_layer(key: jax.Array, sizes: list[int], init: str, scale: float | jax.Array,
              dtype: jnp.dtype = jnp.float32) -> list[dict[str, jax.Array]]:
    """The reference: each layer's piece of one flat draw, times the std of JAX's initialiser
    for that shape (read off the initialiser itself: its draw over its own N(0, 1) draw)."""
    shapes = list(itertools.pairwise(sizes))
    normals = jax.random.normal(key, (sum(a * b for a, b in shapes),), dtype)
    out, start = [], 0
    for a, b in shapes:
        probe = jax.random.key(99)
        std = (INITIALISERS[init](probe, (a, b), dtype)[0, 0]
               / jax.random.normal(probe, (a, b), dtype)[0, 0])
        w = normals[start:start + a * b].reshape(a, b) * std * jnp.asarray(scale, dtype)
        out.append({"w": w, "b": jnp.zeros((b,), dtype)})
        start += a * b
    return out


def assert_same_params(got: list, want: list) -> None:
    assert len(got) == len(want)
    for layer, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g["w"].shape == w["w"].shape and g["w"].dtype == w["w"].dtype
        np.testing.assert_allclose(np.asarray(g["w"]), np.asarray(w["w"]), rtol=RTOL,
                                   err_msg=f"layer {layer + 1}")
        np.testing.assert_array_equal(np.asarray(g["b"]), np.asarray(w["b"]))


@pytest.mark.parametrize(("sizes", "init", "scale"), CASES, ids=IDS)
def test_init_draws_with_jax_initialisers_stds(sizes: list[int], init: str,
                                              scale: float) -> None:
    key = jax.random.key(7)
    assert_same_params(init_mlp(key, sizes, init, scale), per_layer(key, sizes, init, scale))


@pytest.mark.parametrize(("sizes", "init", "scale"), CASES[1:], ids=IDS[1:])
def test_init_inside_jit_and_vmap_is_the_same(sizes: list[int], init: str,
                                              scale: float) -> None:
    """A sweep initialises inside its program, vmapped over runs with traced scales; a run
    calls the program directly. Both draw the same weights."""
    keys = jax.random.split(jax.random.key(2), 3)
    scales = jnp.asarray([scale, 0.7, 1.3], jnp.float32)
    runs = jax.jit(jax.vmap(lambda k, s: init_mlp(k, sizes, init, s)))(keys, scales)
    for r in range(3):
        alone = init_mlp(keys[r], sizes, init, float(scales[r]))
        assert_same_params(jax.tree.map(lambda a, r=r: a[r], runs), alone)


def test_init_in_float64() -> None:
    with jax.enable_x64(True):
        key = jax.random.key(1)
        got = init_mlp(key, [20, 7, 3], "he", dtype=jnp.float64)
        assert got[0]["w"].dtype == jnp.float64
        assert_same_params(got, per_layer(key, [20, 7, 3], "he", 1.0, jnp.float64))


def test_init_draws_its_random_bits_once_and_flat() -> None:
    """What makes the initialisation quick to compile: one flat draw for every layer, no 2-D
    draw (XLA:CPU compiled the threefry rounds of a (64, 10) draw in a sweep program 4 to 10
    times slower than flat ones) and no draw per layer."""
    text = jax.jit(lambda k: init_mlp(k, [784, 64, 10])).lower(jax.random.key(0)).as_text()
    assert "50816xui32" in text  # 784 * 64 + 64 * 10
    assert "640xui32" not in text and "50176xui32" not in text and "64x10xui32" not in text


def test_no_layers_and_array_sizes() -> None:
    """A network of inputs alone has no parameters; sizes may come as an array."""
    assert init_mlp(jax.random.key(0), [30]) == []
    got = init_mlp(jax.random.key(0), np.array([20, 7, 3]))
    assert_same_params(got, per_layer(jax.random.key(0), [20, 7, 3], "he", 1.0))


def test_a_deep_new_network_initialises_as_one_program(lowered: list[str]) -> None:
    """Op by op, each of these 6 layer shapes would build its own normal draw, multiplies and
    zeros (about 20 programs); the initialisation is one program whatever the depth. Shapes no
    other test uses, so no program is already in this process's memory (`lowered`,
    conftest.py: programs built, whether or not the compilation cache holds them)."""
    key = jax.random.key(0)
    before = len(lowered)
    init_mlp(key, [41, 37, 31, 29, 23, 19, 17], "glorot", 0.9)
    # The program, and at most the conversion of the Python scale to an array.
    assert len(lowered[before:]) <= 2, lowered[before:]


# --- the forward pass -------------------------------------------------------------------------


def test_forward_is_the_textbook_chain() -> None:
    """pre[l] = post[l-1] @ w + b, post[l] = act(pre[l]) for hidden layers, the last linear:
    written out by hand with NumPy (float32; rtol 1e-6 for the products' rounding order)."""
    key = jax.random.key(3)
    params = init_mlp(key, [6, 5, 4, 3])
    params = jax.tree.map(lambda a: a + 0.1, params)  # nonzero biases
    x = jax.random.normal(jax.random.key(4), (7, 6))
    fwd = forward(params, x, "tanh")
    a = np.asarray(x)
    for layer, p in enumerate(params):
        z = a @ np.asarray(p["w"]) + np.asarray(p["b"])
        np.testing.assert_allclose(fwd.pre[layer], z, rtol=1e-6, atol=1e-6)
        a = np.tanh(z) if layer < len(params) - 1 else z
        np.testing.assert_allclose(fwd.post[layer], a, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(fwd.logits, mlp_apply(params, x, "tanh"))
    # A wrong `dense` is used, not ignored: forward really computes through it.
    doubled = forward(params, x, "tanh", dense=lambda x, w, b: 2 * dense(x, w, b))
    assert not np.allclose(doubled.logits, fwd.logits)
