"""Pictures of one run (`python -m jaxmlp.train --plots`, or `python -m jaxmlp.plots RUN_DIR`).

- learning_curves.png: training and test loss and accuracy per epoch;
- gradient_norms.png: each layer's gradient norm at every step (from diagnostics.jsonl), on a
  log scale, so vanishing (layer 1 orders of magnitude below the last) or exploding gradients
  and spikes before a divergence show at a glance;
- confusion_matrix.png: test examples by true and predicted class;
- misclassified.png: test images the network got wrong, with true and predicted labels.

For a data set of 2-D points there are no images to show: `jaxmlp.plots.plane` draws the
plane instead (decision boundary, its epochs, the first layer's units).

matplotlib's Agg backend renders straight to files: no display needed (CI, ssh).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmlp.config import Config
from jaxmlp.data import Dataset
from jaxmlp.loop import DeviceData, Hyper, scale_inputs
from jaxmlp.losses import predict_labels
from jaxmlp.model import Params, mlp_apply
from jaxmlp.plots.backend import figure, save
from jaxmlp.plots.layout import legend_below, legend_outside, set_loss_scale, wrap
from jaxmlp.plots.plane import write_plane_plots

LEARNING_CURVES = "learning_curves.png"
GRADIENT_NORMS = "gradient_norms.png"
CONFUSION = "confusion_matrix.png"
OVERFIT_CURVES = "overfit_curves.png"
MISCLASSIFIED = "misclassified.png"


def learning_curves_figure(history: Sequence[dict[str, Any]], num_classes: int = 10) -> Any:
    """The figure of `learning_curves` (see there), not yet saved."""
    epochs = [h["epoch"] for h in history]

    def series(key: str) -> np.ndarray:
        return np.asarray([np.nan if h.get(key) is None else h[key] for h in history], float)

    fig = figure(11, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    drawn = [series("train_loss"), series("test_loss")]
    for h in history:
        steps = np.asarray([np.nan if v is None else v for v in h.get("step_loss") or []], float)
        if steps.size:
            x = h["epoch"] - 1 + (np.arange(steps.size) + 1) / steps.size
            ax_loss.plot(x, steps, lw=0.6, color="tab:blue", alpha=0.8,
                         label="train, every step" if h is history[0] else None)
            drawn.append(steps)
    ax_loss.plot(epochs, drawn[0], "o", color="tab:blue", mfc="white",
                 label="train, mean over the epoch")
    ax_loss.plot(epochs, drawn[1], "s", color="tab:orange", label="test, end of epoch")
    note = set_loss_scale(ax_loss, np.concatenate(drawn))
    ax_loss.set(xlabel="epoch", ylabel="mean per-example loss",
                title="loss" + (f" ({note})" if note else ""))
    ax_acc.plot(epochs, 100 * series("train_accuracy"), "o-", color="tab:blue",
                label="train (mean over the epoch's steps: lags the test point early on)")
    ax_acc.plot(epochs, 100 * series("test_accuracy"), "s-", color="tab:orange",
                label="test (end of epoch)")
    ax_acc.axhline(100 / num_classes, color="grey", ls="--", lw=1,
                   label=f"chance ({100 / num_classes:.0f}%: guessing among {num_classes})")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        legend_below(ax)
        ax.set_xlim(0, max(epochs, default=1) + 0.1)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def learning_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike,
                    num_classes: int = 10) -> None:
    """Training loss at every step (log scale; symmetric log where it goes to 0 or below)
    with the test loss at the end of each epoch on top; accuracy on a 0..100% axis with the
    chance level drawn, so a run stuck at chance looks stuck. The x axis is in epochs (step /
    steps per epoch), so a one-epoch run is a curve, not a dot."""
    save(learning_curves_figure(history, num_classes), path)


def step_norms(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, norms): the training step (from 1) of every measured gradient norm in the
    diagnostics `rows`, and the norms, (steps, layers), NaN where non-finite."""
    xs, ys, offset = [], [], 0
    for r in rows:
        if r["step_grad_norm"]:
            # Norms are measured on steps 1, 1 + k, 1 + 2k, ... of each epoch (k = norm_every).
            y = np.asarray(r["step_grad_norm"], dtype=float)  # null (non-finite) -> nan
            xs.append(offset + 1 + r["norm_every"] * np.arange(len(y)))
            ys.append(y)
        offset += r["steps"]
    if not ys:
        return np.zeros(0, int), np.zeros((0, len(rows[0]["layers"]) if rows else 0))
    return np.concatenate(xs), np.concatenate(ys)


