"""Is my own backprop right? A worked case to hold a hand-written MLP against.

    python -m jaxmlp.reference write case/            # a 4-3-3 relu net on 5 toy examples
    python -m jaxmlp.reference check case/ mine.json  # yours against it: exit 0, 1 or 2

`write` computes, in float64, every number a hand implementation computes, in the order it
computes them: inputs, labels, targets; per layer weights, biases, pre-activations and
activations; outputs, predictions, per-class errors, per-example losses, the loss; then the
gradient of the loss with respect to every one of those and every parameter; then the
parameters after one plain SGD step, and the loss after it. It writes them as `case.json` and
`case.npz`, with a README.md giving the formulas of that very variant. `check` compares a
learner's file in the same order, reports the first quantity that differs (where, yours vs the
case's) and recognises
the classic mistakes in any layer (`mistakes.MISTAKES`, and constant factors such as a missing
1/N, `factors`), saying so where the numbers fit more than one.

Modules: `case` (the numbers), `mistakes` (a NumPy forward and backward pass, right and with
each classic mistake in any one layer), `factors` (the causes of a constant factor, and what
tells two apart), `compare` (tolerances, the first difference, the learner's file checked),
`files` (JSON and npz), `readme` (the case's README.md), `store` (`write_case`, the one write
path), `report` (what `check` prints), `cli`.
"""

from __future__ import annotations

from jaxmlp.reference.case import (
    CASE_CONFIG,
    Case,
    CaseSpec,
    all_names,
    compute_case,
    image_inputs,
    toy_inputs,
    validate_spec,
)
from jaxmlp.reference.compare import (
    FLOOR,
    RTOL,
    CaseFileError,
    Comparison,
    KeyResult,
    as_arrays,
    compare,
    matches,
)
from jaxmlp.reference.mistakes import MISTAKES, Finding, backward
from jaxmlp.reference.store import write_case

__all__ = [
    "CASE_CONFIG",
    "FLOOR",
    "MISTAKES",
    "RTOL",
    "Case",
    "CaseFileError",
    "CaseSpec",
    "Comparison",
    "Finding",
    "KeyResult",
    "all_names",
    "as_arrays",
    "backward",
    "compare",
    "compute_case",
    "image_inputs",
    "matches",
    "toy_inputs",
    "validate_spec",
    "write_case",
]
