"""The report: diagnostics rows in, plain-language findings out.

`diagnose` runs `RULES` in order. Each rule is a small function `rule(ctx, found)` that reads
the numbers (`ctx`: the configuration, the diagnostics rows, the per-epoch metrics) and the
findings of the rules before it (`found`), and returns its findings (usually none or one). The
order is part of the meaning: a later rule may stand down, or change its advice, because of an
earlier finding (e.g. "vanishing gradients" blames dead units found above). Every judgement
compares a number with one of the thresholds named below; what the numbers themselves mean is
defined in `jaxmlp.probes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxmlp.config import Config
from jaxmlp.report.base import (
    CHANCE_MARGIN,
    COLLAPSE_SHARE,
    CONSTANT_OUTPUTS,
    DEAD_SINCE_SHARE,
    DEAD_WARN,
    EXPLODED_GROWTH,
    EXPLODED_LOSS,
    EXPLODING_RATIO,
    HUGE_GRADIENT,
    LARGE_LR,
    LARGE_PRE_STD,
    LOSS_FELL,
    LOW_ACCURACY,
    OVERFIT_GAP,
    SATURATED_WARN,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_LOW,
    VANISHING_RATIO,
    ZERO_OUTPUTS_WARN,
    Context,
    Finding,
    Rule,
    layer_values,
)
from jaxmlp.report.outcome import accuracy, negative_predictions
from jaxmlp.report.progress import gradients_stopped, loss_plateau, uniform_guess
from jaxmlp.report.signal import (
    constant_outputs,
    dead_units,
    exploded,
    gradient_ratio,
    input_scale,
    nonfinite,
    saturated_units,
    update_size,
    zero_outputs,
)

# The findings about the gradients; the first one found titles gradient_norms.png.
GRADIENT_FINDINGS = ("nonfinite", "exploded", "loss_spike", "vanishing_gradients",
                     "exploding_gradients", "gradients_stopped")

RULES: tuple[Rule, ...] = (
    nonfinite, exploded, input_scale, dead_units, saturated_units, gradients_stopped,
    gradient_ratio, update_size, zero_outputs, constant_outputs, negative_predictions,
    loss_plateau, accuracy,
)


def diagnose(config: Config, rows: Sequence[dict[str, Any]],
             history: Sequence[dict[str, Any]] = (), num_classes: int = 10,
             rules: Sequence[Rule] = RULES, overfit: bool = False) -> list[Finding]:
    """Read the diagnostics rows (and the per-epoch metrics) and say what looks wrong.
    `overfit`: the rows and history of `--overfit N` (see `Context.overfit`)."""
    if not rows:
        return []
    ctx = Context(config, rows, history, num_classes, overfit)
    found: list[Finding] = []
    for rule in rules:
        found.extend(rule(ctx, found))
    return found


def format_report(findings: Sequence[Finding], rows: Sequence[dict[str, Any]]) -> str:
    """The end-of-run report: the findings, or the numbers that say things look healthy."""
    if findings:
        return "diagnosis:\n" + "\n".join(f"  - {f}" for f in findings)
    if not rows:
        return "diagnosis: no diagnostics recorded"
    last = rows[-1]
    g = layer_values(last, "grad_norm")
    ratio = (g[0] / g[-1]) if g and g[0] and g[-1] else float("nan")
    upd = [u for r in rows for u in layer_values(r, "update_ratio") if u is not None]
    dead = [d for d in layer_values(last, "dead") if d is not None]
    parts = [f"layer-1/last gradient norm ratio {ratio:.2g}"]
    if upd:
        parts.append(f"update/parameter ratio {min(upd):.0e}..{max(upd):.0e}")
    if dead:
        parts.append(f"dead units {max(dead):.0%} at most")
    return "diagnosis: nothing looks wrong (" + ", ".join(parts) + ")"

def gradient_verdict(findings: Sequence[Finding]) -> str | None:
    """The message of the first finding about the gradients, or None."""
    return next((f.message for f in findings if f.code in GRADIENT_FINDINGS), None)


__all__ = [
    "CHANCE_MARGIN",
    "COLLAPSE_SHARE",
    "CONSTANT_OUTPUTS",
    "DEAD_SINCE_SHARE",
    "DEAD_WARN",
    "EXPLODED_GROWTH",
    "EXPLODED_LOSS",
    "EXPLODING_RATIO",
    "HUGE_GRADIENT",
    "LARGE_LR",
    "LARGE_PRE_STD",
    "LOSS_FELL",
    "LOW_ACCURACY",
    "OVERFIT_GAP",
    "RULES",
    "SATURATED_WARN",
    "UPDATE_RATIO_HIGH",
    "UPDATE_RATIO_LOW",
    "VANISHING_RATIO",
    "ZERO_OUTPUTS_WARN",
    "Context",
    "Finding",
    "Rule",
    "diagnose",
    "format_report",
    "uniform_guess",
]
