"""Pictures of a run on 2-D points (the toy sets: spirals, moons, ...), where there are no
images to show: written by `plots.run.write_run_plots` in their place.

- decision_boundary.png: the predicted class over the whole plane, the training points on top;
- decision_boundary_epochs.png: the same at a few epochs from the initialisation to the end, from
  the run re-trained here with the loop's own pieces (seconds for 1,000 points, and only for
  2-D data: nothing is kept during the run, so every run's loop stays as it is);
- first_layer_units.png: what each first-layer unit computes: its output over the plane and the
  line w.x + b = 0 where it switches.
"""

from __future__ import annotations

import functools
import os
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
from jaxmlp.plots.backend import figure, save
from jaxmlp.plots.layout import legend_below, wrap

DECISION_BOUNDARY = "decision_boundary.png"
BOUNDARY_EPOCHS = "decision_boundary_epochs.png"
FIRST_LAYER = "first_layer_units.png"


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
def predict_classes(config: Config, params: Params, x: jax.Array, hyper: Hyper) -> jax.Array:
    """Predicted class of each input row of `x`, on the device (raw inputs, as the data set's;
    the run's scaling is applied): the plane's pictures, and the lab's live one."""
    return predict_labels(mlp_apply(params, scale_inputs(x, hyper), config.activation), config)


def predict_points(config: Config, params: Params, hyper: Hyper, x: np.ndarray) -> np.ndarray:
    """Predicted class of each input row of `x` (raw inputs: the run's scaling is applied)."""
    return np.asarray(predict_classes(config, params, x, hyper))


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


def decision_boundary_figure(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                             y_pred: np.ndarray) -> Any:
    """The figure of `decision_boundary` (see there), not yet saved."""
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    x_test, y_test = np.asarray(dataset.x_test), np.asarray(dataset.y_test)
    wrong = np.flatnonzero(y_pred != y_test)
    fig = figure(6.5, 7)
    ax = fig.add_subplot()
    _draw_plane(ax, config, params, hyper, x, y, dataset.num_classes)
    if wrong.size:
        ax.scatter(*x_test[wrong].T, marker="x", s=30, color="black", linewidths=1,
                   label=f"test points predicted wrong ({wrong.size})")
    # Below the plane, where it hides no point.
    legend_below(ax, ncol=dataset.num_classes + 1, handletextpad=0.2, columnspacing=1.0)
    ax.set_title(f"{dataset.name}: predicted class over the plane, training points on top\n"
                 f"test accuracy {1 - wrong.size / len(y_test):.1%} ({len(y_test)} test points; "
                 f"network 2-{'-'.join(map(str, config.hidden))}"
                 f"{'-' if config.hidden else ''}{dataset.num_classes})", fontsize=10)
    ax.set(xlabel="x1", ylabel="x2")
    return fig


def decision_boundary(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                      y_pred: np.ndarray, path: str | os.PathLike) -> None:
    """The predicted class over the plane with the training points on top; the test points
    the network gets wrong are crosses, and the title gives the test accuracy."""
    save(decision_boundary_figure(config, params, hyper, dataset, y_pred), path)


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


def boundary_epochs_figure(config: Config, snapshots: dict[int, Params], hyper: Hyper,
                           dataset: Dataset) -> Any:
    """The figure of `boundary_epochs` (see there), not yet saved."""
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    y_test = np.asarray(dataset.y_test)
    fig = figure(max(2.6 * len(snapshots), 5.5), 3.9)
    axes = fig.subplots(1, len(snapshots), squeeze=False)
    for ax, (e, params) in zip(axes[0], sorted(snapshots.items()), strict=True):
        _draw_plane(ax, config, params, hyper, x, y, dataset.num_classes, size=3)
        acc = np.mean(predict_points(config, params, hyper, np.asarray(dataset.x_test))
                      == y_test)
        ax.set_title(f"{'initial' if e == 0 else f'epoch {e}'}: test {acc:.1%}", fontsize=9)
        ax.set(xticks=[], yticks=[])
    # Which colour is which class, once for the strip: points strong, regions light.
    fig.legend(handles=_class_handles(dataset.num_classes), loc="outside lower center",
               ncol=dataset.num_classes, fontsize="small", handletextpad=0.3,
               columnspacing=1.0)
    fig.suptitle(wrap(f"{dataset.name}: the decision boundary as the network learns "
                      f"({config.epochs} epochs of {len(y) // config.batch_size} steps)",
                      fig.get_figwidth()), fontsize=10)
    return fig


def _class_handles(num_classes: int) -> list[Any]:
    """Legend entries for each class: its points, and the region predicted as it, one class
    after the other (a legend of one column per class shows them one above the other)."""
    from matplotlib.lines import Line2D  # here: importing plots loads no matplotlib
    from matplotlib.patches import Patch

    cmap, _ = _class_map(num_classes)
    points = [Line2D([], [], ls="", marker="o", markersize=5, markeredgecolor="white",
                     color=_CLASS_COLOURS[k % len(_CLASS_COLOURS)], label=f"class {k} points")
              for k in range(num_classes)]
    regions = [Patch(color=cmap(k), label=f"predicted {k}") for k in range(num_classes)]
    return [h for pair in zip(points, regions, strict=True) for h in pair]


def boundary_epochs(config: Config, snapshots: dict[int, Params], hyper: Hyper,
                    dataset: Dataset, path: str | os.PathLike) -> None:
    """A strip of decision boundaries, one per epoch in `snapshots`, each titled with its
    test accuracy: the network learning, from its first guess to the end; a legend says
    which colour is which class."""
    save(boundary_epochs_figure(config, snapshots, hyper, dataset), path)


def first_layer_units_figure(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                             max_units: int = 32) -> tuple[Any, int]:
    """The figure of `first_layer_units` (see there), not yet saved, and the units drawn."""
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    # The unit sees scaled inputs x * s + t: w.(x s + t) + b = (s w).x + (b + t sum(w)).
    scale, shift = float(hyper.input_scale), float(hyper.input_shift)
    w = np.asarray(params[0]["w"], np.float64) * scale
    b = np.asarray(params[0]["b"], np.float64) + shift * np.asarray(params[0]["w"]).sum(axis=0)
    units = min(w.shape[1], max_units)
    cols = min(units, 8)
    rows = -(-units // cols)
    xs, ys, grid = plane_grid(x, steps=100)  # a half-plane each: coarse is enough
    fig = figure(1.9 * cols, 1.95 * rows + 1.0)
    axes = fig.subplots(rows, cols, squeeze=False)
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
    fig.suptitle(wrap(f"{dataset.name}: what each first-layer unit computes ({shown}): "
                      f"{config.activation}(w.x + b) over the plane (dark: large, each on its "
                      f"own scale); red line: w.x + b = 0, arrow: w, towards the side where "
                      f"w.x + b > 0; title: the share of training points on that side",
                      fig.get_figwidth(), 9), fontsize=9)
    return fig, units


def first_layer_units(config: Config, params: Params, hyper: Hyper, dataset: Dataset,
                      path: str | os.PathLike, max_units: int = 32) -> int:
    """One panel per first-layer unit (the first `max_units`): its output act(w.x + b) over
    the plane (dark: large), the line w.x + b = 0 where it switches, an arrow along w towards
    the side where w.x + b > 0, and the share of training points on that side (a unit with 0%
    on the positive side is dead on this data under relu). Returns the units drawn."""
    fig, units = first_layer_units_figure(config, params, hyper, dataset, max_units)
    save(fig, path)
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
