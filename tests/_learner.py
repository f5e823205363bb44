"""A learner's hand-written NumPy MLP, one small function per step of the chain rule, for the
reference checker's tests: each classic mistake is this implementation with one step swapped for
a wrong one, in one layer or in all of them.

It is written as a learner writes it (loops over layers, `a_prev.T @ g_z`), not from the
package's NumPy backward (`jaxmlp.reference.mistakes`), so the tests compare two independent
implementations. It covers relu hidden layers, softmax outputs, cross-entropy or MSE, and both
reductions: the settings the tests write cases with.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxmlp.config import Config
from jaxmlp.reference import CASE_CONFIG, CaseSpec, compute_case, toy_inputs, validate_spec

Values = dict[str, np.ndarray]
Step = Callable[..., Any]


def softmax(o: np.ndarray) -> np.ndarray:
    e = np.exp(o - o.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- the right steps ------------------------------------------------------------------------------


def affine(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ w + b


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def d_example_loss(n: int, config: Config) -> np.ndarray:
    return np.full(n, 1.0 / n) if config.example_reduction == "mean" else np.ones(n)


def d_error(g_example: np.ndarray, k: int, config: Config) -> np.ndarray:
    share = 1.0 / k if config.class_reduction == "mean" else 1.0
    return g_example[:, None] * np.full((1, k), share)


def d_p(p: np.ndarray, t: np.ndarray, g_error: np.ndarray, config: Config) -> np.ndarray:
    if config.error == "mse":
        return g_error * 2 * (p - t)
    return g_error * (-t / p)


def d_o(p: np.ndarray, g_p: np.ndarray, config: Config) -> np.ndarray:
    # The softmax Jacobian dp_k/do_j = p_k (delta_kj - p_j), applied to g_p.
    return p * (g_p - (g_p * p).sum(axis=1, keepdims=True))


def d_a(g_z: np.ndarray, w: np.ndarray, g_w: np.ndarray, lr: float) -> np.ndarray:
    """The gradient of the layer's input, through the weights of the forward pass."""
    return g_z @ w.T


def d_z(g_a: np.ndarray, z: np.ndarray) -> np.ndarray:
    return g_a * (z > 0)  # relu'


def w_input(a_prev: np.ndarray, z_prev: np.ndarray | None) -> np.ndarray:
    """What the weight gradient multiplies: the layer's input a_prev."""
    return a_prev


