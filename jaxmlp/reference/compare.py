"""Hold a learner's numbers against the case: in forward order, then backward from the loss, then
the step; find the first quantity that differs, and recognise the mistake behind it.

Only the first difference is diagnosed: everything computed after it is computed from it, so
later differences are usually its echo. Fix the first, check again.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import NamedTuple

import numpy as np

import jaxmlp.reference.factors as factors  # the modules, not the package: no cycle
import jaxmlp.reference.mistakes as mistakes
from jaxmlp.reference.case import (
    Case,
    CaseSpec,
    backward_names,
    forward_names,
    num_layers_of,
    step_names,
)
from jaxmlp.reference.mistakes import Finding

# An array matches when every entry is within RTOL x the largest |value| of the case's array.
# Why 1e-4: a float32 implementation carries ~6e-8 relative rounding per operation; through this
# case's few layers and short sums (at most 784 terms) that grows to ~1e-6 of an array's scale,
# so 1e-4 leaves a hundredfold margin (float64 implementations match to ~1e-15). Every classic
# mistake moves some entry by a sizeable fraction of the array's scale (a factor of 2, N or K,
# a sign, a missing derivative): 1e-4 is far below that.
RTOL = 1e-4
# Arrays whose largest |value| is below this are zero up to rounding (this case's numbers are
# O(0.001..10)): they are compared absolutely, at RTOL x FLOOR.
FLOOR = 1e-8
# The precision a float64 implementation reaches, to tell the learner which kind theirs is.
FLOAT64_LEVEL = 1e-12

SECTIONS = ("forward", "backward", "step")


class CaseFileError(ValueError):
    """A file the check cannot use. The message names the key (or file) and the fix."""


class KeyResult(NamedTuple):
    key: str
    section: str
    given: bool
    worst: float  # largest |yours - case| over the allowed tolerance's scale (0: exact)
    bad: int  # entries beyond the tolerance
    index: tuple[int, ...]  # where the difference is largest
    yours: float
    expected: float

    @property
    def ok(self) -> bool:
        return self.bad == 0


class Comparison(NamedTuple):
    results: list[KeyResult]  # every key of the case, in order; given or not
    first: KeyResult | None  # the first given key that differs
    findings: list[Finding]  # what the first difference looks like

    @property
    def ok(self) -> bool:
        return self.first is None

    @property
    def given(self) -> list[KeyResult]:
        return [r for r in self.results if r.given]


def ordered_keys(case: Case) -> list[tuple[str, str]]:
    """(key, section) for every key of the case: forward, backward from the loss, the step."""
    layers = num_layers_of(case)
    names = (forward_names(layers), backward_names(layers), step_names(layers))
    return [(key, section) for section, keys in zip(SECTIONS, names, strict=True) for key in keys]


def scale_of(expected: np.ndarray) -> float:
    return max(float(np.max(np.abs(expected))) if expected.size else 0.0, FLOOR)


def matches(yours: np.ndarray, expected: np.ndarray) -> bool:
    """Every entry within RTOL x the expected array's scale (NaN never matches)."""
    if yours.shape != expected.shape:
        return False
    diff = np.abs(yours - expected)
    return bool(np.all(diff <= RTOL * scale_of(expected)))


def compare_array(key: str, section: str, yours: np.ndarray, expected: np.ndarray) -> KeyResult:
    diff = np.abs(yours.astype(np.float64) - expected)
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = scale_of(expected)
    flat = int(np.argmax(diff)) if diff.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, diff.shape)) if diff.size else ()
    return KeyResult(key, section, True, float(diff.max(initial=0.0) / scale),
                     int(np.sum(diff > RTOL * scale)), index,
                     float(yours.flat[flat]) if yours.size else 0.0,
                     float(expected.flat[flat]) if expected.size else 0.0)


def _fit(yours: np.ndarray, expected: np.ndarray) -> float | None:
    """The one number c with yours = c x expected (to RTOL of the array's scale), if any."""
    dot = float(np.sum(expected * expected))
    if dot == 0.0:
        return None
    c = float(np.sum(yours * expected)) / dot
    if np.max(np.abs(yours - c * expected)) > RTOL * scale_of(expected) * max(1.0, abs(c)):
        return None
    return c


