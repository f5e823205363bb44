"""`python -m jaxmlp.reference write`: the worked case's numbers are the project's.

The mistakes `check` recognises, in every layer of every depth, are tested in
test_reference_mistakes.py; factors that fit several causes in test_reference_factors.py; the
command's files, folders, limits and messages in test_reference_cli.py. The learner's
implementation they check is tests/_learner.py.

Tolerances, and why:

- the case against `jax.grad(losses.loss_fn)`, `numpy_mlp` and the package's own NumPy backward
  (`mistakes.backward`): relative 1e-10 of each array's scale. All are float64 and compute the
  same sums in other orders (rounding ~1e-16 per operation; sum_normalize divides by a sum of
  outputs, which can amplify that ~1000x), so 1e-10 leaves a wide margin while a real mistake
  is off by 1e-2 or more.
- the case against central finite differences, float64, h = 1e-6: the error is the truncation
  h^2 |f'''| / 6 ~ 1e-12 plus cancellation eps |L| / h ~ 1e-10 (more where sum_normalize's sum is
  small and the loss bends sharply), so 1e-6 of the array's scale; mistakes are >= 1e-2 off.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import numpy_mlp
from jaxmlp.config import ERRORS, OUTPUTS, REDUCTIONS, Config
from jaxmlp.losses import EPS, Batch, loss_fn, loss_from_logits, reduce_examples
from jaxmlp.model import ACTIVATIONS, mlp_apply
from jaxmlp.reference import (
    CASE_CONFIG,
    FLOOR,
    CaseSpec,
    all_names,
    backward,
    compute_case,
    toy_inputs,
)
from jaxmlp.reference.case import CASE_FIELDS, initial_params

FLOAT64_TOLERANCE = 1e-10
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def assert_close(got: np.ndarray, want: np.ndarray, tolerance: float, what: str) -> None:
    scale = max(float(np.max(np.abs(want))), FLOOR)
    worst = float(np.max(np.abs(np.asarray(got) - want), initial=0.0)) / scale
    assert worst <= tolerance, f"{what}: off by {worst:.2e} of its scale"


def variant(**settings: str) -> CaseSpec:
    return CaseSpec(dataclasses.replace(CASE_CONFIG, **settings))


VARIANTS = [variant(output=o, error=e, class_reduction=c, example_reduction=x,
                    activation=("tanh" if i % 2 else "relu"))
            for i, (o, e, c, x) in enumerate(itertools.product(OUTPUTS, ERRORS, REDUCTIONS,
                                                               REDUCTIONS))]
VARIANTS += [variant(targets="integer", output="none", error="mse", class_reduction=c,
                     example_reduction=x) for c, x in itertools.product(REDUCTIONS, REDUCTIONS)]


def variant_id(s: CaseSpec) -> str:
    c = s.config
    return f"{c.targets}-{c.output}-{c.error}-cls_{c.class_reduction}-ex_{c.example_reduction}"


def case_of(spec: CaseSpec) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    x, y = toy_inputs(spec.examples, spec.config.seed, spec.classes)
    return compute_case(x, y, spec.classes, spec), x, y


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


def test_the_case_is_built_from_the_training_config() -> None:
    """One home per setting: the case's settings are `Config` fields (with the case's own
    defaults: a small net, a visible step), plus its examples, inputs and classes."""
    spec = CaseSpec()
    assert isinstance(spec.config, Config)
    assert spec.config == dataclasses.replace(Config(), hidden=(3,), learning_rate=0.1)
    assert set(CASE_FIELDS) <= {f.name for f in dataclasses.fields(Config)}
    assert set(spec.settings()) == {*CASE_FIELDS, "examples", "inputs", "classes"}
    assert CaseSpec.from_settings(spec.settings()) == spec


@pytest.mark.parametrize("spec", VARIANTS, ids=[variant_id(s) for s in VARIANTS])
def test_the_case_is_jax_grad_of_loss_fn_and_finite_differences(spec: CaseSpec) -> None:
    case, x, y = case_of(spec)
    assert list(case) == all_names(2)
    config = spec.config
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
        assert_close(case["o"], np.asarray(mlp_apply(params, batch.x, config.activation)),
                     FLOAT64_TOLERANCE, "o vs model.mlp_apply")
        stepped = [{k: case[f"after_step.layer{i}.{k}"] for k in "wb"} for i in (1, 2)]
        loss_after = float(loss_fn(stepped, batch, config)[0])
    assert float(case["loss"]) == pytest.approx(want_loss, rel=1e-12)
    assert_close(case["after_step.layer1.w"], case["layer1.w"] - config.learning_rate
                 * np.asarray(grads[0]["w"]), FLOAT64_TOLERANCE, "the SGD step")
    assert float(case["after_step.loss"]) == pytest.approx(loss_after, rel=1e-12)


def test_the_default_step_lowers_the_loss() -> None:
    """after_step.loss is there so a learner sees their step do its job: in the default case
    it must, and by more than rounding."""
    case, _, _ = case_of(CaseSpec())
    assert float(case["after_step.loss"]) < float(case["loss"]) * (1 - 1e-3)


@pytest.mark.parametrize("spec", VARIANTS[::3], ids=[variant_id(s) for s in VARIANTS[::3]])
def test_every_intermediate_gradient_matches_finite_differences(spec: CaseSpec) -> None:
    """dloss/d(each stage), by finite differences of the rest of the computation after it,
    built from the project's functions (`losses`, `model.mlp_apply`) and the formulas of the
    case's README."""
    case, _, y = case_of(spec)
    config = spec.config
    t = case["t"]

    def from_example_loss(v: np.ndarray) -> float:
        return float(reduce_examples(jnp.asarray(v), config.example_reduction))

    def from_error(e: np.ndarray) -> float:
        per_example = e.sum(axis=1) if config.class_reduction == "sum" else e.mean(axis=1)
        return from_example_loss(per_example)

    def from_p(p: np.ndarray) -> float:
        if config.error == "mse" or config.targets == "integer":
            return from_error((p - t) ** 2)
        return from_error(-t * np.log(p if config.output == "softmax" else np.maximum(p, EPS)))

    with jax.enable_x64(True):
        params = [{k: jnp.asarray(case[f"layer{i}.{k}"]) for k in "wb"} for i in (1, 2)]
        act = ACTIVATIONS[config.activation]
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
    `numpy_mlp` reproduce every gradient and step of the case."""
    case, x, y = case_of(spec)
    config = spec.config
    found = backward(case, config)
    assert set(found) == {k for k in case if k.startswith(("grad.", "after_step.layer"))}
    for name, (value,) in found.items():
        assert_close(value, case[name], FLOAT64_TOLERANCE, f"mistakes.backward {name}")
    params = [{k: case[f"layer{i}.{k}"] for k in "wb"} for i in (1, 2)]
    for i, g in enumerate(numpy_mlp.backward(params, x, y, config), start=1):
        for kind in "wb":
            assert_close(g[kind], case[f"grad.layer{i}.{kind}"], FLOAT64_TOLERANCE,
                         f"numpy_mlp layer{i}.{kind}")
    assert_close(numpy_mlp.output_gradient(case["o"], y, config), case["grad.o"],
                 FLOAT64_TOLERANCE, "numpy_mlp grad.o")


@pytest.mark.parametrize("hidden", [(4,), (4, 3), (4, 3, 3), (16, 16, 16, 16)])
def test_every_hidden_relu_layer_is_on_and_off_and_clear_of_the_kink(
        hidden: tuple[int, ...]) -> None:
    """So that relu' (and a forgotten one) shows in every layer, whatever the depth, and no z
    sits where float32 rounding could flip relu's side."""
    x, _ = toy_inputs(5, 0)
    config = dataclasses.replace(CASE_CONFIG, hidden=hidden)
    params = initial_params(x, 3, config)
    a = x
    for layer in params[:-1]:
        z = a @ layer["w"] + layer["b"]
        assert np.any(z > 0) and np.any(z < 0) and np.min(np.abs(z)) >= 1e-4
        a = np.maximum(z, 0)
