"""The shuffle's bits and the dropout masks are drawn flat (one dimension) and then cut or
reshaped, because XLA:CPU compiles a flat draw faster under vmap (benchmarks/README.md, "Small
shapes"). The plain draw each replaces is the definition: with JAX's default PRNG an entry's bits
depend only on the key and its flat index, so the two must agree bit for bit, alone, jitted and
vmapped (a sweep's runs), for the small sizes the change was made for and for MNIST's 60,000.
No tolerance: these are integers and booleans.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp.loop import epoch_order
from jaxmlp.model import dropout


def plain_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """`epoch_order` as it was written before the flat draw: a (2, n) draw of bits."""
    high, low = jax.random.bits(key, (2, n), jnp.uint32)
    order = jax.lax.sort((high, low, jnp.arange(n, dtype=jnp.int32)), num_keys=2,
                         is_stable=False)[2]
    return order[: n // batch_size * batch_size].reshape(n // batch_size, batch_size)


def plain_mask(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """The kept entries of `dropout` as it was written before: a mask of `x`'s shape."""
    return jax.random.bernoulli(key, 1.0 - rate, x.shape)


KEYS = jnp.stack([jax.random.key(s) for s in (0, 1, 7)])


@pytest.mark.parametrize("n, batch_size", [(10, 10), (100, 32), (1000, 100), (60000, 128)])
def test_epoch_order_is_the_plain_draw(n: int, batch_size: int) -> None:
    for key in KEYS:
        np.testing.assert_array_equal(epoch_order(key, n, batch_size),
                                      plain_order(key, n, batch_size))

    def both(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return epoch_order(key, n, batch_size), plain_order(key, n, batch_size)

    flat, plain = jax.jit(jax.vmap(both))(KEYS)  # as a sweep's program draws them
    np.testing.assert_array_equal(flat, plain)


@pytest.mark.parametrize("shape", [(10, 16), (64, 784), (3, 7)])
def test_dropout_mask_is_the_plain_draw(shape: tuple[int, int]) -> None:
    x = jnp.ones(shape, jnp.float32)
    rate = 0.3

    def both(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return dropout(key, x, rate) != 0, plain_mask(key, x, rate)

    for key in KEYS:
        kept, plain = both(key)
        np.testing.assert_array_equal(kept, plain)
    kept, plain = jax.jit(jax.vmap(both))(KEYS)
    np.testing.assert_array_equal(kept, plain)
    assert 0 < int(plain.sum()) < plain.size  # some entries dropped, some kept
