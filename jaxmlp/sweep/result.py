"""What a sweep produced, in memory (`SweepResult`): per-run arrays, the per-variant summary and
the sweep.json record, with look-ups by variant name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp.sweep.plan import Run
from jaxmlp.sweep.spec import SweepSpec


@dataclasses.dataclass
class SweepResult:
    """Everything a sweep produced, in memory: per-run arrays, per-variant summary, record."""

    spec: SweepSpec
    out: Path
    runs: list[Run]
    results: list[dict[str, Any]]  # per run: metric name -> (epochs,) array or probe scalar
    summary: list[dict[str, Any]]  # per variant, as in summary.csv
    record: dict[str, Any]  # sweep.json
    complete: bool
    trained_chunks: list[str]  # chunk ids trained by this call (the rest were already on disk)

    def variant(self, name: str) -> int:
        for i, v in enumerate(self.spec.variants):
            if v.name == name:
                return i
        raise KeyError(f"no variant named {name!r}")

    def curves(self, name: str, metric: str) -> np.ndarray:
        """(seeds, epochs) array of a per-epoch metric for the named variant."""
        v = self.variant(name)
        return np.stack([self.results[r.index][metric] for r in self.runs if r.variant == v])

    def final(self, name: str, metric: str) -> np.ndarray:
        """Per seed, the metric's last epoch (or a probe's value) for the named variant."""
        v = self.variant(name)
        vals = [self.results[r.index][metric] for r in self.runs if r.variant == v]
        return np.asarray([np.asarray(x).reshape(-1)[-1] for x in vals], dtype=np.float64)

    def row(self, name: str) -> dict[str, Any]:
        return self.summary[self.variant(name)]
