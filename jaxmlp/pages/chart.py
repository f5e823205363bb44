"""Line charts as numbers for an inline SVG: series in, pixel coordinates and ticks out.

The page draws the learning curves itself from metrics.jsonl, so every run has them whether or
not it drew PNGs (`--plots`). Nothing here writes markup: `templates/parts.html` turns a `Chart`
into `<svg>`, and every value it receives is a number or a label to escape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

WIDTH, HEIGHT = 520, 260
# Room for the tick labels and axis titles around the plotting area.
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 28, 42


@dataclasses.dataclass(frozen=True)
class Series:
    """One curve: `ys[i]` at `xs[i]`; None (or a value the axis cannot show) leaves a gap.
    `markers`: drawn as points, not a line (a value per epoch over a curve per step)."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    markers: bool = False


@dataclasses.dataclass(frozen=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclasses.dataclass(frozen=True)
class Line:
    name: str
    index: int  # which colour (style.css: .s0, .s1, ...)
    segments: tuple[str, ...]  # polyline points, "x,y x,y ...", one per unbroken stretch
    points: tuple[tuple[float, float], ...]  # marker positions
    markers: bool


@dataclasses.dataclass(frozen=True)
class Chart:
    title: str
    description: str  # the alt text: what the chart shows, in words and numbers
    x_label: str
    y_label: str
    lines: tuple[Line, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    rule: float | None  # a horizontal reference line (pixels), e.g. chance accuracy
    rule_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _shown(y: object, log: bool) -> bool:
    """Whether the axis can show `y` (anything but a finite number, or 0 on a log axis, is a
    gap: a file may hold null, NaN, or worse)."""
    return (isinstance(y, (int, float)) and not isinstance(y, bool) and math.isfinite(y)
            and (y > 0 or not log))


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / count
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


def linear_ticks(lo: float, hi: float) -> list[float]:
    """Round values from lo to hi, about five of them."""
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at 1, 2 and 5 times the powers of ten from just below lo to just above hi; only
    the powers of ten (thinned to at most seven) when that would be more than seven."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = [m * 10.0 ** e for e in range(a, b + 1) for m in (1, 2, 5)]
    start = max(v for v in steps if v <= lo * (1 + 1e-9))
    stop = min(v for v in steps if v >= hi * (1 - 1e-9))
    if stop <= start:
        stop = next(v for v in steps if v > start)
    fine = [v for v in steps if start <= v <= stop]
    if len(fine) <= 7:
        return fine
    a, b = math.floor(math.log10(start)), math.ceil(math.log10(stop))
    every = max(1, math.ceil((b - a) / 6))
    return [10.0 ** (a + i * every) for i in range(math.ceil((b - a) / every) + 1)]


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               log_y: bool = False, y_range: tuple[float, float] | None = None,
               rule: tuple[float, str] | None = None, description: str = "") -> Chart:
    """A chart of `series` over a shared x axis starting at 0; `y_range` fixes the y axis
    (default: the values' own range, on powers of ten with `log_y`); `rule`: (value, label)
    of a horizontal reference line."""
    values = [y for s in series for y in s.ys if _shown(y, log_y)]
    xs = [x for s in series for x in s.xs]
    x_hi = max(xs, default=1.0) or 1.0
    if y_range is not None:
        y_ticks = linear_ticks(*y_range)
    elif log_y:
        y_ticks = log_ticks(min(values, default=1.0), max(values, default=10.0))
    else:
        y_ticks = linear_ticks(min(values, default=0.0), max(values, default=1.0))
    lo, hi = y_ticks[0], y_ticks[-1]
    scale = (lambda v: math.log10(v)) if log_y else (lambda v: v)

    def px(x: float, y: float) -> tuple[float, float]:
        fx = x / x_hi
        fy = (scale(y) - scale(lo)) / ((scale(hi) - scale(lo)) or 1.0)
        return (round(LEFT + fx * (WIDTH - LEFT - RIGHT), 1),
                round(HEIGHT - BOTTOM - fy * (HEIGHT - TOP - BOTTOM), 1))

    lines = tuple(_line(s, i, px, log_y) for i, s in enumerate(series))
    x_ticks = tuple(Tick(px(v, lo)[0], _label(v)) for v in linear_ticks(0.0, x_hi)
                    if v <= x_hi + 1e-9)
    return Chart(title, description or title, x_label, y_label, lines, x_ticks,
                 tuple(Tick(px(0.0, v)[1], _label(v)) for v in y_ticks),
                 px(0.0, rule[0])[1] if rule and lo <= rule[0] <= hi else None,
                 rule[1] if rule else "")


def _line(s: Series, index: int, px, log_y: bool) -> Line:
    segments, current, points = [], [], []
    for x, y in zip(s.xs, s.ys, strict=True):
        if not _shown(y, log_y):
            if current:
                segments.append(current)
            current = []
            continue
        p = px(x, y)
        current.append(p)
        points.append(p)
    if current:
        segments.append(current)
    return Line(s.name, index, tuple(" ".join(f"{x},{y}" for x, y in seg) for seg in segments),
                tuple(points), s.markers)
