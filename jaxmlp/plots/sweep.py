"""Plots of a sweep, with matplotlib's Agg backend (files only, no display needed).

Two figures, both read straight from the per-run results:

- `curves.png`: per variant, the mean learning curve across seeds with a band from the lowest to
  the highest seed, for the training loss (log scale; symmetric log where a loss goes to 0 or
  below) and the test accuracy; many variants become small multiples (a panel pair per value
  of one setting, or per run of consecutive variants where that would leave one line a
  panel; wrapped into rows at most MAX_WIDTH_PX wide), each line named at its end
  (names moved apart where they would overlap, a legend beside the panel where they do not
  fit), in a palette that colour-blind readers can tell apart;
- `final_accuracy.png`: per variant, every seed's final test accuracy as a dot, the mean, and
  its 95% bootstrap confidence interval.

`plot_metric_vs` draws one measurement against a setting (the experiments' own pictures).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp.config import Config
from jaxmlp.losses import num_outputs
from jaxmlp.plots import layout
from jaxmlp.plots.backend import figure, pyplot, save
from jaxmlp.stats import bootstrap_ci

DPI = 120
# The widest a sweep picture gets: more panels than fit wrap into further rows.
MAX_WIDTH_PX = 1600
MAX_WIDTH = MAX_WIDTH_PX / DPI  # inches

# Okabe & Ito's palette: eight colours told apart with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
# At most this many lines share one panel of curves.png; more variants become small multiples.
LINES_PER_PANEL = 6


# More series than this in plot_metric_vs get a panel each.
SMALL_MULTIPLES = 4


def _colors(n: int) -> list:
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    cmap = pyplot().get_cmap("viridis")  # ordered and colour-blind safe, for long series
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _last_finite(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """The last point of a line with a finite y (where a name goes), None if there is none."""
    ok = np.flatnonzero(np.isfinite(y))
    return (float(x[ok[-1]]), float(y[ok[-1]])) if ok.size else None


def _curve_panel(ax_loss: Any, ax_acc: Any, names: Sequence[str], loss: Sequence[np.ndarray],
                 acc: Sequence[np.ndarray]) -> list[tuple[Any, list[Any]]]:
    """One panel pair of curves.png: a line per variant with its min..max band over seeds,
    named at its end (direct labels, no legend to match colours against). Returns each axes
    with its labels, for `layout.place_labels`."""
    ends: dict[Any, list] = {ax_loss: [], ax_acc: []}
    for name, color, lv, av in zip(names, _colors(len(names)), loss, acc, strict=True):
        epochs = np.arange(1, lv.shape[1] + 1)
        for ax, curves in ((ax_loss, lv), (ax_acc, av)):
            mean, lo, hi = _band(curves)
            ax.plot(epochs, mean, color=color, marker="o", markersize=3)
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.18, linewidth=0)
            end = _last_finite(epochs, mean)
            if end is not None:
                ends[ax].append((name, color, *end))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(pyplot().MaxNLocator(integer=True))
    return [(ax, layout.label_ends(ax, e)) for ax, e in ends.items()]


def _band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds (axis 0), ignoring non-finite values (diverged runs)."""
    x = np.where(np.isfinite(curves), curves, np.nan)
    with warnings.catch_warnings():  # an epoch where every seed is NaN: leave a gap, quietly
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(x, axis=0), np.nanmin(x, axis=0), np.nanmax(x, axis=0)


def _label_width(labels: Sequence[str]) -> float:
    """Inches the longest line name needs beside a panel (an estimate: the layout measures)."""
    return 0.25 + 0.56 * layout.LABEL_SIZE / 72 * max((len(s) for s in labels), default=0)


LOSS_LABEL = "train loss (mean per example)"


def loss_on_one_scale(configs: Sequence[Config], num_classes: Sequence[int]
                      ) -> tuple[list[float], str]:
    """(a factor per variant, the loss axis's label) putting every variant's training loss
    on one scale (`num_classes[v]`: variant v's data set's). A run's loss is per example,
    averaged or summed over the classes as its --class-reduction says, so a class-mean run
    reads K times (K outputs) below a class-sum run with the same parameters; when a sweep
    holds both, class-mean losses are multiplied by K and the label says so."""
    reductions = {c.class_reduction for c in configs}
    if len(reductions) < 2:
        return [1.0] * len(configs), LOSS_LABEL
    factors = [float(num_outputs(c, k)) if c.class_reduction == "mean" else 1.0
               for c, k in zip(configs, num_classes, strict=True)]
    k = "/".join(f"{f:g}" for f in sorted(set(factors) - {1.0}))
    return factors, f"train loss per example, summed over classes (class-mean runs x{k})"


