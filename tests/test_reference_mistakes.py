"""`python -m jaxmlp.reference check` recognises every classic mistake in every layer of every
depth `write` makes: a learner's implementation (`tests/_learner.py`) with one step done wrong in
one layer, checked with every quantity given and with only some (the parameter gradients, the
steps, the outputs), so the mistake is recognised where it is made and through what it changes
downstream.

Tolerances: the check's own (`compare.RTOL`, 1e-4 of an array's scale, justified there). The
test's own "differs" (to find the first differing quantity by itself) is 1e-9 of an array's
scale: the learner is float64 like the case, so a right value is off by ~1e-15, and every
mistake here moves some entry by far more than 1e-9 of its array's scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import _learner as ln
import numpy as np
import pytest

from jaxmlp.reference import MISTAKES, RTOL, CaseFileError, all_names, as_arrays, compare
from jaxmlp.reference.case import (
    CASE_CONFIG,
    KINK_MARGIN,
    MAX_HIDDEN_LAYERS,
    _hidden_z,
    initial_params,
    toy_inputs,
)

DIFFERS = 1e-9
# Every depth `write` takes, up to its limit: 0 to MAX_HIDDEN_LAYERS hidden layers. Widths 4
# then 3, so some weight matrices are square (4x4 from the 4 toy pixels; 3x3 into 3 classes)
# and some are not: a transposed gradient keeps its shape in the first and not in the second.
DEPTHS = [(), (4,), (4, 3), (4, 3, 3), (4, 3, 3, 3)]
assert len(DEPTHS[-1]) == MAX_HIDDEN_LAYERS


def layers_of(hidden: tuple[int, ...]) -> int:
    return len(hidden) + 1


# name: (the wrong steps, the layers (of L) it can be made in, the finding, the modes to check)
LAYERED: dict[str, tuple[dict[str, Any], Any, str, tuple[str, ...]]] = {
    "activation_derivative_missing": ({"d_z": ln.no_activation_derivative},
                                      lambda n: range(1, n), "activation_derivative_missing",
                                      ("all", "params")),
    "pre_activation_as_input": ({"w_input": ln.pre_activation_input}, lambda n: range(2, n + 1),
                                "pre_activation_as_input", ("all", "params")),
    "updated_in_place": ({"d_a": ln.through_updated_weights}, lambda n: range(2, n + 1),
                         "updated_in_place", ("all", "params")),
    "outer_of_sums": ({"d_w": ln.outer_product_of_sums}, lambda n: range(1, n + 1),
                      "outer_of_sums", ("all", "params")),
    "weight_gradient_transposed": ({"d_w": ln.transposed_weight_gradient,
                                    "sgd": ln.step_transposing_back}, lambda n: range(1, n + 1),
                                   "weight_gradient_transposed", ("all", "params")),
    "reshaped_not_transposed": ({"d_w": ln.reshaped_weight_gradient}, lambda n: range(1, n + 1),
                                "reshaped_not_transposed", ("all", "params")),
    "bias_gradient_averaged": ({"d_b": ln.bias_averaged}, lambda n: range(1, n + 1),
                               "bias_gradient_averaged", ("all", "params")),
    "bias_gradient_one_example": ({"d_b": ln.bias_of_last_example}, lambda n: range(1, n + 1),
                                  "bias_gradient_one_example", ("all", "params")),
    "step_uphill": ({"sgd": ln.step_uphill}, lambda n: range(1, n + 1), "step_uphill",
                    ("all", "steps")),
    "no_step": ({"sgd": ln.no_step}, lambda n: range(1, n + 1), "no_step", ("all", "steps")),
    "another_learning_rate": ({"sgd": ln.half_the_rate}, lambda n: range(1, n + 1),
                              "learning_rate", ("all", "steps")),
    "bias_not_added": ({"affine": ln.no_bias}, lambda n: range(1, n + 1), "bias_not_added",
                       ("all", "outputs")),
    "other_activation": ({"act": np.tanh}, lambda n: range(1, n), "other_activation",
                         ("all", "outputs")),
}
# Mistakes of no one layer: (settings, wrong steps, the finding)
GLOBAL: dict[str, tuple[dict[str, Any], dict[str, Any], int, str]] = {
    "jacobian_left_out": ({"error": "mse"}, {"d_o": ln.no_softmax_jacobian}, 1,
                          "jacobian_left_out"),
    "jacobian_diagonal_only": ({"error": "mse"}, {"d_o": ln.softmax_jacobian_diagonal}, 1,
                               "jacobian_diagonal_only"),
    "sign_flipped": ({}, {"d_p": ln.sign_flipped}, 1, "sign_flipped"),
    "summed_over_examples": ({}, {"d_example_loss": ln.summed_over_examples}, 1,
                             "examples_mean_missing"),
    "summed_over_classes": ({"class_reduction": "mean"}, {"d_error": ln.summed_over_classes}, 1,
                            "classes_mean_missing"),
    "square_two_missing": ({"error": "mse"}, {"d_p": ln.square_two_missing}, 1,
                           "square_two_missing"),
    "accumulated_twice": ({}, {}, 2, "accumulated_twice"),
}
MODES = {
    "all": lambda key: True,
    "params": lambda key: key.startswith(("grad.layer", "after_step.layer")) and
    key[-2:] in (".w", ".b"),
    "steps": lambda key: key.startswith("after_step."),
    "outputs": lambda key: key in ("o", "loss"),
}


def first_difference(mine: dict[str, np.ndarray], case: dict[str, np.ndarray]) -> str:
    """The first key, in the case's order, where the learner's value differs: found here, not
    by the package."""
    for key in case:
        if key in mine:
            scale = max(float(np.max(np.abs(case[key]), initial=0.0)), 1e-8)
            if np.shape(mine[key]) != case[key].shape or \
                    np.max(np.abs(mine[key] - case[key]), initial=0.0) > DIFFERS * scale:
                return key
    raise AssertionError("the mistake changes nothing the learner gives")


def diagnosis(case: dict, spec: Any, mine: dict, mode: str) -> tuple[str, list]:
    given = {k: np.asarray(v, np.float64) for k, v in mine.items() if MODES[mode](k)}
    first = first_difference(given, case)
    result = compare(case, given, spec)
    assert result.first is not None and result.first.key == first, (result.first, first)
    return first, result.findings


LAYERED_CASES = [(name, hidden, layer, mode)
                 for name, (_, layers, _, modes) in LAYERED.items() for hidden in DEPTHS
                 for layer in layers(layers_of(hidden)) for mode in modes]


def test_every_mistake_on_the_list_is_in_a_table() -> None:
    """The package's list of mistakes is the test's: a new one needs a row here."""
    tested = {row[2] for row in LAYERED.values()} | {row[3] for row in GLOBAL.values()}
    assert set(MISTAKES) <= tested, set(MISTAKES) - tested
    # Every layer of every depth has its mistakes made in it (1 + 2 + ... + 5 layers).
    covered = {(hidden, layer) for _, hidden, layer, _ in LAYERED_CASES}
    assert covered == {(h, la) for h in DEPTHS for la in range(1, layers_of(h) + 1)}


@pytest.mark.parametrize(("name", "hidden", "layer", "mode"), LAYERED_CASES,
                         ids=[f"{n}-L{len(h) + 1}-layer{la}-{m}" for n, h, la, m in LAYERED_CASES])
def test_each_mistake_is_recognised_in_every_layer_of_every_depth(
        name: str, hidden: tuple[int, ...], layer: int, mode: str) -> None:
    wrong, layers, named, _ = LAYERED[name]
    case, spec = ln.make_case(hidden=hidden)
    mine = ln.Learner(wrong, layer)(case, spec.config)
    shape_of = mine.get(f"grad.layer{layer}.w")
    if name == "weight_gradient_transposed" and shape_of.shape != case[f"layer{layer}.w"].shape:
        # Not square: the file is refused by shape, in one line that names the transposition.
        with pytest.raises(CaseFileError, match="it is transposed"):
            as_arrays({k: v.tolist() for k, v in mine.items() if MODES[mode](k)}, case, "mine")
        return
    if name == "reshaped_not_transposed" and shape_of.shape[0] == shape_of.shape[1]:
        named = "weight_gradient_transposed"  # a square reshape is the plain transposition
    first, findings = diagnosis(case, spec, mine, mode)
    assert [f.name for f in findings] == [named], (first, findings)
    # Another learning rate is one number for the whole step: it names no layer.
    if len(layers(layers_of(hidden))) > 1 and named != "learning_rate":
        assert f"in layer {layer}" in findings[0].says, findings[0].says


GLOBAL_CASES = [(name, hidden, mode) for name in GLOBAL for hidden in DEPTHS
                for mode in ("all", "params")]


@pytest.mark.parametrize(("name", "hidden", "mode"), GLOBAL_CASES,
                         ids=[f"{n}-L{len(h) + 1}-{m}" for n, h, m in GLOBAL_CASES])
def test_mistakes_of_no_one_layer_are_recognised_at_every_depth(
        name: str, hidden: tuple[int, ...], mode: str) -> None:
    settings, wrong, passes, named = GLOBAL[name]
    case, spec = ln.make_case(hidden=hidden, **settings)
    mine = ln.Learner(wrong, passes=passes)(case, spec.config)
    first, findings = diagnosis(case, spec, mine, mode)
    assert [f.name for f in findings] == [named], (first, findings)


def test_the_updated_weights_are_named_where_the_issue_met_them() -> None:
    """The report that asked for it: a 4-4-3-2 relu net, layer 2's weights updated in place,
    the first differing quantity grad.layer2.a... here named, with the layer."""
    case, spec = ln.make_case(hidden=(4, 3), classes=2)
    mine = ln.Learner({"d_a": ln.through_updated_weights}, 3)(case, spec.config)
    first, findings = diagnosis(case, spec, mine, "all")
    assert first == "grad.layer2.a"
    assert [f.name for f in findings] == ["updated_in_place"]
    assert "in layer 3" in findings[0].says and "before" in findings[0].fix


def test_relu_derivative_forgotten_in_layer_1_of_two_hidden_layers() -> None:
    """The report's own case: 4-4-3-2 relu, relu' forgotten in layer 1 only (it was "not one
    of the classic mistakes" before)."""
    case, spec = ln.make_case(hidden=(4, 3), classes=2)
    mine = ln.Learner({"d_z": ln.no_activation_derivative}, 1)(case, spec.config)
    first, findings = diagnosis(case, spec, mine, "all")
    assert first == "grad.layer1.z"
    assert [f.name for f in findings] == ["activation_derivative_missing"]
    assert "in layer 1" in findings[0].says


@pytest.mark.parametrize("hidden", DEPTHS, ids=[f"L{len(h) + 1}" for h in DEPTHS])
def test_a_right_implementation_passes_at_every_depth(hidden: tuple[int, ...]) -> None:
    case, spec = ln.make_case(hidden=hidden)
    for dtype, level in ((np.float64, 1e-12), (np.float32, RTOL / 10)):
        mine = ln.Learner()(case, spec.config, dtype)
        assert list(case) == all_names(len(hidden) + 1)
        assert set(mine) == set(case)
        result = compare(case, {k: np.asarray(v, np.float64) for k, v in mine.items()}, spec)
        assert result.ok, result.first
        assert max(r.worst for r in result.given) <= level, dtype


def test_forward_quantities_and_odd_values_are_diagnosed() -> None:
    """The reductions' factors in the loss itself, values that are not finite, a different
    start, wrong targets; and a wrong single number that fits nothing is not called "a
    constant factor" (one number is always some multiple of another)."""
    case, spec = ln.make_case(hidden=(4, 3))
    for yours, named in (
            ({"loss": case["example_loss"].sum()}, ["examples_mean_missing"]),
            ({"example_loss": case["error"].mean(axis=1)}, ["classes_divided"]),
            ({"o": np.where(case["o"] > 0, np.nan, case["o"])}, ["not_finite"]),
            ({"x": case["x"] + 0.1}, ["different_start"]),
            ({"layer2.b": case["layer2.b"] * 2}, ["different_start"]),
            ({"t": 1 - case["t"]}, ["targets"]),
            ({"loss": case["loss"] * 1.2345}, []),
            ({"grad.o": case["grad.o"] * 1.2345}, ["scale"])):
        result = compare(case, yours, spec)
        assert result.first.key == next(iter(yours))
        assert [f.name for f in result.findings] == named, (yours.keys(), result.findings)


@pytest.mark.parametrize("hidden", DEPTHS[1:], ids=[f"L{len(h) + 1}" for h in DEPTHS[1:]])
def test_every_hidden_unit_of_a_case_switches(hidden: tuple[int, ...]) -> None:
    """At every depth `write` takes, each hidden relu unit of the case is on for some examples
    and off for others, away from the kink: so relu' matters in every unit, and a mistake in any
    layer changes something the learner gives."""
    x, _ = toy_inputs(5, 0)
    params = initial_params(x, 3, dataclasses.replace(CASE_CONFIG, hidden=hidden))
    for z in _hidden_z(params, x, "relu"):
        assert np.all(np.abs(z) >= KINK_MARGIN)
        assert np.all((z > 0).any(axis=0) & (z < 0).any(axis=0))
