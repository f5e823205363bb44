"""The rules about learning that has stopped: gradients that no longer reach any layer, and a
loss that settled where a network that ignores its input would score (the same
`rule(ctx, found)` shape as `jaxmlp.report.signal`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmlp.config import Config
from jaxmlp.losses import uniform_guess_loss
from jaxmlp.report.base import (
    GRADIENT_STOPPED,
    HUGE_OUTPUTS,
    PLATEAU_TOLERANCE,
    Context,
    Finding,
    cannot_separate,
    codes_of,
    layer_values,
    lr_hint,
)


def uniform_guess(config: Config, num_classes: int) -> str:
    """'0.0900, what predicting 0.1 for every class scores under this loss (MSE against one-hot
    targets, averaged over the 10 classes)': the loss of a network that ignores its input."""
    return f"{uniform_guess_loss(config, num_classes):.4g}, {_what_scores(config, num_classes)}"


def _what_scores(config: Config, num_classes: int) -> str:
    if config.targets == "integer":
        return (f"what predicting the middle label {(num_classes - 1) / 2:g} for every example "
                f"scores under this loss (the squared error, averaged over the labels "
                f"0..{num_classes - 1})")
    error = "MSE against one-hot targets" if config.error == "mse" else "cross-entropy"
    over = (f"averaged over the {num_classes} classes" if config.class_reduction == "mean"
            else f"summed over the {num_classes} classes")
    return (f"what predicting {1 / num_classes:.2g} for every class scores under this loss "
            f"({error}, {over})")


def _stopped(row: dict[str, Any]) -> list[float] | None:
    """Each layer's gradient norm as a fraction of its parameters' norm, when every one is
    below GRADIENT_STOPPED (whatever the optimizer, schedule or learning rate); else None."""
    fractions = []
    for g, p in zip(layer_values(row, "grad_norm"), layer_values(row, "param_norm"),
                    strict=True):
        if g is None or not p or g >= GRADIENT_STOPPED * p:
            return None
        fractions.append(g / p)
    return fractions


def _outputs_cause(ctx: Context) -> tuple[str, str] | None:
    """(cause, fix) when --output sum_normalize's outputs have grown so large that o_k / sum(o)
    no longer moves with any weight."""
    size = layer_values(ctx.last, "act_mean")[-1]
    if ctx.config.output != "sum_normalize" or size is None or abs(size) < HUGE_OUTPUTS:
        return None
    return (f"with --output sum_normalize the outputs grew to about {size:.1e} each, so "
            f"p_k = o_k / sum(o) is ~{1 / ctx.num_classes:.2g} for every class and hardly moves "
            f"when any weight does (its gradient is divided by the sum): the large early steps "
            f"froze the network",
            "try --output softmax (the gradient of softmax with cross-entropy, p - t, does not "
            "shrink with the outputs' size), or " + lr_hint(ctx.config))


def gradients_stopped(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Every layer's gradient all but gone, from some evaluation to the end: the parameters no
    longer get gradients (not a ratio between layers, which `gradient_ratio` judges)."""
    if "nonfinite" in codes_of(found):
        return []
    since = None
    for r in reversed(ctx.rows):
        if _stopped(r) is None:
            break
        since = r["epoch"]
    if since is None:
        return []
    fractions = _stopped(ctx.last)
    norms = ", ".join(f"{g:.1e}" for g in layer_values(ctx.last, "grad_norm"))
    start = layer_values(ctx.rows[0], "grad_norm")
    fell = (f", from {', '.join(f'{g:.1e}' for g in start)} at initialisation"
            if ctx.rows[0]["epoch"] == 0 and since > 0 and all(start) else "")
    when = ("over the last steps" if ctx.overfit and since > 0 else
            "since initialisation" if since == 0 else f"from epoch {since}")
    text = (f"{when} the gradients have all but stopped in every layer: their norms at the end "
            f"are {norms} (layer 1 to {ctx.num_layers}){fell}, {min(fractions):.0e} to "
            f"{max(fractions):.0e} of the weights' size, so the parameters no longer get "
            f"gradients: even a learning rate of 1 would hardly move them")
    cause = _outputs_cause(ctx)
    if cause is not None:
        return [Finding("gradients_stopped", f"{text}; {cause[0]}", cause[1])]
    if codes_of(found) & {"dead_units", "saturated_units"}:
        return [Finding("gradients_stopped", text + "; the dead or saturated units above pass "
                        "back no gradient", "fix those first")]
    return [Finding("gradients_stopped", text + "; the network sits where this loss is flat",
                    "see the loss below; try another loss (--output softmax --error "
                    "cross_entropy) or " + lr_hint(ctx.config))]


def _last_losses(ctx: Context) -> list[float]:
    last = ctx.history[-1] if ctx.history else {}
    steps = [v for v in (last.get("step_loss") or []) if v is not None]
    tail = steps[-max(1, len(steps) // 2):]  # the second half of the last epoch (or steps)
    return tail or ([last["train_loss"]] if last.get("train_loss") is not None else [])


def loss_plateau(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """The loss settled at what a network that ignores its input scores: a plateau with a
    number, not just "the loss stopped falling"."""
    losses = _last_losses(ctx)
    if not losses or codes_of(found) & {"nonfinite"}:
        return []
    uniform = uniform_guess_loss(ctx.config, ctx.num_classes)
    median = float(np.median(losses))
    if abs(median - uniform) > PLATEAU_TOLERANCE * uniform:
        return []
    where = "at the end" if ctx.overfit else "over the last epoch"
    # "sits at 0.09: 0.09, what ..." would say the same number twice.
    same = f"{median:.4g}" == f"{uniform:.4g}"
    guess = (f"exactly {_what_scores(ctx.config, ctx.num_classes)}" if same
             else uniform_guess(ctx.config, ctx.num_classes))
    text = (f"{where} the loss sits at {median:.4g}{',' if same else ':'} {guess}"
            f": the network's predictions no longer depend on the input")
    return [Finding("uniform_plateau", text, _plateau_advice(ctx, found))]


def _plateau_advice(ctx: Context, found: Sequence[Finding]) -> str:
    config = ctx.config
    capacity = cannot_separate(ctx)
    if capacity:
        return capacity
    if codes_of(found) & {"gradients_stopped", "dead_units", "saturated_units"}:
        return "the findings above say why it cannot leave"
    if config.output != "softmax" or config.error != "cross_entropy":
        return ("try --output softmax --error cross_entropy, whose gradient does not vanish "
                "there, or " + lr_hint(config))
    return (f"the steps may be too small to leave it (--learning-rate {config.learning_rate:g}) "
            "or the network unable to use its input: see the findings above")