def _factor_findings(key: str, c: float, case: Case, spec: CaseSpec) -> list[Finding]:
    """Every constant-factor cause of c at `key`, in plain words (no "yours is c x")."""
    n, k = case["t"].shape
    lr = spec.config.learning_rate
    found = []
    for f, flipped in factors.causes_of(c, factors.factors_at(key, n, k, lr, spec.config)):
        if flipped:
            found.append(Finding("sign_flipped+" + f.name, f"the sign is flipped, and {f.says}",
                                 f"{f.fix}; and p - t, not t - p", factor=f.name))
        else:
            found.append(Finding(f.name, f.says, f.fix, factor=f.name))
    return found


def _step_rate(key: str, yours: np.ndarray, case: Case) -> float | None:
    """c where yours = w - c * grad.w, for a step `key` (after_step.layer1.w, ...)."""
    name = key.removeprefix("after_step.")
    return _fit(case[name] - yours, case["grad." + name])


def _step_findings(key: str, c: float | None, case: Case, spec: CaseSpec) -> list[Finding]:
    """A step w - c * grad.w with c not the learning rate: another learning rate, or a
    gradient c / lr times the case's (`factors`)."""
    lr = spec.config.learning_rate
    if c is None or c <= 0 or factors.same(c, lr):
        return []
    found = [Finding("learning_rate", f"the learning rate is {c:.4g}, where this case's is "
                     f"{lr:g}", f"step with the case's learning rate, {lr:g}")]
    grad_key, r = "grad." + key.removeprefix("after_step."), c / lr
    # The learning rate folded into a gradient leaves the step right: no cause of a step.
    return found + [f._replace(says=f"the gradient is {factors.number(r)} x the case's: {f.says}")
                    for f in _factor_findings(grad_key, r, case, spec)
                    if not f.name.startswith("sign") and f.name != "times_learning_rate"]


def _scale_finding(key: str, c: float) -> Finding:
    """A factor no known cause fits."""
    if factors.same(c, -1.0):
        uphill = " (a step with it goes uphill)" if key.startswith("grad.") else ""
        return Finding("sign_flipped", f"yours is exactly -1 x the case's: the sign is "
                       f"flipped{uphill}", "look for t - p where p - t belongs, or a lost minus")
    passes = (f" (a whole number: was the gradient added up over {round(c)} passes?)"
              if key.startswith("grad.") and c >= 3 and factors.same(c, round(c)) else "")
    return Finding("scale", f"yours is {factors.number(c)} x the case's everywhere: a constant "
                   f"factor is wrong{passes}", f"look for a missing or extra factor in {key}")


def _param(key: str) -> bool:
    """A parameter's gradient or step (grad.layer2.w, after_step.layer1.b)."""
    return key.startswith(("grad.layer", "after_step.layer")) and key[-2:] in (".w", ".b")


def _weighed(key: str, found: list[Finding], matched: Collection[str]) -> list[Finding]:
    """`found`, less what the learner's matching numbers rule out, each name once. A constant
    factor changes every parameter's gradient (and step) alike: not the cause where another
    parameter's matched. A bias gradient or step whose weight's matched is wrong in the bias
    alone; a step whose gradient matched, in the step alone."""
    name = key.removeprefix("after_step.").removeprefix("grad.")
    kind = key.split(".")[0]
    if _param(key) and any(_param(m) and m.split(".")[0] == kind for m in matched):
        found = [f for f in found if not f.factor]
    if key.endswith(".b") and _param(key) and f"{kind}.{name[:-2]}.w" in matched:
        found = [f for f in found if f.name in mistakes.BIAS_MISTAKES]
    if kind == "after_step" and f"grad.{name}" in matched:
        found = [f for f in found if f.name in mistakes.STEP_MISTAKES]
    return list({f.name: f for f in found}.values())


