"""Plots of a sweep, with matplotlib's Agg backend (files only, no display needed).

Two figures, both read straight from the per-run results:

- `curves.png`: per variant, the mean learning curve across seeds with a band from the lowest to
  the highest seed, for the training loss (log scale) and the test accuracy; many variants
  become small multiples (one column per value of one setting), each line named at its end,
  in a palette that colour-blind readers can tell apart;
- `final_accuracy.png`: per variant, every seed's final test accuracy as a dot, the mean, and
  its 95% bootstrap confidence interval.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator, NullLocator

from jaxmlp.plots.backend import pyplot
from jaxmlp.stats import bootstrap_ci

plt = pyplot()  # a sweep always draws, so at import, with the Agg backend as every plot


def _save(fig: plt.Figure, path: Path) -> None:
    """Write the PNG beside its destination, then rename it over: never a half-written plot."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)


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
    cmap = plt.get_cmap("viridis")  # ordered and colour-blind safe, for long series
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _curve_panel(ax_loss: Any, ax_acc: Any, names: Sequence[str], loss: Sequence[np.ndarray],
                 acc: Sequence[np.ndarray]) -> None:
    """One column of curves.png: a line per variant with its min..max band over seeds, named
    at its end (direct labels, no legend to match colours against)."""
    for name, color, lv, av in zip(names, _colors(len(names)), loss, acc, strict=True):
        epochs = np.arange(1, lv.shape[1] + 1)
        for ax, curves in ((ax_loss, lv), (ax_acc, av)):
            mean, lo, hi = _band(curves)
            ax.plot(epochs, mean, color=color, marker="o", markersize=3)
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.18, linewidth=0)
            if np.isfinite(mean[-1]):
                ax.annotate(f" {name}", (epochs[-1], mean[-1]), color=color, fontsize=7,
                            va="center", annotation_clip=False)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds (axis 0), ignoring non-finite values (diverged runs)."""
    x = np.where(np.isfinite(curves), curves, np.nan)
    with warnings.catch_warnings():  # an epoch where every seed is NaN: leave a gap, quietly
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(x, axis=0), np.nanmin(x, axis=0), np.nanmax(x, axis=0)


def plot_curves(
    path: Path,
    names: Sequence[str],
    train_loss: Sequence[np.ndarray],
    test_accuracy: Sequence[np.ndarray],
    title: str,
    panels: Sequence[str] | None = None,
) -> None:
    """`train_loss[v]` and `test_accuracy[v]` are (seeds, epochs) arrays for variant v. With
    `panels` (a label per variant, see `panels_by`), one column per label: small multiples
    instead of many lines in one panel. Within a panel a line is named by what is left of
    its variant's name."""
    groups = list(dict.fromkeys(panels)) if panels else [None]
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups) + 2, 8),
                             squeeze=False, sharey="row")
    for col, group in enumerate(groups):
        members = [i for i in range(len(names)) if panels is None or panels[i] == group]
        short = [", ".join(p for p in names[i].split(", ") if p != group) or names[i]
                 for i in members]
        _curve_panel(axes[0, col], axes[1, col], short, [train_loss[i] for i in members],
                     [test_accuracy[i] for i in members])
        axes[0, col].set_title(group or "training loss: mean, band = min..max over seeds",
                               fontsize=9)
        axes[1, col].set(xlabel="epoch")
    axes[0, 0].set(ylabel="train loss (mean per example)", yscale="log")
    axes[1, 0].set(ylabel="test accuracy")
    fig.suptitle(title + ("" if panels is None else
                          "\n(one column per setting; band = min..max over seeds)"))
    fig.tight_layout()
    _save(fig, path)


def plot_final(
    path: Path,
    names: Sequence[str],
    final_accuracy: Sequence[np.ndarray],
    title: str,
) -> None:
    """Each seed's final test accuracy (dots), the mean (bar) and its 95% bootstrap interval."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.38 * n))
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
           title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


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
) -> None:
    """At each x, the mean over seeds with its 95% bootstrap interval (non-finite seeds left
    out). `series[name][i]` holds the seeds' values at `x[i]`. Up to `SMALL_MULTIPLES` series
    share one panel; more get one panel each (the others in grey behind it, same axes), since
    lines that coincide, as many do at 0, would otherwise hide each other."""
    names = list(series)
    summaries = {name: _mean_and_interval(values) for name, values in series.items()}
    positive = any(bool(np.any(np.asarray(m) > 0)) for m, _, _ in summaries.values())
    many = len(names) > SMALL_MULTIPLES
    cols = min(4, len(names)) if many else 1
    rows = -(-len(names) // cols) if many else 1
    fig, axes = plt.subplots(rows, cols, figsize=(7.5, 4.8) if not many else
                             (3.2 * cols, 2.4 * rows + 0.8), sharex=True, sharey=True,
                             squeeze=False)
    colors = _colors(len(names))
    for k, ax in enumerate(axes.flat):
        if many and k >= len(names):
            ax.set_visible(False)
            continue
        shown = [names[k]] if many else names
        for name in names if many else ():
            ax.plot(x, summaries[name][0], color="0.85", lw=1, zorder=1)
        for name in shown:
            means, los, his = summaries[name]
            color = colors[names.index(name)]
            ax.plot(x, means, marker="o", markersize=4, color=color, label=name, zorder=3)
            ax.fill_between(x, los, his, color=color, alpha=0.2, linewidth=0, zorder=2)
        if many:
            ax.set_title(names[k], fontsize=9)
        if logx:
            ax.set_xscale("log")
            ax.set_xlim(min(x) / 1.5, max(x) * 1.5)  # explicit: all-NaN series set no limits
            # Decades only: the minor ticks of a log axis were most of the drawing time of
            # small multiples (8 panels: 1.9 s with them, 0.8 s without).
            ax.xaxis.set_minor_locator(NullLocator())
        if logy and positive:  # a log axis needs something above 0 to show
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set(xlabel=xlabel)
    for ax in axes[:, 0]:
        ax.set(ylabel=ylabel)
    if not many:
        axes[0, 0].legend(fontsize=8)
    fig.suptitle(title + ("\n(one panel per series, the others in grey; band: 95% CI over "
                          "seeds)" if many else ""), fontsize="medium")
    fig.tight_layout()
    _save(fig, path)


def _mean_and_interval(values: Sequence[np.ndarray]) -> tuple[list, list, list]:
    """Per x: the mean of the finite seeds' values and its bootstrap interval (the mean where
    the interval is undefined)."""
    means, los, his = [], [], []
    for v in values:
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        means.append(v.mean() if v.size else np.nan)
        lo, hi = bootstrap_ci(v)
        los.append(lo if np.isfinite(lo) else means[-1])
        his.append(hi if np.isfinite(hi) else means[-1])
    return means, los, his
