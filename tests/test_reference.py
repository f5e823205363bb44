"""`python -m jaxmlp.reference`: the worked case is right, and `check` recognises the classic
hand-written-backprop mistakes.

A learner's implementation is written below in plain NumPy (`learner`), one small function per
step of the chain rule; each classic mistake is that implementation with one of those functions
swapped for a wrong one. `check` must pass the right one (exit 0), in float64 and in float32,
and name each wrong one.

Tolerances, and why:

- the case against `jax.grad(losses.loss_fn)`, `numpy_mlp` and the package's own NumPy backward
  (`mistakes.backward`): relative 1e-10 of each array's scale. All are float64 and compute the
  same sums in other orders (rounding ~1e-16 per operation; sum_normalize divides by a sum of
  outputs, which can amplify that ~1000x), so 1e-10 leaves a wide margin while a real mistake
  is off by 1e-2 or more.
- the case against central finite differences, float64, h = 1e-6: the error is the truncation
  h^2 |f'''| / 6 ~ 1e-12 plus cancellation eps |L| / h ~ 1e-10 (more where sum_normalize's sum is
  small and the loss bends sharply), so 1e-6 of the array's scale; mistakes are >= 1e-2 off.
- `check` itself uses `compare.RTOL` = 1e-4 of an array's scale (justified there); the float32
  learner is asserted to land well inside it, and the float64 learner near 1e-12.
"""

from __future__ import annotations

import itertools
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import numpy_mlp
from jaxmlp.config import ERRORS, OUTPUTS, REDUCTIONS
from jaxmlp.losses import EPS, Batch, loss_fn, loss_from_logits, reduce_examples
from jaxmlp.model import ACTIVATIONS, mlp_apply
from jaxmlp.reference import (
    FLOOR,
    MISTAKES,
    RTOL,
    CaseSpec,
    all_names,
    backward,
    compare,
    compute_case,
    image_inputs,
    toy_inputs,
)
from jaxmlp.reference.cli import main

FLOAT64_TOLERANCE = 1e-10
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6

Values = dict[str, np.ndarray]


# --- a learner's NumPy implementation, one function per step --------------------------------------


