"""Which direction, how far: the loss after one step of -lr x gradient and of +lr x gradient for
a range of lr, and what those numbers show."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmlp.config import Config
from jaxmlp.gradcheck.check import batched_loss
from jaxmlp.gradcheck.gradients import GradFn, jax_grad
from jaxmlp.gradcheck.problems import Problem, init_params, variant_name
from jaxmlp.losses import Batch, loss_fn

DEFAULT_LRS = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# The table starts at a step small enough for the slope to predict it: the first-order change
# lr x |g|^2 at most this fraction of the loss. A large gradient (the notes' own loss starts at
# |g| ~ 1e4 on the toy problem) gets smaller learning rates in front, a decade at a time.
SMALL_STEP = 0.01
MAX_EXTRA_DECADES = 12


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
        loss = float(loss_fn(params, batch, config)[0])
        g = grad_fn(params, batch, config)
        g2 = float(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g)))
        lrs = small_enough(lrs, g2, loss)
        loss_at = batched_loss(batch, config)
        moved = [jax.tree.map(lambda p, d, s=s: p + s * d, params, g)
                 for lr in lrs for s in (-lr, lr)]
        after = loss_at(moved).reshape(len(lrs), 2)
    rows = [StepRow(lr, -lr * g2, float(d - loss), float(a - loss))
            for lr, (d, a) in zip(lrs, after, strict=True)]
    return loss, math.sqrt(g2), rows


def small_enough(lrs: Sequence[float], g2: float, loss: float) -> list[float]:
    """`lrs`, with smaller ones in front (a decade apart) until the first step's first-order
    change lr x |g|^2 is at most SMALL_STEP of the loss."""
    lrs = list(lrs)
    for _ in range(MAX_EXTRA_DECADES):
        if lrs[0] * g2 <= SMALL_STEP * abs(loss) or not math.isfinite(g2):
            break
        lrs.insert(0, lrs[0] / 10)
    return lrs


def _lr_ranges(rows: Sequence[StepRow], keep: Callable[[StepRow], bool]) -> str:
    """The learning rates of `rows` for which `keep` holds, as runs of neighbours:
    '1e-09 .. 1e-07 and 1e-05 .. 100'."""
    runs: list[list[float]] = []
    previous = False
    for r in rows:
        if keep(r):
            if previous:
                runs[-1].append(r.lr)
            else:
                runs.append([r.lr])
        previous = keep(r)
    return " and ".join(f"{run[0]:g}" if len(run) == 1 else f"{run[0]:g} .. {run[-1]:g}"
                        for run in runs)


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
                     f"{_lr_ranges(rows, lambda r: r.descent < 0)}; the largest fall is at "
                     f"lr={best.lr:g} ({loss:.4f} -> {loss + best.descent:.4f}).")
        linear = [r for r in rows if r.predicted and abs(r.descent / r.predicted - 1) <= 0.1]
        if linear:
            lines.append(f"up to lr={linear[-1].lr:g} the fall is within 10% of the slope's "
                         f"prediction lr x |g|^2: the gradient says how fast the loss falls "
                         f"right here, not how far to go.")
        rose = [r for r in rows if r.descent > 0]
        if rose:
            worst = max(rose, key=lambda r: r.descent)
            lines.append(f"at lr {_lr_ranges(rows, lambda r: r.descent > 0)} the step "
                         f"overshoots so far that the loss ends higher than it started (at "
                         f"lr={worst.lr:g}: {loss:.4f} -> {loss + worst.descent:.4g}).")
    lines.append(_along_the_gradient(rows))
    return lines


def _along_the_gradient(rows: Sequence[StepRow]) -> str:
    rises = sum(r.ascent > 0 for r in rows)
    text = f"a step along the gradient (+lr x g) raises the loss for {rises} of {len(rows)} lr"
    if rises == len(rows):
        return text + ": the gradient points uphill, which is why training subtracts it."
    if rows[0].ascent > 0:
        return (text + f", the small ones first ({_lr_ranges(rows, lambda r: r.ascent > 0)}): "
                "the gradient points uphill right here; a long step lands wherever the loss "
                "happens to be lower, in either direction.")
    return text + ": for small steps it should always rise, since the gradient points uphill."


def format_steps(problem: Problem, config: Config, loss: float, gnorm: float,
                 rows: Sequence[StepRow]) -> str:
    lines = [f"one step on {problem.name} ({variant_name(config)}): loss {loss:.4f}, "
             f"|g| = {gnorm:.4g}",
             f"{'lr':>7} | {'predicted':>10} | {'after -lr*g':>11} | {'actual/pred':>11} | "
             f"{'after +lr*g':>11}",
             "-" * 63]
    for r in rows:
        ratio = r.descent / r.predicted if r.predicted else float("nan")
        lines.append(f"{r.lr:7g} | {r.predicted:+10.3g} | {r.descent:+11.4g} | {ratio:11.2f} | "
                     f"{r.ascent:+11.4g}")
    lines.append("(changes of the loss; predicted = -lr x |g|^2, what the slope alone foretells)")
    return "\n".join(lines + ["  " + s for s in describe_steps(loss, rows)])
