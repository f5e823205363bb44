"""What every picture shares about where things go: line labels that do not pile up, a loss
axis that shows every value (negative ones too), legends that cover no data, and numbers
written with just the digits that tell them apart.

Pure placement arithmetic (`spread`, `distinct_numbers`, `loss_scale`) is kept apart from the
few functions that move matplotlib artists, so the arithmetic can be tested on its own.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

LABEL_SIZE = 7  # points: the size of the names written at the ends of lines


def distinct_numbers(values: Sequence[float], min_digits: int = 2, max_digits: int = 6
                     ) -> list[str]:
    """Each number with the fewest significant digits (at least `min_digits`, at most
    `max_digits`) that still tell every distinct value apart: 0.000392157 beside 0.1 is
    "0.00039", beside 0.000390625 it is "0.000392"."""
    distinct = len(set(values))
    for digits in range(min_digits, max_digits + 1):
        text = [f"{v:.{digits}g}" for v in values]
        if len(set(text)) == distinct:
            return text
    return [f"{v:.{max_digits}g}" for v in values]


def wrap(text: str, width: float, fontsize: float = 10) -> str:
    """`text` broken into lines that fit `width` inches at `fontsize` points (its own line
    breaks kept): a title wider than its figure would be cut off."""
    chars = max(20, int(width * 72 / (0.6 * fontsize)))  # 0.6 em: a wide average letter
    return "\n".join("\n".join(textwrap.wrap(line, chars)) or line
                     for line in text.split("\n"))


def spread(targets: Sequence[float], gap: float, low: float, high: float
           ) -> list[float] | None:
    """Positions as near `targets` as can be (least squares) with neighbours at least `gap`
    apart, all within [low, high], each label keeping its order; None when they do not fit.

    Shifting label i down by i * gap turns "at least gap apart" into "in non-decreasing
    order", which is isotonic regression (pool adjacent violators); the bounds then clip it.
    """
    n = len(targets)
    if n == 0:
        return []
    if high - low < (n - 1) * gap:
        return None
    order = sorted(range(n), key=lambda i: targets[i])
    shifted = [targets[i] - k * gap for k, i in enumerate(order)]
    blocks: list[list[float]] = []  # [sum, count] of each run of labels moved together
    for u in shifted:
        blocks.append([u, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted = [s / c for s, c in blocks for _ in range(c)]
    top = high - (n - 1) * gap
    out = [0.0] * n
    for k, i in enumerate(order):
        out[i] = min(max(fitted[k], low), top) + k * gap
    return out


def loss_scale(values: Any, log_from_span: float = 1.0) -> tuple[str, dict[str, float], str]:
    """(scale, its keyword arguments, a note for the axis label) for a loss axis showing
    `values`. A loss that stays positive gets a log axis (when its largest value is at least
    `log_from_span` times its smallest; else linear). A loss at or below 0 (raw outputs under
    -log, which can exceed 1) would fall off a log axis: it gets a symmetric log axis, linear
    near 0 and logarithmic beyond, and the note says so."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() > 0:
        log = v.size > 1 and v.max() >= log_from_span * v.min()
        return ("log" if log else "linear"), {}, ""
    magnitude = np.abs(v)
    largest = float(magnitude.max())
    if largest == 0.0:
        return "linear", {}, ""
    smallest = float(magnitude[magnitude > 0].min())
    # Linear up to a power of ten at or below the smallest size, but no more than 4 decades
    # below the largest: a wider linear range squeezes the log part into nothing.
    linthresh = 10.0 ** math.floor(math.log10(max(smallest, largest * 1e-4)))
    note = f"symlog: linear within ±{linthresh:g}, since the loss went ≤ 0"
    return "symlog", {"linthresh": linthresh}, note


def set_loss_scale(ax: Any, values: Any, log_from_span: float = 1.0) -> str:
    """Give `ax` the scale `loss_scale` chooses for `values`; returns its note ("" if none)."""
    scale, kw, note = loss_scale(values, log_from_span)
    ax.set_yscale(scale, **kw)
    return note


def legend_outside(ax: Any, **kw: Any) -> Any:
    """A legend to the right of `ax`, outside it, so that it covers no data."""
    kw.setdefault("fontsize", "small")
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)


