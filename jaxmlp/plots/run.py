"""Pictures of one run (`python -m jaxmlp.train --plots`, or `python -m jaxmlp.plots RUN_DIR`).

- learning_curves.png: training and test loss and accuracy per epoch;
- gradient_norms.png: each layer's gradient norm at every step (from diagnostics.jsonl), on a
  log scale, so vanishing (layer 1 orders of magnitude below the last) or exploding gradients
  and spikes before a divergence show at a glance;
- confusion_matrix.png: test examples by true and predicted class;
- misclassified.png: test images the network got wrong, with true and predicted labels.

For a data set of 2-D points (the toy sets: spirals, moons, ...) there are no images to show;
instead:

- decision_boundary.png: the predicted class over the whole plane, the training points on top;
- decision_boundary_epochs.png: the same at a few epochs from the initialisation to the end, from
  the run re-trained here with the loop's own pieces (seconds for 1,000 points, and only for
  2-D data: nothing is kept during the run, so every run's loop stays as it is);
- first_layer_units.png: what each first-layer unit computes: its output over the plane and the
  line w.x + b = 0 where it switches.

matplotlib's Agg backend renders straight to files: no display needed (CI, ssh).
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmlp.config import Config
from jaxmlp.data import Dataset
from jaxmlp.loop import DeviceData, Hyper, initial_state, make_epoch, scale_inputs
from jaxmlp.losses import predict_labels
from jaxmlp.model import ACTIVATIONS, Params, mlp_apply

LEARNING_CURVES = "learning_curves.png"
GRADIENT_NORMS = "gradient_norms.png"
CONFUSION = "confusion_matrix.png"
OVERFIT_CURVES = "overfit_curves.png"
MISCLASSIFIED = "misclassified.png"
DECISION_BOUNDARY = "decision_boundary.png"
BOUNDARY_EPOCHS = "decision_boundary_epochs.png"
FIRST_LAYER = "first_layer_units.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never try to open a window
    import matplotlib.pyplot as plt

    return plt


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


# --- 2-D data: the plane itself ---------------------------------------------------------------

# Class colours: strong for points, the same hues light for the regions they are predicted in.
_CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def plane_grid(x: np.ndarray, steps: int = 200, margin: float = 0.15
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, points): a `steps` x `steps` grid over the points' bounding box widened by
    `margin` of its size on each side; `points` (steps*steps, 2) float32, row by row."""
    low, high = x.min(axis=0), x.max(axis=0)
    pad = margin * (high - low)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], steps)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], steps)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


# One compiled program per configuration and input shape (the plane's grid, the test points):
# run op by op, the forward pass would compile each of its operations separately.
@functools.partial(jax.jit, static_argnums=0)
def _predict(config: Config, params: Params, x: jax.Array, hyper: Hyper) -> jax.Array:
    return predict_labels(mlp_apply(params, scale_inputs(x, hyper), config.activation), config)


def predict_points(config: Config, params: Params, hyper: Hyper, x: np.ndarray) -> np.ndarray:
    """Predicted class of each input row of `x` (raw inputs: the run's scaling is applied)."""
    return np.asarray(_predict(config, params, x, hyper))


def _image(ax: Any, values: np.ndarray, xs: np.ndarray, ys: np.ndarray, **kw: Any) -> None:
    """`values` on the grid `xs` x `ys` (rows: ys) as an image: far faster than pcolormesh."""
    ax.imshow(values, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
              interpolation="nearest", aspect="auto", **kw)


def _class_map(num_classes: int) -> tuple[Any, Any]:
    """(colormap, norm) colouring class k with the light version of `_CLASS_COLOURS[k]`."""
    from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb

    light = [tuple(0.65 + 0.35 * c for c in to_rgb(_CLASS_COLOURS[k % len(_CLASS_COLOURS)]))
             for k in range(num_classes)]
    return ListedColormap(light), BoundaryNorm(np.arange(num_classes + 1) - 0.5, num_classes)