def _tell_apart(key: str, found: list[Finding], case: Case, spec: CaseSpec) -> str:
    """What would separate the mistakes `found`: another quantity of the learner's, or another
    case in which their factors differ."""
    names = {f.name for f in found}
    name = key.removeprefix("after_step.").removeprefix("grad.")
    hints = []
    if key.startswith("grad.") and key.endswith(".b") and names & mistakes.BIAS_MISTAKES:
        hints.append(f"give your grad.{name[:-2]}.w too: if it matches the case's, only the "
                     f"bias gradient is wrong")
    if "learning_rate" in names:
        hints.append(f"give your grad.{name} too: if it matches the case's, the learning rate "
                     f"is the cause")
    factor_names = [f.factor for f in found if f.factor]
    if len(factor_names) > 1:
        factor_key = "grad." + name if key.startswith("after_step.") else key
        hints.append(factors.tell_apart(factor_key, factor_names, case["t"].shape, spec)
                     or "no small case gives them different factors: look for each in your code")
    return "; or ".join(hints) or f"hold your formula for {key} against each fix above"


def diagnose(key: str, yours: np.ndarray, case: Case, spec: CaseSpec,
             matched: Collection[str] = ()) -> list[Finding]:
    """The classic mistakes that would produce `yours` at `key`, given which of the learner's
    other quantities matched the case: one finding, one that lists several where the numbers
    fit more than one mistake, or none."""
    if not np.all(np.isfinite(yours)):
        return [Finding("not_finite", f"your {key} holds NaN or infinite values: a log of 0, a "
                        f"division by 0 or an overflow (exp of a large number) upstream",
                        "find the first quantity of yours that is not finite; softmax is "
                        "safe as exp(o - o.max(axis=1, keepdims=True)) / sum")]
    config = spec.config
    if key.startswith("after_step.layer"):
        c = _step_rate(key, yours, case)
        what = None if c is None else f"your step is w - {c:.4g} * grad.w"
        found = mistakes.backward_findings(key, yours, case, config, matches)
        found += _step_findings(key, c, case, spec)
    else:
        c = _fit(yours, case[key])
        what = None if c is None else f"yours is exactly {factors.number(c)} x the case's"
        scaled = [] if c is None else _factor_findings(key, c, case, spec)
        diagnosed = (mistakes.backward_findings if key.startswith("grad.")
                     else mistakes.forward_findings)
        found = diagnosed(key, yours, case, config, matches) + scaled
    found = _weighed(key, found, matched)
    if len(found) > 1:
        return [Finding("ambiguous", what or f"your {key} is what each of these gives",
                        _tell_apart(key, found, case, spec), causes=tuple(found))]
    if found and (found[0].factor or found[0].name == "learning_rate"):
        return [found[0]._replace(says=f"{what}: {found[0].says}")]
    # One number is always some multiple of another: only an array's factor says something.
    if found or c is None or key.startswith("after_step.") or yours.size < 2:
        return found
    return [_scale_finding(key, c)]


def compare(case: Case, yours: dict[str, np.ndarray], spec: CaseSpec) -> Comparison:
    """Compare every given key; diagnose the first that differs."""
    results = []
    for key, section in ordered_keys(case):
        if key in yours:
            results.append(compare_array(key, section, yours[key], case[key]))
        else:
            results.append(KeyResult(key, section, False, 0.0, 0, (), 0.0, 0.0))
    first = next((r for r in results if r.given and not r.ok), None)
    matched = [r.key for r in results if r.given and r.ok]
    findings = diagnose(first.key, yours[first.key], case, spec, matched) if first else []
    return Comparison(results, first, findings)


# --- checking a learner's file before comparing ---------------------------------------------------


# Names learners often use, and the case's name for each.
_ALIASES = {"logits": "o", "outputs": "o", "out": "o", "probs": "p", "y_hat": "p", "yhat": "p",
            "targets": "t", "onehot": "t", "errors": "error", "losses": "example_loss"}