def d_w(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return a_prev.T @ g_z


def d_b(g_z: np.ndarray) -> np.ndarray:
    return g_z.sum(axis=0)


def sgd(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - lr * g


RIGHT: dict[str, Step] = {
    "affine": affine, "act": relu, "d_example_loss": d_example_loss, "d_error": d_error,
    "d_p": d_p, "d_o": d_o, "d_a": d_a, "d_z": d_z, "w_input": w_input, "d_w": d_w, "d_b": d_b,
    "sgd": sgd}


# --- the implementation ---------------------------------------------------------------------------


class Learner:
    """One learner: `wrong` swaps steps for mistaken ones, in `layer` only (None: every layer;
    steps that belong to no layer, such as the loss's, are swapped either way)."""

    def __init__(self, wrong: dict[str, Step] | None = None, layer: int | None = None,
                 passes: int = 1) -> None:
        self.wrong, self.layer, self.passes = wrong or {}, layer, passes

    def step(self, name: str, at: int | None = None) -> Step:
        if name in self.wrong and (self.layer is None or at is None or at == self.layer):
            return self.wrong[name]
        return RIGHT[name]

    def forward(self, x: np.ndarray, w: dict[int, np.ndarray], b: dict[int, np.ndarray],
                t: np.ndarray, config: Config) -> Values:
        layers = len(w)
        v: Values = {}
        a = x
        for i in range(1, layers + 1):
            z = self.step("affine", i)(a, w[i], b[i])
            if i < layers:
                a = self.step("act", i)(z)
                v[f"layer{i}.z"], v[f"layer{i}.a"] = z, a
        v["o"] = z
        v["p"] = p = softmax(z)
        v["error"] = (p - t) ** 2 if config.error == "mse" else -t * np.log(p)
        reduce = np.mean if config.class_reduction == "mean" else np.sum
        v["example_loss"] = reduce(v["error"], axis=1)
        reduce = np.mean if config.example_reduction == "mean" else np.sum
        v["loss"] = np.asarray(reduce(v["example_loss"]))
        return v

    def backward(self, v: Values, x: np.ndarray, w: dict[int, np.ndarray], t: np.ndarray,
                 config: Config) -> Values:
        layers, (n, k), lr = len(w), t.shape, config.learning_rate
        g: Values = {"grad.loss": np.asarray(1.0)}
        g["grad.example_loss"] = self.step("d_example_loss")(n, config).astype(x.dtype)
        g["grad.error"] = self.step("d_error")(g["grad.example_loss"], k, config)
        g["grad.p"] = self.step("d_p")(v["p"], t, g["grad.error"], config)
        g["grad.o"] = g_z = self.step("d_o")(v["p"], g["grad.p"], config)
        a = {0: x, **{i: v[f"layer{i}.a"] for i in range(1, layers)}}
        z = {i: v[f"layer{i}.z"] for i in range(1, layers)}
        for i in range(layers, 0, -1):
            inputs = self.step("w_input", i)(a[i - 1], z.get(i - 1))
            g[f"grad.layer{i}.w"] = self.step("d_w", i)(inputs, g_z)
            g[f"grad.layer{i}.b"] = self.step("d_b", i)(g_z)
            if i > 1:
                g[f"grad.layer{i - 1}.a"] = g_a = self.step("d_a", i)(
                    g_z, w[i], g[f"grad.layer{i}.w"], lr)
                g[f"grad.layer{i - 1}.z"] = g_z = self.step("d_z", i - 1)(g_a, z[i - 1])
        return g

    def __call__(self, case: Values, config: Config, dtype: Any = np.float64) -> Values:
        """Everything a hand implementation computes: forward, backward (`passes` times, added
        up, as gradients that are never reset are), one SGD step, the loss after it."""
        x, y = case["x"].astype(dtype), case["y"]
        layers = sum(key.startswith("layer") and key.endswith(".w") for key in case)
        w = {i: case[f"layer{i}.w"].astype(dtype) for i in range(1, layers + 1)}
        b = {i: case[f"layer{i}.b"].astype(dtype) for i in range(1, layers + 1)}
        t = np.eye(w[layers].shape[1], dtype=dtype)[y]
        v = {"x": x, "y": y, "t": t, **{f"layer{i}.{kind}": p[i] for i in w
                                        for kind, p in (("w", w), ("b", b))}}
        v.update(self.forward(x, w, b, t, config))
        grads: Values = {}
        for _ in range(self.passes):
            for key, value in self.backward(v, x, w, t, config).items():
                grads[key] = value if key == "grad.loss" else grads.get(key, 0) + value
        v.update(grads)
        stepped = {}
        for i in range(1, layers + 1):
            for kind, p in (("w", w), ("b", b)):
                stepped[f"{kind}{i}"] = self.step("sgd", i)(p[i], v[f"grad.layer{i}.{kind}"],
                                                            config.learning_rate)
                v[f"after_step.layer{i}.{kind}"] = stepped[f"{kind}{i}"]
        after = Learner().forward(x, {i: stepped[f"w{i}"] for i in w},
                                  {i: stepped[f"b{i}"] for i in w}, t, config)
        v["after_step.loss"] = after["loss"]
        return v


# --- the classic mistakes, each one step done wrong -----------------------------------------------


def no_activation_derivative(g_a: np.ndarray, z: np.ndarray) -> np.ndarray:
    return g_a


def pre_activation_input(a_prev: np.ndarray, z_prev: np.ndarray | None) -> np.ndarray:
    return a_prev if z_prev is None else z_prev


def through_updated_weights(g_z: np.ndarray, w: np.ndarray, g_w: np.ndarray, lr: float
                            ) -> np.ndarray:
    return g_z @ (w - lr * g_w).T  # w -= lr * g_w happened in place, before this line


def outer_product_of_sums(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return np.outer(a_prev.sum(axis=0), g_z.sum(axis=0))


def transposed_weight_gradient(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return g_z.T @ a_prev


def reshaped_weight_gradient(a_prev: np.ndarray, g_z: np.ndarray) -> np.ndarray:
    return (g_z.T @ a_prev).reshape(a_prev.shape[1], g_z.shape[1])


def step_transposing_back(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - lr * (g.T if g.shape != w.shape else g)  # what makes a transposed one run


def bias_averaged(g_z: np.ndarray) -> np.ndarray:
    return g_z.mean(axis=0)


def bias_of_last_example(g_z: np.ndarray) -> np.ndarray:
    result = np.zeros(g_z.shape[1])
    for row in g_z:
        result = row  # overwrites instead of adding
    return result


def step_uphill(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w + lr * g


def no_step(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w.copy()


def half_the_rate(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - lr / 2 * g


def no_bias(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ w


def summed_over_examples(n: int, config: Config) -> np.ndarray:
    return np.ones(n)


def divided_by_examples(n: int, config: Config) -> np.ndarray:
    return d_example_loss(n, config) / n


def summed_over_classes(g_example: np.ndarray, k: int, config: Config) -> np.ndarray:
    return g_example[:, None] * np.ones((1, k))


def divided_by_classes(g_example: np.ndarray, k: int, config: Config) -> np.ndarray:
    return d_error(g_example, k, config) / k


def square_two_missing(p: np.ndarray, t: np.ndarray, g_error: np.ndarray, config: Config
                       ) -> np.ndarray:
    return d_p(p, t, g_error, config) / 2


def sign_flipped(p: np.ndarray, t: np.ndarray, g_error: np.ndarray, config: Config
                 ) -> np.ndarray:
    return -d_p(p, t, g_error, config)


def no_softmax_jacobian(p: np.ndarray, g_p: np.ndarray, config: Config) -> np.ndarray:
    return g_p


def softmax_jacobian_diagonal(p: np.ndarray, g_p: np.ndarray, config: Config) -> np.ndarray:
    return g_p * p * (1 - p)


def times_learning_rate(lr: float) -> dict[str, Step]:
    """The update lr * grad saved as the gradient, and stepped with as is."""
    return {"d_w": lambda a_prev, g_z: lr * (a_prev.T @ g_z),
            "d_b": lambda g_z: lr * g_z.sum(axis=0), "sgd": lambda w, g, _: w - g}


def step_rate(rate: float) -> dict[str, Step]:
    """A step with another learning rate."""
    return {"sgd": lambda w, g, _: w - rate * g}


# --- cases ----------------------------------------------------------------------------------------


def spec_of(**settings: Any) -> CaseSpec:
    """A case's settings from flat keywords, as `write`'s flags name them."""
    own = {key: settings.pop(key) for key in ("examples", "inputs", "classes") if key in settings}
    if "hidden" in settings:
        settings["hidden"] = tuple(settings["hidden"])
    return CaseSpec(dataclasses.replace(CASE_CONFIG, **settings), **own)


@functools.cache
def _case(settings: tuple[tuple[str, Any], ...]) -> tuple[Values, CaseSpec]:
    spec = validate_spec(spec_of(**dict(settings)))
    x, y = toy_inputs(spec.examples, spec.config.seed, spec.classes)
    return compute_case(x, y, spec.classes, spec), spec


def make_case(**settings: Any) -> tuple[Values, CaseSpec]:
    """(case, spec) on the toy inputs, computed once per settings (callers must not change it)."""
    return _case(tuple(sorted(settings.items())))
