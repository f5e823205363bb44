"""The rows of diagnostics.jsonl: probe numbers from the device, as JSON a person can read.

One row per evaluation: epoch 0 is the initialisation, then one row after every epoch. Each row
holds, per layer, the gradient norm (mean and max over the epoch's measured steps), the
update-to-parameter ratio, the parameter norm, activation mean and std, and the fraction of dead
(relu/gelu) or saturated (tanh/sigmoid) units; for the network, all-zero outputs and
predictions, how concentrated the predictions are, and the first non-finite value. What each
number means is defined once, in `jaxmlp.probes`; `jaxmlp.report` turns rows into words.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxmlp.config import Config
from jaxmlp.probes import (
    DYING,
    NORM_EVERY,
    SATURATING,
    EpochDiagnostics,
    ProbeStats,
    StepStats,
    nonfinite_order,
    summarize_epoch,
)
from jaxmlp.rundir import RunDir


def num(x: Any) -> float | None:
    """A float for JSON; non-finite values become null (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def pack_mask(mask: np.ndarray) -> str:
    """A boolean unit mask as hex (one bit per unit), so a row stays short for wide layers."""
    return np.packbits(np.asarray(mask, bool)).tobytes().hex()


def unpack_mask(hexstr: str, width: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexstr), np.uint8))[:width].astype(bool)


def _layer(i: int, shape: tuple[int, int], hidden: bool, config: Config, probe: ProbeStats,
           d: EpochDiagnostics | None, grad_norm: Sequence[float] | None) -> dict[str, Any]:
    stuck = num(probe.stuck[i]) if hidden else None
    return {
        "layer": i + 1,
        "shape": list(shape),
        "grad_norm": num(grad_norm[i]) if grad_norm is not None else None,
        "grad_norm_max": num(d.grad_norm_max[i]) if d is not None else None,
        # mean |update| over the epoch's steps / |params| at its end
        "update_ratio": (num(d.update_norm[i] / max(float(probe.param_norm[i]), 1e-30))
                         if d is not None else None),
        "param_norm": num(probe.param_norm[i]),
        "param_max": num(probe.param_max[i]),
        "pre_std": num(probe.pre_std[i]),
        "act_mean": num(probe.act_mean[i]),
        "act_std": num(probe.act_std[i]),
        "dead": stuck if config.activation in DYING else None,
        "saturated": stuck if config.activation in SATURATING else None,
    }


def make_row(epoch: int, config: Config, shapes: Sequence[tuple[int, int]], probe: ProbeStats,
             epoch_diag: EpochDiagnostics | None = None,
             grad_norm: Sequence[float] | None = None, steps: int = 0,
             norm_every: int = NORM_EVERY) -> dict[str, Any]:
    """One line of diagnostics.jsonl. For epoch 0 (the initial parameters, no steps yet) pass
    `grad_norm`: the first training step's, which is taken at the initial parameters."""
    probe = jax.device_get(probe)
    d = jax.device_get(epoch_diag) if epoch_diag is not None else None
    if d is not None:
        grad_norm = d.grad_norm
    hidden = len(shapes) - 1
    layers = [_layer(i, shape, i < hidden, config, probe, d, grad_norm)
              for i, shape in enumerate(shapes)]
    first = None
    if d is not None and int(d.nonfinite_step) >= 0:
        quantity, layer = nonfinite_order(len(shapes))[int(d.nonfinite_code)]
        first = {"step": int(d.nonfinite_step) + 1, "quantity": quantity, "layer": layer}
    return {
        "epoch": epoch,
        "steps": steps,
        "norm_every": norm_every if d is not None else None,
        "layers": layers,
        "zero_outputs": num(probe.zero_outputs),
        "output_variation": num(probe.output_variation),
        "zero_predictions": num(probe.zero_predictions),
        "negative_predictions": num(probe.negative_predictions),
        "top_class": int(probe.top_class),
        "top_class_share": num(probe.top_class_share),
        "probe_loss": num(probe.loss),
        "probe_accuracy": num(probe.accuracy),
        "first_nonfinite": first,
        "dead_units": ([pack_mask(m) for m in probe.stuck_units]
                       if config.activation in DYING else None),
        # gradient norms of steps 1, 1 + norm_every, ... (1-based)
        "step_grad_norm": ([[num(v) for v in row] for row in d.step_grad_norm.tolist()]
                           if d is not None else []),
    }


