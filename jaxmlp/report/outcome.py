"""The rules about the outcome: predictions that are not probabilities, accuracy at chance,
low accuracy, overfitting (the same `rule(ctx, found)` shape as `jaxmlp.report.signal`)."""

from __future__ import annotations

from collections.abc import Sequence

from jaxmlp.losses import uniform_guess_loss
from jaxmlp.report.base import (
    CHANCE_MARGIN,
    COLLAPSE_SHARE,
    LOSS_FELL,
    LOW_ACCURACY,
    OVERFIT_GAP,
    Context,
    Finding,
    cannot_separate,
    codes_of,
    inputs_scaled,
    when,
)


def negative_predictions(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    if ctx.config.output != "sum_normalize":
        return []
    neg = max(ctx.rows, key=lambda r: r.get("negative_predictions") or 0.0)
    if (neg.get("negative_predictions") or 0.0) < 0.5:
        return []
    return [Finding(
        "negative_predictions",
        f"with --output sum_normalize, {when(neg['epoch'], ctx)} "
        f"{neg['negative_predictions']:.0%} of the examples got a negative "
        f"'probability': o_k / sum(o) is a probability only if every output is "
        f"positive, and a linear output layer gives negative outputs",
        "try --output softmax (exp makes every output positive)")]


def _loss_fell_text(ctx: Context) -> str:
    """'the loss fell from A to B (predicting 1/K for every class scores U) while ' when it fell
    by LOSS_FELL, from initialisation (the epoch-0 row) or from the first epoch; else ''."""
    last_loss = ctx.history[-1].get("train_loss")
    start = [ctx.history[0].get("train_loss")]
    if ctx.rows[0]["epoch"] == 0:
        start.append(ctx.rows[0].get("probe_loss"))
    falls = [((s0 - last_loss) / s0, s0) for s0 in start if s0 and last_loss is not None]
    fell, s0 = max(falls, default=(0.0, None))
    if fell < LOSS_FELL:
        return ""
    guess = uniform_guess_loss(ctx.config, ctx.num_classes)
    return (f"the loss fell from {s0:.3g} to {last_loss:.3g} (a network that ignores its input "
            f"scores {guess:.3g}) while ")


def _why_it_can_fall(ctx: Context) -> str:
    """How this loss falls without the right class winning, in its own terms."""
    config = ctx.config
    if config.output != "sum_normalize":
        return ""
    if config.error == "cross_entropy":
        return (": -log(o_y / sum(o)) falls whenever the sum of the outputs shrinks toward 0, "
                "since that makes every o_k / sum(o) larger, whichever class is right")
    return (f": the squared error of o_k / sum(o) is lowest, short of learning, when every "
            f"prediction is about 1/{ctx.num_classes}, which scores "
            f"{uniform_guess_loss(config, ctx.num_classes):.3g} without telling one class from "
            f"another")


def _accuracy_advice(ctx: Context, found: Sequence[Finding]) -> str:
    config, codes = ctx.config, codes_of(found)
    capacity = cannot_separate(ctx)
    if capacity:
        return capacity
    if "exploded" in codes:
        return "the run exploded (above): fix that first"
    if "tiny_updates" in codes:
        return "the weights have barely moved from their random start (above)"
    loss_advice = (f"the loss being minimised (--output {config.output} --error "
                   f"{config.error}) can fall without favouring the right class"
                   + _why_it_can_fall(ctx) + "; try --output softmax --error cross_entropy")
    if config.output == "sum_normalize" and _loss_fell_text(ctx):
        # A falling loss at chance accuracy is this loss doing what it rewards: the dead or
        # saturated units above follow from it, so naming them first would send the reader
        # after a symptom.
        return loss_advice + ", then see the findings above"
    if codes & {"dead_units", "saturated_units", "vanishing_gradients", "gradients_stopped",
                 "uniform_plateau", "loss_spike"}:
        return ("fix the problems above first: with no signal from the hidden layers "
                "the network can only learn which class is most common")
    if config.targets == "integer":
        return ("one number for the label makes '4' halfway between '3' and '5', an "
                "order the digits do not have: try --targets onehot (the default)")
    if config.output != "softmax" or config.error != "cross_entropy":
        return loss_advice
    scaling = " and --input-scale" if inputs_scaled(config) else ""
    return f"check the learning rate{scaling}, or train longer"


def _memorised(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """An --overfit report's outcome: the accuracy on the N examples it fits, whether it
    collapsed to one class on them."""
    last = ctx.history[-1]
    acc, n = last.get("train_accuracy"), last.get("examples")
    if acc is None or acc >= 1.0:
        return []
    fell = _loss_fell_text(ctx)
    share = ctx.last.get("top_class_share") or 0.0
    advice = _accuracy_advice(ctx, found)
    if share >= COLLAPSE_SHARE:
        return [Finding(
            "collapsed",
            f"{fell}the accuracy on the {n} examples {'stayed at' if fell else 'is'} {acc:.0%}:"
            f" the outputs collapsed to one class ({share:.0%} of them are predicted as "
            f"{ctx.last['top_class']})", advice)]
    return [Finding("not_memorised", f"{fell}the network classifies {acc:.0%} of the {n} "
                    f"examples right at the end: it did not memorise them", advice)]


def accuracy(ctx: Context, found: Sequence[Finding]) -> list[Finding]:
    """Collapsed, not learning, low accuracy or overfitting, judged from the last epoch's test
    accuracy (an --overfit report: from the accuracy on its N examples); stands down after a
    non-finite value (that finding says more)."""
    if ctx.overfit and ctx.history and "nonfinite" not in codes_of(found):
        return _memorised(ctx, found)
    test_acc = ctx.history[-1].get("test_accuracy") if ctx.history else None
    if test_acc is None or "nonfinite" in codes_of(found):
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
