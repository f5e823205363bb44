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
import textwrap
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
from jaxmlp.plots.backend import pyplot as _pyplot
from jaxmlp.plots.plane import write_plane_plots

LEARNING_CURVES = "learning_curves.png"
GRADIENT_NORMS = "gradient_norms.png"
CONFUSION = "confusion_matrix.png"
OVERFIT_CURVES = "overfit_curves.png"
MISCLASSIFIED = "misclassified.png"


def learning_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike,
                    num_classes: int = 10) -> None:
    """Training loss at every step (log scale) with the test loss at the end of each epoch on
    top; accuracy on a 0..100% axis with the chance level drawn, so a run stuck at chance
    looks stuck. The x axis is in epochs (step / steps per epoch), so a one-epoch run is a
    curve, not a dot."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]

    def series(key: str) -> np.ndarray:
        return np.asarray([np.nan if h.get(key) is None else h[key] for h in history], float)

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for h in history:
        steps = np.asarray([np.nan if v is None else v for v in h.get("step_loss") or []], float)
        if steps.size:
            x = h["epoch"] - 1 + (np.arange(steps.size) + 1) / steps.size
            ax_loss.plot(x, steps, lw=0.6, color="tab:blue", alpha=0.8,
                         label="train, every step" if h is history[0] else None)
    ax_loss.plot(epochs, series("train_loss"), "o", color="tab:blue", mfc="white",
                 label="train, mean over the epoch")
    ax_loss.plot(epochs, series("test_loss"), "s", color="tab:orange",
                 label="test, end of epoch")
    ax_loss.set(xlabel="epoch", ylabel="mean per-example loss", yscale="log", title="loss")
    ax_acc.plot(epochs, 100 * series("train_accuracy"), "o-", color="tab:blue",
                label="train (mean over the epoch's steps: lags the test point early on)")
    ax_acc.plot(epochs, 100 * series("test_accuracy"), "s-", color="tab:orange",
                label="test (end of epoch)")
    ax_acc.axhline(100 / num_classes, color="grey", ls="--", lw=1,
                   label=f"chance ({100 / num_classes:.0f}%: guessing among {num_classes})")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_xlim(0, max(epochs, default=1) + 0.1)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _gradient_title(rows: Sequence[dict[str, Any]], verdict: str | None) -> str:
    """The report's finding about the gradients (its first clause says what the picture shows;
    the report has the rest), else layer 1's norm against the last layer's at the end."""
    title = "gradient norm per layer"
    if verdict:
        return title + ":\n" + "\n".join(textwrap.wrap(verdict.split("; ")[0], 110))
    last = rows[-1]["layers"] if rows else []
    g1, gn = (last[0]["grad_norm"], last[-1]["grad_norm"]) if last else (None, None)
    return title + (f" (layer 1 / last layer at the end: {g1 / gn:.2g}x)" if g1 and gn else "")


def gradient_norms(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
                   verdict: str | None = None) -> None:
    """Per-layer gradient norm over the training steps (those measured), log scale; epochs
    marked, and the first non-finite value if there was one. The title says what the picture
    shows (layer 1's norm against the last layer's at the end), or `verdict`, the report's
    finding about the gradients, when there is one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    n_layers = len(rows[0]["layers"]) if rows else 0
    xs, ys, offset = [], [], 0
    for r in rows:
        if r["step_grad_norm"]:
            # Norms are measured on steps 1, 1 + k, 1 + 2k, ... of each epoch (k = norm_every).
            y = np.asarray(r["step_grad_norm"], dtype=float)  # null (non-finite) -> nan
            xs.append(offset + 1 + r["norm_every"] * np.arange(len(y)))
            ys.append(y)
        offset += r["steps"]
    if ys:
        x, norms = np.concatenate(xs), np.concatenate(ys)
        for i in range(n_layers):
            shape = rows[0]["layers"][i]["shape"]
            ax.plot(x, norms[:, i], lw=0.8, label=f"layer {i + 1} ({shape[0]}x{shape[1]})")
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
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[t, p] = number of examples of true class t predicted as p."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.clip(np.asarray(y_pred), 0, num_classes - 1)), 1)
    return counts


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike,
                     num_classes: int = 10) -> None:
    """Counts per (true, predicted) class; colour by the share of the true class's examples."""
    plt = _pyplot()
    counts = confusion_counts(y_true, y_pred, num_classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                  path: str | os.PathLike, max_images: int = 36) -> int:
    """A grid of the first misclassified test images, titled "true t / pred p". Returns how
    many images are wrong in total."""
    plt = _pyplot()
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    shown = wrong[:max_images]
    cols = 6
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.7 + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), shown, strict=False):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"true {y_true[i]} / pred {y_pred[i]}", fontsize=8, color="firebrick")
    fig.suptitle(f"misclassified test images: first {len(shown)} of {len(wrong)} "
                 f"(test index order)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return len(wrong)


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


def overfit_curves(loss: Sequence[float | None], accuracy: Sequence[float | None],
                   path: str | os.PathLike, title: str, num_classes: int = 10) -> None:
    """`--overfit`: the loss (log scale) and training accuracy of every full-batch step, with
    100% and chance drawn, so how far memorising got, and how fast, is one glance."""
    plt = _pyplot()
    as_array = lambda values: np.asarray([np.nan if v is None else v for v in values], float)
    steps = np.arange(len(loss))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    losses = as_array(loss)
    ax_loss.plot(steps, losses, color="tab:blue", lw=1)
    finite = losses[np.isfinite(losses) & (losses > 0)]
    # A log axis only where the loss spans a decade: over a narrower range it only adds clutter.
    spans = finite.size > 1 and finite.max() > 10 * finite.min()
    ax_loss.set(xlabel="full-batch step", ylabel="mean per-example loss",
                yscale="log" if spans else "linear", title="loss before each step")
    ax_acc.plot(steps, 100 * as_array(accuracy), color="tab:blue", lw=1)
    ax_acc.axhline(100, color="tab:green", ls=":", lw=1, label="100%: memorised")
    ax_acc.axhline(100 / num_classes, color="grey", ls="--", lw=1,
                   label=f"chance ({100 / num_classes:.0f}%)")
    ax_acc.set(xlabel="full-batch step", ylabel="training accuracy (%)", ylim=(0, 102),
               title="accuracy on the examples being memorised")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize="small", loc="lower right")
    fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