END_STEPS = 10  # measured steps that make "the end" of a run, for the ratio in the title


def end_ratio(rows: Sequence[dict[str, Any]], last: int = END_STEPS
              ) -> tuple[float, str] | None:
    """(layer 1's gradient norm / the last layer's, at the end; what "the end" was): the
    median of the ratio over the last `last` measured steps with finite norms (a mean over
    the run would be the huge first steps'), else over the last epoch's mean norms when no
    step was measured. None when there is no ratio to take."""
    steps, norms = step_norms(rows)
    if norms.ndim == 2 and norms.shape[1] > 1:
        ok = np.all(np.isfinite(norms), axis=1) & (norms[:, -1] > 0)
        steps, norms = steps[ok][-last:], norms[ok][-last:]
        if len(steps):
            span = (f"step {steps[0]}" if len(steps) == 1 else
                    f"the last {len(steps)} measured steps, {steps[0]}-{steps[-1]}")
            return float(np.median(norms[:, 0] / norms[:, -1])), span
    layers = rows[-1]["layers"] if rows else []
    g1, gn = (layers[0]["grad_norm"], layers[-1]["grad_norm"]) if len(layers) > 1 else (0, 0)
    if g1 and gn:
        return g1 / gn, f"the mean over epoch {rows[-1]['epoch']}"
    return None


def _gradient_title(rows: Sequence[dict[str, Any]], verdict: str | None) -> str:
    """The report's finding about the gradients (its first clause says what the picture shows;
    the report has the rest), else layer 1's norm against the last layer's at the end."""
    title = "gradient norm per layer"
    if verdict:
        return title + ":\n" + wrap(verdict.split("; ")[0], 9)  # the plot's width
    ratio = end_ratio(rows)
    return title + (f" (layer 1 / last layer at the end, {ratio[1]}: {ratio[0]:.2g}x)"
                    if ratio else "")


def gradient_norms_figure(rows: Sequence[dict[str, Any]], verdict: str | None = None) -> Any:
    """The figure of `gradient_norms` (see there), not yet saved."""
    fig = figure(11, 4.8)
    ax = fig.add_subplot()
    n_layers = len(rows[0]["layers"]) if rows else 0
    x, norms = step_norms(rows)
    if len(x):
        for i in range(n_layers):
            shape = rows[0]["layers"][i]["shape"]
            ax.plot(x, norms[:, i], lw=0.8, label=f"layer {i + 1} ({shape[0]}x{shape[1]})")
        _mark_epochs_and_blowup(ax, rows)
        every = next((r["norm_every"] for r in rows if r.get("norm_every")), 1)
        ax.set(xlabel=f"training step (norms measured every {every} steps; dotted lines: ends "
                      f"of epochs)")
    else:
        epochs = [r["epoch"] for r in rows]
        for i in range(n_layers):
            ax.plot(epochs, [r["layers"][i]["grad_norm"] or np.nan for r in rows], "o-",
                    label=f"layer {i + 1}")
        ax.set(xlabel="epoch")
    ax.set(yscale="log", ylabel="|dL/d(W, b)| of the layer")
    ax.set_title(_gradient_title(rows, verdict), fontsize=10 if verdict else None)
    ax.grid(alpha=0.3, which="both")
    if n_layers:
        legend_outside(ax)  # beside the curves: inside it covered them
    return fig