def softmax(o: np.ndarray) -> np.ndarray:
    e = np.exp(o - o.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def d_example_loss(n: int, spec: CaseSpec) -> np.ndarray:
    return np.full(n, 1.0 / n) if spec.example_reduction == "mean" else np.ones(n)


def d_error(g_example: np.ndarray, k: int, spec: CaseSpec) -> np.ndarray:
    share = 1.0 / k if spec.class_reduction == "mean" else 1.0
    return g_example[:, None] * np.full((1, k), share)


def d_p(p: np.ndarray, t: np.ndarray, g_error: np.ndarray, spec: CaseSpec) -> np.ndarray:
    if spec.error == "mse":
        return g_error * 2 * (p - t)
    return g_error * (-t / p)


def d_o(p: np.ndarray, g_p: np.ndarray, spec: CaseSpec) -> np.ndarray:
    # The softmax Jacobian dp_k/do_j = p_k (delta_kj - p_j), applied to g_p.
    return p * (g_p - (g_p * p).sum(axis=1, keepdims=True))


def d_z(g_a: np.ndarray, z: np.ndarray) -> np.ndarray:
    return g_a * (z > 0)  # relu'


def d_w(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return a_prev.T @ g_z


def d_b(g_z: np.ndarray) -> np.ndarray:
    return g_z.sum(axis=0)


def sgd(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - lr * g


RIGHT: dict[str, Callable[..., np.ndarray]] = {
    "d_example_loss": d_example_loss, "d_error": d_error, "d_p": d_p, "d_o": d_o, "d_z": d_z,
    "d_w": d_w, "d_b": d_b, "sgd": sgd}


def learner(case: Values, spec: CaseSpec, dtype: Any = np.float64, **wrong: Callable) -> Values:
    """Everything a hand implementation computes, for relu, softmax, cross-entropy or mse:
    forward, backward, one SGD step. `wrong` swaps steps for mistaken ones."""
    f = {**RIGHT, **wrong}
    x, y = case["x"].astype(dtype), case["y"]
    layers = sum(k.endswith(".w") and k.startswith("layer") for k in case)
    w = {i: case[f"layer{i}.w"].astype(dtype) for i in range(1, layers + 1)}
    b = {i: case[f"layer{i}.b"].astype(dtype) for i in range(1, layers + 1)}
    k = w[layers].shape[1]
    v: Values = {"x": x, "y": y, "t": np.eye(k, dtype=dtype)[y]}
    a = {0: x}
    z: dict[int, np.ndarray] = {}
    for i in range(1, layers + 1):
        z[i] = a[i - 1] @ w[i] + b[i]
        a[i] = np.maximum(z[i], 0) if i < layers else z[i]
        v[f"layer{i}.w"], v[f"layer{i}.b"] = w[i], b[i]
        if i < layers:
            v[f"layer{i}.z"], v[f"layer{i}.a"] = z[i], a[i]
    v["o"] = z[layers]
    v["p"] = p = softmax(v["o"])
    t = v["t"]
    v["error"] = (p - t) ** 2 if spec.error == "mse" else -t * np.log(p)
    reduce = np.mean if spec.class_reduction == "mean" else np.sum
    v["example_loss"] = reduce(v["error"], axis=1)
    v["loss"] = v["example_loss"].mean() if spec.example_reduction == "mean" \
        else v["example_loss"].sum()
    v["grad.loss"] = np.asarray(1.0, dtype)
    v["grad.example_loss"] = f["d_example_loss"](len(y), spec).astype(dtype)
    v["grad.error"] = f["d_error"](v["grad.example_loss"], k, spec)
    v["grad.p"] = f["d_p"](p, t, v["grad.error"], spec)
    v["grad.o"] = g_z = f["d_o"](p, v["grad.p"], spec)
    for i in range(layers, 0, -1):
        v[f"grad.layer{i}.w"] = f["d_w"](a[i - 1], g_z)
        v[f"grad.layer{i}.b"] = f["d_b"](g_z)
        if i > 1:
            v[f"grad.layer{i - 1}.a"] = g_a = g_z @ w[i].T
            v[f"grad.layer{i - 1}.z"] = g_z = f["d_z"](g_a, z[i - 1])
    for i in range(1, layers + 1):
        for kind, param in (("w", w[i]), ("b", b[i])):
            v[f"after_step.layer{i}.{kind}"] = f["sgd"](param, v[f"grad.layer{i}.{kind}"],
                                                        spec.learning_rate)
    return v


# --- the classic mistakes, each one step of `learner` done wrong ----------------------------------


def summed_over_examples(n: int, spec: CaseSpec) -> np.ndarray:
    return np.ones(n)


def summed_over_classes(g_example: np.ndarray, k: int, spec: CaseSpec) -> np.ndarray:
    return g_example[:, None] * np.ones((1, k))


def sign_flipped(p: np.ndarray, t: np.ndarray, g_error: np.ndarray, spec: CaseSpec
                 ) -> np.ndarray:
    return -d_p(p, t, g_error, spec)


def no_softmax_jacobian(p: np.ndarray, g_p: np.ndarray, spec: CaseSpec) -> np.ndarray:
    return g_p


def no_activation_derivative(g_a: np.ndarray, z: np.ndarray) -> np.ndarray:
    return g_a


def transposed_weight_gradient(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return g_z.T @ a_prev


def step_transposing_back(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - lr * (g.T if g.shape != w.shape else g)  # what makes a transposed one run


def outer_product_of_sums(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return np.outer(a_prev.sum(axis=0), g_z.sum(axis=0))


def bias_per_example(g_z: np.ndarray) -> np.ndarray:
    return g_z


def bias_of_last_example(g_z: np.ndarray) -> np.ndarray:
    result = np.zeros(g_z.shape[1])
    for row in g_z:
        result = row  # overwrites instead of adding
    return result


def step_uphill(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w + lr * g


# (case settings, the wrong step, the finding it must be named by, exit status, first key)
MISTAKE_CASES = {
    "summed over examples": ({}, {"d_example_loss": summed_over_examples}, "scale", 1,
                             "grad.example_loss"),
    "summed over classes": ({"class_reduction": "mean"}, {"d_error": summed_over_classes},
                            "scale", 1, "grad.error"),
    "sign flipped": ({}, {"d_p": sign_flipped}, "sign_flipped", 1, "grad.p"),
    "softmax jacobian left out": ({"error": "mse"}, {"d_o": no_softmax_jacobian},
                                  "jacobian_left_out", 1, "grad.o"),
    "activation derivative missing": ({}, {"d_z": no_activation_derivative},
                                      "activation_derivative_missing", 1, "grad.layer1.z"),
    "weight gradient transposed": ({}, {"d_w": transposed_weight_gradient,
                                                         "sgd": step_transposing_back},
                                   "transposed", 2,
                                   "grad.layer2.w"),
    "outer product of sums": ({}, {"d_w": outer_product_of_sums}, "outer_of_sums", 1,
                              "grad.layer2.w"),
    "bias not summed": ({}, {"d_b": bias_per_example}, "sum over the batch", 2, "grad.layer2.b"),
    "bias of one example": ({}, {"d_b": bias_of_last_example}, "bias_gradient_one_example", 1,
                            "grad.layer2.b"),
    "step uphill": ({}, {"sgd": step_uphill}, "step_uphill", 1, "after_step.layer1.w"),
}


# --- helpers --------------------------------------------------------------------------------------


def write_case(folder: Path, capsys: pytest.CaptureFixture, **settings: Any) -> Values:
    argv = ["write", str(folder)]
    for name, value in settings.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    assert main(argv) == 0
    capsys.readouterr()
    with np.load(folder / "case.npz") as loaded:
        return {k: loaded[k] for k in loaded.files}


def save_json(path: Path, values: Values) -> Path:
    path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in values.items()}))
    return path


def run_check(folder: Path, yours: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `check`, whether it returns or exits."""
    try:
        code = main(["check", str(folder), str(yours)])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def spec_of(folder: Path) -> CaseSpec:
    settings = json.loads((folder / "settings.json").read_text())
    settings.pop("data")
    return CaseSpec.from_dict(settings)


def assert_close(got: np.ndarray, want: np.ndarray, tolerance: float, what: str) -> None:
    scale = max(float(np.max(np.abs(want))), FLOOR)
    worst = float(np.max(np.abs(np.asarray(got) - want), initial=0.0)) / scale
    assert worst <= tolerance, f"{what}: off by {worst:.2e} of its scale"


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The few case folders the mistake tests need, written once by the command itself."""
    folders = {}
    for name, settings in {"default": {}, "class_mean": {"class_reduction": "mean"},
                           "mse": {"error": "mse"}}.items():
        folder = tmp_path_factory.mktemp(name)
        assert main(["write", str(folder), *itertools.chain.from_iterable(
            ("--" + k.replace("_", "-"), v) for k, v in settings.items())]) == 0
        folders[name] = folder
    return folders


def case_for(cases: dict[str, Path], settings: dict[str, str]) -> Path:
    return cases[{(): "default", ("class_reduction",): "class_mean",
                  ("error",): "mse"}[tuple(settings)]]


def load(folder: Path) -> Values:
    with np.load(folder / "case.npz") as loaded:
        return {k: loaded[k] for k in loaded.files}


# --- check: the right implementation passes, every wrong one is named -----------------------------


@pytest.mark.parametrize("name", ["default", "class_mean", "mse"])
def test_a_right_implementation_passes_in_float64_and_float32(
        name: str, cases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = cases[name]
    case, spec = load(folder), spec_of(folder)
    for dtype, level in ((np.float64, 1e-12), (np.float32, RTOL / 10)):
        mine = learner(case, spec, dtype)
        assert set(mine) == set(case)
        result = compare(case, {k: np.asarray(v, np.float64) for k, v in mine.items()}, spec)
        assert result.ok, result.first
        assert max(r.worst for r in result.given) <= level, dtype
        code, out, _ = run_check(folder, save_json(tmp_path / f"{dtype.__name__}.json", mine),
                                 capsys)
        assert code == 0, out
        assert f"all {len(case)} quantities you gave match" in out


@pytest.mark.parametrize("mistake", MISTAKE_CASES)
def test_each_classic_mistake_is_recognised(mistake: str, cases: dict[str, Path],
                                            tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    settings, wrong, named, status, first = MISTAKE_CASES[mistake]
    folder = case_for(cases, settings)
    case, spec = load(folder), spec_of(folder)
    mine = learner(case, spec, **wrong)
    code, out, err = run_check(folder, save_json(tmp_path / "mine.json", mine), capsys)
    assert code == status, out + err
    if status == 2:  # a wrong shape: one line on stderr, naming the key and the mistake
        assert err.count("\n") == 1 and first in err and named in err, err
        assert "Traceback" not in err
        return
    assert f"FIRST DIFFERENCE {first}" in out, out
    result = compare(case, {k: np.asarray(v, np.float64) for k, v in mine.items()}, spec)
    assert result.first.key == first
    assert [f.name for f in result.findings] == [named], result.findings
    if named in MISTAKES:
        assert MISTAKES[named][0] in " ".join(out.split()), out


def test_missing_factors_are_named_with_their_size(cases: dict[str, Path]) -> None:
    """N times (the examples' mean) and K times (the classes' mean), seen at the weights too
    when the learner's file starts there."""
    for settings, wrong, factor in (({}, {"d_example_loss": summed_over_examples}, 5),
                                    ({"class_reduction": "mean"},
                                     {"d_error": summed_over_classes}, 2)):
        folder = case_for(cases, settings)
        case, spec = load(folder), spec_of(folder)
        mine = learner(case, spec, **wrong)
        result = compare(case, {"grad.layer1.w": mine["grad.layer1.w"]}, spec)
        assert result.first.key == "grad.layer1.w"
        assert f"exactly {factor} x" in result.findings[0].says
        word = "examples" if factor == 5 else "classes"
        assert f"summed over the {factor} {word}" in result.findings[0].says


def test_forward_and_step_mistakes_are_named(cases: dict[str, Path]) -> None:
    folder = cases["default"]
    case, spec = load(folder), spec_of(folder)
    x, w, b = case["x"], case["layer1.w"], case["layer1.b"]
    lr = spec.learning_rate
    for yours, first, named in (
            ({"layer1.z": x @ w}, "layer1.z", "bias_not_added"),
            ({"layer1.z": case["layer1.z"], "layer1.a": np.tanh(case["layer1.z"])}, "layer1.a",
             "other_activation"),
            ({"loss": case["example_loss"].sum()}, "loss", "scale"),
            ({"o": np.where(case["o"] > 0, np.nan, case["o"])}, "o", "not_finite"),
            ({"x": x + 0.1}, "x", "different_start"),
            ({"after_step.layer1.w": w - lr / 10 * case["grad.layer1.w"]},
             "after_step.layer1.w", "learning_rate"),
            ({"after_step.layer1.b": b}, "after_step.layer1.b", "no_step")):
        result = compare(case, yours, spec)
        assert result.first.key == first
        assert [f.name for f in result.findings] == [named], (first, result.findings)


def test_a_subset_of_keys_is_checked_and_the_rest_reported_as_not_given(
        cases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = cases["default"]
    case, spec = load(folder), spec_of(folder)
    mine = learner(case, spec)
    code, out, _ = run_check(folder, save_json(tmp_path / "few.json", {
        k: mine[k] for k in ("o", "loss", "grad.layer1.w")}), capsys)
    assert code == 0 and f"3 of {len(case)} quantities" in out
    np.savez(tmp_path / "few.npz", **{"grad.o": mine["grad.o"] * 1.01})
    code, out, _ = run_check(folder, tmp_path / "few.npz", capsys)
    assert code == 1 and "FIRST DIFFERENCE grad.o" in out and "1.01 x" in out


# --- check: files it cannot use -------------------------------------------------------------------


BAD_FILES = {
    "missing.json": (None, "cannot read"),
    "garbage.json": (b"{not json", "not valid JSON"),
    "list.json": (b"[1, 2]", "not an object"),
    "empty.json": (b"{}", "no quantities"),
    "unknown.json": (b'{"layer2.z": [[1, 2]]}', "'layer2.z'"),
    "typo.json": (b'{"grad.layer1.W": [[1]]}', "did you mean 'grad.layer1.w'"),
    "ragged.json": (b'{"o": [[1, 2], [3]]}', "'o' is not an array of numbers"),
    "shape.json": (b'{"loss": [1, 2]}', "'loss' has shape (2,)"),
    "text.npz": (b"hello", "not a readable .npz"),
    "mine.txt": (b"{}", "must end in .json"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_it_cannot_use_gets_one_line_and_exit_2(
        name: str, cases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content, says = BAD_FILES[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_check(cases["default"], path, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert says in err and "Traceback" not in err


def test_a_folder_without_a_case_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    code, _, err = run_check(tmp_path, tmp_path / "mine.json", capsys)
    assert code == 2 and "not a case folder" in err and "write" in err


# --- write: the numbers are the project's ---------------------------------------------------------


VARIANTS = [CaseSpec(output=o, error=e, class_reduction=c, example_reduction=x,
                     activation=("tanh" if i % 2 else "relu"))
            for i, (o, e, c, x) in enumerate(itertools.product(OUTPUTS, ERRORS, REDUCTIONS,
                                                               REDUCTIONS))]
VARIANTS += [CaseSpec(targets="integer", output="none", error="mse", class_reduction=c,
                      example_reduction=x) for c, x in itertools.product(REDUCTIONS, REDUCTIONS)]


def variant_id(s: CaseSpec) -> str:
    return f"{s.targets}-{s.output}-{s.error}-cls_{s.class_reduction}-ex_{s.example_reduction}"


def central_differences(f: Callable[[np.ndarray], float], at: np.ndarray) -> np.ndarray:
    """df/dv for every entry of `at`, (f(v + h) - f(v - h)) / 2h: no derivative used."""
    grad = np.zeros_like(at)
    for i in np.ndindex(at.shape):
        step = np.zeros_like(at)
        step[i] = FD_STEP
        grad[i] = (f(at + step) - f(at - step)) / (2 * FD_STEP)
    return grad


def test_every_loss_variant_is_covered() -> None:
    assert len(VARIANTS) == len(OUTPUTS) * len(ERRORS) * len(REDUCTIONS) ** 2 + 4
    assert len({variant_id(s) for s in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("spec", VARIANTS, ids=[variant_id(s) for s in VARIANTS])
def test_the_case_is_jax_grad_of_loss_fn_and_finite_differences(spec: CaseSpec) -> None:
    x, y = toy_inputs(spec.examples, spec.seed)
    case = compute_case(x, y, 2, spec)
    assert list(case) == all_names(2)
    config = spec.config()
    with jax.enable_x64(True):
        params = [{k: jnp.asarray(case[f"layer{i}.{k}"]) for k in "wb"} for i in (1, 2)]
        batch = Batch(jnp.asarray(x), jnp.asarray(y))
        want_loss = float(loss_fn(params, batch, config)[0])
        grads = jax.grad(lambda p: loss_fn(p, batch, config)[0])(params)

        def loss_at(i: int, kind: str) -> Callable[[np.ndarray], float]:
            def f(value: np.ndarray) -> float:
                moved = [dict(p) for p in params]
                moved[i][kind] = jnp.asarray(value)
                return float(loss_fn(moved, batch, config)[0])
            return f

        for i, kind in itertools.product((0, 1), "wb"):
            name = f"layer{i + 1}.{kind}"
            assert_close(case["grad." + name], np.asarray(grads[i][kind]), FLOAT64_TOLERANCE,
                         f"grad.{name} vs jax.grad(loss_fn)")
            assert_close(case["grad." + name], central_differences(loss_at(i, kind), case[name]),
                         FD_TOLERANCE, f"grad.{name} vs finite differences")
        assert_close(case["grad.o"], central_differences(
            lambda o: float(loss_from_logits(jnp.asarray(o), batch.y, config)), case["o"]),
            FD_TOLERANCE, "grad.o vs finite differences")
        assert_close(case["o"], np.asarray(mlp_apply(params, batch.x, spec.activation)),
                     FLOAT64_TOLERANCE, "o vs model.mlp_apply")
    assert float(case["loss"]) == pytest.approx(want_loss, rel=1e-12)
    assert_close(case["after_step.layer1.w"], case["layer1.w"] - spec.learning_rate
                 * np.asarray(grads[0]["w"]), FLOAT64_TOLERANCE, "the SGD step")


@pytest.mark.parametrize("spec", VARIANTS[::3], ids=[variant_id(s) for s in VARIANTS[::3]])
def test_every_intermediate_gradient_matches_finite_differences(spec: CaseSpec) -> None:
    """dloss/d(each stage), by finite differences of the rest of the computation after it,
    built from the project's functions (`losses`, `model.mlp_apply`) and the formulas of the
    case's README."""
    x, y = toy_inputs(spec.examples, spec.seed)
    case = compute_case(x, y, 2, spec)
    config = spec.config()
    t = case["t"]

    def from_example_loss(v: np.ndarray) -> float:
        return float(reduce_examples(jnp.asarray(v), spec.example_reduction))

    def from_error(e: np.ndarray) -> float:
        per_example = e.sum(axis=1) if spec.class_reduction == "sum" else e.mean(axis=1)
        return from_example_loss(per_example)

    def from_p(p: np.ndarray) -> float:
        if spec.error == "mse" or spec.targets == "integer":
            return from_error((p - t) ** 2)
        return from_error(-t * np.log(p if spec.output == "softmax" else np.maximum(p, EPS)))

    with jax.enable_x64(True):
        params = [{k: jnp.asarray(case[f"layer{i}.{k}"]) for k in "wb"} for i in (1, 2)]
        act = ACTIVATIONS[spec.activation]
        rest = {
            "example_loss": from_example_loss, "error": from_error, "p": from_p,
            "layer1.a": lambda a: float(loss_from_logits(mlp_apply(params[1:], jnp.asarray(a)),
                                                         jnp.asarray(y), config)),
            "layer1.z": lambda z: float(loss_from_logits(
                mlp_apply(params[1:], act(jnp.asarray(z))), jnp.asarray(y), config)),
        }
        for name, f in rest.items():
            assert_close(case["grad." + name], central_differences(f, case[name]),
                         FD_TOLERANCE, f"grad.{name} vs finite differences")


@pytest.mark.parametrize("spec", VARIANTS, ids=[variant_id(s) for s in VARIANTS])
def test_numpy_backprops_agree_with_the_case(spec: CaseSpec) -> None:
    """The check's own NumPy backward (which the mistakes are variations of) and the project's
    `numpy_mlp` reproduce every gradient of the case."""
    x, y = toy_inputs(spec.examples, spec.seed)
    case = compute_case(x, y, 2, spec)
    for name, (value,) in backward(case, spec).items():
        assert_close(value, case[name], FLOAT64_TOLERANCE, f"mistakes.backward {name}")
    params = [{k: case[f"layer{i}.{k}"] for k in "wb"} for i in (1, 2)]
    config = spec.config()
    for i, g in enumerate(numpy_mlp.backward(params, x, y, config), start=1):
        for kind in "wb":
            assert_close(g[kind], case[f"grad.layer{i}.{kind}"], FLOAT64_TOLERANCE,
                         f"numpy_mlp layer{i}.{kind}")
    assert_close(numpy_mlp.output_gradient(case["o"], y, config), case["grad.o"],
                 FLOAT64_TOLERANCE, "numpy_mlp grad.o")


# --- write: the files -----------------------------------------------------------------------------


def test_write_gives_json_npz_and_a_readme_whose_snippet_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "case"
    case = write_case(folder, capsys, activation="tanh", output="sum_normalize", error="mse",
                      example_reduction="sum")
    from_json = json.loads((folder / "case.json").read_text())
    assert list(from_json) == list(case) == all_names(2)
    for key, value in case.items():
        assert np.array_equal(np.asarray(from_json[key]), value), key  # every digit kept
    readme = (folder / "README.md").read_text()
    words = " ".join(readme.split())
    for formula in ("w is (in, out)", "z = a_prev @ w + b", "error (5, 2) = (p - t) ** 2",
                    "loss () = example_loss.sum()", "tanh(z) = np.tanh(z)",
                    "s = o.sum(axis=1, keepdims=True)", "grad.p = grad.error * 2 * (p - t)",
                    "grad.layer1.z = grad.layer1.a * tanh'(layer1.z)",
                    "grad.layer1.w = x.T @ grad.layer1.z", "- 0.1 * grad.<name>"):
        assert formula in words, formula
    snippet = readme.split("```python\n")[1].split("```")[0]
    assert len(snippet.splitlines()) <= 30
    monkeypatch.chdir(folder)
    exec(compile(snippet, "README snippet", "exec"), {"print": lambda *a: None})
    code, out, _ = run_check(Path("."), Path("mine.json"), capsys)
    assert code == 0 and "match" in out


def test_write_refuses_impossible_settings_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        main(["write", str(folder), "--targets", "integer"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--targets integer" in err and err.count("\n") == 1
    assert not folder.exists()


def test_image_inputs_come_from_the_project_loader(mnist_sample_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """--inputs mnist: the first training images as `data.load_data` gives them (from the
    committed MNIST sample: the same first images as full MNIST, quick to read)."""
    case = write_case(tmp_path / "mnist", capsys, inputs="mnist", data_dir=mnist_sample_dir)
    assert case["x"].shape == (5, 784) and case["t"].shape == (5, 10)
    assert 0.0 <= case["x"].min() and case["x"].max() == 1.0
    mine = learner(case, CaseSpec(inputs="mnist"))
    result = compare(case, {k: np.asarray(v, np.float64) for k, v in mine.items()},
                     spec_of(tmp_path / "mnist"))
    assert result.ok, result.first
    with pytest.raises(ValueError, match="more than"):
        image_inputs(np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int32), 3)


def test_the_module_runs_as_a_command(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m jaxmlp.reference` (its __main__, run in this process: a new one would
    spend seconds importing JAX)."""
    monkeypatch.setattr(sys, "argv", ["jaxmlp.reference", "write", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("jaxmlp.reference", run_name="__main__")
    assert e.value.code == 0
    assert "4-3-2 net, relu" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "case.json", "case.npz",
                                                         "settings.json"]
