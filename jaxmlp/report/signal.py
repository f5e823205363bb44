"""The rules about the signal through the network: non-finite values, explosions, what reaches
the first layer, dead and saturated units, vanishing gradients, step sizes, all-zero outputs.

Each rule is `rule(ctx, found) -> list[Finding]`: it reads the numbers in `ctx` and the findings
of the rules before it (`found`), and returns its own (usually none or one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from jaxmlp.diagnostics import describe_nonfinite
from jaxmlp.probes import FLAT_SLOPE, MAX_SLOPE, SATURATING, STUCK_SHARE, ZERO_OUTPUT
from jaxmlp.report.base import (
    CONSTANT_OUTPUTS,
    DEAD_WARN,
    EXPLODED_GROWTH,
    EXPLODED_LOSS,
    EXPLODING_RATIO,
    HUGE_GRADIENT,
    LARGE_PRE_STD,
    SATURATED_WARN,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_LOW,
    VANISHING_RATIO,
    ZERO_OUTPUTS_WARN,
    Context,
    Finding,
    codes_of,
    dead_since,
    inputs_scaled,
    layer_values,
    lr_hint,
    step_causes,
    step_fixes,
    when,
)


def nonfinite(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    bad = [r for r in ctx.rows if r.get("first_nonfinite")]
    if not bad:
        return []
    message = describe_nonfinite(bad[0]["first_nonfinite"], bad[0]["epoch"])
    causes = step_causes(ctx.config)
    if causes:
        message += "; " + " and ".join(causes)
    return [Finding("nonfinite", message, "try " + " or ".join(step_fixes(ctx.config)))]


def _growth(rows: Sequence[dict[str, Any]]) -> tuple[float, int, int, float | None] | None:
    """(factor, layer, epoch, norm) of the first evaluation at which a layer's parameter norm
    was EXPLODED_GROWTH times its initial norm (norm None: beyond float32's range)."""
    if rows[0]["epoch"] != 0:
        return None
    start = layer_values(rows[0], "param_norm")
    for r in rows[1:]:
        for i, (n0, n) in enumerate(zip(start, layer_values(r, "param_norm"), strict=True)):
            if n0 and (n is None or n >= EXPLODED_GROWTH * n0):
                return (math.inf if n is None else n / n0), i + 1, r["epoch"], n
    return None


def _loss_blowup(ctx: Context) -> tuple[float, float, int | None] | None:
    """(initial loss, largest loss, first step above EXPLODED_LOSS x the initial loss) when the
    training loss exploded; steps count from 1 over the whole run."""
    start = ctx.rows[0].get("probe_loss") if ctx.rows[0]["epoch"] == 0 else None
    losses = [v for h in ctx.history for v in (h.get("step_loss") or [])]
    epoch_losses = [h.get("train_loss") for h in ctx.history if h.get("train_loss") is not None]
    if not start or not (losses or epoch_losses):
        return None
    worst = max([v for v in losses if v is not None] + epoch_losses, default=0.0)
    if worst < EXPLODED_LOSS * start:
        return None
    step = next((i + 1 for i, v in enumerate(losses)
                 if v is not None and v >= EXPLODED_LOSS * start), None)
    return start, worst, step


def exploded(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """The weights or the loss blew up without (yet) going NaN: say by how much and since when,
    so that the rules after this one do not read the overflowing numbers as something else. A
    loss that spiked and came back down, with the weights in range, is a spike the run
    recovered from (`_spike`)."""
    if "nonfinite" in codes_of(found):
        return []
    growth, loss = _growth(ctx.rows), _loss_blowup(ctx)
    if growth is None and loss is None:
        return []
    end = ctx.history[-1].get("train_loss") if ctx.history else None
    if growth is None and end is not None and end < EXPLODED_LOSS * loss[0]:
        return [_spike(ctx, loss, end)]
    parts = []
    if growth is not None:
        factor, layer, epoch, norm = growth
        size = ("beyond float32's range" if norm is None
                else f"{norm:.2g} ({factor:.0e} times their size at initialisation)")
        parts.append(f"layer {layer}'s weights grew to {size} by epoch {epoch}")
    if loss is not None:
        start, worst, step = loss
        parts.append(f"the training loss rose from {start:.3g} to {worst:.2g}"
                     + (f", above {EXPLODED_LOSS:g}x its start from step {step}" if step else ""))
    causes = step_causes(ctx.config)
    message = ("the run exploded without reaching NaN: " + "; ".join(parts)
               + (f"; {' and '.join(causes)}" if causes else "")
               + " (float32 overflows at ~3e38)")
    return [Finding("exploded", message, "try " + " or ".join(step_fixes(ctx.config)))]


def _spike(ctx: Context, loss: tuple[float, float, int | None], end: float) -> Finding:
    """A loss that exploded and recovered: the loss itself is the likelier cause when it is not
    softmax cross-entropy (sum_normalize's o_k / sum(o) explodes wherever the sum passes near
    0), and a smaller learning rate only slows such a run down, so that advice comes second."""
    start, worst, step = loss
    config = ctx.config
    text = (f"the training loss spiked from {start:.3g} to {worst:.2g}"
            + (f" (above {EXPLODED_LOSS:g}x its start from step {step})" if step else "")
            + f" and came back down to {end:.3g} by the end: an explosion the run recovered "
            "from")
    fixes = step_fixes(config)
    if config.output != "softmax" or config.error != "cross_entropy":
        why = (": o_k / sum(o) explodes wherever the sum of the outputs passes near 0"
               if config.output == "sum_normalize" else "")
        text += f"; the loss (--output {config.output} --error {config.error}) is the likelier "
        text += f"cause{why}"
        fixes = ["--output softmax --error cross_entropy first", *fixes]
    return Finding("loss_spike", text, "try " + ", then ".join(fixes))


def input_scale(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """What reaches the first layer, at initialisation: its pre-activations' spread against the
    ~1 the initialisation schemes are built for."""
    row, config = ctx.rows[0], ctx.config
    pre = row["layers"][0].get("pre_std") if row["epoch"] == 0 else None
    if pre is None or pre <= LARGE_PRE_STD:
        return []
    if config.input_scale == "raw" and inputs_scaled(config):
        cause, fix = ("the inputs are raw 0..255 pixels, 255 times what the scheme assumes",
                      "--input-scale unit (divide by 255) or standardize")
    else:
        cause, fix = (f"the weights are too large for these inputs (--init {config.init}, "
                      f"--init-scale {config.init_scale:g})", "--init he --init-scale 1")
    return [Finding(
        "large_inputs",
        f"at initialisation, layer 1's pre-activations have a std of {pre:.3g}, where the "
        f"initialisation schemes are built for about 1 or less: {cause}. Units start far out "
        f"on their curves "
        f"(relu: huge outputs or dead; tanh/sigmoid: saturated), and every step is scaled up "
        f"with them", "try " + fix + (" (adam rescales its steps and hides part of the damage, "
                                      "not all of it)" if config.optimizer == "adam" else ""))]


def dead_units(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Dead ReLUs: units off for (nearly) every probe example get (nearly) no gradient."""
    config, out = ctx.config, []
    for i, frac in enumerate(layer_values(ctx.last, "dead")):
        if frac is None or frac < DEAD_WARN:
            continue
        since = dead_since(ctx.rows, i)
        text = (f"{frac:.0%} of layer-{i + 1} units are dead (off for at least "
                f"{STUCK_SHARE:.0%} of the probe examples, so their weights get almost no "
                f"gradient)")
        if since is not None:
            text += (" since initialisation" if since == 0 else
                     " by the end" if ctx.overfit else f" since epoch {since}")
        causes = step_causes(config)
        if since == 0:
            causes.append(f"they were dead from the start (--init {config.init}, "
                          f"--init-scale {config.init_scale:g})")
        if causes:
            text += "; " + " and ".join(causes)
        advice = step_fixes(config)
        if since == 0:
            advice.append("--init he --init-scale 1")
        advice.append("--activation gelu or tanh (no zero-gradient region)")
        out.append(Finding("dead_units", text, "try " + ", or ".join(advice)))
    return out


def saturated_units(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    return [Finding(
        "saturated_units",
        f"{frac:.0%} of layer-{i + 1} units are saturated ({ctx.config.activation} in its flat "
        f"part for >= {STUCK_SHARE:.0%} of examples, slope < {FLAT_SLOPE:.0%} of its "
        f"maximum): little gradient passes through them",
        "try smaller inputs to the layer (" + ("--input-scale unit or standardize, "
                                               if inputs_scaled(ctx.config) else "")
        + "a smaller --init-scale) or --activation relu")
        for i, frac in enumerate(layer_values(ctx.last, "saturated"))
        if frac is not None and frac >= SATURATED_WARN]


def _vanishing(ctx: Context, found: Sequence[Finding], low: tuple, now: tuple) -> Finding:
    config, n_layers = ctx.config, ctx.num_layers
    epoch, ratio, g = low
    # Backprop multiplies by act'(z) and by W^T once per layer on the way down.
    why = [f"each layer's backward pass multiplies the gradient by {config.activation}'s "
           f"slope (at most {MAX_SLOPE[config.activation]:.3g})"]
    if config.init == "normal":
        why.append(f"by weights of std {config.init_scale:g} (--init normal)")
    elif config.init_scale < 1:
        why.append(f"by weights scaled down by --init-scale {config.init_scale:g}")
    fixes = []
    if config.activation in SATURATING:
        fixes.append("--activation relu")
    if config.init == "normal" or config.init_scale < 1:
        fixes.append("--init he --init-scale 1")
    if n_layers > 3:
        fixes.append("fewer layers")
    if codes_of(found) & {"dead_units", "saturated_units"}:
        why = ["dead or saturated units (above) pass back little or no gradient"]
        fixes = ["fixing those first"]
    else:
        why[-1] += f", {n_layers - 1} times over"
    text = (f"{when(epoch, ctx)} the gradient norm of layer 1 was {ratio:.0e} of layer "
            f"{n_layers}'s ({g[0]:.1e} vs {g[-1]:.1e}): vanishing gradients; " + " and ".join(why))
    if now[0] != epoch:
        text += f" (at epoch {now[0]}: {now[1]:.0e})"
    return Finding("vanishing_gradients", text, "try " + ", ".join(fixes or ["fewer layers"]))


def gradient_ratio(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Vanishing / exploding: layer 1's gradient relative to the last layer's, at the epoch
    where it was most extreme (often the initialisation; adam can partly recover later)."""
    if "gradients_stopped" in codes_of(found):  # every layer, not one against another
        return []
    ratios = [(r["epoch"], layer_values(r, "grad_norm")) for r in ctx.rows]
    ratios = [(e, g[0] / g[-1], g) for e, g in ratios
              if ctx.num_layers > 1 and all(v is not None and v > 0 for v in g)]
    if not ratios:
        return []
    low, high = min(ratios, key=lambda t: t[1]), max(ratios, key=lambda t: t[1])
    if low[1] < VANISHING_RATIO and min(low[2][0], low[2][-1]) <= HUGE_GRADIENT:
        return [_vanishing(ctx, found, low, ratios[-1])]
    if high[1] > EXPLODING_RATIO:
        return [Finding(
            "exploding_gradients",
            f"{when(high[0], ctx)} the gradient norm of layer 1 was {high[1]:.0e} times layer "
            f"{ctx.num_layers}'s: gradients grow on the way back (exploding)",
            "try a smaller --init-scale or --init he/glorot, or " + lr_hint(ctx.config))]
    return []


def update_size(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Update sizes at their peak over the run: schedules shrink the last epochs' steps on
    purpose."""
    peaks = [max((r["layers"][i]["update_ratio"] for r in ctx.rows
                  if r["layers"][i]["update_ratio"] is not None), default=None)
             for i in range(ctx.num_layers)]
    known = [(p, i + 1) for i, p in enumerate(peaks) if p is not None]
    if not known:
        return []
    hi, k_hi = max(known)
    if hi > UPDATE_RATIO_HIGH:
        return [Finding(
            "large_updates",
            f"a step changes layer {k_hi}'s weights by {hi:.0%} of their size on average (at "
            f"the peak epoch; healthy is ~0.1%): the learning rate is too large",
            "try " + lr_hint(ctx.config))]
    # Tiny because the gradients stopped, not because of the learning rate: said above.
    if hi < UPDATE_RATIO_LOW and not codes_of(found) & {"exploded", "gradients_stopped"}:
        return [Finding(
            "tiny_updates",
            f"even at its peak a step changes the weights by at most {hi:.0e} of their "
            f"size: they hardly move",
            f"try a larger learning rate (now {ctx.config.learning_rate:g})")]
    return []


def _zero_row(ctx: Context) -> dict[str, Any] | None:
    """The latest of (initialisation, last evaluation) with mostly all-zero outputs."""
    rows = [r for r in (ctx.rows[0], ctx.last)
            if (r.get("zero_outputs") or 0.0) >= ZERO_OUTPUTS_WARN]
    return rows[-1] if rows else None


def zero_outputs(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """All-zero outputs (the signal died on the way forward), now or at initialisation."""
    r = _zero_row(ctx)
    if r is None:
        return []
    when = "at initialisation" if r["epoch"] == 0 else f"at epoch {r['epoch']}"
    text = (f"{when}, {r['zero_outputs']:.0%} of the probe examples got all-zero "
            f"outputs (every |o_k| < {ZERO_OUTPUT:g})")
    dead_last = layer_values(r, "dead")[-2] if ctx.num_layers > 1 else None
    if dead_last is not None and dead_last >= DEAD_WARN:
        text += f"; {dead_last:.0%} of the last hidden layer is dead"
    return [Finding(
        "zero_outputs", text,
        "the signal shrinks to nothing on its way forward: see the dead units or vanishing "
        "gradients above, and use --init he (or glorot for tanh/sigmoid)")]


def constant_outputs(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Outputs that do not depend on the input (e.g. a dead last layer leaves only the bias);
    stands down when the outputs are all zero, which says more."""
    variation = ctx.last.get("output_variation")
    if variation is None or variation >= CONSTANT_OUTPUTS or _zero_row(ctx) is ctx.last:
        return []
    return [Finding(
        "constant_outputs",
        f"the outputs hardly depend on the input: across examples they vary by "
        f"{variation:.0e} of their spread, so every image gets the same prediction",
        "see the findings above: no signal from the input reaches the output layer")]