def _draw_plane(ax: Any, config: Config, params: Params, hyper: Hyper, x: np.ndarray,
                y: np.ndarray, num_classes: int, size: float = 12) -> None:
    """The predicted class over the plane around `x`, and the points `x` coloured by `y`."""
    xs, ys, grid = plane_grid(x)
    # Integer targets can predict a class past the last; shown as the last, as the report does.
    pred = np.clip(predict_points(config, params, hyper, grid), 0, num_classes - 1)
    cmap, norm = _class_map(num_classes)
    _image(ax, pred.reshape(len(ys), len(xs)), xs, ys, cmap=cmap, norm=norm)
    for k in range(num_classes):
        ax.scatter(*x[y == k].T, s=size, color=_CLASS_COLOURS[k % len(_CLASS_COLOURS)],
                   edgecolors="white", linewidths=0.3, label=f"class {k}")
    ax.set(xlim=(xs[0], xs[-1]), ylim=(ys[0], ys[-1]), aspect="equal")


def decision_boundary(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                      y_pred: np.ndarray, path: str | os.PathLike) -> None:
    """The predicted class over the plane with the training points on top; the test points
    the network gets wrong are crosses, and the title gives the test accuracy."""
    plt = _pyplot()
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    x_test, y_test = np.asarray(dataset.x_test), np.asarray(dataset.y_test)
    wrong = np.flatnonzero(y_pred != y_test)
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    _draw_plane(ax, config, params, hyper, x, y, dataset.num_classes)
    if wrong.size:
        ax.scatter(*x_test[wrong].T, marker="x", s=30, color="black", linewidths=1,
                   label=f"test points predicted wrong ({wrong.size})")
    # Below the plane, where it hides no point.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1),
              ncol=dataset.num_classes + 1, handletextpad=0.2, columnspacing=1.0)
    ax.set_title(f"{dataset.name}: predicted class over the plane, training points on top\n"
                 f"test accuracy {1 - wrong.size / len(y_test):.1%} ({len(y_test)} test points; "
                 f"network 2-{'-'.join(map(str, config.hidden))}"
                 f"{'-' if config.hidden else ''}{dataset.num_classes})", fontsize=10)
    ax.set(xlabel="x1", ylabel="x2")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def strip_epochs(epochs: int, panels: int = 6) -> list[int]:
    """Epochs to draw: 0 (the initialisation), then up to `panels - 1` spaced geometrically to
    `epochs` (most of the change comes early)."""
    later = np.unique(np.round(np.geomspace(1, max(epochs, 1), panels - 1)).astype(int))
    return [0, *(int(e) for e in later if e <= epochs)]


def params_after_epochs(config: Config, dev: DeviceData, hyper: Hyper, num_classes: int,
                        epochs: Sequence[int]) -> dict[int, Params]:
    """The parameters after each epoch in `epochs` (0: the initial ones), re-trained from the
    run's seed with the loop's own pieces: the same keys, batches and steps, so the same
    numbers the run reached (the tests hold the last against the run's checkpoint)."""
    state, data_key, tx = initial_state(jax.random.key(config.seed), config, dev, hyper,
                                        num_classes)
    epoch = jax.jit(make_epoch(config, tx))
    kept = {0: jax.device_get(state.params)} if 0 in epochs else {}
    for e in range(max(epochs, default=0)):
        state, _ = epoch(state, dev, hyper, jax.random.fold_in(data_key, e))
        if e + 1 in epochs:
            kept[e + 1] = jax.device_get(state.params)
    return kept


