"""Plots of a sweep, with matplotlib's Agg backend (files only, no display needed).

Two figures, both read straight from the per-run results:

- `curves.png`: per variant, the mean learning curve across seeds with a band from the lowest to
  the highest seed, for the training loss (log scale) and the test accuracy;
- `final_accuracy.png`: per variant, every seed's final test accuracy as a dot, the mean, and
  its 95% bootstrap confidence interval.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try to open a window (CI, ssh, no display)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from jaxmlp.stats import bootstrap_ci


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


def _colors(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "viridis")
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


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
) -> None:
    """`train_loss[v]` and `test_accuracy[v]` are (seeds, epochs) arrays for variant v."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, color, loss, acc in zip(names, _colors(len(names)), train_loss, test_accuracy,
                                      strict=True):
        epochs = np.arange(1, loss.shape[1] + 1)
        for ax, curves in ((ax_loss, loss), (ax_acc, acc)):
            mean, lo, hi = _band(curves)
            ax.plot(epochs, mean, color=color, label=name, marker="o", markersize=3)
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.18, linewidth=0)
    ax_loss.set(xlabel="epoch", ylabel="train loss (mean per example)", yscale="log",
                title="training loss: mean, band = min..max over seeds")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.suptitle(title)
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
    """One line per series: at each x, the mean over seeds with its 95% bootstrap interval
    (non-finite seeds left out). `series[name][i]` holds the seeds' values at `x[i]`."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    positive = False
    for (name, values), color in zip(series.items(), _colors(len(series)), strict=True):
        means, los, his = [], [], []
        for v in values:
            v = np.asarray(v, dtype=float)
            v = v[np.isfinite(v)]
            means.append(v.mean() if v.size else np.nan)
            lo, hi = bootstrap_ci(v)
            los.append(lo if np.isfinite(lo) else means[-1])
            his.append(hi if np.isfinite(hi) else means[-1])
        positive |= bool(np.any(np.asarray(means) > 0))
        ax.plot(x, means, marker="o", markersize=4, color=color, label=name)
        ax.fill_between(x, los, his, color=color, alpha=0.2, linewidth=0)
    if logx:
        ax.set_xscale("log")
        ax.set_xlim(min(x) / 1.5, max(x) * 1.5)  # explicit: all-NaN series set no limits
    if logy and positive:  # a log axis needs something above 0 to show
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
