"""The optimizer: optax, with the learning rate stored in its state.

The learning rate is a traced value (a sweep can vmap over it), not a constant baked into the
program; the schedule's shape is scaled by it. `loop.initial_state` hands it over once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxmlp.config import Config


def make_optimizer(config: Config, num_steps_per_epoch: int, learning_rate: jax.Array | float
                   ) -> optax.GradientTransformation:
    """The optax optimizer with its schedule. `learning_rate` (the peak; traced in a sweep) goes
    into the optimizer state at `init`, and every `update` reads it from there:
    `optax.inject_hyperparams` rebuilds the transformation from `opt_state.hyperparams` on every
    update, so one compiled step serves every learning rate.

    Weight decay is decoupled for every optimizer: each step also moves every weight by
    -lr x weight_decay x weight, outside the gradient, so neither momentum nor Adam's scaling
    sees it (AdamW for adam; SGDW, Loshchilov & Hutter 2019, for sgd and momentum).
    """
    total = config.epochs * num_steps_per_epoch
    warmup = round(config.warmup_epochs * num_steps_per_epoch)

    # The schedule's shape peaks at 1 and is scaled by the (traced) peak learning rate: optax's
    # schedule constructors branch on their peak value in Python, so it cannot be traced there.
    if config.schedule == "constant":
        shape = optax.constant_schedule(1.0)
    elif config.schedule == "cosine":
        shape = optax.cosine_decay_schedule(1.0, max(total, 1))
    else:
        shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(total, warmup + 1))

    def build(learning_rate: jax.Array) -> optax.GradientTransformation:
        def lr(count: jax.Array) -> jax.Array:
            return learning_rate * shape(count)

        if config.optimizer == "adam":
            if config.weight_decay:
                return optax.adamw(lr, weight_decay=config.weight_decay)
            return optax.adam(lr)
        momentum = config.momentum if config.optimizer == "momentum" else None
        if not config.weight_decay:
            return optax.sgd(lr, momentum=momentum)
        return optax.chain(optax.trace(decay=momentum) if momentum else optax.identity(),
                           optax.add_decayed_weights(config.weight_decay),
                           optax.scale_by_learning_rate(lr))

    return optax.inject_hyperparams(build)(learning_rate=jnp.asarray(learning_rate, jnp.float32))
