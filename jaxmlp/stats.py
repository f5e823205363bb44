"""Statistics across seeds: mean, spread and a bootstrap confidence interval, with NumPy only.

A sweep trains each variant with several seeds because one run is one sample: two variants whose
single runs differ by 0.3% may not differ at all. These helpers summarise the seeds of one
variant so that differences can be read against the spread between seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

CI_LEVEL = 0.95
# 10,000 resamples put the Monte-Carlo error of a 95% percentile interval's ends well below the
# spread between seeds; a fixed seed makes the same results give the same interval every time.
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    level: float = CI_LEVEL,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of `values` (NaN, NaN for fewer than 2).

    With 5 seeds the interval is rough (the bootstrap cannot see beyond the 5 values it has) and
    tends to be too narrow; it is still a better guide than the mean alone.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """n, mean, std (n-1 denominator) and the 95% bootstrap CI of the finite `values`.

    Non-finite values (a diverged run's NaN loss) are left out and counted apart, so that one
    diverged seed shows up as `n` smaller than the number of seeds rather than as a NaN mean.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    n = int(finite.size)
    lo, hi = bootstrap_ci(finite)
    return {
        "n": n,
        "mean": float(finite.mean()) if n else math.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
        "ci_lo": lo,
        "ci_hi": hi,
    }


def epochs_to_target(accuracy: np.ndarray, target: float) -> int | None:
    """The first epoch (counted from 1) whose accuracy reached `target`, or None."""
    hits = np.flatnonzero(np.asarray(accuracy) >= target)
    return int(hits[0]) + 1 if hits.size else None


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table: fixed digits, 'n/a' for None or NaN."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def pct(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage: 0.9123 -> '91.23%'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100.0 * float(x):.{digits}f}%"


def fmt_ci(lo: float, hi: float, scale: float = 1.0, digits: int = 4) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    return f"[{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def intervals_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two `describe` results' confidence intervals overlap (a rough 'no clear
    difference' test; non-overlap at 95% is stricter than a 5% two-sample test)."""
    if any(math.isnan(v) for v in (a["ci_lo"], a["ci_hi"], b["ci_lo"], b["ci_hi"])):
        return True
    return a["ci_lo"] <= b["ci_hi"] and b["ci_lo"] <= a["ci_hi"]