def curves_figure(
    names: Sequence[str],
    train_loss: Sequence[np.ndarray],
    test_accuracy: Sequence[np.ndarray],
    title: str,
    panels: Sequence[str] | None = None,
    loss_label: str = LOSS_LABEL,
) -> Any:
    """The figure of `plot_curves` (see there), not yet saved."""
    groups = list(dict.fromkeys(panels)) if panels else [None]
    members = [[i for i in range(len(names)) if panels is None or panels[i] == g]
               for g in groups]
    short = [[", ".join(p for p in names[i].split(", ") if p != g) or names[i] for i in m]
             for g, m in zip(groups, members, strict=True)]
    # As many columns as fit MAX_WIDTH, each a plot plus the names beside it; then more rows.
    panel_w = 2.6 + _label_width([s for col in short for s in col])
    cols = max(1, min(len(groups), int((MAX_WIDTH - 0.9) // panel_w)))
    rows = math.ceil(len(groups) / cols)
    panel_h = max(2.0, 0.16 * max(len(m) for m in members) + 0.6)  # room for every name
    fig = figure(min(MAX_WIDTH, 0.9 + cols * panel_w), 2 * rows * panel_h + 0.9)
    grid = fig.add_gridspec(2 * rows, cols)
    labelled, lowest = [], {}
    first_loss = first_acc = None
    for k, (group, m, s) in enumerate(zip(groups, members, short, strict=True)):
        r, c = divmod(k, cols)
        ax_loss = fig.add_subplot(grid[2 * r, c], sharex=first_loss, sharey=first_loss)
        first_loss = first_loss or ax_loss  # every panel shares its epochs and loss axis
        ax_acc = fig.add_subplot(grid[2 * r + 1, c], sharex=first_loss, sharey=first_acc)
        first_acc = first_acc or ax_acc
        labelled += _curve_panel(ax_loss, ax_acc, s, [train_loss[i] for i in m],
                                 [test_accuracy[i] for i in m])
        ax_loss.set_title(group or "training loss: mean, band = min..max over seeds",
                          fontsize=9)
        ax_loss.tick_params(labelbottom=False)
        if c:
            ax_loss.tick_params(labelleft=False)
            ax_acc.tick_params(labelleft=False)
        else:
            ax_loss.set_ylabel(layout.wrap(loss_label, panel_h - 0.3, 8), fontsize=8)
            ax_acc.set_ylabel("test accuracy", fontsize=8)
        lowest[c] = ax_acc
    for ax in lowest.values():
        ax.set_xlabel("epoch")
    note = layout.set_loss_scale(first_loss, np.concatenate([np.ravel(v) for v in train_loss]))
    epochs = max(v.shape[1] for v in train_loss)
    if epochs <= 3:  # a dot or two per line: keep them off the panel's edges
        first_loss.set_xlim(0.6, epochs + 0.4)
    fig.suptitle(layout.wrap(title + ("" if panels is None else
                                      "\n(small multiples; band = min..max over seeds)")
                             + (f"\nloss axis: {note}" if note else ""), fig.get_figwidth()),
                 fontsize="medium")
    layout.place_labels(fig, labelled)
    return fig


def plot_curves(
    path: Path,
    names: Sequence[str],
    train_loss: Sequence[np.ndarray],
    test_accuracy: Sequence[np.ndarray],
    title: str,
    panels: Sequence[str] | None = None,
    loss_label: str = LOSS_LABEL,
) -> None:
    """`train_loss[v]` and `test_accuracy[v]` are (seeds, epochs) arrays for variant v. With
    `panels` (a label per variant, see `panels_by`), one panel pair per label: small multiples
    instead of many lines in one panel, wrapped into rows at most MAX_WIDTH_PX wide. Within
    a panel a line is named by what is left of its variant's name. A loss that goes to 0 or
    below is drawn on a symmetric log axis (said in the title). `loss_label` says what the
    loss axis holds (the losses must be on that one scale)."""
    save(curves_figure(names, train_loss, test_accuracy, title, panels, loss_label), path,
         DPI)


def final_figure(names: Sequence[str], final_accuracy: Sequence[np.ndarray], title: str
                 ) -> Any:
    """The figure of `plot_final` (see there), not yet saved."""
    n = len(names)
    fig = figure(8, 1.1 + 0.38 * n)
    ax = fig.add_subplot()
    ys = np.arange(n)[::-1]
    for y, values, color in zip(ys, final_accuracy, _colors(n), strict=True):
        v = np.asarray(values, dtype=float)
        jitter = np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.zeros(1)
        ax.scatter(v, y + jitter, s=12, color=color, alpha=0.6, zorder=2)
        mean = float(np.mean(v))
        lo, hi = bootstrap_ci(v)
        if np.isfinite(lo):
            ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="none", ecolor="black",
                        capsize=4, zorder=3)
        ax.plot([mean], [y], marker="|", markersize=16, color="black", zorder=4)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set(xlabel="final test accuracy (dots: seeds; bar: mean with 95% bootstrap CI)",
           title=layout.wrap(title, 6))  # the plot's width, left of the names
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_final(
    path: Path,
    names: Sequence[str],
    final_accuracy: Sequence[np.ndarray],
    title: str,
) -> None:
    """Each seed's final test accuracy (dots), the mean (bar) and its 95% bootstrap interval."""
    save(final_figure(names, final_accuracy, title), path, DPI)


CENTERS = {
    "mean": "mean, band: its 95% bootstrap CI over seeds",
    "median": "median, band: min..max over seeds",
}


def metric_figure(x: Sequence[float], series: dict[str, Sequence[np.ndarray]], *, xlabel: str,
                  ylabel: str, title: str, logx: bool = True, logy: bool = False,
                  center: str = "mean") -> Any:
    """The figure of `plot_metric_vs` (see there), not yet saved."""
    names = list(series)
    summaries = {name: _center_and_band(values, center) for name, values in series.items()}
    positive = any(bool(np.any(np.asarray(m) > 0)) for m, _, _ in summaries.values())
    many = len(names) > SMALL_MULTIPLES
    cols = min(4, len(names)) if many else 1
    rows = -(-len(names) // cols) if many else 1
    fig = figure(*((7.5, 4.8) if not many else (3.2 * cols, 2.4 * rows + 1.0)))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    colors = _colors(len(names))
    for k, ax in enumerate(axes.flat):
        if many and k >= len(names):
            ax.remove()
            continue
        shown = [names[k]] if many else names
        for name in names if many else ():
            ax.plot(x, summaries[name][0], color="0.85", lw=1, zorder=1)
        for name in shown:
            middle, los, his = summaries[name]
            color = colors[names.index(name)]
            ax.plot(x, middle, marker="o", markersize=4, color=color, label=name, zorder=3)
            ax.fill_between(x, los, his, color=color, alpha=0.2, linewidth=0, zorder=2)
        if many:
            ax.set_title(names[k], fontsize=9)
        if logx:
            ax.set_xscale("log")
            ax.set_xlim(min(x) / 1.5, max(x) * 1.5)  # explicit: all-NaN series set no limits
            # Decades only: the minor ticks of a log axis were most of the drawing time of
            # small multiples (8 panels: 1.9 s with them, 0.8 s without).
            ax.xaxis.set_minor_locator(pyplot().NullLocator())
        if logy and positive:  # a log axis needs something above 0 to show
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if many:  # once for the whole grid: one label per row would print over its neighbours
        fig.supxlabel(xlabel, fontsize="medium")
        fig.supylabel(ylabel, fontsize="medium")
    else:
        axes[0, 0].set(xlabel=xlabel, ylabel=ylabel)
        layout.legend_outside(axes[0, 0], fontsize=8)
    fig.suptitle(layout.wrap(title + (f"\n(one panel per series, the others in grey; "
                                      f"{CENTERS[center]})" if many else
                                      f"\n({CENTERS[center]})"), fig.get_figwidth()),
                 fontsize="medium")
    return fig


def plot_metric_vs(
    path: Path,
    x: Sequence[float],
    series: dict[str, Sequence[np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = True,
    logy: bool = False,
    center: str = "mean",
) -> None:
    """At each x, the mean over seeds with its 95% bootstrap interval, or (`center="median"`)
    the median with the seeds' range; non-finite seeds are left out. `series[name][i]` holds
    the seeds' values at `x[i]`. Up to `SMALL_MULTIPLES` series share one panel; more get one
    panel each (the others in grey behind it, same axes), since lines that coincide, as many
    do at 0, would otherwise hide each other."""
    save(metric_figure(x, series, xlabel=xlabel, ylabel=ylabel, title=title, logx=logx,
                       logy=logy, center=center), path, DPI)


def _center_and_band(values: Sequence[np.ndarray], center: str) -> tuple[list, list, list]:
    """Per x, over the finite seeds' values: the mean and its bootstrap interval, or the
    median and the range (the centre alone where the band is undefined)."""
    if center not in CENTERS:
        raise ValueError(f"unknown center {center!r}; choose one of {', '.join(CENTERS)}")
    middles, los, his = [], [], []
    for v in values:
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if not v.size:
            middles.append(np.nan)
            los.append(np.nan)
            his.append(np.nan)
            continue
        if center == "median":
            middles.append(float(np.median(v)))
            lo, hi = float(v.min()), float(v.max())
        else:
            middles.append(float(v.mean()))
            lo, hi = bootstrap_ci(v)
        los.append(lo if np.isfinite(lo) else middles[-1])
        his.append(hi if np.isfinite(hi) else middles[-1])
    return middles, los, his
