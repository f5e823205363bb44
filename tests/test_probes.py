"""The probe definitions: each number means what `jaxmlp.probes` says it means."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import loop, probes
from jaxmlp.config import ACTIVATIONS, Config
from jaxmlp.model import ACTIVATIONS as FUNCTIONS


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_max_slope_is_the_steepest_slope(activation: str) -> None:
    """"Flat" is relative to the steepest slope: the table must hold the derivative's real
    maximum (gelu's is ~1.129, not 1). Tolerance 1e-4: the table keeps 4-5 digits; the
    derivative is sampled every 1e-4 in float32."""
    z = jnp.linspace(-10.0, 10.0, 200_001)
    steepest = float(jnp.max(jax.vmap(jax.grad(FUNCTIONS[activation]))(z)))
    assert probes.MAX_SLOPE[activation] == pytest.approx(steepest, abs=1e-4)


def test_choice_names_and_functions_agree() -> None:
    assert set(FUNCTIONS) == set(ACTIVATIONS) == set(probes.MAX_SLOPE)
    assert set(probes.DYING) | set(probes.SATURATING) == set(ACTIVATIONS)


def test_make_train_probes_the_initial_and_final_parameters() -> None:
    """`RunMetrics.probe[0]` is `probe_stats` of the parameters training starts from, and
    `probe[-1]` of the parameters it ends with. rtol 1e-6, not bitwise: the same float32
    function of the same arrays, but compiled inside the training program, where XLA may fuse
    its sums in another order."""
    rng = np.random.default_rng(0)
    dev = loop.DeviceData(*(jnp.asarray(a) for a in (
        rng.integers(0, 256, (96, 20), dtype=np.uint8), rng.integers(0, 10, 96, dtype=np.int32),
        rng.integers(0, 256, (40, 20), dtype=np.uint8), rng.integers(0, 10, 40, dtype=np.int32))))
    config = Config(hidden=(8, 8), batch_size=16, epochs=2)
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    key = jax.random.key(5)
    probe = probes.make_probe(config)
    state, metrics = jax.jit(loop.make_train(config, probe=probe))(key, dev, hyper)
    start, _, _ = loop.initial_state(key, config, dev, hyper)
    for i, params in ((0, start.params), (-1, state.params)):
        expect = jax.jit(probe)(params, dev, hyper)
        got = jax.tree.map(lambda leaf, i=i: leaf[i], metrics.probe)
        for a, b in zip(jax.tree.leaves(expect), jax.tree.leaves(got), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert jax.tree.leaves(metrics.probe)[0].shape[0] == config.epochs + 1