def boundary_epochs(config: Config, snapshots: dict[int, Params], hyper: Hyper,
                    dataset: Dataset, path: str | os.PathLike) -> None:
    """A strip of decision boundaries, one per epoch in `snapshots`, each titled with its
    test accuracy: the network learning, from its first guess to the end."""
    plt = _pyplot()
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    y_test = np.asarray(dataset.y_test)
    fig, axes = plt.subplots(1, len(snapshots), figsize=(2.6 * len(snapshots), 3),
                             squeeze=False)
    for ax, (e, params) in zip(axes[0], sorted(snapshots.items()), strict=True):
        _draw_plane(ax, config, params, hyper, x, y, dataset.num_classes, size=3)
        acc = np.mean(predict_points(config, params, hyper, np.asarray(dataset.x_test))
                      == y_test)
        ax.set_title(f"{'initial' if e == 0 else f'epoch {e}'}: test {acc:.1%}", fontsize=9)
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"{dataset.name}: the decision boundary as the network learns "
                 f"({config.epochs} epochs of {len(y) // config.batch_size} steps)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def first_layer_units(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                      path: str | os.PathLike, max_units: int = 32) -> int:
    """One panel per first-layer unit (the first `max_units`): its output act(w.x + b) over
    the plane (dark: large), the line w.x + b = 0 where it switches, an arrow along w towards
    the side where w.x + b > 0, and the share of training points on that side (a unit with 0%
    on the positive side is dead on this data under relu). Returns the units drawn."""
    plt = _pyplot()
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    # The unit sees scaled inputs x * s + t: w.(x s + t) + b = (s w).x + (b + t sum(w)).
    scale, shift = float(hyper.input_scale), float(hyper.input_shift)
    w = np.asarray(params[0]["w"], np.float64) * scale
    b = np.asarray(params[0]["b"], np.float64) + shift * np.asarray(params[0]["w"]).sum(axis=0)
    units = min(w.shape[1], max_units)
    cols = min(units, 8)
    rows = -(-units // cols)
    xs, ys, grid = plane_grid(x, steps=100)  # a half-plane each: coarse is enough
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.95 * rows + 0.9),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    act = ACTIVATIONS[config.activation]
    centre = (xs.mean(), ys.mean())
    for j, ax in enumerate(axes.ravel()[:units]):
        ax.axis("on")
        pre = grid @ w[:, j] + b[j]
        _image(ax, np.asarray(act(pre)).reshape(len(ys), len(xs)), xs, ys, cmap="Greys")
        for k in range(dataset.num_classes):
            ax.scatter(*x[y == k][:150].T, s=1.5, color=_CLASS_COLOURS[k % len(_CLASS_COLOURS)])
        _unit_line(ax, w[:, j], b[j], xs, ys, centre)
        positive = np.mean(x @ w[:, j] + b[j] > 0)
        ax.set_title(f"unit {j + 1}: {positive:.0%} on + side", fontsize=8)
        ax.set(xlim=(xs[0], xs[-1]), ylim=(ys[0], ys[-1]), aspect="equal", xticks=[],
               yticks=[])
    shown = f"all {units}" if units == w.shape[1] else f"the first {units} of {w.shape[1]}"
    fig.suptitle(f"{dataset.name}: what each first-layer unit computes ({shown}): "
                 f"{config.activation}(w.x + b) over the plane (dark: large, each on its own "
                 f"scale); red line: w.x + b = 0,\narrow: w, towards the side where w.x + b > 0; "
                 f"title: the share of training points on that side", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return units


def _unit_line(ax: Any, w: np.ndarray, b: float, xs: np.ndarray, ys: np.ndarray,
               centre: tuple[float, float]) -> None:
    """The line w.x + b = 0 across the panel, and an arrow along w from its point nearest the
    panel's centre (the line may lie outside the panel: then only the shading shows)."""
    norm = float(np.hypot(*w))
    if norm == 0.0:
        return
    c = np.asarray(centre)
    foot = c - (w @ c + b) / norm**2 * w  # the point of the line nearest the centre
    along = np.array([-w[1], w[0]]) / norm
    span = 2 * max(xs[-1] - xs[0], ys[-1] - ys[0])
    ends = np.stack([foot - span * along, foot + span * along])
    ax.plot(ends[:, 0], ends[:, 1], color="red", lw=1)
    length = 0.15 * min(xs[-1] - xs[0], ys[-1] - ys[0])
    ax.annotate("", xy=foot + length * w / norm, xytext=foot,
                arrowprops={"arrowstyle": "->", "color": "red", "lw": 1})


def write_plane_plots(out: Path, config: Config, params: Params, dataset: Dataset,
                      dev: DeviceData, hyper: Hyper, y_pred: np.ndarray, epochs_done: int
                      ) -> list[str]:
    """The pictures of a run on 2-D points; returns the file names written."""
    decision_boundary(config, params, hyper, dataset, y_pred, out / DECISION_BOUNDARY)
    written = [DECISION_BOUNDARY]
    if epochs_done:
        snapshots = params_after_epochs(config, dev, hyper, dataset.num_classes,
                                        strip_epochs(epochs_done))
        boundary_epochs(config, snapshots, hyper, dataset, out / BOUNDARY_EPOCHS)
        written.append(BOUNDARY_EPOCHS)
    if config.hidden:  # without a hidden layer the first layer is the output layer
        first_layer_units(config, params, hyper, dataset, out / FIRST_LAYER)
        written.append(FIRST_LAYER)
    return written


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
