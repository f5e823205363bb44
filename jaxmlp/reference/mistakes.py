"""Classic hand-written-backprop mistakes, each as a small change to a NumPy forward or backward
pass.

`backward(case, config)` recomputes every gradient and the SGD step from the case's forward
values (a second implementation, beside the JAX one in `case.py`; the tests hold them together).
`backward(case, config, mistake, layer)` does the same with one classic mistake made in one layer
(or, with `layer=None`, in every layer it can be made in), so a learner's array can be recognised
by which wrong computation reproduces it, wherever the mistake sits and however deep the net is.
`forward` does the same for the forward pass. `MISTAKES` says each in plain words, with the fix.

Mistakes that only rescale an array (a missing 1/N or 1/K, a flipped sign, the 2 of the square,
gradients accumulated twice) are recognised by the ratio yours / case instead (`factors`): that
works at whichever quantity the learner's file happens to start differing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from jaxmlp import numpy_mlp
from jaxmlp.config import ACTIVATIONS, OUTPUTS, Config
from jaxmlp.losses import EPS
from jaxmlp.reference.case import Case, num_layers_of

# "Do these two arrays agree, to the check's tolerance?"
Matches = Callable[[np.ndarray, np.ndarray], bool]


class Finding(NamedTuple):
    """A recognised mistake: its name, what it is in plain words, and how to fix it. An
    ambiguous one (name "ambiguous") says what the numbers show, lists the mistakes that fit in
    `causes` and says in `fix` what tells them apart; `factor` names a constant-factor cause
    (`factors.factors_at`)."""

    name: str
    says: str
    fix: str
    causes: tuple[Finding, ...] = ()
    factor: str = ""


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
    "updated_in_place": (
        "the weights were updated in place (w -= lr * grad.w) during the backward pass, and the "
        "updated w was then used to carry the gradient to the layer below",
        "compute every gradient with the weights of the forward pass first, then step: "
        "grad.a_prev = grad.z @ w.T before w changes",
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
# The mistakes made in one layer, and the layers (1..L) each can be made in.
_LAYERED: dict[str, Callable[[int], range]] = {
    "activation_derivative_missing": lambda layers: range(1, layers),
    "pre_activation_as_input": lambda layers: range(2, layers + 1),
    "updated_in_place": lambda layers: range(2, layers + 1),
    **{name: (lambda layers: range(1, layers + 1)) for name in (
        "outer_of_sums", "reshaped_not_transposed", "weight_gradient_transposed",
        "bias_gradient_averaged", "bias_gradient_one_example", "step_uphill", "no_step")},
}
# The mistakes that change nothing but a step, and nothing but a bias gradient.
STEP_MISTAKES = frozenset({"step_uphill", "no_step", "learning_rate"})
BIAS_MISTAKES = frozenset({"bias_gradient_averaged", "bias_gradient_one_example"})


def finding(name: str, layer: int | None = None, layers: int = 0) -> Finding:
    """The finding of `MISTAKES[name]`, saying which layer it is in (None: every layer)."""
    says, fix = MISTAKES[name]
    if name in _LAYERED and len(_LAYERED[name](layers)) > 1:
        says = f"{'in every layer' if layer is None else f'in layer {layer}'}: {says}"
    return Finding(name, says, fix)


# --- the backward pass, with or without one mistake ---------------------------------------------


def _loss_weights(case: Case, config: Config) -> tuple[float, float]:
    """dL/dl_i and dl_i/de_ik: 1, or 1/N and 1/K for a mean."""
    n, k = case["t"].shape
    return (1.0 / n if config.example_reduction == "mean" else 1.0,
            1.0 / k if config.class_reduction == "mean" else 1.0)


def _grad_p(case: Case, config: Config, grad_error: np.ndarray) -> np.ndarray:
    p, t = case["p"], case["t"]
    if config.targets == "integer" or config.error == "mse":
        return grad_error * 2.0 * (p - t)
    # The clamp log(max(p, EPS)) is flat where p <= EPS: no gradient passes there.
    return grad_error * np.where(p > EPS, -t / np.where(p > EPS, p, 1.0), 0.0)


def _grad_o(case: Case, config: Config, gp: np.ndarray, mistake: str | None) -> np.ndarray:
    p, o = case["p"], case["o"]
    if config.output == "none" or mistake == "jacobian_left_out":
        return gp
    if config.output == "softmax":
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


def _step(case: Case, config: Config, out: dict[str, list[np.ndarray]], made: Callable[[int], str]
          ) -> None:
    """after_step.<param> from each candidate gradient; a step mistake changes its sign."""
    for layer in range(1, num_layers_of(case) + 1):
        sign = {"step_uphill": 1.0, "no_step": 0.0}.get(made(layer), -1.0)
        for kind in ("w", "b"):
            name = f"layer{layer}.{kind}"
            out["after_step." + name] = [case[name] + sign * config.learning_rate * g
                                         for g in out["grad." + name]]


def backward(case: Case, config: Config, mistake: str | None = None, layer: int | None = None
             ) -> dict[str, list[np.ndarray]]:
    """Every gradient and stepped parameter, from the case's forward values, with `mistake`
    made (None: none) in `layer` (None: in every layer it can be made in). Values are lists of
    candidates (one, except for a bias taken from one example, which may be any example's)."""
    layers = num_layers_of(case)

    def made(at: int) -> str:
        return mistake if mistake and (layer is None or layer == at) else ""

    ex, cls = _loss_weights(case, config)
    out: dict[str, list[np.ndarray]] = {"grad.loss": [np.asarray(1.0)],
                                        "grad.example_loss": [np.full(case["y"].shape, ex)]}
    grad_error = np.full(case["t"].shape, ex * cls)
    gp = _grad_p(case, config, grad_error)
    dz = _grad_o(case, config, gp, mistake)
    out.update({"grad.error": [grad_error], "grad.p": [gp], "grad.o": [dz]})
    for at in range(layers, 0, -1):
        if at < layers:
            w_above = case[f"layer{at + 1}.w"]
            if made(at + 1) == "updated_in_place":
                w_above = w_above - config.learning_rate * out[f"grad.layer{at + 1}.w"][0]
            da = dz @ w_above.T
            slope = numpy_mlp.activation_derivative(case[f"layer{at}.z"], config.activation)
            dz = da if made(at) == "activation_derivative_missing" else da * slope
            out[f"grad.layer{at}.a"], out[f"grad.layer{at}.z"] = [da], [dz]
        a_prev = case["x"] if at == 1 else case[f"layer{at - 1}.a"]
        if made(at) == "pre_activation_as_input" and at > 1:
            a_prev = case[f"layer{at - 1}.z"]
        gw = _grad_w(a_prev, dz, made(at))
        out[f"grad.layer{at}.w"] = [] if gw is None else [gw]
        out[f"grad.layer{at}.b"] = _grad_b(dz, made(at))
    _step(case, config, out, made)
    return out


# --- the forward pass, with or without one mistake -------------------------------------------


def _error(p: np.ndarray, t: np.ndarray, config: Config) -> np.ndarray:
    if config.targets == "integer" or config.error == "mse":
        return (p - t) ** 2
    return -t * np.log(np.maximum(p, EPS))


def forward(case: Case, config: Config, mistake: str, layer: int | None, other: str
            ) -> dict[str, np.ndarray]:
    """The forward values from the case's inputs and parameters with one mistake: the bias not
    added in `layer`, the activation `other` used in `layer`, or the output `other`."""
    layers = num_layers_of(case)
    out: dict[str, np.ndarray] = {}
    a = case["x"]
    for at in range(1, layers + 1):
        z = a @ case[f"layer{at}.w"]
        if not (mistake == "bias_not_added" and at == layer):
            z = z + case[f"layer{at}.b"]
        if at == layers:
            break
        act = other if mistake == "other_activation" and at == layer else config.activation
        a = numpy_mlp.activation(z, act)
        out[f"layer{at}.z"], out[f"layer{at}.a"] = z, a
    out["o"] = z
    out["p"] = numpy_mlp.predictions(z, other if mistake == "other_output" else config.output)
    out["error"] = _error(out["p"], case["t"], config)
    reduce = np.sum if config.class_reduction == "sum" else np.mean
    out["example_loss"] = reduce(out["error"], axis=1)
    reduce = np.sum if config.example_reduction == "sum" else np.mean
    out["loss"] = np.asarray(reduce(out["example_loss"]))
    return out


def _forward_mistakes(case: Case, config: Config
                      ) -> Iterator[tuple[Finding, dict[str, np.ndarray]]]:
    layers = num_layers_of(case)
    where = (lambda at: f"in layer {at}: " if layers > 1 else "")
    for at in range(1, layers + 1):
        name = "o" if at == layers else f"layer{at}.z"
        yield (Finding("bias_not_added", f"{where(at)}the bias is not added: {name} = a_prev @ w",
                       f"{name} = a_prev @ w + b"),
               forward(case, config, "bias_not_added", at, ""))
    for at in range(1, layers):
        for act in ACTIVATIONS:
            if act != config.activation:
                yield (Finding("other_activation", f"{where(at)}yours is {act}(z); this case "
                               f"uses {config.activation}", f"use {config.activation} "
                               f"(see README.md)"),
                       forward(case, config, "other_activation", at, act))
    for output in OUTPUTS:
        if output != config.output:
            yield (Finding("other_output", f"yours is p = {output}(o); this case uses "
                           f"{config.output}", f"use {config.output} (see README.md)"),
                   forward(case, config, "other_output", None, output))


# --- recognising an array -------------------------------------------------------------------------


def _variants(layers: int) -> Iterator[tuple[str, int | None]]:
    """(mistake, layer) for every mistake: each layer it can be made in, then every layer."""
    for mistake in MISTAKES:
        if mistake in _LAYERED:
            yield from ((mistake, at) for at in _LAYERED[mistake](layers))
        yield mistake, None


def backward_findings(key: str, yours: np.ndarray, case: Case, config: Config,
                      matches: Matches) -> list[Finding]:
    """The backward-pass and step mistakes that reproduce `yours` at `key` (and differ from the
    truth there), each named once, in the first layer variant that fits."""
    found: dict[str, Finding] = {}
    layers = num_layers_of(case)
    for mistake, layer in _variants(layers):
        if mistake in found:
            continue
        candidates = backward(case, config, mistake, layer).get(key, [])
        if any(c.shape == yours.shape and matches(yours, c) and not matches(case[key], c)
               for c in candidates):
            found[mistake] = finding(mistake, layer, layers)
    return list(found.values())


def _loss_after_findings(yours: np.ndarray, case: Case, config: Config, matches: Matches
                         ) -> list[Finding]:
    """The loss after the step: the loss before it (no step, or no new forward pass), or the
    loss after a step uphill."""
    if matches(yours, case["loss"]):
        return [Finding("loss_before_step", "yours is the loss before the step: the parameters "
                        "did not change, or the loss was not computed again after the step",
                        "step every parameter, then run the forward pass again with the "
                        "stepped ones (after_step.layer1.w, ...) and take its loss")]
    layers = num_layers_of(case)
    uphill = [{kind: case[f"layer{at}.{kind}"] + config.learning_rate
               * case[f"grad.layer{at}.{kind}"] for kind in ("w", "b")}
              for at in range(1, layers + 1)]
    if matches(yours, np.asarray(numpy_mlp.loss(uphill, case["x"], case["y"], config))):
        return [finding("step_uphill")]
    return []


def forward_findings(key: str, yours: np.ndarray, case: Case, config: Config,
                     matches: Matches) -> list[Finding]:
    """Forward-pass mistakes that reproduce `yours` at `key`."""
    if key in ("x", "y") or (key.startswith("layer") and key[-2:] in (".w", ".b")):
        return [Finding("different_start", f"your {key} is not the case's: the check compares "
                        f"numbers computed from the same start",
                        "load x, y and every layer's w and b from the case instead of your own")]
    if key == "t":
        return [Finding("targets", "your t is not the case's targets",
                        "t is the one-hot rows of y: t = np.eye(K)[y]" if config.targets ==
                        "onehot" else "with integer targets t is the label itself: y[:, None]")]
    if key == "after_step.loss":
        return _loss_after_findings(yours, case, config, matches)
    found: dict[str, Finding] = {}
    for f, values in _forward_mistakes(case, config):
        value = values.get(key)
        if value is not None and f.says not in found and matches(yours, value) and \
                not matches(case[key], value):
            found[f.says] = f
    return list(found.values())