# w1, W1, dW1, grad.w1, dz2, h1, ...: one letter and a layer number.
_SHORT = re.compile(r"^(grad\.|d)?([wbzah])(\d+)$", re.IGNORECASE)


def _case_name(key: str, layers: int) -> str | None:
    """The case's name for a learner's usual name of a quantity, if it is one."""
    grad = key.startswith(("grad.", "d", "g_", "grad_"))
    bare = re.sub(r"^(grad\.|grad_|g_)", "", key)
    if bare in _ALIASES:
        return ("grad." if grad and not key.startswith("d") else "") + _ALIASES[bare]
    short = _SHORT.match(key)
    if short is None:
        return None
    kind, layer = short.group(2).lower().replace("h", "a"), int(short.group(3))
    name = "o" if kind in "za" and layer == layers else f"layer{layer}.{kind}"
    return ("grad." if short.group(1) else "") + name


def _unknown_key_hint(key: str, case: Case) -> str:
    layers = num_layers_of(case)
    last = f"layer{layers}"
    if key.removeprefix("grad.") in (f"{last}.z", f"{last}.a"):
        return (f"the output layer has no activation, and its z is called 'o' here "
                f"({'grad.o' if key.startswith('grad.') else 'o'})")
    named = _case_name(key, layers)
    if named in case:
        return f"this case calls it '{named}'"
    same_but_case = [k for k in case if k.lower() == key.lower()]
    close = same_but_case or difflib.get_close_matches(key, list(case), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "the keys are listed in the case's README.md"


def check_keys(yours: dict[str, object], case: Case, where: str) -> None:
    if not yours:
        raise CaseFileError(f"{where} holds no quantities to compare; save yours under the "
                            f"case's names, e.g. {{\"grad.o\": [[...], ...]}}")
    unknown = [k for k in yours if k not in case]
    if unknown:
        hints = "; ".join(f"'{k}': {_unknown_key_hint(k, case)}" for k in unknown[:3])
        more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise CaseFileError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {hints}"
                            f"{more}")


def _shape_hint(key: str, shape: tuple[int, ...], expected: tuple[int, ...], n: int) -> str:
    name = key.removeprefix("grad.").removeprefix("after_step.")
    if len(shape) == 2 and shape[::-1] == expected and name.endswith(".w"):
        if key.startswith("grad."):
            return ("it is transposed: this case keeps w as (in, out), z = a_prev @ w + b, so "
                    "grad.w = a_prev.T @ grad.z has w's shape (in, out), not grad.z.T @ a_prev")
        return ("it is transposed: this case keeps w as (in, out), so that z = a_prev @ w + b "
                "(if yours is (out, in) with z = w @ a, save w.T)")
    if len(shape) == 2 and shape == (n, *expected) and key.startswith("grad.") and \
            name.endswith(".b"):
        return ("that is one bias gradient per example: every example shares the bias, so "
                "its gradient is the sum over the batch, grad.b = grad.z.sum(axis=0)")
    if len(shape) == 2 and shape[::-1] == expected:
        return "it is transposed: this case has one example per row; save yours transposed (.T)"
    if int(np.prod(shape)) == int(np.prod(expected)):
        return f"same numbers of entries: reshape yours, e.g. np.reshape(value, {expected})"
    return "it should have the case's shape (see README.md)"


def as_arrays(raw: dict[str, object], case: Case, where: str) -> dict[str, np.ndarray]:
    """The learner's values as float64 arrays of the case's shapes, or a CaseFileError."""
    check_keys(raw, case, where)
    n = case["x"].shape[0]
    out = {}
    for key, value in raw.items():
        try:
            array = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise CaseFileError(f"{where}: '{key}' is not an array of numbers ({e}); give a "
                                f"number or nested lists of numbers, one list per row") from None
        expected = case[key].shape
        if expected == () and array.size == 1:
            array = array.reshape(())
        if array.shape != expected:
            raise CaseFileError(f"{where}: '{key}' has shape {array.shape}, the case's is "
                                f"{expected}: {_shape_hint(key, array.shape, expected, n)}")
        out[key] = array
    return out
