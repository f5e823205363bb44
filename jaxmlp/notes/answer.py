"""An answer as the page shows it (`Answer`), and the reading of a measurement's folder it is
generated from: every number a sentence quotes is read back from the folder's own files
(runs.csv, summary.json, diagnostics.jsonl, the JSON a measurement writes beside them), so the
page can be rebuilt from the folders alone and always says what they hold.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp import checkpoint, stats
from jaxmlp.pages import Picture
from jaxmlp.rundir import REPORT_HTML
from jaxmlp.sweep.tables import RUNS_CSV


class Unreadable(ValueError):
    """A folder lacks a file its answer is read from, or holds one it cannot read; the
    message names it."""


@dataclasses.dataclass(frozen=True)
class Link:
    href: str  # relative to index.html
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one measurement says: `sentences` generated from its numbers (where they do not
    support the usual answer, they say so instead), `why` in fixed words, its pictures, tables
    and the pages of its runs and sweeps."""

    sentences: tuple[str, ...]
    why: str
    pictures: tuple[Picture, ...]
    links: tuple[Link, ...]
    tables: tuple[Table, ...] = ()


# --- writing and reading --------------------------------------------------------------------------


def write_json(path: Path, value: Any) -> None:
    """A measurement's own numbers beside its run's or sweep's files, atomically."""
    checkpoint.atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Unreadable(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise Unreadable(f"{path} cannot be read ({e})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    except FileNotFoundError:
        raise Unreadable(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise Unreadable(f"{path} cannot be read ({e})") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def runs_by_variant(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """A sweep's runs.csv, one list of runs (seed order) per variant, numbers as floats."""
    path = folder / RUNS_CSV
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise Unreadable(f"{path} is missing: the sweep did not finish") from None
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        parsed = {k: (v if k == "variant" else _number(v)) for k, v in row.items()}
        out.setdefault(row["variant"], []).append(parsed)
    return out


def column(runs: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([r[key] for r in runs], float)


def need(mapping: dict[str, Any], key: str, where: Path) -> Any:
    if key not in mapping:
        raise Unreadable(f"{where} has no {key!r}")
    return mapping[key]


# --- numbers in words -----------------------------------------------------------------------------


def interval(values: Sequence[float] | np.ndarray, percent: bool = False, digits: int = 2) -> str:
    """'91.23% (95% CI [90.10, 92.00], 5 seeds)': the mean of the finite values and the
    bootstrap interval of `stats` (one value: no interval)."""
    d = stats.describe(values)
    if d["n"] == 0:
        return "no finite value (every seed diverged)"
    if percent:
        mean, ci = stats.pct(d["mean"], digits), stats.fmt_ci(d["ci_lo"], d["ci_hi"], 100, digits)
    else:
        mean, ci = f"{d['mean']:.4g}", f"[{d['ci_lo']:.4g}, {d['ci_hi']:.4g}]"
    if d["n"] < 2:
        return f"{mean} (one seed)"
    return f"{mean} (95% CI {ci}, {d['n']} seeds)"


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of the per-seed differences b - a and its 95% bootstrap interval (seed s of both
    variants starts from the same key, so the comparison is paired by seed)."""
    diff = np.asarray(b, float) - np.asarray(a, float)
    diff = diff[np.isfinite(diff)]
    lo, hi = stats.bootstrap_ci(diff)
    return (float(diff.mean()) if diff.size else math.nan, lo, hi)


def points(x: float) -> str:
    """A difference of two accuracies, in percentage points with its sign."""
    return f"{100 * x:+.2f} points"


def spans_zero(lo: float, hi: float) -> bool:
    return not (lo > 0 or hi < 0)


def count(n: float, of: int) -> str:
    return f"{round(n)}/{of}"


# --- pictures and links ---------------------------------------------------------------------------


def picture(root: Path, rel: str, name: str, alt: str, caption: str) -> Picture:
    """A picture of the folder `rel` (relative to the page in `root`), or the note that it is
    not there."""
    path = f"{rel}/{name}"
    if (root / path).is_file():
        return Picture(path, alt, caption)
    return Picture(path, alt, missing="the measurement did not draw it (it stopped early, or "
                   "ran without plots)")


def page_link(root: Path, rel: str, text: str) -> Link:
    """A link to the report.html of the folder `rel`, or to the folder when it has none."""
    target = f"{rel}/{REPORT_HTML}"
    return Link(target if (root / target).is_file() else f"{rel}/", text)
