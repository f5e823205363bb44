"""`--overfit N`: can the network memorise a handful of examples, and how fast?

A network that cannot reach 100% training accuracy on a few examples has a bug or a setting
that stops it learning, whatever the test set says. This is the pure part: full-batch steps of
`loop.make_step` in one compiled `lax.while_loop`; `overfit_run.run_overfit` loads the data and
writes the result.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import probes
from jaxmlp.config import Config
from jaxmlp.loop import DeviceData, Hyper, initial_state, make_step, scale_inputs
from jaxmlp.losses import Batch

# Give up after this many full-batch steps.
OVERFIT_MAX_STEPS = 2000


class OverfitResult(NamedTuple):
    examples: int
    reached: bool  # 100% training accuracy
    steps: int  # updates until 100% (or the limit)
    seconds: float  # of those steps, compilation excluded
    compile_seconds: float
    loss: np.ndarray  # per step, the loss before the update
    accuracy: np.ndarray  # per step, the training accuracy before the update
    dataset: str = ""  # the data set's name, so the result line says what was memorised
    # With `diagnose`: every step's `probes.StepStats` (leading axis: steps), and the
    # `probes.ProbeStats` of the N examples at initialisation ([0]) and at the end ([1]).
    step_stats: Any = None
    probe: Any = None

    def describe(self) -> str:
        start, end = self.loss[0], self.loss[self.steps - 1 if self.reached else -1]
        what = f"{self.examples} {self.dataset} examples".replace("  ", " ")
        if self.reached:
            head = (f"overfit: 100% training accuracy on {what} after "
                    f"{self.steps} steps ({self.seconds:.2f} s; compile {self.compile_seconds:.2f}"
                    f" s)")
        else:
            advice = ("the report above says what stopped it" if self.step_stats is not None
                      else "add --diagnose to see what stops it")
            head = (f"overfit: did NOT reach 100% training accuracy on {what} "
                    f"in {self.steps} steps ({self.seconds:.2f} s): best "
                    f"{float(np.max(self.accuracy)):.1%}. A network that cannot memorise a "
                    f"handful of examples has a bug or a setting that stops it learning: "
                    f"{advice}")
        marks = []
        for level in (0.5, 0.9):
            hit = np.flatnonzero(self.accuracy >= level)
            if hit.size:
                marks.append(f"{level:.0%} after {int(hit[0])} step{'s' * (int(hit[0]) != 1)}")
        tail = f"; loss {start:.4g} -> {end:.4g}" + (f"; {', '.join(marks)}" if marks else "")
        return head + tail


def overfit_config(config: Config, num_examples: int) -> Config:
    """The configuration of an overfit run: the first N examples, one full batch, constant lr."""
    return dataclasses.replace(config, batch_size=num_examples, train_subset=num_examples,
                               schedule="constant")


def _step_slots(shapes: Any, max_steps: int) -> Any:
    """One slot per step for each statistic of `shapes` (None without diagnose): a step that
    never ran reads NaN, or -1 for integers."""
    return jax.tree.map(lambda leaf: jnp.full((max_steps, *leaf.shape), -1 if
                                              leaf.dtype == jnp.int32 else jnp.nan,
                                              leaf.dtype), shapes)


def overfit(config: Config, dev: DeviceData, hyper: Hyper, num_examples: int,
            max_steps: int = OVERFIT_MAX_STEPS, *, diagnose: bool = False,
            num_classes: int = 10, dataset: str = "") -> OverfitResult:
    """Full-batch training on the first `num_examples` training examples, with a constant
    learning rate, until they are all classified right or `max_steps` updates are done.

    `diagnose` also keeps each step's gradient and update statistics and probes the network on
    the N examples before and after: the same definitions as `--diagnose` of a normal run, and
    the same parameters (the statistics are of values the step computes anyway).
    """
    cfg = overfit_config(config, num_examples)
    small = DeviceData(dev.x_train[:num_examples], dev.y_train[:num_examples], dev.x_test,
                       dev.y_test)
    state, _, tx = initial_state(jax.random.key(cfg.seed), cfg, small, hyper, num_classes)
    step = make_step(cfg, tx, probes.step_statistics() if diagnose else None)

    def loop(state: Any, small: DeviceData, hyper: Hyper) -> tuple[Any, ...]:
        batch = Batch(scale_inputs(small.x_train, hyper), small.y_train)
        losses = jnp.full((max_steps,), jnp.nan, jnp.float32)
        accs = jnp.zeros((max_steps,), jnp.float32)
        stats = _step_slots(jax.eval_shape(step, state, batch, hyper, 0)[1].stats, max_steps)

        def cond(c: tuple) -> jax.Array:
            _, i, acc, _, _, _ = c
            return (acc < 1.0) & (i < max_steps)

        def body(c: tuple) -> tuple:
            state, i, _, losses, accs, stats = c
            new_state, out = step(state, batch, hyper, i)
            # The accuracy is of the parameters *before* this update: on reaching 100%, keep
            # them and stop, so `i` counts the updates that got there.
            done = out.accuracy >= 1.0
            state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, new_state)
            stats = jax.tree.map(lambda buf, v: buf.at[i].set(v), stats, out.stats)
            return (state, i + jnp.where(done, 0, 1), out.accuracy, losses.at[i].set(out.loss),
                    accs.at[i].set(out.accuracy), stats)

        c = (state, jnp.asarray(0, jnp.int32), jnp.asarray(0.0, jnp.float32), losses, accs,
             stats)
        end, steps, _, losses, accs, stats = jax.lax.while_loop(cond, body, c)
        probed = None
        if diagnose:  # the network before and after, on the N examples
            probed = jax.tree.map(lambda *ps: jnp.stack(ps), *(
                probes.probe_stats(s.params, batch, cfg, num_classes, hyper.class_mean)
                for s in (state, end)))
        return steps, losses, accs, stats, probed

    t0 = time.perf_counter()
    compiled = jax.jit(loop).lower(state, small, hyper).compile()
    t1 = time.perf_counter()
    steps, losses, accs, stats, probed = jax.block_until_ready(compiled(state, small, hyper))
    seconds = time.perf_counter() - t1
    steps = int(steps)
    reached = steps < max_steps  # the loop stops early only on 100% accuracy
    n = min(steps + 1, max_steps)
    if diagnose:  # the steps taken (and the one that found 100%), as one "epoch"
        stats = jax.tree.map(lambda leaf: np.asarray(leaf)[:n], stats)
    return OverfitResult(num_examples, reached, steps, seconds, t1 - t0,
                         np.asarray(losses)[:n], np.asarray(accs)[:n], dataset,
                         stats if diagnose else None, jax.device_get(probed))
