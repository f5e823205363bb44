"""The questions about what went wrong in the notes: outputs that are all zero, gradients that
shrink toward the first layer, a loss that falls while the predictions do not improve. Each is
one or two training runs with `--diagnose` (`runner.run`), whose diagnostics.jsonl and
summary.json the answer reads; the gradient question adds each layer's gradient at
initialisation over a grid of depths, activations and initialisations."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp import losses, pages, report, runner, stats
from jaxmlp.config import Config
from jaxmlp.notes.answer import (
    Answer,
    Table,
    Unreadable,
    need,
    page_link,
    picture,
    read_json,
    read_jsonl,
    write_json,
)
from jaxmlp.notes.budget import Setting
from jaxmlp.notes.gradients import first_step_norms
from jaxmlp.plots import run as plotting
from jaxmlp.plots.backend import figure, save
from jaxmlp.rundir import CONFIG_JSON, DIAGNOSTICS, METRICS, RunDir


def train(s: Setting, config: Config, folder: Path, pictures: bool = False) -> None:
    """One run with --diagnose and its page; with `pictures`, its learning curves and gradient
    norms drawn as --plots draws them (its other pictures, which no answer shows, are left
    out). A run that diverges has said so in its folder (summary.json); its answer reads it
    from there."""
    try:
        runner.run(config, folder, progress=s.progress, diagnose=True, log=lambda _: None)
    except runner.Diverged:
        pass
    if pictures:
        run = RunDir(folder)
        history = [m for m in run.metrics() if m.get("train_loss") is not None]
        found, _ = diagnosis(folder)
        if history:  # none when it diverged in its first epoch
            plotting.learning_curves(history, folder / plotting.LEARNING_CURVES)
        verdict = report.gradient_verdict([report.Finding(c, m, "") for c, m in found.items()])
        plotting.gradient_norms(run.diagnostics(), folder / plotting.GRADIENT_NORMS, verdict)
    pages.write_run_page(folder)


def diagnosis(folder: Path) -> tuple[dict[str, str], str]:
    """The report on the run's own files (`report.diagnose` on diagnostics.jsonl and the
    finished epochs of metrics.jsonl, as the run's end did): code -> message, and the report's
    line with its numbers when nothing looks wrong."""
    record = read_json(folder / CONFIG_JSON)
    rows = read_jsonl(folder / DIAGNOSTICS)
    history = [m for m in read_jsonl(folder / METRICS) if m.get("train_loss") is not None]
    try:
        classes = int(record["dataset"]["num_classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise Unreadable(f"{folder / CONFIG_JSON}: no number of classes ({e})") from None
    found = report.diagnose(run_config(folder), rows, history, classes)
    healthy = "" if found else report.format_report([], rows).removeprefix("diagnosis: ")
    return {f.code: f.message for f in found}, healthy


def run_config(folder: Path) -> Config:
    record = read_json(folder / CONFIG_JSON)
    try:
        return Config.from_dict(record["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise Unreadable(f"{folder / CONFIG_JSON}: no configuration ({e})") from None


# --- all the outputs are zero ---------------------------------------------------------------------

NOTES, TINY = "notes-setup", "tiny-init"
# The guide's setup that gives all-zero outputs (when-training-goes-wrong.md): weights of std
# 1e-4 and plain SGD, on the usual loss.
TINY_INIT = {"init": "normal", "init_scale": 1e-4, "optimizer": "sgd", "learning_rate": 0.1,
             "schedule": "constant"}


def measure_all_zero(s: Setting, folder: Path) -> None:
    train(s, s.notes_setup(), folder / NOTES)
    train(s, s.single(hidden=s.budget.notes_hidden, **TINY_INIT), folder / TINY, pictures=True)


def _zeros(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = read_jsonl(folder / DIAGNOSTICS)
    if not rows:
        raise Unreadable(f"{folder / DIAGNOSTICS} holds no row")
    return rows[0], rows[-1]


def _zero_words(first: dict[str, Any], last: dict[str, Any]) -> str:
    return (f"all-zero outputs (every |o_k| < 1e-4) on {first['zero_outputs']:.0%} of the "
            f"probe images at initialisation and {last['zero_outputs']:.0%} after epoch "
            f"{last['epoch']}; all-zero predictions (after the output transform) on "
            f"{first['zero_predictions']:.0%} and {last['zero_predictions']:.0%}")


def answer_all_zero(root: Path, rel: str) -> Answer:
    notes_first, notes_last = _zeros(root / rel / NOTES)
    tiny_first, tiny_last = _zeros(root / rel / TINY)
    out = notes_last["layers"][-1]["act_mean"]
    said = [f"In the notes' own setup: {_zero_words(notes_first, notes_last)}."]
    if max(notes_last["zero_outputs"], notes_last["zero_predictions"]) == 0:
        said.append(f"So this setup does not give zeros: its outputs grew to a mean of "
                    f"{out:.3g} instead, and every prediction o_k / sum(o) sits near 1/10 (see "
                    "'the loss goes down but the predictions do not improve').")
    else:
        said.append("This run did give all-zero outputs in the notes' setup, which is not the "
                    "usual outcome: its page says more.")
    said.append(f"A setup that does give them, weights of std 1e-4 (--init normal --init-scale "
                f"1e-4, plain SGD at lr 0.1, softmax): {_zero_words(tiny_first, tiny_last)}. "
                f"At the end its outputs varied across images by "
                f"{tiny_last['output_variation']:.2g} of their spread (healthy: 0.3 to 1), "
                "so every image got about the same answer, the output bias's, and accuracy "
                f"was {tiny_last['probe_accuracy']:.1%} on the probe images.")
    found, _ = diagnosis(root / rel / TINY)
    if "zero_outputs" in found:
        said.append(f"Its report: {found['zero_outputs']}.")
    else:
        said.append("Its report does not name all-zero outputs (no 'zero_outputs' finding), "
                    "which is not the usual outcome for weights this small.")
    return Answer(tuple(said),
                  "The signal shrinks on its way forward when the weights are far too small for "
                  "the layers' widths: each layer multiplies it by the weights' size, and at "
                  "1e-4 nothing is left at the output. A dead last hidden layer does the same "
                  "(only the output bias is left, the same for every input). The likeliest "
                  "source of exact zeros in a hand-written network, a ReLU on the output layer "
                  "once its units die, cannot be shown here: jaxmlp's output layer is linear.",
                  (picture(root, f"{rel}/{TINY}", plotting.LEARNING_CURVES, "Learning curves "
                           "of the run with std-1e-4 weights", "Weights of std 1e-4."),),
                  (page_link(root, f"{rel}/{NOTES}", "the run in the notes' own setup"),
                   page_link(root, f"{rel}/{TINY}", "the run with std-1e-4 weights")))


# --- gradients that shrink toward the first layer -------------------------------------------------

RATIOS_JSON, RATIOS_PNG = "ratios.json", "ratios.png"
WIDTH = 32
ACTIVATIONS = ("relu", "sigmoid")
INITS = (("he", 1.0), ("normal", 0.01))
WORST = {"activation": "sigmoid", "init": "normal", "init_scale": 0.01}


def cell_name(activation: str, init: str, scale: float) -> str:
    return f"{activation}, {init} init" + (f" std {scale:g}" if init == "normal" else "")


def measure_vanishing(s: Setting, folder: Path) -> None:
    b = s.budget
    deepest = max(b.depths)
    train(s, s.single(**WORST, hidden=(WIDTH,) * deepest), folder, pictures=True)
    cells = []
    for activation, (init, scale) in itertools.product(ACTIVATIONS, INITS):
        for depth in b.depths:
            config = s.mnist(activation=activation, init=init, init_scale=scale,
                             hidden=(WIDTH,) * depth)
            norms = first_step_norms(config, range(b.seeds), s.datasets).tolist()
            cells.append({"name": cell_name(activation, init, scale), "depth": depth,
                          "norms": norms, "ratios": [n[0] / n[-1] for n in norms]})
    write_json(folder / RATIOS_JSON, {"width": WIDTH, "batch_size": b.batch_size,
                                      "cells": cells})
    draw_ratios(folder / RATIOS_PNG, cells)
    pages.write_run_page(folder)


def geometric(ratios: list[float]) -> tuple[float, float, float]:
    """The geometric mean of positive ratios and its 95% bootstrap interval (on log10)."""
    logs = np.log10(np.asarray(ratios, float))
    d = stats.describe(logs)
    return tuple(10.0 ** d[k] if math.isfinite(d[k]) else math.nan
                 for k in ("mean", "ci_lo", "ci_hi"))


def draw_ratios(path: Path, cells: list[dict[str, Any]]) -> None:
    fig = figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, name in enumerate(dict.fromkeys(c["name"] for c in cells)):
        mine = [c for c in cells if c["name"] == name]
        ax.plot([c["depth"] for c in mine], [geometric(c["ratios"])[0] for c in mine],
                "os^v"[i % 4] + "-", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("layer 1 / last layer gradient norm")
    ax.set_title("At initialisation: how much gradient reaches layer 1")
    ax.legend(fontsize=8)
    save(fig, path)


def answer_vanishing(root: Path, rel: str) -> Answer:
    folder = root / rel
    cells = need(read_json(folder / RATIOS_JSON), "cells", folder / RATIOS_JSON)
    names = list(dict.fromkeys(c["name"] for c in cells))
    said, rows = [], []
    for name in names:
        mine = [c for c in cells if c["name"] == name]
        values = [(c["depth"], *geometric(c["ratios"])) for c in mine]
        said.append(f"{name}: layer 1's gradient norm over the last layer's was "
                    + ", ".join(f"{g:.2g} with {d} hidden layer{'s' * (d > 1)}"
                                for d, g, _, _ in values)
                    + f" (geometric mean of {len(mine[0]['ratios'])} seeds; at "
                    f"{values[-1][0]} layers 95% CI [{values[-1][2]:.2g}, "
                    f"{values[-1][3]:.2g}]).")
        rows += [(name, str(d), f"{g:.3g}", f"[{lo:.3g}, {hi:.3g}]") for d, g, lo, hi in values]
    worst = [c for c in cells if c["name"] == cell_name(*WORST.values())][-1]
    g = geometric(worst["ratios"])[0]
    said.append(f"With {worst['name']}, every layer on the way down multiplied the gradient by "
                f"about {g ** (1 / worst['depth']):.2g} ({g:.2g} over {worst['depth']} layers): "
                "the gradient does reach layer 1, only smaller, as the notes saw.")
    found, _ = diagnosis(folder)
    code = next((c for c in ("vanishing_gradients", "exploding_gradients") if c in found), None)
    said.append(f"Training that network: its report says {found[code]}." if code else
                "Training that network, its report did not find vanishing gradients, which is "
                "not the usual outcome: its page shows the norms.")
    return Answer(tuple(said),
                  "On the way back each layer multiplies the gradient by its activation's slope "
                  "(sigmoid's is at most 0.25, relu's 0 or 1) and by its weights. With slopes "
                  "and weights below 1 the gradient shrinks by a factor per layer, so the first "
                  "layers learn last or not at all. He initialisation picks the weights' size "
                  "so that relu keeps the gradient's size from layer to layer. The notes' "
                  "shrinking gradients are this, not a bug.",
                  (picture(root, rel, RATIOS_PNG, "Layer 1's gradient norm over the last "
                           "layer's at initialisation, against the number of hidden layers, "
                           "for relu and sigmoid with he and small normal weights, log scale",
                           "How much gradient reaches layer 1, at initialisation."),
                   picture(root, rel, plotting.GRADIENT_NORMS, "Each layer's gradient norm "
                           "while training the sigmoid network with std-0.01 weights",
                           "Gradient norms per layer, sigmoid with std-0.01 weights.")),
                  (page_link(root, rel, "the run: sigmoid, std-0.01 weights"),),
                  (Table("Layer 1 / last layer gradient norm at initialisation",
                         ("network", "hidden layers", "geometric mean", "95% CI"),
                         tuple(rows)),))


# --- the loss goes down, the predictions do not improve -------------------------------------------


def measure_plateau(s: Setting, folder: Path) -> None:
    train(s, s.notes_setup(), folder, pictures=True)


def answer_plateau(root: Path, rel: str) -> Answer:
    folder = root / rel
    metrics = [m for m in read_jsonl(folder / METRICS) if m.get("train_loss") is not None]
    if not metrics:
        raise Unreadable(f"{folder / METRICS}: no epoch finished")
    first = next((v for v in metrics[0].get("step_loss") or [] if v is not None), math.nan)
    last = metrics[-1]
    config = run_config(folder)
    guess = losses.uniform_guess_loss(config, 10)
    said = [f"In the notes' own setup the training loss fell from {first:.4g} at the first "
            f"step to {last['train_loss']:.4g} over epoch {last['epoch']}, while test accuracy "
            f"went {', '.join(stats.pct(m['test_accuracy'], 1) for m in metrics)} by epoch "
            "(10% is guessing)."]
    found, _ = diagnosis(folder)
    if "uniform_plateau" in found:
        said.append(f"The loss settled at the uniform guess, {guess:.4g}: what a network that "
                    "ignores its input scores by predicting 1/10 for every class. The report: "
                    + found["uniform_plateau"] + ".")
    else:
        said.append(f"This run's loss did not settle at the uniform guess ({guess:.4g}), which "
                    "is not the usual outcome in this setup: its page says what it did.")
    if "gradients_stopped" in found:
        said.append(f"And the gradients stopped: {found['gradients_stopped']}.")
    return Answer(tuple(said),
                  "A loss can be lowered without favouring the right class. With each output "
                  "divided by the total, one large first step (raw pixels, a step of the whole "
                  "gradient) sends the outputs to huge values of one sign; every prediction is "
                  "then about 1/10, which is exactly the uniform guess, and its gradient is "
                  "divided by that huge sum: the network freezes there. The loss fell because "
                  "the predictions moved to 1/10 everywhere, not toward the right digit. "
                  "Softmax with cross-entropy cannot freeze this way: its gradient, p - t, does "
                  "not shrink with the outputs' size.",
                  (picture(root, rel, plotting.LEARNING_CURVES, "Learning curves of the run in "
                           "the notes' own setup: the loss at every step and the accuracy per "
                           "epoch", "The loss falls; the accuracy stays at guessing."),
                   picture(root, rel, plotting.GRADIENT_NORMS, "Each layer's gradient norm at "
                           "every measured step of the run in the notes' own setup",
                           "The gradients stop.")),
                  (page_link(root, rel, "the run in the notes' own setup"),))