def legend_below(ax: Any, **kw: Any) -> Any:
    """A legend under `ax`, below its tick labels and x label, so that it covers no data."""
    from matplotlib.transforms import offset_copy  # here: importing plots loads no matplotlib

    # Below the axes by the height of the tick labels and the x label (points, so the same
    # at every size of figure).
    under = offset_copy(ax.transAxes, fig=ax.figure, y=-36, units="points")
    kw.setdefault("fontsize", "small")
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=under,
                     borderaxespad=0.0, **kw)


def readable(color: Any) -> tuple[float, float, float]:
    """`color`, darkened where it is too light to read as text on white (a yellow line's
    name is written in a darker yellow)."""
    from matplotlib.colors import to_rgb  # here: importing plots loads no matplotlib

    rgb = np.asarray(to_rgb(color))
    luminance = float(rgb @ [0.2126, 0.7152, 0.0722])
    darker = rgb * min(1.0, 0.55 / luminance) if luminance > 0 else rgb
    return (float(darker[0]), float(darker[1]), float(darker[2]))


def label_ends(ax: Any, ends: Sequence[tuple[str, Any, float, float]]) -> list[Any]:
    """Name each line at its end, in the margin right of `ax`: `ends` holds (text, colour,
    x, y) with (x, y) the line's last point in data coordinates. The names start at their
    lines' heights; `place_labels` later moves them apart. Returns the annotations."""
    out = []
    for text, color, x, y in ends:
        ann = ax.annotate(
            text, xy=(x, y), xycoords="data", xytext=(1.02, 0.5), textcoords="axes fraction",
            color=readable(color), fontsize=LABEL_SIZE, va="center", ha="left",
            annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.6,
                        "shrinkA": 1, "shrinkB": 2})
        ann.target = (x, y)  # where its line ends, for place_labels
        ann.line_color = color  # the line's own, for a legend in its place
        out.append(ann)
    return out


def place_labels(fig: Any, labelled: Sequence[tuple[Any, list[Any]]]) -> list[Any]:
    """Lay `fig` out, then move each axes' line-end labels (from `label_ends`) apart so that no
    two overlap, each as near its line's end as can be (a thin line joins them). Where they
    do not fit beside the axes, they make way for a legend outside it. Returns the axes that
    got a legend. Moves are vertical only and within the axes' height, so the layout made
    for the labels still holds."""
    pending = [(ax, anns) for ax, anns in labelled if anns]
    fell_back: list[Any] = []
    while pending:
        _lay_out(fig)
        renderer = fig.canvas.get_renderer()
        misfits = [ax for ax, anns in pending if not _spread_labels(ax, anns, renderer)]
        for ax, anns in pending:
            if ax in misfits:
                _labels_to_legend(ax, anns)
        fell_back += misfits
        # A legend changes the layout: the others are placed again in the new one.
        pending = [(ax, anns) for ax, anns in pending if ax not in misfits] if misfits else []
    return fell_back


def _lay_out(fig: Any) -> None:
    """Run `fig`'s layout, so that each axes is where it will be drawn. Only the layout: the
    drawing that `draw_without_rendering` adds is savefig's to do (a tenth of a 32-axes
    figure's time, the same pixels)."""
    engine = fig.get_layout_engine()
    if engine is None:
        fig.draw_without_rendering()
    else:
        engine.execute(fig)


def _spread_labels(ax: Any, anns: Sequence[Any], renderer: Any) -> bool:
    """Move `anns` apart beside `ax` (see `place_labels`); False when they do not fit."""
    from matplotlib.text import Text  # here: importing jaxmlp.plots must not load matplotlib

    box = ax.get_window_extent(renderer)
    # The text's own box: an annotation's extent includes the line to its point.
    gap = 1.15 * max(Text.get_window_extent(a, renderer).height for a in anns)
    targets = []
    for a in anns:
        y = ax.transData.transform(a.target)[1]
        targets.append(min(max(y, box.y0), box.y1) if np.isfinite(y) else box.y1)
    ys = spread(targets, gap, box.y0 + gap / 2, box.y1 - gap / 2)
    if ys is None:
        return False
    for a, y in zip(anns, ys, strict=True):
        a.set_position((1.02, (y - box.y0) / box.height))
    return True


def _labels_to_legend(ax: Any, anns: Sequence[Any]) -> None:
    """Replace line-end labels by a legend outside `ax` (same names, same colours)."""
    named = [(a.get_text(), a.line_color) for a in anns]
    for a in anns:
        a.remove()
    handles = [ax.plot([], [], color=c)[0] for _, c in named]
    legend_outside(ax, handles=handles, labels=[t for t, _ in named], fontsize=LABEL_SIZE)
