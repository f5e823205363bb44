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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxmlp.config import Config
from jaxmlp.diagnostics import describe_nonfinite, unpack_mask
from jaxmlp.probes import FLAT_SLOPE, MAX_SLOPE, SATURATING, STUCK_SHARE, ZERO_OUTPUT

# --- thresholds: every judgement in the report is one of these numbers ---------------------------

# Report a layer when at least this fraction of its units is dead / saturated.
DEAD_WARN = 0.5
SATURATED_WARN = 0.5
# Report when at least this fraction of examples gets all-zero outputs.
ZERO_OUTPUTS_WARN = 0.5
# Outputs "do not depend on the input" when their spread across examples is below this
# fraction of their overall spread (a healthy network: ~0.3 to 1).
CONSTANT_OUTPUTS = 1e-3
# Gradient norm of layer 1 relative to the last layer: below is vanishing, above is exploding.
VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
# |update| / |params| per step: above thrashes (the step rewrites a tenth of the weights), below
# the weights hardly move.
UPDATE_RATIO_HIGH = 0.1
UPDATE_RATIO_LOW = 1e-6
# "Collapsed": at least this share of the probe batch predicted as one class.
COLLAPSE_SHARE = 0.9
# "Not learning": accuracy within this margin of chance (1 / classes).
CHANCE_MARGIN = 0.05
# "The loss fell": relative fall of the training loss, from the initialisation (or the first
# epoch) to the last epoch.
LOSS_FELL = 0.2
# "Low accuracy": below this, even if above chance (a working MLP gets > 0.9 on MNIST,
# Fashion-MNIST and digits).
LOW_ACCURACY = 0.5
# "Overfitting": training accuracy this much above test accuracy.
OVERFIT_GAP = 0.1
# Learning rates that are large for each optimizer on unit-scaled inputs (a hint, not a rule).
LARGE_LR = {"sgd": 0.5, "momentum": 0.1, "adam": 1e-2}
# "Dead since epoch e": at least this share of the units dead at the end were dead at every
# evaluation from e on.
DEAD_SINCE_SHARE = 0.9


@dataclass(frozen=True)
class Finding:
    code: str  # stable identifier, e.g. "dead_units", for tests and tools
    message: str  # what the numbers show
    advice: str  # what to try

    def __str__(self) -> str:
        return f"{self.message}; {self.advice}" if self.advice else self.message


@dataclass(frozen=True)
class Context:
    """What every rule reads."""

    config: Config
    rows: Sequence[dict[str, Any]]  # diagnostics.jsonl, epoch 0 first
    history: Sequence[dict[str, Any]]  # metrics.jsonl (finished epochs)
    num_classes: int

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1]

    @property
    def num_layers(self) -> int:
        return len(self.last["layers"])


Rule = Callable[[Context, Sequence[Finding]], list[Finding]]


# --- words shared by several rules ---------------------------------------------------------------


def layer_values(row: dict[str, Any], key: str) -> list[float | None]:
    return [layer[key] for layer in row["layers"]]


def _codes(found: Sequence[Finding]) -> set[str]:
    return {f.code for f in found}


def _when(epoch: int) -> str:
    return "at initialisation," if epoch == 0 else f"at epoch {epoch},"


def _lr_hint(config: Config) -> str:
    return (f"a smaller learning rate (now {config.learning_rate:g}; try "
            f"{config.learning_rate / 10:g})")


def _step_causes(config: Config) -> list[str]:
    """What in the configuration makes the steps large, in words."""
    causes = []
    if config.input_scale == "raw":
        causes.append("the inputs are raw 0..255 (the first layer's gradient is ~255x larger)")
    if config.learning_rate >= LARGE_LR.get(config.optimizer, math.inf):
        causes.append(f"lr={config.learning_rate:g} is large for {config.optimizer}")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        causes.append(f"--example-reduction sum makes the gradient {config.batch_size}x (the "
                      f"batch size) larger than the mean would, and {config.optimizer}'s step "
                      f"with it")
    return causes


def _step_fixes(config: Config) -> list[str]:
    """The flags that make the steps smaller, one per cause `_step_causes` can name."""
    fixes = []
    if config.input_scale == "raw":
        fixes.append("--input-scale unit")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        fixes.append("--example-reduction mean")
    fixes.append(_lr_hint(config))
    return fixes


