"""Two configurations trained in lockstep on the same batches from the same initial parameters,
with the distance between their parameters after every update (`compare_trajectories`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp.config import Config
from jaxmlp.loop import DeviceData, Hyper, epoch_order, initial_state, make_step, scale_inputs
from jaxmlp.losses import Batch
from jaxmlp.model import Params
from jaxmlp.sweep.plan import program_key
from jaxmlp.sweep.program import key_data


def compare_trajectories(
    config_a: Config,
    config_b: Config,
    seeds: Sequence[int],
    dev: DeviceData,
    hyper_a: Hyper,
    hyper_b: Hyper,
    num_classes: int = 10,
) -> dict[str, np.ndarray]:
    """Train two configurations in lockstep on the same batches, from the same initial
    parameters, and measure after every update how far apart their parameters are.

    Returns per seed (rows) and update (columns): `max_abs_diff` (largest |a - b| over every
    parameter), `max_abs_param` (largest |a|, for scale), and `final_params_a`. The batches are
    drawn exactly as `loop.make_epoch` draws them (`loop.epoch_order`), so run a follows
    `make_train(config_a)`.
    """
    for field in ("batch_size", "epochs", "hidden", "init", "activation", "train_subset"):
        if getattr(config_a, field) != getattr(config_b, field):
            raise ValueError(f"compare_trajectories needs the same {field} in both configs")
    # Configurations that differ only in traced settings (learning rate, reductions, input
    # scale...) share one compiled program, as a sweep's runs do: the pair's structures are
    # static, their Hypers and the data arguments.
    diff, size, params = jax.device_get(_lockstep(
        program_key(config_a), program_key(config_b), num_classes,
        jnp.asarray(key_data(seeds)), dev, hyper_a, hyper_b))
    return {"max_abs_diff": np.asarray(diff), "max_abs_param": np.asarray(size),
            "final_params_a": params}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _lockstep(config_a: Config, config_b: Config, num_classes: int, keys: jax.Array,
              dev: DeviceData, hyper_a: Hyper, hyper_b: Hyper
              ) -> tuple[jax.Array, jax.Array, Params]:
    """Every seed's (max |a - b|, max |a|) per update and final parameters of a: the program
    of `compare_trajectories`, compiled once per pair of structures (`plan.program_key`)."""
    n = dev.x_train.shape[0]

    def one(kd: jax.Array) -> tuple[jax.Array, jax.Array, Params]:
        # The same key for both: the same initial parameters and the same batches.
        key = jax.random.wrap_key_data(kd)
        state_a, data_key, tx_a = initial_state(key, config_a, dev, hyper_a, num_classes)
        state_b, _, tx_b = initial_state(key, config_b, dev, hyper_b, num_classes)
        step_a, step_b = make_step(config_a, tx_a), make_step(config_b, tx_b)

        def epoch(carry: tuple, e: jax.Array) -> tuple:
            order = epoch_order(jax.random.fold_in(data_key, e), n, config_a.batch_size)

            def body(carry: tuple, idx: jax.Array) -> tuple:
                sa, sb = carry
                x, y = dev.x_train[idx], dev.y_train[idx]
                sa, _ = step_a(sa, Batch(scale_inputs(x, hyper_a), y), hyper_a)
                sb, _ = step_b(sb, Batch(scale_inputs(x, hyper_b), y), hyper_b)
                diffs = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), sa.params, sb.params)
                sizes_ = jax.tree.map(lambda a: jnp.max(jnp.abs(a)), sa.params)
                return (sa, sb), (jnp.max(jnp.stack(jax.tree.leaves(diffs))),
                                  jnp.max(jnp.stack(jax.tree.leaves(sizes_))))

            return jax.lax.scan(body, carry, order)

        (sa, _), (diff, size) = jax.lax.scan(epoch, (state_a, state_b),
                                             jnp.arange(config_a.epochs))
        return diff.reshape(-1), size.reshape(-1), sa.params

    return jax.vmap(one)(keys)
