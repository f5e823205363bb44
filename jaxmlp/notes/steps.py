"""The questions about the step: what the mean (over the examples, over the classes) does to
it, and which way and how far to step. Each is a sweep, plus the numbers of one step measured
at initialisation (`gradients.first_step_norms`; `gradcheck.step_sizes`), written beside the
sweep's files as JSON and drawn."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxmlp import gradcheck, pages, sweep
from jaxmlp.config import Config
from jaxmlp.notes.answer import (
    Answer,
    Table,
    column,
    count,
    interval,
    need,
    page_link,
    picture,
    read_json,
    runs_by_variant,
    write_json,
)
from jaxmlp.notes.budget import NOTES_SETUP, Setting
from jaxmlp.notes.gradients import first_step_norms
from jaxmlp.notes.inputs import ACC, sweep_pictures
from jaxmlp.plots.backend import figure, save

GRADIENTS_JSON, STEPS_JSON, STEPS_PNG = "gradient_norms.json", "steps.json", "steps.png"


# --- the mean in MSE, and /num_classes ------------------------------------------------------------

LR_MEAN = 0.5  # plain SGD on softmax + MSE, summed over classes, averaged over the batch
REDUCTIONS = {"class sum, example mean": ("sum", "mean"),
              "class mean, example mean": ("mean", "mean"),
              "class sum, example sum": ("sum", "sum"),
              "class mean, example sum": ("mean", "sum")}
USUAL = "class sum, example mean"


def measure_mean(s: Setting, folder: Path) -> None:
    b = s.budget
    base = s.mnist(optimizer="sgd", learning_rate=LR_MEAN, error="mse")
    variants = [{"name": n, "class_reduction": c, "example_reduction": e}
                for n, (c, e) in REDUCTIONS.items()]
    spec = sweep.make_spec(base, seeds=b.seeds, variants=variants, test_subset=b.test_subset,
                           name="The mean in MSE: sum or mean, over the classes and the batch",
                           note=f"Plain SGD at one learning rate, {LR_MEAN:g}, on softmax + MSE: "
                                "only the reductions differ (one compiled program).")
    s.sweep(spec, folder)
    norms = {n: np.linalg.norm(first_step_norms(dataclasses.replace(
        base, class_reduction=c, example_reduction=e), spec.seeds, s.datasets), axis=1).tolist()
        for n, (c, e) in REDUCTIONS.items()}
    write_json(folder / GRADIENTS_JSON, {"batch_size": b.batch_size, "classes": 10,
                                         "learning_rate": LR_MEAN, "norms": norms})
    pages.write_sweep_page(folder)


def _ratio(norms: dict[str, list[float]], a: str, b: str) -> str:
    r = np.asarray(norms[a], float) / np.asarray(norms[b], float)
    return f"{np.mean(r):.4g}" if np.ptp(r) < 1e-3 * np.mean(r) else (
        f"{np.min(r):.4g} to {np.max(r):.4g}")


def answer_mean(root: Path, rel: str) -> Answer:
    folder = root / rel
    runs = runs_by_variant(folder)
    g = read_json(folder / GRADIENTS_JSON)
    norms, batch, lr = (need(g, k, folder / GRADIENTS_JSON)
                        for k in ("norms", "batch_size", "learning_rate"))
    said = [f"At initialisation, on a batch of {batch}, summing over the examples made the "
            f"gradient {_ratio(norms, 'class sum, example sum', USUAL)} times the mean's (norm "
            f"{np.mean(norms['class sum, example sum']):.4g} against "
            f"{np.mean(norms[USUAL]):.4g}), and averaging over the 10 classes made it "
            f"{_ratio(norms, 'class mean, example mean', USUAL)} times the sum's: each reduction "
            "divides the gradient, and so plain SGD's step, by its count."]
    acc = {n: column(runs[n], ACC) for n in REDUCTIONS}
    said.append(f"At one learning rate (SGD, lr {lr:g}): "
                + "; ".join(f"{n}: {interval(acc[n], True)}, "
                            f"{count(column(runs[n], 'diverged').sum(), len(acc[n]))} diverged"
                            for n in REDUCTIONS) + ".")
    usual, summed = np.mean(acc[USUAL]), np.mean(acc["class sum, example sum"])
    said.append(
        f"Summing over the batch of {batch} took the step {batch} times larger: "
        + (f"{usual - summed:.1%} lower than the mean, a step that size breaks training."
           if usual - summed > 0.1 else
           f"within {abs(usual - summed):.1%} of the mean here, which is not the usual outcome "
           "at this learning rate.")
        + " The mean over the examples is what keeps the step the same whatever the batch size.")
    cmean = np.mean(acc["class mean, example mean"])
    said.append(
        f"The mean over the classes divided the step by 10: {cmean:.1%} against {usual:.1%} "
        "with the sum. It is a constant the learning rate absorbs (the class mean at lr "
        f"{lr * 10:g} takes the class sum's steps at lr {lr:g}), so the notes were right that "
        "/num_classes is not needed; only the learning rate must then be 10 times larger.")
    return Answer(tuple(said),
                  "The loss's gradient is the sum of its terms' gradients, so dividing the loss "
                  "by a count divides the gradient, and plain SGD's step, by the same count. "
                  "Over the examples the mean is what makes one learning rate work for every "
                  "batch size (and makes the loss comparable between batches); over the "
                  "classes it is a fixed factor of 10. It does not 'spread one example's error "
                  "over the others': each example's gradient is the same, only scaled.",
                  sweep_pictures(root, rel, "the four reductions at one learning rate"),
                  (page_link(root, rel, "the sweep: the four reductions"),))


# --- which way, how far ---------------------------------------------------------------------------

STEP_LOSS = Config(**{k: NOTES_SETUP[k] for k in ("output", "error", "class_reduction",
                                                  "example_reduction")})


def measure_step(s: Setting, folder: Path) -> None:
    b = s.budget
    base = s.mnist(optimizer="sgd")
    spec = sweep.make_spec(base, {"learning_rate": list(b.lrs)}, seeds=b.seeds,
                           test_subset=b.test_subset, name="How far to step: plain SGD at "
                           "several learning rates", note="The usual loss (softmax, "
                           "cross-entropy); only the learning rate differs (one program).")
    s.sweep(spec, folder)
    dataset, _ = s.datasets.dataset(base)
    problem = gradcheck.mnist_problem(dataset.x_train, dataset.y_train, 64, dataset.name)
    loss, gnorm, rows = gradcheck.step_sizes(problem, STEP_LOSS)
    write_json(folder / STEPS_JSON, {"problem": problem.name,
                                     "loss_name": gradcheck.variant_name(STEP_LOSS),
                                     "loss": loss, "grad_norm": gnorm,
                                     "rows": [r._asdict() for r in rows]})
    draw_steps(folder / STEPS_PNG, loss, rows)
    pages.write_sweep_page(folder)


def draw_steps(path: Path, loss: float, rows: list[gradcheck.StepRow]) -> None:
    """The loss after one step against the gradient and one along it, per learning rate."""
    fig = figure(6.4, 3.6)
    ax = fig.add_subplot()
    lrs = [r.lr for r in rows]
    for change, label, mark in ((lambda r: r.descent, "after w - lr x g (against)", "o-"),
                                (lambda r: r.ascent, "after w + lr x g (along)", "s--")):
        ax.plot(lrs, [loss + change(r) for r in rows], mark, label=label)
    ax.axhline(loss, color="grey", lw=1, ls=":", label=f"before the step ({loss:.4g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (step = lr x gradient)")
    ax.set_ylabel("loss after one step (log)")
    ax.set_title("One step on the notes' loss, from the same start")
    ax.legend(fontsize=8)
    save(fig, path)


def answer_step(root: Path, rel: str) -> Answer:
    folder = root / rel
    steps = read_json(folder / STEPS_JSON)
    try:
        rows = [gradcheck.StepRow(**r) for r in need(steps, "rows", folder / STEPS_JSON)]
    except TypeError as e:
        raise ValueError(f"{folder / STEPS_JSON}: a row cannot be read ({e})") from None
    loss = float(need(steps, "loss", folder / STEPS_JSON))
    said = [f"One step on {steps.get('problem', 'the problem')} with the notes' loss "
            f"({steps.get('loss_name', '')}), from a loss of {loss:.4g} and a gradient of norm "
            f"{float(steps.get('grad_norm', float('nan'))):.4g}:",
            *(line[:1].upper() + line[1:] for line in gradcheck.describe_steps(loss, rows))]
    runs = runs_by_variant(folder)
    table = []
    for name, rs in runs.items():
        acc = column(rs, ACC)
        table.append((name, interval(acc, True), count(column(rs, "diverged").sum(), len(rs))))
    best = max(runs, key=lambda n: np.nanmean(column(runs[n], ACC)))
    said.append(f"Training with plain SGD at each learning rate: the best was {best} at "
                f"{interval(column(runs[best], ACC), True)}; "
                + "; ".join(f"{n}: {a}, {d} diverged" for n, a, d in table if n != best) + ".")
    return Answer(tuple(said),
                  "The gradient points uphill: it is the direction in which the loss rises "
                  "fastest, so a step subtracts it. Its size says how fast the loss changes "
                  "right here, not how far away the minimum is: for a small step the fall is "
                  "what the slope predicts (lr x |g|^2), for a larger one the slope has changed "
                  "on the way and the step overshoots. How far is the learning rate's job, "
                  "found by trying (a sweep), not by the gradient.",
                  (picture(root, rel, STEPS_PNG, "The loss after one step against the gradient "
                           "and one along it, for learning rates from small to large, log "
                           "scales", "One step, both ways, at every learning rate."),
                   *sweep_pictures(root, rel, "plain SGD at several learning rates")),
                  (page_link(root, rel, "the sweep: learning rates"),),
                  (Table("One step of the notes' loss (changes of the loss)",
                         ("lr", "predicted -lr|g|^2", "after -lr g", "after +lr g"),
                         tuple((f"{r.lr:g}", f"{r.predicted:+.3g}", f"{r.descent:+.4g}",
                                f"{r.ascent:+.4g}") for r in rows)),))