def dead_since(rows: Sequence[dict[str, Any]], layer: int) -> int | None:
    """The earliest epoch since which most (`DEAD_SINCE_SHARE`) of the units dead at the end
    have been dead at every evaluation."""
    width = rows[-1]["layers"][layer]["shape"][1]
    masks = [unpack_mask(r["dead_units"][layer], width) for r in rows
             if r.get("dead_units") is not None]
    if not masks or not masks[-1].any():
        return None
    final = masks[-1]
    alive_since = np.ones_like(final)
    since = None
    for idx in range(len(masks) - 1, -1, -1):
        alive_since &= masks[idx]
        if alive_since[final].mean() >= DEAD_SINCE_SHARE:
            since = rows[idx]["epoch"]
    return since


# --- the rules, in the order they run -------------------------------------------------------------


def nonfinite(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    bad = [r for r in ctx.rows if r.get("first_nonfinite")]
    if not bad:
        return []
    message = describe_nonfinite(bad[0]["first_nonfinite"], bad[0]["epoch"])
    causes = _step_causes(ctx.config)
    if causes:
        message += "; " + " and ".join(causes)
    return [Finding("nonfinite", message, "try " + " or ".join(_step_fixes(ctx.config)))]


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
            text += (" since initialisation" if since == 0 else f" since epoch {since}")
        causes = _step_causes(config)
        if since == 0:
            causes.append(f"they were dead from the start (--init {config.init}, "
                          f"--init-scale {config.init_scale:g})")
        if causes:
            text += "; " + " and ".join(causes)
        advice = _step_fixes(config)
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
        "try smaller inputs to the layer (--input-scale unit or standardize, a smaller "
        "--init-scale) or --activation relu")
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
    if _codes(found) & {"dead_units", "saturated_units"}:
        why = ["dead or saturated units (above) pass back little or no gradient"]
        fixes = ["fixing those first"]
    else:
        why[-1] += f", {n_layers - 1} times over"
    text = (f"{_when(epoch)} the gradient norm of layer 1 was {ratio:.0e} of layer "
            f"{n_layers}'s ({g[0]:.1e} vs {g[-1]:.1e}): vanishing gradients; " + " and ".join(why))
    if now[0] != epoch:
        text += f" (at epoch {now[0]}: {now[1]:.0e})"
    return Finding("vanishing_gradients", text, "try " + ", ".join(fixes or ["fewer layers"]))