def rows_from_train(config: Config, sizes: Sequence[int], probes: ProbeStats,
                    step_stats: StepStats, norm_every: int = NORM_EVERY
                    ) -> list[dict[str, Any]]:
    """diagnostics.jsonl rows (epoch 0 = initialisation, then every epoch) from one run of
    `loop.make_train(config, step_stats=probes.step_statistics(), probe=probes.make_probe())`:
    its `metrics.probe` and `metrics.step_stats` (index a vmapped result first)."""
    shapes = list(itertools.pairwise(sizes))
    probes, step_stats = jax.device_get((probes, step_stats))
    epochs, steps = step_stats.nonfinite.shape
    diags = jax.device_get(jax.vmap(lambda s: summarize_epoch(s, norm_every))(step_stats))
    at = lambda tree, i: jax.tree.map(lambda leaf: leaf[i], tree)
    rows = [make_row(0, config, shapes, at(probes, 0), grad_norm=diags.step_grad_norm[0][0],
                     norm_every=norm_every)]
    for e in range(epochs):
        rows.append(make_row(e + 1, config, shapes, at(probes, e + 1), at(diags, e),
                             steps=steps, norm_every=norm_every))
    return rows


def describe_nonfinite(first: dict[str, Any], epoch: int) -> str:
    """The first non-finite value of a row, in words: where, when, and what it means."""
    q, layer = first["quantity"], first["layer"]
    where = "the loss" if q == "loss" else (
        f"the outputs of layer {layer}" if q == "activation" else f"the {q} of layer {layer}")
    why = {
        "activation": "the forward pass overflowed: weights or inputs are so large that "
                      "products exceed float32's range (~3e38)",
        "loss": "the loss itself could not be computed from finite outputs",
        "gradient": "backpropagation overflowed although the forward pass was finite",
        "update": "the optimizer turned finite gradients into a non-finite step",
    }[q]
    return (f"the first non-finite value was {where}, at epoch {epoch}, step {first['step']} "
            f"({why})")


def nonfinite_note(rows: Sequence[dict[str, Any]]) -> str:
    """The sentence a divergence message ends with, when diagnostics were recorded."""
    for r in rows:
        if r.get("first_nonfinite"):
            return " Diagnostics: " + describe_nonfinite(r["first_nonfinite"], r["epoch"]) + "."
    return ""


class Recorder:
    """Writes diagnostics.jsonl for --diagnose, and keeps the rows for the report.

    The epoch it reads is `programs.diagnosed_epoch` (`loop.make_epoch` with
    `probes.step_statistics` in its step) as `runner` compiled it; the probe of the parameters
    runs as a program of its own after each epoch (and once for the initial parameters).
    Nothing here waits for the device except `end_epoch`, called after the epoch's one host
    synchronisation.
    """

    def __init__(self, config: Config, run: RunDir, probe: Callable[..., Any],
                 shapes: Sequence[tuple[int, int]], rows: Sequence[dict[str, Any]],
                 initial: ProbeStats | None) -> None:
        """`probe(params, dev, hyper)`: the compiled probe; `rows`: a resumed run's rows;
        `initial`: the probe of the initial parameters (epoch 0) when there are no rows yet,
        written with epoch 1, whose first step supplies the initial gradient norms."""
        self.config, self.run, self.probe, self.shapes = config, run, probe, list(shapes)
        self.rows = list(rows)
        self.run.start_diagnostics(self.rows)
        self._initial = initial
        self._pending: tuple[Any, Any, int] | None = None

    def wrap(self, epoch_fn: Callable[..., Any]) -> Callable[..., Any]:
        """Adapt the compiled diagnosed epoch to the plain one's `(state, metrics)`, and queue
        the probe of the new parameters; the results wait on the device until `end_epoch`."""

        def epoch(state: Any, dev: Any, hyper: Any, data_key: jax.Array, e: np.int32
                  ) -> tuple[Any, Any]:
            state, metrics, diag = epoch_fn(state, dev, hyper, data_key, e)
            steps = metrics.step_loss.shape[0]  # a static shape: no device wait
            self._pending = (diag, self.probe(state.params, dev, hyper), steps)
            return state, metrics

        return epoch

    def end_epoch(self, epoch: int) -> None:
        assert self._pending is not None, "end_epoch without an epoch"
        (d, probe, steps), self._pending = self._pending, None
        d = jax.device_get(d)
        if self._initial is not None:
            first_step = d.step_grad_norm[0] if d.step_grad_norm.shape[0] else None
            self._append(make_row(0, self.config, self.shapes, self._initial,
                                  grad_norm=first_step))
            self._initial = None
        self._append(make_row(epoch, self.config, self.shapes, probe, d, steps=steps))

    def _append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.run.append_diagnostics(row)
