"""Which direction, how far: the loss after one step of -lr x gradient and of +lr x gradient for
a range of lr, and what those numbers show."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmlp.config import Config
from jaxmlp.gradcheck.check import batched_loss
from jaxmlp.gradcheck.gradients import GradFn, jax_grad
from jaxmlp.gradcheck.problems import Problem, init_params
from jaxmlp.losses import Batch, loss_fn

DEFAULT_LRS = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class StepRow(NamedTuple):
    lr: float
    predicted: float  # first-order prediction of the change: -lr * |g|^2
    descent: float  # change of the loss after p - lr * g
    ascent: float  # change of the loss after p + lr * g


def step_sizes(problem: Problem, config: Config, lrs: Sequence[float] = DEFAULT_LRS,
               grad_fn: GradFn = jax_grad) -> tuple[float, float, list[StepRow]]:
    """(loss, |g|, rows): the loss change after one step of -lr*g and of +lr*g, per lr."""
    config = dataclasses.replace(config, activation=problem.activation)
    with jax.enable_x64(True):
        params = init_params(problem, config)
        batch = Batch(jnp.asarray(problem.x, jnp.float64), jnp.asarray(problem.y, jnp.int32))
        loss = float(loss_fn(params, batch, config))
        g = grad_fn(params, batch, config)
        g2 = float(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g)))
        loss_at = batched_loss(batch, config)
        moved = [jax.tree.map(lambda p, d, s=s: p + s * d, params, g)
                 for lr in lrs for s in (-lr, lr)]
        after = loss_at(moved).reshape(len(lrs), 2)
    rows = [StepRow(lr, -lr * g2, float(d - loss), float(a - loss))
            for lr, (d, a) in zip(lrs, after, strict=True)]
    return loss, math.sqrt(g2), rows


def describe_steps(loss: float, rows: Sequence[StepRow]) -> list[str]:
    """What the step table shows, read off the numbers."""
    lines = []
    falls = [r for r in rows if r.descent < 0]
    if not falls:
        lines.append("NO step against the gradient lowered the loss: this 'gradient' does not "
                     "point uphill, so it is wrong (or the loss is already at a minimum).")
    else:
        best = min(rows, key=lambda r: r.descent)
        lines.append(f"a step against the gradient (-lr x g) lowers the loss for lr "
                     f"{falls[0].lr:g} .. {falls[-1].lr:g}; the largest fall is at lr={best.lr:g} "
                     f"({loss:.4f} -> {loss + best.descent:.4f}).")
        linear = [r for r in rows if r.predicted and abs(r.descent / r.predicted - 1) <= 0.1]
        if linear:
            lines.append(f"up to lr={linear[-1].lr:g} the fall is within 10% of the slope's "
                         f"prediction lr x |g|^2: the gradient says how fast the loss falls "
                         f"right here, not how far to go.")
        further = [r for r in rows if r.lr > best.lr]
        if further:
            rose = [r for r in further if r.descent > 0]
            text = f"past lr={best.lr:g} the step overshoots: it falls less"
            if rose:
                text += (f", and from lr={rose[0].lr:g} on the loss ends higher than it started "
                         f"({loss:.4f} -> {loss + rose[0].descent:.4f})")
            lines.append(text + ".")
    rises = sum(r.ascent > 0 for r in rows)
    text = f"a step along the gradient (+lr x g) raises the loss for {rises} of {len(rows)} lr"
    if rises == len(rows):
        text += ": the gradient points uphill, which is why training subtracts it."
    else:
        text += ": for small steps it should always rise, since the gradient points uphill."
    lines.append(text)
    return lines