def _mark_epochs_and_blowup(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Dotted lines at the ends of epochs; a red line at the first non-finite value, if any,
    named, with the view zoomed on the run-up to it."""
    boundary = 0
    for r in rows:
        if r["steps"]:
            boundary += r["steps"]
            ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    bad = [(r["epoch"], r["first_nonfinite"]) for r in rows if r.get("first_nonfinite")]
    if bad:
        epoch, first = bad[0]
        at = sum(r["steps"] for r in rows if 0 < r["epoch"] < epoch) + first["step"]
        ax.axvline(at, color="red", lw=1.0)
        ax.set_xlim(0, at * 1.5 + 5)  # nothing to see after it: zoom on the run-up
        what = first["quantity"] + (f" of layer {first['layer']}" if first["layer"] else "")
        ax.annotate(f" first non-finite value: {what}, step {at}", (at, 0.95),
                    xycoords=("data", "axes fraction"), color="red", ha="right", va="top",
                    backgroundcolor="white")


def gradient_norms(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
                   verdict: str | None = None) -> None:
    """Per-layer gradient norm over the training steps (those measured), log scale; epochs
    marked, and the first non-finite value if there was one. The title says what the picture
    shows (layer 1's norm against the last layer's over the last steps), or `verdict`, the
    report's finding about the gradients, when there is one. The legend sits beside the plot,
    where it covers no curve."""
    save(gradient_norms_figure(rows, verdict), path)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[t, p] = number of examples of true class t predicted as p."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.clip(np.asarray(y_pred), 0, num_classes - 1)), 1)
    return counts


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> Any:
    """The figure of `confusion_matrix` (see there), not yet saved."""
    counts = confusion_counts(y_true, y_pred, num_classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = figure(6.5, 5.5)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for t in range(num_classes):
        for p in range(num_classes):
            if counts[t, p]:
                ax.text(p, t, str(counts[t, p]), ha="center", va="center",
                        fontsize=7 if num_classes > 5 else 12,  # 2 or 3 classes: room to read
                        color="white" if share[t, p] > 0.5 else "black")
    ax.set(xticks=range(num_classes), yticks=range(num_classes), xlabel="predicted class",
           ylabel="true class",
           title=f"test confusion matrix (accuracy {np.trace(counts) / counts.sum():.2%})")
    fig.colorbar(im, ax=ax, label="share of the true class")
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike,
                     num_classes: int = 10) -> None:
    """Counts per (true, predicted) class; colour by the share of the true class's examples."""
    save(confusion_figure(y_true, y_pred, num_classes), path)


def misclassified_figure(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                         max_images: int = 36) -> tuple[Any, int]:
    """The figure of `misclassified` (see there), not yet saved, and how many are wrong."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    shown = wrong[:max_images]
    cols = 6
    rows = max(1, -(-len(shown) // cols))
    fig = figure(cols * 1.5, rows * 1.7 + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), shown, strict=False):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"true {y_true[i]} / pred {y_pred[i]}", fontsize=8, color="firebrick")
    fig.suptitle(f"misclassified test images: first {len(shown)} of {len(wrong)} "
                 f"(test index order)", fontsize=10)
    return fig, len(wrong)


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                  path: str | os.PathLike, max_images: int = 36) -> int:
    """A grid of the first misclassified test images, titled "true t / pred p". Returns how
    many images are wrong in total."""
    fig, wrong = misclassified_figure(images, y_true, y_pred, max_images)
    save(fig, path)
    return wrong


def predict_test(config: Config, params: Params, dev: DeviceData, hyper: Hyper,
                 chunk: int = 2000) -> np.ndarray:
    """Predicted class of every test example (chunked so memory stays bounded)."""

    @jax.jit
    def predict(params: Params, x: jax.Array) -> jax.Array:
        return predict_labels(mlp_apply(params, scale_inputs(x, hyper), config.activation),
                              config)

    n = dev.x_test.shape[0]
    return np.concatenate([np.asarray(predict(params, dev.x_test[i:i + chunk]))
                           for i in range(0, n, chunk)])


def write_run_plots(out: str | os.PathLike, config: Config, params: Params, dataset: Dataset,
                    dev: DeviceData, hyper: Hyper, history: Sequence[dict[str, Any]],
                    rows: Sequence[dict[str, Any]], verdict: str | None = None) -> list[str]:
    """Write every plot of a run into `out`; returns the file names written. `verdict`: the
    report's finding about the gradients, for the gradient plot's title."""
    out = Path(out)
    written = []
    if history:
        learning_curves(history, out / LEARNING_CURVES, dataset.num_classes)
        written.append(LEARNING_CURVES)
    if rows:
        gradient_norms(rows, out / GRADIENT_NORMS, verdict)
        written.append(GRADIENT_NORMS)
    y_pred = predict_test(config, params, dev, hyper)
    y_true = np.asarray(dataset.y_test)
    confusion_matrix(y_true, y_pred, out / CONFUSION, dataset.num_classes)
    written.append(CONFUSION)
    if dataset.points and dataset.x_train.shape[1] == 2:  # the plane, instead of images
        return written + write_plane_plots(out, config, params, dataset, dev, hyper, y_pred,
                                           len(history))
    if not dataset.points:
        misclassified(np.asarray(dataset.x_test), y_true, y_pred, out / MISCLASSIFIED)
        written.append(MISCLASSIFIED)
    return written


def overfit_figure(loss: Sequence[float | None], accuracy: Sequence[float | None], title: str,
                   num_classes: int = 10) -> Any:
    """The figure of `overfit_curves` (see there), not yet saved."""
    as_array = lambda values: np.asarray([np.nan if v is None else v for v in values], float)
    steps = np.arange(len(loss))
    fig = figure(11, 4.4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    losses = as_array(loss)
    ax_loss.plot(steps, losses, color="tab:blue", lw=1)
    # A log axis only where the loss spans a decade: over a narrower range it only adds clutter.
    note = set_loss_scale(ax_loss, losses, log_from_span=10)
    ax_loss.set(xlabel="full-batch step", ylabel="mean per-example loss",
                title="loss before each step" + (f"\n({note})" if note else ""))
    ax_acc.plot(steps, 100 * as_array(accuracy), color="tab:blue", lw=1)
    ax_acc.axhline(100, color="tab:green", ls=":", lw=1, label="100%: memorised")
    ax_acc.axhline(100 / num_classes, color="grey", ls="--", lw=1,
                   label=f"chance ({100 / num_classes:.0f}%)")
    ax_acc.set(xlabel="full-batch step", ylabel="training accuracy (%)", ylim=(0, 102),
               title="accuracy on the examples being memorised")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    legend_outside(ax_acc)
    fig.suptitle(wrap(title, fig.get_figwidth()), fontsize="medium")
    return fig


def overfit_curves(loss: Sequence[float | None], accuracy: Sequence[float | None],
                   path: str | os.PathLike, title: str, num_classes: int = 10) -> None:
    """`--overfit`: the loss (log scale where it spans a decade; symmetric log where it goes
    to 0 or below) and training accuracy of every full-batch step, with 100% and chance
    drawn, so how far memorising got, and how fast, is one glance."""
    save(overfit_figure(loss, accuracy, title, num_classes), path)


def write_overfit_plots(out: str | os.PathLike, record: dict[str, Any],
                        verdict: str | None = None, num_classes: int = 10) -> list[str]:
    """The plots of an `--overfit` folder from its overfit.json `record`; returns the names."""
    out = Path(out)
    state = ("reached 100%" if record["reached"] else "did NOT reach 100%")
    title = (f"--overfit {record['examples']} ({record['dataset']}): {state} after "
             f"{record['steps']} steps")
    overfit_curves(record["loss"], record["accuracy"], out / OVERFIT_CURVES, title, num_classes)
    written = [OVERFIT_CURVES]
    if record.get("diagnostics"):
        gradient_norms(record["diagnostics"], out / GRADIENT_NORMS, verdict)
        written.append(GRADIENT_NORMS)
    return written
