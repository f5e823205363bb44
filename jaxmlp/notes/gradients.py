"""Each layer's gradient norm at initialisation, as a run's first training step computes it:
`loop.initial_state` (the run's own parameters for its seed) and `loop.loss_and_grad` (the
step's gradient) on the first batch, with `probes.safe_layer_norms` (the norm `--diagnose`
records). For the questions on the mean's effect on the step, and on gradients that shrink
toward the first layer."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxmlp import loop, probes, sweep
from jaxmlp.config import Config
from jaxmlp.losses import Batch, Reductions
from jaxmlp.model import Params


@functools.cache
def _norms_fn(config: Config) -> Callable[[Params, Batch, Reductions], jax.Array]:
    """The jitted per-layer gradient norms of a structure (`config` is static)."""

    def norms(params: Params, batch: Batch, reductions: Reductions) -> jax.Array:
        _, grads = loop.loss_and_grad(params, batch, config, reductions)
        return probes.safe_layer_norms(grads)

    return jax.jit(norms)


def first_step_norms(config: Config, seeds: Sequence[int], datasets: sweep.DataCache
                     ) -> np.ndarray:
    """(seeds, layers): the gradient norm of each layer (weights and bias together) at the
    initial parameters of a run of `config` with each seed, on its first `batch_size` training
    examples."""
    dev, x_train = sweep.sweep_data(config, None, datasets)
    hyper = loop.hyper_from_config(config, x_train)
    classes = datasets.dataset(config)[0].num_classes
    n = config.batch_size
    batch = Batch(loop.scale_inputs(dev.x_train[:n], hyper), dev.y_train[:n])
    # The structure is the configuration without its traced settings: one program per shape.
    fn = _norms_fn(sweep.structural_key(config))
    norms = []
    for seed in seeds:
        state, _, _ = loop.initial_state(jax.random.key(seed), config, dev, hyper, classes)
        norms.append(fn(state.params, batch, hyper.reductions))
    return np.asarray(jax.device_get(norms), float)
