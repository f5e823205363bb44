"""Choices a compiled program takes as values: one program for runs that differ in them.

A sweep's runs that differ only in their loss (output and error) or in their hidden activation
would each need a program of their own, seconds of compiling apiece for a few operations on
small arrays. Instead their group gets one program (`sweep.plan`) that knows every option its
runs use (`Options`, static) and reads each run's own from the run's `loop.Hyper` (`Pick`: an
index into `LOSS_CHOICES`, one into `config.ACTIVATIONS`). Where a choice is made, `choose`
switches (`lax.switch`) over the options; under `vmap` that becomes every option computed and
each run's kept (a select): a few more operations per layer or per loss, the matrix products
shared. A program built without `Options` (every run of `python -m jaxmlp.train`, a sweep group
of one choice) has its configuration's choices alone in it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from jaxmlp.config import ACTIVATIONS, ERRORS, OUTPUTS, Config

# Every (output, error) pair, in order: a run's loss as a value is its index here.
LOSS_CHOICES = tuple(itertools.product(OUTPUTS, ERRORS))
# The settings a program can take as values (the targets are not: they set the outputs' count).
FIELDS = ("output", "error", "activation")
R = TypeVar("R")


def loss_index(config: Config) -> int:
    return LOSS_CHOICES.index((config.output, config.error))


def activation_index(config: Config) -> int:
    return ACTIVATIONS.index(config.activation)


class Options(NamedTuple):
    """What a program's runs choose among, in the global orders; None: one choice, the
    configuration's, compiled in alone."""

    losses: tuple[tuple[str, str], ...] | None = None
    activations: tuple[str, ...] | None = None


def options_of(configs: Sequence[Config]) -> Options | None:
    """The choices `configs` differ in (None when they differ in none)."""
    pairs = {(c.output, c.error) for c in configs}
    names = {c.activation for c in configs}
    losses = tuple(p for p in LOSS_CHOICES if p in pairs) if len(pairs) > 1 else None
    activations = tuple(a for a in ACTIVATIONS if a in names) if len(names) > 1 else None
    return Options(losses, activations) if losses or activations else None


def serves(options: Options | None, config: Config, wanted: Options | None,
           wanted_config: Config) -> bool:
    """Whether a program built for `config` with `options` trains every run a program for
    `wanted_config` with `wanted` would: each choice of the latter is among the former's."""
    def have(o: Options | None, c: Config) -> tuple[set, set]:
        return (set(o.losses) if o and o.losses else {(c.output, c.error)},
                set(o.activations) if o and o.activations else {c.activation})

    (losses, names), (want_losses, want_names) = have(options, config), have(wanted,
                                                                            wanted_config)
    return want_losses <= losses and want_names <= names


class Pick(NamedTuple):
    """A run's choices in a program built for `options`: `loss`, its (output, error) pair's
    index in `LOSS_CHOICES`; `activation`, its activation's in `config.ACTIVATIONS` (traced,
    whole numbers as float32 like every `loop.Hyper` value)."""

    options: Options
    loss: jax.Array
    activation: jax.Array


def choose(options: Sequence[Any], every: Sequence[Any], index: jax.Array,
           branch: Callable[[Any], Callable[[], R]]) -> R:
    """`branch(option)()` for the option whose place in `every` is `index`: a `lax.switch`
    over `options` (each a place in `every`)."""
    table = jnp.asarray([list(options).index(o) if o in options else 0 for o in every],
                        jnp.int32)
    return jax.lax.switch(table[jnp.asarray(index).astype(jnp.int32)],
                          [branch(o) for o in options])


def with_loss(fn: Callable[[Config], R], config: Config, pick: Pick | None) -> R:
    """`fn(config)` with the run's loss: `config`'s own, or the one `pick` picks."""
    if pick is None or pick.options.losses is None:
        return fn(config)
    return choose(pick.options.losses, LOSS_CHOICES, pick.loss, lambda pair: functools.partial(
        fn, dataclasses.replace(config, output=pair[0], error=pair[1])))


def activation_fn(name: str, pick: Pick | None,
                  functions: dict[str, Callable[[jax.Array], jax.Array]]
                  ) -> Callable[[jax.Array], jax.Array]:
    """The hidden activation of the run: `functions[name]`, or the one `pick` picks, applied
    elementwise (so the layer's matrix product is computed once whatever the options)."""
    if pick is None or pick.options.activations is None:
        return functions[name]
    options = pick.options.activations
    return lambda z: choose(options, ACTIVATIONS, pick.activation,
                            lambda a: functools.partial(functions[a], z))


def activation_value(name: str, pick: Pick | None, values: dict[str, float]) -> Any:
    """`values[name]`, or the picked activation's (a table read by index)."""
    if pick is None or pick.options.activations is None:
        return values[name]
    return jnp.asarray([values[a] for a in ACTIVATIONS], jnp.float32)[
        jnp.asarray(pick.activation).astype(jnp.int32)]
