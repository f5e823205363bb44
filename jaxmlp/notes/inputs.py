"""The questions about what goes in and what comes out: why flatten, why divide by 255, why
one-hot targets, each output over the total. Each is one small sweep (`jaxmlp.sweep`), seeds
paired variant against variant, and the answer is read back from the sweep's runs.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmlp import pages, sweep
from jaxmlp.notes.answer import (
    Answer,
    column,
    count,
    interval,
    page_link,
    paired,
    picture,
    points,
    runs_by_variant,
    spans_zero,
)
from jaxmlp.notes.budget import LR_ADAM, LR_SGD, Setting
from jaxmlp.sweep.tables import FINAL_PNG

ACC = "final_test_accuracy"


def sweep_pictures(root: Path, rel: str, what: str) -> tuple[pages.Picture, ...]:
    """The sweep's picture of every seed's final accuracy (its page has the curves too)."""
    return (picture(root, rel, FINAL_PNG, f"Final test accuracy of every seed: {what}",
                    "Each seed's final test accuracy, per variant: dots are seeds, bars the "
                    "mean with its 95% interval."),)


def _run(s: Setting, folder: Path, variants: list[dict], name: str, note: str,
         probes: bool = False, **base: object) -> None:
    b = s.budget
    spec = sweep.make_spec(s.mnist(**base), seeds=b.seeds, variants=variants, name=name,
                           test_subset=b.test_subset, probes=probes, note=note)
    s.sweep(spec, folder)
    pages.write_sweep_page(folder)


def _paired_words(a: np.ndarray, b: np.ndarray, name_b: str) -> tuple[str, bool]:
    """'Seed by seed, B scored +0.12 points (95% CI [...])' and whether the interval spans 0."""
    mean, lo, hi = paired(a, b)
    return (f"Seed by seed, {name_b} scored {points(mean)} (95% CI [{100 * lo:+.2f}, "
            f"{100 * hi:+.2f}])"), spans_zero(lo, hi)


# --- why flatten ----------------------------------------------------------------------------------

IN_PLACE, PERMUTED = "pixels in place", "pixels permuted"


def measure_flatten(s: Setting, folder: Path) -> None:
    _run(s, folder, [{"name": IN_PLACE}, {"name": PERMUTED, "pixel_permutation": 1}],
         "Why flatten: the same MLP on pixels in place and on permuted pixels",
         "Every image, training and test alike, has its 784 pixels put in one fixed random "
         "order (--pixel-permutation 1): the 2-D layout is gone, the information is not.")


def answer_flatten(root: Path, rel: str) -> Answer:
    runs = runs_by_variant(root / rel)
    a, p = column(runs[IN_PLACE], ACC), column(runs[PERMUTED], ACC)
    paired_words, same = _paired_words(a, p, "the permuted pixels")
    said = [f"With its pixels in place the MLP reached {interval(a, True)} test accuracy; with "
            f"every image's pixels shuffled by one fixed permutation, {interval(p, True)}."]
    if same:
        said.append(f"{paired_words}: the interval spans zero, so these seeds see "
                    "no difference. The network never used the 2-D layout, and flattening took "
                    "nothing from it.")
    else:
        mean = paired(a, p)[0]
        said.append(f"{paired_words}: the interval does not span zero, so here the layout was "
                    f"worth {abs(mean) * 100:.2f} points, and these numbers do not support the "
                    "usual answer that an MLP does exactly as well without it (an interval from "
                    f"{len(a)} seeds is rough: experiments/sweep_pixels.py measures the same "
                    "with 10 seeds and 3 permutations on all of MNIST).")
    return Answer(tuple(said),
                  "An MLP's first layer gives each input value its own weight: it sees a list of "
                  "784 numbers, not a picture, and the order of the list only names the "
                  "weights. Flattening loses nothing an MLP could use; a convolutional network "
                  "is what keeps and uses the 2-D neighbourhoods. (jaxmlp refuses --no-flatten "
                  "with that explanation.)",
                  sweep_pictures(root, rel, "pixels in place and permuted"),
                  (page_link(root, rel, "the sweep: pixels in place and permuted"),))


# --- why /255 -------------------------------------------------------------------------------------

SCALES = {"0..1": "unit", "0..255": "raw"}
OPTIMIZERS = {"SGD": ("sgd", LR_SGD), "Adam": ("adam", LR_ADAM)}


def scale_name(opt: str, inputs: str) -> str:
    return f"{opt} lr {OPTIMIZERS[opt][1]:g}, inputs {inputs}"


def measure_scaling(s: Setting, folder: Path) -> None:
    variants = [{"name": scale_name(o, i), "optimizer": OPTIMIZERS[o][0],
                 "learning_rate": OPTIMIZERS[o][1], "input_scale": SCALES[i]}
                for o in OPTIMIZERS for i in SCALES]
    _run(s, folder, variants, "Why divide by 255: raw and unit inputs, with SGD and with Adam",
         "Pixels divided by 255 (0..1) or as they are (0..255), with plain SGD and with Adam, "
         "each at a learning rate that suits unit inputs.", probes=True)


def _scaling_for(runs: dict, opt: str) -> list[str]:
    unit, raw = runs[scale_name(opt, "0..1")], runs[scale_name(opt, "0..255")]
    a, r = column(unit, ACC), column(raw, ACC)
    diverged = column(raw, "diverged").sum()
    lr = OPTIMIZERS[opt][1]
    head = (f"{opt} at lr {lr:g}: inputs 0..1 reached {interval(a, True)}; raw 0..255 inputs "
            f"{interval(r, True)}, with {count(diverged, len(raw))} runs diverged (loss NaN or "
            f"inf) and a final training loss of {np.nanmean(column(raw, 'final_train_loss')):.4g}"
            f" against {np.nanmean(column(unit, 'final_train_loss')):.4g}.")
    words, same = _paired_words(a, r, "raw inputs")
    if same:
        tail = (f"{words}: the interval spans zero, so at this budget the raw "
                f"inputs did not cost {opt} anything these seeds can see"
                + (": Adam divides each step by the gradient's running size, which hides the "
                   "255x scale here." if opt == "Adam" else
                   ", which is not the usual outcome for plain SGD: rerun at the default "
                   "budget."))
    else:
        mean = paired(a, r)[0]
        tail = (f"{words}: raw inputs {'cost' if mean < 0 else 'gained'} {opt} "
                f"{abs(mean) * 100:.2f} points, more than the seeds' spread.")
    return [head, tail]


def answer_scaling(root: Path, rel: str) -> Answer:
    runs = runs_by_variant(root / rel)
    said = _scaling_for(runs, "SGD") + _scaling_for(runs, "Adam")
    dead = [np.nanmean(column(runs[scale_name(o, i)], "dead_units_final"))
            for o in OPTIMIZERS for i in SCALES]
    said.append(f"Dead hidden units at the end (off for 99% of the probe images): SGD "
                f"{dead[0]:.0%} with 0..1, {dead[1]:.0%} with 0..255; Adam {dead[2]:.0%} and "
                f"{dead[3]:.0%}.")
    return Answer(tuple(said),
                  "The initialisation (he, glorot, lecun) chooses the weights' size for inputs "
                  "of about unit size. Raw pixels are 255 times that: every first-layer sum "
                  "starts 255 times too large, and the first layer's gradient is 255 times "
                  "larger too, so plain SGD's steps overshoot (or push ReLU units off for good). "
                  "Adam rescales each step by the gradient's own size and trains anyway; only "
                  "the loss shows the damage. Dividing by 255 costs nothing and removes the "
                  "problem.",
                  sweep_pictures(root, rel, "unit and raw inputs, SGD and Adam"),
                  (page_link(root, rel, "the sweep: unit and raw inputs"),))


# --- why one-hot ----------------------------------------------------------------------------------

ONE_HOT = "one-hot targets, softmax + MSE"
INTEGER = "the label as one number, MSE on one output"


def measure_one_hot(s: Setting, folder: Path) -> None:
    _run(s, folder, [{"name": ONE_HOT, "error": "mse"},
                     {"name": INTEGER, "targets": "integer", "output": "none", "error": "mse"}],
         "Why one-hot: one output per class, or the label as one number",
         f"Both with a squared error and Adam at lr {LR_ADAM:g}: ten outputs against one-hot "
         "targets, or one output regressed onto the label 0..9 and rounded.")


def answer_one_hot(root: Path, rel: str) -> Answer:
    runs = runs_by_variant(root / rel)
    o, i = column(runs[ONE_HOT], ACC), column(runs[INTEGER], ACC)
    words, same = _paired_words(o, i, "the single output")
    said = [f"Ten outputs against one-hot targets reached {interval(o, True)} test accuracy; "
            f"one output regressed onto the label reached {interval(i, True)}."]
    if not same and np.mean(i) < np.mean(o):
        said.append(f"{words}: one-hot targets win by more than the seeds' "
                    "spread.")
    else:
        said.append(f"{words}: this run does not separate them (the interval "
                    "spans zero or favours the single output), which is not the usual outcome; "
                    "rerun at the default budget.")
    return Answer(tuple(said),
                  "One output regressed onto the label has to put a 4 between a 3 and a 5, an "
                  "order the digits' shapes do not have: mistaking a 3 for an 8 costs more than "
                  "for a 4, and an image that looks like both 1 and 7 is pulled to 4. One output "
                  "per class gives every class its own score, and the largest wins.",
                  sweep_pictures(root, rel, "one-hot targets and the label as one number"),
                  (page_link(root, rel, "the sweep: one-hot and integer targets"),))


# --- each output over the total -------------------------------------------------------------------

OVER_TOTAL = "each output over the total"
SOFTMAX = "softmax"


def measure_over_the_total(s: Setting, folder: Path) -> None:
    _run(s, folder, [{"name": OVER_TOTAL, "output": "sum_normalize"},
                     {"name": SOFTMAX, "output": "softmax"}],
         "Each output over the total, or softmax",
         "The notes' loss (MSE against one-hot targets, averaged over the classes) on "
         "predictions made either way, Adam at lr 0.001, inputs 0..1.",
         error="mse", class_reduction="mean")


def answer_over_the_total(root: Path, rel: str) -> Answer:
    runs = runs_by_variant(root / rel)
    t, m = column(runs[OVER_TOTAL], ACC), column(runs[SOFTMAX], ACC)
    words, same = _paired_words(t, m, "softmax")
    diverged = column(runs[OVER_TOTAL], "diverged").sum()
    said = [f"Each output divided by the total reached {interval(t, True)} test accuracy "
            f"({count(diverged, len(t))} runs diverged); softmax, under the same loss, "
            f"{interval(m, True)}."]
    if not same and np.mean(m) > np.mean(t):
        said.append(f"{words}: softmax wins by more than the seeds' spread.")
    else:
        said.append(f"{words}: this run does not show softmax ahead, which is not "
                    "the usual outcome; rerun at the default budget.")
    return Answer(tuple(said),
                  "o_k / sum(o) is a probability only when every output is positive, and a "
                  "linear output layer gives negative ones: a 'probability' can then be below 0 "
                  "or above 1, and it grows whenever the sum shrinks, whichever class is right. "
                  "Softmax first makes every output positive (exp), then divides by the total: "
                  "the notes' idea, made safe.",
                  sweep_pictures(root, rel, "each output over the total and softmax"),
                  (page_link(root, rel, "the sweep: each output over the total, softmax"),))
