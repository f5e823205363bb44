"""The training step's speed tricks (`jaxmlp.fast`) against the plain computation they replace:
what trains is what is checked.

`fast.dense` computes a narrow layer's weight gradient as (g^T x)^T instead of x^T g: the same
products summed in another order. In float32 (unit roundoff 2^-24 ~ 6e-8) a sum of B = 64 terms
may differ by a few dozen ulps of its largest term, so gradients are compared element-wise with
rtol 1e-5 and an absolute slack of 1e-5 x the tensor's largest magnitude (terms of opposite sign
cancel); a wrong transpose or a missing term changes the first digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_losses import VARIANTS, assert_close_scaled, variant_id

from jaxmlp import fast
from jaxmlp.config import Config
from jaxmlp.losses import Batch, loss_fn, num_outputs
from jaxmlp.model import dense, init_mlp


@pytest.mark.parametrize("fan_out", [10, fast.NARROW, fast.NARROW + 1, 64],
                         ids=lambda n: f"fan_out-{n}")
def test_dense_gradients_equal_the_plain_ones(fan_out: int) -> None:
    """Narrow layers take the hand-written backward pass, wide ones the plain one: both must give
    `model.dense`'s gradients with respect to x, w and b."""
    kx, kw, kb, kg = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (64, 48))
    w = jax.random.normal(kw, (48, fan_out)) * 0.2
    b = jax.random.normal(kb, (fan_out,))
    g = jax.random.normal(kg, (64, fan_out))
    want = jax.vjp(dense, x, w, b)
    got = jax.jit(lambda *a: jax.vjp(fast.dense, *a))(x, w, b)
    np.testing.assert_array_equal(got[0], want[0])  # the forward value: the same expression
    for name, a, e in zip(("x", "w", "b"), got[1](g), want[1](g), strict=True):
        assert a.shape == e.shape, name
        assert_close_scaled(np.asarray(a), np.asarray(e))


@pytest.mark.parametrize("config", VARIANTS, ids=variant_id)
def test_the_training_gradient_is_the_checked_gradient(config: Config) -> None:
    """The step differentiates `loss_fn` with `fast.dense`; `python -m jaxmlp.gradcheck` checks
    `loss_fn` with `model.dense`. For every loss variant, on a network whose last layer is
    narrow (so the hand-written backward pass is used), the two gradients agree."""
    config = Config(**{**Config().to_dict(), **{
        k: getattr(config, k) for k in ("output", "error", "class_reduction",
                                        "example_reduction", "targets")}, "hidden": (40, 24)})
    params = init_mlp(jax.random.key(1), [30, 40, 24, num_outputs(config, 10)])
    batch = Batch(jax.random.uniform(jax.random.key(2), (64, 30)),
                  jax.random.randint(jax.random.key(3), (64,), 0, 10))
    grad = jax.grad(lambda p, d: loss_fn(p, batch, config, dense=d)[0])
    checked = jax.jit(lambda p: grad(p, dense))(params)
    trained = jax.jit(lambda p: grad(p, fast.dense))(params)
    assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(checked))
    jax.tree.map(assert_close_scaled, trained, checked)
