"""`model.init_mlp` is bitwise JAX's own initialisers: its two-program initialisation is them
run op by op (as the trainer ran them before), and its flat draws inside jit and vmap are them
traced the same way."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp.model import init_mlp

# Untruncated normals (jax.nn.initializers.he_normal and friends truncate theirs).
INITIALISERS = {
    "he": jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
    "glorot": jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal"),
    "lecun": jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
    "normal": jax.nn.initializers.normal(stddev=1.0),
}

# Each op-by-op reference compiles its own programs per shape at XLA's defaults (about 1 s each),
# so a few cases that differ in what matters: several layers cut from one draw, one layer with
# nothing cut, each variance formula, and scales that are not powers of two (with those, one
# rounding of std * scale instead of two would show).
CASES = [
    ([784, 512, 512, 10], "he", 1.0),  # the default network
    ([784, 10], "lecun", 3.0),
    ([64, 32, 32, 10], "glorot", 0.3),
    ([64, 32, 10], "normal", 0.01),
]


def per_layer(key: jax.Array, sizes: list[int], init: str, scale: float,
              dtype: jnp.dtype) -> list[dict[str, np.ndarray]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": np.asarray(INITIALISERS[init](k, (a, b), dtype) * jnp.asarray(scale, dtype)),
             "b": np.zeros((b,), dtype)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


@pytest.mark.xla_defaults  # a claim about two different programs' bits: checked at the defaults
@pytest.mark.parametrize(("sizes", "init", "scale"), CASES,
                         ids=["-".join(map(str, c[0])) + f"-{c[1]}" for c in CASES])
def test_init_is_bitwise_jax_initialisers_run_op_by_op(sizes: list[int], init: str,
                                                       scale: float) -> None:
    key = jax.random.key(7)
    want = per_layer(key, sizes, init, scale, jnp.float32)
    got = init_mlp(key, sizes, init, scale)
    for layer, (g, w) in enumerate(zip(got, want, strict=True)):
        for name in ("w", "b"):
            assert g[name].dtype == w[name].dtype
            np.testing.assert_array_equal(np.asarray(g[name]), w[name],
                                          err_msg=f"layer {layer}, {name}")


@pytest.mark.xla_defaults
def test_init_in_float64_is_bitwise_too() -> None:
    with jax.enable_x64(True):
        key = jax.random.key(1)
        want = per_layer(key, [20, 7, 3], "he", 1.0, jnp.float64)
        got = init_mlp(key, [20, 7, 3], "he", dtype=jnp.float64)
        for g, w in zip(got, want, strict=True):
            assert g["w"].dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(g["w"]), w["w"])


# The traced cases: the default network's scheme on a small net, then the others.
TRACED_CASES = [([64, 32, 10], "he", 0.7), *CASES[1:]]


@pytest.mark.xla_defaults
@pytest.mark.parametrize(("sizes", "init", "scale"), TRACED_CASES,
                         ids=["-".join(map(str, c[0])) + f"-{c[1]}" for c in TRACED_CASES])
def test_traced_init_is_the_initialisers_traced(sizes: list[int], init: str,
                                                scale: float) -> None:
    """Inside jit and vmap (make_train, sweeps) the weights are drawn flat and reshaped after
    scaling, which compiles faster; the numbers are bitwise those of JAX's initialisers traced
    the same way. Vmapped over runs, as a sweep is, reshaping before the multiplies would
    already change them (XLA folds the multiplies differently)."""
    keys = jax.random.split(jax.random.key(2), 3)
    scales = jnp.asarray([scale, 0.7, 1.3], jnp.float32)
    runs = jax.jit(jax.vmap(lambda k, s: init_mlp(k, sizes, init, s)))
    want = jax.jit(jax.vmap(lambda k, s: per_layer_traced(k, sizes, init, s)))
    alone = jax.jit(lambda k, s: init_mlp(k, sizes, init, s))
    alone_want = jax.jit(lambda k, s: per_layer_traced(k, sizes, init, s))
    for got, ref in ((runs(keys, scales), want(keys, scales)),
                     (alone(keys[0], scales[1]), alone_want(keys[0], scales[1]))):
        for layer, (g, w) in enumerate(zip(got, ref, strict=True)):
            np.testing.assert_array_equal(np.asarray(g["w"]), np.asarray(w["w"]),
                                          err_msg=f"layer {layer}")
            np.testing.assert_array_equal(np.asarray(g["b"]), 0.0)


def per_layer_traced(key: jax.Array, sizes: list[int], init: str,
                     scale: jax.Array) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": INITIALISERS[init](k, (a, b), jnp.float32) * scale}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def test_traced_init_draws_its_random_bits_flat() -> None:
    """What makes the traced initialisation quick to compile: no 2-D draw (XLA:CPU compiled the
    threefry rounds of a (64, 10) draw in a sweep program 4 to 10 times slower than flat ones)."""
    text = jax.jit(lambda k: init_mlp(k, [784, 64, 10])).lower(jax.random.key(0)).as_text()
    assert "640xui32" in text and "50176xui32" in text
    assert "64x10xui32" not in text and "784x64xui32" not in text


def test_no_layers_and_array_sizes() -> None:
    """A network of inputs alone has no parameters; sizes may come as an array."""
    assert init_mlp(jax.random.key(0), [30]) == []
    got = init_mlp(jax.random.key(0), np.array([20, 7, 3]))
    want = per_layer(jax.random.key(0), [20, 7, 3], "he", 1.0, jnp.float32)
    np.testing.assert_array_equal(np.asarray(got[1]["w"]), want[1]["w"])


def test_a_deep_new_network_initialises_from_a_few_programs(lowered: list[str]) -> None:
    """Op by op, each of these 6 layer shapes would build its own normal draw, multiplies and
    zeros (about 20 programs); the draw and the scaling are one program each, whatever the
    depth. Shapes no other test uses, so no program is already in this process's memory
    (`lowered`, conftest.py: programs built, whether or not the compilation cache holds them)."""
    key = jax.random.key(0)
    before = len(lowered)
    init_mlp(key, [41, 37, 31, 29, 23, 19, 17])
    # The draw, the scaling, and two conversions of Python numbers to arrays.
    assert len(lowered[before:]) <= 4, lowered[before:]
