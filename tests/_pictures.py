"""Reading a drawn matplotlib figure back: every text box actually drawn, and what is wrong with
where they went (overlaps, outside the figure, a legend over data). For test_plots.py."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.legend import Legend
from matplotlib.text import Text

# Text boxes are measured in pixels at the figure's own dpi; a box may touch its neighbour or
# the figure's edge by this much (anti-aliasing and rounding of the layout), no more.
TOUCH_PX = 1.0
# Points along each straight piece of a line, checked against legends: a legend over the middle
# of a long segment covers the line as much as one over a vertex.
SAMPLES_PER_SEGMENT = 20


def drawn_texts(fig: Any) -> list[tuple[str, Any]]:
    """(text, window extent) of every non-empty text drawn for `fig`: tick labels outside the
    view, empty strings and hidden texts are not drawn, so not counted."""
    drawn: dict[int, Text] = {}
    original = Text.draw

    def record(self: Text, renderer: Any) -> Any:
        if self.get_visible() and self.get_text().strip():
            drawn[id(self)] = self
        return original(self, renderer)

    with patch.object(Text, "draw", record):
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # An annotation's own extent includes its arrow: the text's box is Text's.
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in drawn.values()]


def _overlap(a: Any, b: Any) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > TOUCH_PX
            and min(a.y1, b.y1) - max(a.y0, b.y0) > TOUCH_PX)


def _line_points(ax: Any) -> np.ndarray:
    """Display coordinates of the data an axes shows: its lines (sampled along each segment)
    and its scattered points."""
    out = [np.zeros((0, 2))]
    for line in ax.get_lines():
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy) > 1:
            t = np.linspace(0, 1, SAMPLES_PER_SEGMENT)[:, None, None]
            xy = (xy[:-1] * (1 - t) + xy[1:] * t).reshape(-1, 2)
        out.append(xy)
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            out.append(coll.get_offset_transform().transform(coll.get_offsets()))
    return np.concatenate(out)


def _inside_view(ax: Any, xy: np.ndarray) -> np.ndarray:
    box = ax.get_window_extent()
    return xy[(xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0)
              & (xy[:, 1] <= box.y1)]


def layout_problems(fig: Any) -> list[str]:
    """Every way the drawn `fig` fails to read: two text boxes overlapping, a text box not
    wholly inside the figure, a legend lying over data points of its axes (or, for a figure
    legend, of any axes)."""
    texts = drawn_texts(fig)
    frame = fig.bbox
    problems = []
    for i, (s, box) in enumerate(texts):
        if (box.x0 < frame.x0 - TOUCH_PX or box.y0 < frame.y0 - TOUCH_PX
                or box.x1 > frame.x1 + TOUCH_PX or box.y1 > frame.y1 + TOUCH_PX):
            problems.append(f"outside the figure: {s!r}")
        for s2, box2 in texts[i + 1:]:
            if _overlap(box, box2):
                problems.append(f"overlap: {s!r} and {s2!r}")
    renderer = fig.canvas.get_renderer()
    for legend in fig.findobj(Legend):
        if not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        owners = [legend.axes] if legend.axes is not None else fig.axes
        for ax in owners:
            xy = _inside_view(ax, _line_points(ax))
            covered = ((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0)
                       & (xy[:, 1] < box.y1))
            if covered.any():
                problems.append(f"legend {[t.get_text() for t in legend.get_texts()][:3]} "
                                f"covers {int(covered.sum())} points of the data")
    return problems