def gradient_ratio(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Vanishing / exploding: layer 1's gradient relative to the last layer's, at the epoch
    where it was most extreme (often the initialisation; adam can partly recover later)."""
    ratios = [(r["epoch"], layer_values(r, "grad_norm")) for r in ctx.rows]
    ratios = [(e, g[0] / g[-1], g) for e, g in ratios
              if ctx.num_layers > 1 and all(v is not None and v > 0 for v in g)]
    if not ratios:
        return []
    low, high = min(ratios, key=lambda t: t[1]), max(ratios, key=lambda t: t[1])
    if low[1] < VANISHING_RATIO:
        return [_vanishing(ctx, found, low, ratios[-1])]
    if high[1] > EXPLODING_RATIO:
        return [Finding(
            "exploding_gradients",
            f"{_when(high[0])} the gradient norm of layer 1 was {high[1]:.0e} times layer "
            f"{ctx.num_layers}'s: gradients grow on the way back (exploding)",
            "try a smaller --init-scale or --init he/glorot, or " + _lr_hint(ctx.config))]
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
            "try " + _lr_hint(ctx.config))]
    if hi < UPDATE_RATIO_LOW:
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


def negative_predictions(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    if ctx.config.output != "sum_normalize":
        return []
    neg = max(ctx.rows, key=lambda r: r.get("negative_predictions") or 0.0)
    if (neg.get("negative_predictions") or 0.0) < 0.5:
        return []
    return [Finding(
        "negative_predictions",
        f"with --output sum_normalize, {_when(neg['epoch'])} "
        f"{neg['negative_predictions']:.0%} of the examples got a negative "
        f"'probability': o_k / sum(o) is a probability only if every output is "
        f"positive, and a linear output layer gives negative outputs",
        "try --output softmax (exp makes every output positive)")]


def _loss_fell_text(ctx: Context) -> str:
    """'the loss fell from A to B while ' when it fell by LOSS_FELL, from initialisation (the
    epoch-0 row) or from the first epoch; else ''."""
    last_loss = ctx.history[-1].get("train_loss")
    start = [ctx.history[0].get("train_loss")]
    if ctx.rows[0]["epoch"] == 0:
        start.append(ctx.rows[0].get("probe_loss"))
    falls = [((s0 - last_loss) / s0, s0) for s0 in start if s0 and last_loss is not None]
    fell, s0 = max(falls, default=(0.0, None))
    return f"the loss fell from {s0:.3g} to {last_loss:.3g} while " if fell >= LOSS_FELL else ""


def _accuracy_advice(ctx: Context, found: Sequence[Finding]) -> str:
    config, codes = ctx.config, _codes(found)
    if "tiny_updates" in codes:
        return "the weights have barely moved from their random start (above)"
    if codes & {"dead_units", "saturated_units", "vanishing_gradients"}:
        return ("fix the problems above first: with no signal from the hidden layers "
                "the network can only learn which class is most common")
    if config.targets == "integer":
        return ("one number for the label makes '4' halfway between '3' and '5', an "
                "order the digits do not have: try --targets onehot (the default)")
    if config.output != "softmax" or config.error != "cross_entropy":
        return (f"the loss being minimised (--output {config.output} --error "
                f"{config.error}) can fall without favouring the right class"
                + (": o_k / sum(o) grows when the sum shrinks, whichever class is right"
                   if config.output == "sum_normalize" else "")
                + "; try --output softmax --error cross_entropy")
    return "check the learning rate and --input-scale, or train longer"


def accuracy(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Collapsed, not learning, low accuracy or overfitting, judged from the last epoch's test
    accuracy; stands down after a non-finite value (that finding says more)."""
    test_acc = ctx.history[-1].get("test_accuracy") if ctx.history else None
    if test_acc is None or "nonfinite" in _codes(found):
        return []
    chance = 1.0 / ctx.num_classes
    train_acc = ctx.history[-1].get("train_accuracy")
    fell = _loss_fell_text(ctx)
    share = ctx.last.get("top_class_share") or 0.0
    advice = _accuracy_advice(ctx, found)
    if test_acc <= chance + CHANCE_MARGIN and share >= COLLAPSE_SHARE:
        return [Finding(
            "collapsed",
            f"{fell}test accuracy {'stayed at' if fell else 'is'} {test_acc:.0%}: the outputs "
            f"collapsed to one class ({share:.0%} of the probe examples are predicted as "
            f"{ctx.last['top_class']})", advice)]
    if test_acc <= chance + CHANCE_MARGIN:
        return [Finding(
            "not_learning",
            f"{fell}test accuracy {'stayed at' if fell else 'is'} {test_acc:.0%}, "
            f"chance level for {ctx.num_classes} classes", advice)]
    if test_acc < LOW_ACCURACY:
        return [Finding(
            "low_accuracy",
            f"{fell}test accuracy {'is only' if not fell else 'reached only'} "
            f"{test_acc:.0%} (a working MLP gets above 90% on these data sets)", advice)]
    if train_acc is not None and train_acc - test_acc > OVERFIT_GAP:
        return [Finding(
            "overfitting",
            f"training accuracy {train_acc:.0%} vs test {test_acc:.0%}: the network "
            f"memorises the training examples",
            "try more training data (drop --train-subset), fewer epochs, or --weight-decay")]
    return []


RULES: tuple[Rule, ...] = (
    nonfinite, dead_units, saturated_units, gradient_ratio, update_size, zero_outputs,
    constant_outputs, negative_predictions, accuracy,
)


def diagnose(config: Config, rows: Sequence[dict[str, Any]],
             history: Sequence[dict[str, Any]] = (), num_classes: int = 10,
             rules: Sequence[Rule] = RULES) -> list[Finding]:
    """Read the diagnostics rows (and the per-epoch metrics) and say what looks wrong."""
    if not rows:
        return []
    ctx = Context(config, rows, history, num_classes)
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
