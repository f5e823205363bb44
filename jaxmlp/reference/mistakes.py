"""Classic hand-written-backprop mistakes, each as a small change to a NumPy backward pass.

`backward(case, spec)` recomputes every gradient and the SGD step from the case's forward values
(a second implementation, beside the JAX one in `case.py`; the tests hold them together).
`backward(case, spec, mistake)` does the same with one classic mistake made, so a learner's
array can be recognised by which wrong computation reproduces it. `MISTAKES` says each in plain
words, with the fix.

Mistakes that only rescale an array (a missing 1/N or 1/K, a flipped sign, the 2 of the square)
are recognised by the ratio yours / case instead (`scale_finding`): that works at whichever
quantity the learner's file happens to start differing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jaxmlp import numpy_mlp
from jaxmlp.config import ACTIVATIONS, OUTPUTS
from jaxmlp.losses import EPS
from jaxmlp.reference.case import Case, CaseSpec, num_layers_of

# "Do these two arrays agree, to the check's tolerance?"
Matches = Callable[[np.ndarray, np.ndarray], bool]


class Finding(NamedTuple):
    """A recognised mistake: its name, what it is in plain words, and how to fix it."""

    name: str
    says: str
    fix: str


MISTAKES: dict[str, tuple[str, str]] = {
    "activation_derivative_missing": (
        "the activation's derivative is missing: dL/dz was taken equal to dL/da",
        "multiply by act'(z) on the way back: grad.z = grad.a * act'(z)",
    ),
    "jacobian_left_out": (
        "the prediction's Jacobian is left out: dL/do was taken equal to dL/dp",
        "go back through p = f(o) with its full Jacobian (see README.md, grad.o)",
    ),
    "jacobian_diagonal_only": (
        "only the diagonal of the prediction's Jacobian is used (each p_k as if it depended on "
        "o_k alone); softmax and sum-normalize mix every output of an example",
        "use the full Jacobian: for softmax grad.o = p * (grad.p - (grad.p * p).sum(1, "
        "keepdims=True))",
    ),
    "outer_of_sums": (
        "the weight gradient is an outer product of batch sums, outer(a.sum(0), dz.sum(0)): "
        "the sum over examples must come after the product, not before",
        "grad.w = a_prev.T @ grad.z (one outer product per example, then summed)",
    ),
    "reshaped_not_transposed": (
        "the weight gradient was computed as grad.z.T @ a_prev (out, in) and reshaped to "
        "(in, out): reshape reorders the numbers, it does not transpose",
        "grad.w = a_prev.T @ grad.z, or (grad.z.T @ a_prev).T",
    ),
    "weight_gradient_transposed": (
        "the weight gradient is transposed: grad.z.T @ a_prev where this case's w is (in, out)",
        "grad.w = a_prev.T @ grad.z, shape (in, out) like w",
    ),
    "pre_activation_as_input": (
        "the weight gradient uses the previous layer's z where the layer's input is a = act(z)",
        "grad.w = a_prev.T @ grad.z with a_prev the previous layer's activation",
    ),
    "bias_gradient_averaged": (
        "the bias gradient is averaged over the batch, not summed",
        "grad.b = grad.z.sum(axis=0): the 1/N of a mean loss is already inside grad.z",
    ),
    "bias_gradient_one_example": (
        "the bias gradient is one example's grad.z (a loop that overwrites instead of adding?), "
        "not the sum over the batch",
        "grad.b = grad.z.sum(axis=0)",
    ),
    "step_uphill": (
        "the step adds the gradient (w + lr * grad.w): that climbs the loss",
        "step against the gradient: w - lr * grad.w",
    ),
    "no_step": (
        "the parameters did not change: no step was taken (or they were saved before it)",
        "after_step = w - lr * grad.w",
    ),
}

_BACKWARD_MISTAKES = tuple(MISTAKES)


def finding(name: str) -> Finding:
    says, fix = MISTAKES[name]
    return Finding(name, says, fix)


# --- the backward pass, with or without one mistake ---------------------------------------------


def _loss_weights(case: Case, spec: CaseSpec) -> tuple[float, float]:
    """dL/dl_i and dl_i/de_ik: 1, or 1/N and 1/K for a mean."""
    n, k = case["t"].shape
    return (1.0 / n if spec.example_reduction == "mean" else 1.0,
            1.0 / k if spec.class_reduction == "mean" else 1.0)


def _grad_p(case: Case, spec: CaseSpec, grad_error: np.ndarray) -> np.ndarray:
    p, t = case["p"], case["t"]
    if spec.targets == "integer" or spec.error == "mse":
        return grad_error * 2.0 * (p - t)
    if spec.output == "softmax":
        return grad_error * (-t / p)
    # The clamp log(max(p, EPS)) is flat where p <= EPS: no gradient passes there.
    return grad_error * np.where(p > EPS, -t / np.where(p > EPS, p, 1.0), 0.0)


def _grad_o(case: Case, spec: CaseSpec, gp: np.ndarray, mistake: str | None) -> np.ndarray:
    p, o = case["p"], case["o"]
    if spec.output == "none" or mistake == "jacobian_left_out":
        return gp
    if spec.output == "softmax":
        if mistake == "jacobian_diagonal_only":
            return gp * p * (1.0 - p)
        return p * (gp - (gp * p).sum(axis=-1, keepdims=True))
    total = o.sum(axis=-1, keepdims=True)
    used = np.abs(total) >= EPS
    s = np.where(used, total, EPS)
    if mistake == "jacobian_diagonal_only":
        return gp / s
    return gp / s - np.where(used, (gp * o).sum(axis=-1, keepdims=True) / s**2, 0.0)


def _grad_w(a_prev: np.ndarray, dz: np.ndarray, mistake: str | None) -> np.ndarray | None:
    """The weight gradient, or None where the mistake gives an array of another shape (those
    are caught earlier, by shape)."""
    right = a_prev.T @ dz
    if mistake == "outer_of_sums":
        return np.outer(a_prev.sum(axis=0), dz.sum(axis=0))
    if mistake == "reshaped_not_transposed":
        # For a square w the reshape changes nothing: that is the plain transposition.
        square = right.shape[0] == right.shape[1]
        return None if square else (dz.T @ a_prev).reshape(right.shape)
    if mistake == "weight_gradient_transposed":
        return right.T if right.shape[0] == right.shape[1] else None
    return right


def _grad_b(dz: np.ndarray, mistake: str | None) -> list[np.ndarray]:
    """Candidates for the bias gradient (one example's: any of them)."""
    if mistake == "bias_gradient_averaged":
        return [dz.mean(axis=0)]
    if mistake == "bias_gradient_one_example":
        return list(dz)
    return [dz.sum(axis=0)]


def backward(case: Case, spec: CaseSpec, mistake: str | None = None
             ) -> dict[str, list[np.ndarray]]:
    """Every gradient and stepped parameter, from the case's forward values, with `mistake`
    made (None: none). Values are lists of candidates (one, except for a bias taken from one
    example, which may be any example's)."""
    layers = num_layers_of(case)
    ex, cls = _loss_weights(case, spec)
    out: dict[str, list[np.ndarray]] = {"grad.loss": [np.asarray(1.0)],
                                        "grad.example_loss": [np.full(case["y"].shape, ex)]}
    grad_error = np.full(case["t"].shape, ex * cls)
    gp = _grad_p(case, spec, grad_error)
    dz = _grad_o(case, spec, gp, mistake)
    out.update({"grad.error": [grad_error], "grad.p": [gp], "grad.o": [dz]})
    for layer in range(layers, 0, -1):
        if layer < layers:
            z = case[f"layer{layer}.z"]
            da = dz @ case[f"layer{layer + 1}.w"].T
            slope = numpy_mlp.activation_derivative(z, spec.activation)
            dz = da if mistake == "activation_derivative_missing" else da * slope
            out[f"grad.layer{layer}.a"], out[f"grad.layer{layer}.z"] = [da], [dz]
        a_prev = case["x"] if layer == 1 else case[f"layer{layer - 1}.a"]
        if mistake == "pre_activation_as_input" and layer > 1:
            a_prev = case[f"layer{layer - 1}.z"]
        gw = _grad_w(a_prev, dz, mistake)
        out[f"grad.layer{layer}.w"] = [] if gw is None else [gw]
        out[f"grad.layer{layer}.b"] = _grad_b(dz, mistake)
    sign = {"step_uphill": 1.0, "no_step": 0.0}.get(mistake or "", -1.0)
    for layer in range(1, layers + 1):
        for kind in ("w", "b"):
            name = f"layer{layer}.{kind}"
            out["after_step." + name] = [case[name] + sign * spec.learning_rate
                                         * case["grad." + name]]
    return out


# --- recognising an array -------------------------------------------------------------------------


def _named_factors(case: Case, spec: CaseSpec, key: str) -> list[tuple[float, str, str]]:
    """(ratio yours / case, what it means, the fix) for the classic mistakes that rescale."""
    n, k = case["t"].shape
    grad = key.startswith("grad.")
    if spec.example_reduction == "mean":
        factors = [(n, f"summed over the {n} examples where the loss takes their mean: the "
                       f"1/N = 1/{n} of the mean is missing",
                    f"multiply by 1/{n}: the mean's derivative, dloss/dexample_loss = 1/{n} "
                    f"per example, is part of every gradient below the loss" if grad
                    else "loss = example_loss.mean()")]
    else:
        factors = [(1 / n, f"divided by N = {n} (a mean over examples) where this loss sums "
                           f"them", "dloss/dexample_loss = 1 per example: no 1/N" if grad
                    else "loss = example_loss.sum()")]
    if k > 1 and spec.class_reduction == "mean":
        factors.append((k, f"summed over the {k} classes where each example's loss is their "
                           f"mean: the 1/K = 1/{k} is missing",
                        f"grad.error = grad.example_loss[:, None] / {k}" if grad
                        else "example_loss = error.mean(axis=1)"))
    elif k > 1:
        factors.append((1 / k, f"divided by K = {k} (a mean over classes) where this loss "
                               f"sums them", "grad.error = grad.example_loss[:, None], no 1/K"
                        if grad else "example_loss = error.sum(axis=1)"))
    if k > 1:
        (fn, wn, xn), (fk, wk, xk) = factors
        factors.append((fn * fk, f"both reductions are wrong: {wn}; and {wk}", f"{xn}; {xk}"))
    if grad and (spec.error == "mse" or spec.targets == "integer"):
        factors.append((0.5, "the 2 of d(p - t)^2/dp = 2 (p - t) is missing",
                        "grad.p = grad.error * 2 * (p - t)"))
    if grad and key.endswith(".b"):
        factors.insert(0, (1 / n, *MISTAKES["bias_gradient_averaged"]))
    return factors


def scale_finding(key: str, yours: np.ndarray, expected: np.ndarray, case: Case,
                  spec: CaseSpec, close: float) -> Finding | None:
    """Yours = c x the case's for one number c (to within `close`, relative to the array's
    scale)? Then name c: a sign flip, a missing 1/N or 1/K, a missing 2."""
    dot = float(np.sum(expected * expected))
    if dot == 0.0 or not np.all(np.isfinite(yours)):
        return None
    c = float(np.sum(yours * expected)) / dot
    scale = float(np.max(np.abs(expected)))
    if np.max(np.abs(yours - c * expected)) > close * scale * max(1.0, abs(c)):
        return None
    for factor, why, fix in _named_factors(case, spec, key):
        if abs(c - factor) <= 1e-3 * factor:
            return Finding("scale", f"yours is exactly {_num(c)} x the case's: {why}", fix)
        if abs(c + factor) <= 1e-3 * factor:
            return Finding("sign_and_scale", f"yours is exactly {_num(c)} x the case's: the "
                           f"sign is flipped, and {why}", f"{fix}; and p - t, not t - p")
    if abs(c + 1.0) <= 1e-3:
        uphill = " (a step with it goes uphill)" if key.startswith("grad.") else ""
        return Finding("sign_flipped", f"yours is exactly -1 x the case's: the sign is "
                       f"flipped{uphill}", "look for t - p where p - t belongs, or a lost minus")
    return Finding("scale", f"yours is {_num(c)} x the case's everywhere: a constant factor is "
                   f"wrong", f"look for a missing or extra factor in {key}")


def _num(c: float) -> str:
    if abs(c) >= 1 and abs(c - round(c)) < 1e-3:
        return str(round(c))
    inverse = 1 / c
    if abs(inverse - round(inverse)) < 1e-3 * abs(inverse):
        return f"1/{round(inverse)}" if inverse > 0 else f"-1/{-round(inverse)}"
    return f"{c:.4g}"


def backward_findings(key: str, yours: np.ndarray, case: Case, spec: CaseSpec,
                      matches: Matches) -> list[Finding]:
    """The backward-pass mistakes that reproduce `yours` at `key` (and differ from the truth)."""
    found = []
    for mistake in _BACKWARD_MISTAKES:
        candidates = backward(case, spec, mistake).get(key, [])
        if any(c.shape == yours.shape and matches(yours, c) and not matches(case[key], c)
               for c in candidates):
            found.append(finding(mistake))
    return found


def _other_activations(z: np.ndarray, spec: CaseSpec) -> list[tuple[str, np.ndarray]]:
    return [(name, numpy_mlp.activation(z, name)) for name in ACTIVATIONS
            if name != spec.activation]


def forward_findings(key: str, yours: np.ndarray, case: Case, spec: CaseSpec,
                     matches: Matches) -> list[Finding]:
    """Forward-pass mistakes that reproduce `yours` at `key`."""
    layers = num_layers_of(case)
    if key in ("x", "y") or (key.startswith("layer") and key[-2:] in (".w", ".b")):
        return [Finding("different_start", f"your {key} is not the case's: the check compares "
                        f"numbers computed from the same start",
                        "load x, y and every layer's w and b from the case instead of your own")]
    if key == "t":
        return [Finding("targets", "your t is not the case's targets",
                        "t is the one-hot rows of y: t = np.eye(K)[y]" if spec.targets == "onehot"
                        else "with integer targets t is the label itself: y[:, None]")]
    if key.endswith(".z") or key == "o":
        layer = layers if key == "o" else int(key[5:-2])
        a_prev = case["x"] if layer == 1 else case[f"layer{layer - 1}.a"]
        if matches(yours, a_prev @ case[f"layer{layer}.w"]):
            return [Finding("bias_not_added", f"the bias is not added: {key} = a_prev @ w",
                            f"{key} = a_prev @ w + b")]
    if key.endswith(".a"):
        z = case[key[:-2] + ".z"]
        return [Finding("other_activation", f"yours is {name}(z); this case uses "
                        f"{spec.activation}", f"use {spec.activation} (see README.md)")
                for name, value in _other_activations(z, spec) if matches(yours, value)]
    if key == "p":
        return [Finding("other_output", f"yours is p = {name}(o); this case uses "
                        f"{spec.output}", f"use {spec.output} (see README.md)")
                for name in OUTPUTS if name != spec.output
                and matches(yours, numpy_mlp.predictions(case["o"], name))]
    return []


def step_findings(key: str, yours: np.ndarray, case: Case, spec: CaseSpec,
                  matches: Matches) -> list[Finding]:
    """A step of the right direction with another learning rate: w - c * grad.w, c != lr."""
    name = key.removeprefix("after_step.")
    w, g = case[name], case["grad." + name]
    dot = float(np.sum(g * g))
    if dot == 0.0 or not np.all(np.isfinite(yours)):
        return []
    c = float(np.sum((w - yours) * g)) / dot
    if c > 0 and matches(yours, w - c * g) and not matches(yours, case[key]):
        return [Finding("learning_rate", f"your step is w - {c:.4g} * grad.w: the learning "
                        f"rate of this case is {spec.learning_rate:g}",
                        f"step with the case's learning rate, {spec.learning_rate:g}")]
    return []
