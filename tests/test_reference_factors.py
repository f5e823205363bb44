"""`check` never names one mistake where the numbers fit two.

For every pair of causes that can give the same factor in some case (K classes, N examples, the
square's 2, a gradient accumulated twice, the learning rate, a bias averaged, a step of another
rate), a case where they coincide gets one ambiguous finding listing exactly the causes whose
mistaken numbers are the same, with what tells them apart; a case where they differ names each
by itself. Which causes coincide is found here, independently of the package: by making each
mistake in the learner's implementation (`tests/_learner.py`) and comparing the arrays.

Tolerance: two learners' arrays "coincide" when they agree to 1e-9 of the array's scale (both
float64 from the same start, so a true coincidence agrees to ~1e-15, and distinct factors of a
small case differ by 10% or more).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import _learner as ln
import numpy as np
import pytest

from jaxmlp.reference import CASE_CONFIG, compare
from jaxmlp.reference import factors as factor_table
from jaxmlp.reference.case import CaseSpec

COINCIDE = 1e-9


def reduction_learner(settings: dict[str, Any]) -> ln.Learner:
    """Both reductions wrong, each the way its setting allows."""
    ex_mean = settings.get("example_reduction", "mean") == "mean"
    cls_mean = settings.get("class_reduction", "sum") == "mean"
    return ln.Learner({"d_example_loss": ln.summed_over_examples if ex_mean
                       else ln.divided_by_examples,
                       "d_error": ln.summed_over_classes if cls_mean else ln.divided_by_classes})


def only(applies: Callable[[dict[str, Any]], bool], make: Callable[[dict[str, Any]], ln.Learner]
         ) -> Callable[[dict[str, Any]], ln.Learner | None]:
    return lambda s: make(s) if applies(s) else None


def mse(s: dict[str, Any]) -> bool:
    return s.get("error") == "mse"


def class_sum(s: dict[str, Any]) -> bool:
    return s.get("class_reduction", "sum") == "sum"


# Each cause, as the mistake a learner makes, where the case's settings allow it (None where
# not: there is no square to lose a 2 from in cross-entropy). The structural mistakes are here
# too: with 2 classes and MSE, softmax's diagonal-only Jacobian is exactly half the gradient.
LEARNERS: dict[str, Callable[[dict[str, Any]], ln.Learner | None]] = {
    "examples_mean_missing": lambda s: ln.Learner({"d_example_loss": ln.summed_over_examples}),
    "examples_divided": lambda s: ln.Learner({"d_example_loss": ln.divided_by_examples}),
    "classes_mean_missing": lambda s: ln.Learner({"d_error": ln.summed_over_classes}),
    "classes_divided": only(class_sum, lambda s: ln.Learner({"d_error": ln.divided_by_classes})),
    "both_reductions": reduction_learner,
    "square_two_missing": only(mse, lambda s: ln.Learner({"d_p": ln.square_two_missing})),
    "accumulated_twice": lambda s: ln.Learner(passes=2),
    "times_learning_rate": lambda s: ln.Learner(ln.times_learning_rate(
        s.get("learning_rate", CASE_CONFIG.learning_rate))),
    "bias_gradient_averaged": lambda s: ln.Learner({"d_b": ln.bias_averaged}),
    "learning_rate": lambda s: ln.Learner(ln.step_rate(s["rate"])) if "rate" in s else None,
    "jacobian_left_out": lambda s: ln.Learner({"d_o": ln.no_softmax_jacobian}),
    "jacobian_diagonal_only": lambda s: ln.Learner({"d_o": ln.softmax_jacobian_diagonal}),
    "activation_derivative_missing": lambda s: ln.Learner({"d_z": ln.no_activation_derivative}),
    "outer_of_sums": lambda s: ln.Learner({"d_w": ln.outer_product_of_sums}),
    "bias_gradient_one_example": lambda s: ln.Learner({"d_b": ln.bias_of_last_example}),
    "updated_in_place": lambda s: ln.Learner({"d_a": ln.through_updated_weights}),
}
# Which of the learner's numbers the check is given.
MODES = {
    "params_steps": lambda key: key.startswith(("grad.layer", "after_step.layer")),
    "params": lambda key: key.startswith("grad.layer") and key[-2:] in (".w", ".b"),
    "biases": lambda key: key.startswith("grad.layer") and key.endswith(".b"),
    "steps": lambda key: key.startswith("after_step.layer"),
    "bias_steps": lambda key: key.startswith("after_step.layer") and key.endswith(".b"),
}
EX_SUM = {"example_reduction": "sum"}
CLS_MEAN = {"class_reduction": "mean"}
MSE = {"error": "mse"}

# (cause a, cause b): (mode, a case where they coincide, one where they differ [, its mode])
PAIRS: dict[tuple[str, str], tuple[Any, ...]] = {
    ("examples_mean_missing", "classes_mean_missing"): (
        "params", {"examples": 3, "classes": 3, **CLS_MEAN}, {"examples": 5, **CLS_MEAN}),
    ("accumulated_twice", "examples_mean_missing"): ("params", {"examples": 2}, {}),
    ("accumulated_twice", "classes_mean_missing"): (
        "params", {"classes": 2, **CLS_MEAN}, CLS_MEAN),
    ("classes_divided", "examples_divided"): (
        "params", {"examples": 3, "classes": 3, **EX_SUM}, EX_SUM),
    ("examples_divided", "square_two_missing"): (
        "params", {"examples": 2, **EX_SUM, **MSE}, {**EX_SUM, **MSE}),
    ("classes_divided", "square_two_missing"): ("params", {"classes": 2, **MSE}, MSE),
    ("accumulated_twice", "both_reductions"): (
        "params", {"examples": 4, "classes": 2}, {"examples": 5, "classes": 2}),
    ("both_reductions", "square_two_missing"): (
        "params", {"examples": 2, "classes": 4, **MSE}, {"examples": 3, "classes": 4, **MSE}),
    ("both_reductions", "examples_divided"): (
        "params", {"examples": 2, "classes": 4}, {"examples": 3, "classes": 4}),
    ("bias_gradient_averaged", "examples_divided"): ("biases", {}, {}, "params"),
    ("bias_gradient_averaged", "classes_divided"): (
        "biases", {"examples": 3, "classes": 3}, {"examples": 5, "classes": 3}),
    ("bias_gradient_averaged", "square_two_missing"): (
        "biases", {"examples": 2, **MSE}, MSE),
    ("bias_gradient_averaged", "both_reductions"): (
        "biases", {"examples": 2, "classes": 4}, {"examples": 3, "classes": 4}),
    **{("times_learning_rate", other): ("biases" if other == "bias_gradient_averaged"
                                        else "params", {**extra, "learning_rate": lr}, extra)
       for other, lr, extra in (
           ("examples_mean_missing", 5.0, {}), ("classes_mean_missing", 3.0, CLS_MEAN),
           ("accumulated_twice", 2.0, {}), ("examples_divided", 0.2, {}),
           ("classes_divided", 1 / 3, {}), ("square_two_missing", 0.5, MSE),
           ("both_reductions", 5 / 3, {}), ("bias_gradient_averaged", 0.2, {}))},
    **{("learning_rate", other): ("steps", {**extra, "rate": rate}, {**extra, "rate": 0.05},
                                  "params_steps")
       for other, rate, extra in (
           ("examples_mean_missing", 0.5, {}), ("classes_mean_missing", 0.3, CLS_MEAN),
           ("accumulated_twice", 0.2, {}), ("examples_divided", 0.02, {}),
           ("classes_divided", 0.1 / 3, {}), ("square_two_missing", 0.05, MSE),
           ("both_reductions", 0.5 / 3, {}))},
    ("bias_gradient_averaged", "learning_rate"): (
        "bias_steps", {"rate": 0.02}, {"rate": 0.05}, "steps"),
}


def given(mine: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in mine.items() if MODES[mode](k)}


def first_difference(mine: dict[str, np.ndarray], right: dict[str, np.ndarray]
                     ) -> str | None:
    for key in right:
        scale = max(float(np.max(np.abs(right[key]), initial=0.0)), 1e-8)
        if np.max(np.abs(mine[key] - right[key]), initial=0.0) > COINCIDE * scale:
            return key
    return None


def mistaken(settings: dict[str, Any], mode: str) -> tuple[Any, Any, dict[str, tuple]]:
    """(case, spec, for every cause that changes the given numbers: (the first key it changes,
    the learner's value there))."""
    case_settings = {k: v for k, v in settings.items() if k != "rate"}
    case, spec = ln.make_case(**case_settings)
    right = given(ln.Learner()(case, spec.config), mode)
    out = {}
    for name, make in LEARNERS.items():
        learner = make(settings)
        if learner is None:
            continue
        mine = given(learner(case, spec.config), mode)
        first = first_difference(mine, right)
        if first is not None:
            out[name] = (first, mine)
    return case, spec, out


def named(case: Any, spec: CaseSpec, mine: dict[str, np.ndarray]) -> set[str]:
    """The cause names the check gives: one, or the ambiguous finding's list."""
    result = compare(case, mine, spec)
    assert result.first is not None and len(result.findings) == 1, result.findings
    finding = result.findings[0]
    if finding.name == "ambiguous":
        assert finding.fix, "an ambiguous finding says what tells the causes apart"
        return {c.name for c in finding.causes}
    return {finding.name}


def group(name: str, made: dict[str, tuple]) -> set[str]:
    """The causes whose numbers are `name`'s where the check looks (the first that differs),
    found from the learners' arrays."""
    key, mine = made[name]
    scale = max(float(np.max(np.abs(mine[key]), initial=0.0)), 1e-8)
    return {other for other, (k, theirs) in made.items()
            if k == key and np.max(np.abs(theirs[k] - mine[key])) <= COINCIDE * scale}


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_coinciding_causes_are_listed_and_differing_ones_named(pair: tuple[str, str]) -> None:
    a, b = pair
    mode, coincide, differ, *differ_mode = PAIRS[pair]
    case, spec, made = mistaken(coincide, mode)
    assert {a, b} <= group(a, made), f"{a} and {b} do not coincide in {coincide}"
    for cause in (a, b):
        assert named(case, spec, made[cause][1]) == group(a, made)
    case, spec, made = mistaken(differ, differ_mode[0] if differ_mode else mode)
    assert b not in group(a, made) and a not in group(b, made), f"they coincide in {differ}"
    for cause in (a, b):  # named alone, or with causes other than the pair's partner
        assert named(case, spec, made[cause][1]) == group(cause, made)
        assert cause in group(cause, made)


def coinciding_pairs() -> set[tuple[str, str]]:
    """Every pair of the package's factor causes that give one factor in some small case (the
    learning rate, free, coincides with each), the bias averaged (1/N at a bias) with them, and
    a step of another rate with every factor that can show in a step."""
    pairs = set()
    for n, k, ex, cls, error in itertools.product(range(2, 9), range(2, 7), ("mean", "sum"),
                                                  ("mean", "sum"), ("cross_entropy", "mse")):
        config = CASE_CONFIG.__class__(example_reduction=ex, class_reduction=cls, error=error)
        table = factor_table.factors_at("grad.layer1.b", n, k, 0.1, config)
        steps = [f.name for f in table if f.name != "times_learning_rate"]
        pairs |= {tuple(sorted(("learning_rate", name))) for name in steps}
        table.append(factor_table.Factor("bias_gradient_averaged", 1 / n, "", "", ""))
        for f, g in itertools.combinations(table, 2):
            if "times_learning_rate" in (f.name, g.name) or factor_table.same(f.value, g.value):
                pairs.add(tuple(sorted((f.name, g.name))))
    return pairs | {("bias_gradient_averaged", "learning_rate")}


def test_every_pair_that_can_coincide_is_tested() -> None:
    tested = {tuple(sorted(pair)) for pair in PAIRS}
    missing = coinciding_pairs() - tested
    assert not missing, missing


def test_the_issue_case_two_classes_accumulated_twice() -> None:
    """The report's own case: --hidden 4 3 --examples 6 --error mse --class-reduction mean with
    2 classes, gradients accumulated over two passes: 2 x is both K and the doubling, so both
    are listed, with a case that separates them; the fix for a missing 1/K alone is not given
    as the answer."""
    settings = {"hidden": (4, 3), "examples": 6, "error": "mse", "classes": 2, **CLS_MEAN}
    case, spec = ln.make_case(**settings)
    result = compare(case, given(ln.Learner(passes=2)(case, spec.config), "params"), spec)
    (finding,) = result.findings
    assert finding.name == "ambiguous"
    assert {c.name for c in finding.causes} == {"accumulated_twice", "classes_mean_missing"}
    assert "exactly 2 x" in finding.says and "--classes" in finding.fix
    # The case that separates them, with the setting it changes said, and what each gives there.
    assert "--classes 3" in finding.fix and "gradients accumulated twice gives 2 x" in finding.fix
    assert "a missing 1/K gives 3 x" in finding.fix


def test_a_distinct_factor_in_the_default_case_is_named_with_its_size() -> None:
    """The default (5 examples, 3 classes, lr 0.1) keeps every factor apart: each cause is
    named alone, with its number."""
    case, spec = ln.make_case()
    for name, says in (("examples_mean_missing", "exactly 5 x"),
                       ("examples_divided", "exactly 1/5 x"),
                       ("classes_divided", "exactly 1/3 x"),
                       ("accumulated_twice", "exactly 2 x"),
                       ("times_learning_rate", "exactly 1/10 x")):
        mine = given(LEARNERS[name]({})(case, spec.config), "params")
        (finding,) = compare(case, mine, spec).findings
        assert finding.name == name and says in finding.says, finding
