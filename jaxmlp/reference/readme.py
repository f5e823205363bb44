"""The case folder's README.md: this case's formulas, written for its own variant (its
activation, output, error and reductions), as NumPy expressions over the case's key names, and a
short NumPy snippet that loads the case."""

from __future__ import annotations

import itertools

import jaxmlp.reference.factors as factors  # the module, not the package: no cycle
from jaxmlp.config import Config
from jaxmlp.reference.case import Case, CaseSpec, num_layers_of

# act(z) and act'(z), as NumPy expressions.
ACTIVATION_TEXT = {
    "relu": ("np.maximum(z, 0)",
             "(z > 0), i.e. 1 where z > 0, else 0 (no z here is within 1e-4 of 0)"),
    "tanh": ("np.tanh(z)", "1 - np.tanh(z) ** 2"),
    "sigmoid": ("1 / (1 + np.exp(-z))", "s * (1 - s), where s = 1 / (1 + np.exp(-z))"),
    "gelu": ("0.5 * z * (1 + np.tanh(c * (z + 0.044715 * z**3))), where c = np.sqrt(2 / np.pi) "
             "(the tanh approximation JAX uses)",
             "0.5 * (1 + h) + 0.5 * z * (1 - h**2) * c * (1 + 3 * 0.044715 * z**2), where "
             "h = np.tanh(c * (z + 0.044715 * z**3))"),
}
SNIPPET_ACTIVATION = {
    "relu": "np.maximum(z, 0)",
    "tanh": "np.tanh(z)",
    "sigmoid": "1 / (1 + np.exp(-z))",
    "gelu": "0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))",
}


def describe(case: Case, spec: CaseSpec) -> str:
    """One line: the network and the loss of this case."""
    config = spec.config
    sizes = [case["x"].shape[1], *config.hidden, case["t"].shape[1]]
    n, k = case["t"].shape
    hidden = f", {config.activation}" if config.hidden else " (no hidden layer)"
    if config.targets == "integer":
        loss = "integer targets (one output regressed onto the label), mse error"
    else:
        loss = (f"{config.output} outputs, {config.error} error, {config.class_reduction} over the "
                f"{k} classes")
    return (f"{'-'.join(map(str, sizes))} net{hidden}, {loss}, {config.example_reduction} over "
            f"the {n} examples, one SGD step of lr {config.learning_rate:g}")


def _shape(case: Case, key: str) -> str:
    shape = case[key].shape
    return "()" if shape == () else "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1
                                                                         else ")")


def _row(case: Case, key: str, formula: str = "") -> str:
    """A forward row: name, shape, how it is computed."""
    return f"    {key:<14} {_shape(case, key):<9} {formula}".rstrip()


def _assign(key: str, formula: str) -> str:
    """A backward row: grad.name = formula."""
    return f"    {key:<17} = {formula}"


def _prediction_text(config: Config) -> tuple[str, str]:
    if config.output == "softmax":
        return ("np.exp(o) / np.exp(o).sum(axis=1, keepdims=True)   (softmax)",
                "p * (grad.p - (grad.p * p).sum(axis=1, keepdims=True))   (softmax's Jacobian: "
                "dp_k/do_j = p_k * (1 if k == j else 0) - p_k * p_j)")
    if config.output == "sum_normalize":
        return ("o / s  with  s = o.sum(axis=1, keepdims=True)   (each output over the total; "
                "a sum with |s| < 1e-7 is replaced by 1e-7 and then passes no gradient)",
                "grad.p / s - (grad.p * o).sum(axis=1, keepdims=True) / s**2   (dp_k/do_j = "
                "(1 if k == j else 0) / s - o_k / s**2)")
    return "o   (no transform)", "grad.p"


def _error_text(config: Config) -> tuple[str, str]:
    if config.targets == "integer" or config.error == "mse":
        return "(p - t) ** 2", "grad.error * 2 * (p - t)"
    if config.output == "softmax":
        return "-t * np.log(p)", "grad.error * (-t / p)"
    return ("-t * np.log(np.maximum(p, 1e-7))   (clamped: p can be 0 or negative)",
            "grad.error * (-t / p) where p > 1e-7, 0 where the clamp holds")


def _reduction_text(case: Case, config: Config) -> tuple[tuple[str, str], tuple[str, str]]:
    """(example_loss, loss) formulas and (grad.example_loss, grad.error) formulas."""
    n, k = case["t"].shape
    if config.class_reduction == "sum" or k == 1:
        ex, gerr = "error.sum(axis=1)", "grad.example_loss[:, None] * np.ones_like(error)"
    else:
        ex = f"error.mean(axis=1)   (= error.sum(axis=1) / {k})"
        gerr = f"grad.example_loss[:, None] * np.ones_like(error) / {k}"
    if config.example_reduction == "mean":
        loss, gex = f"example_loss.mean()   (= example_loss.sum() / {n})", f"np.full({n}, 1 / {n})"
    else:
        loss, gex = "example_loss.sum()", f"np.ones({n})"
    return (ex, loss), (gex, gerr)


def _target_text(config: Config, k: int) -> str:
    if config.targets == "integer":
        return "y[:, None].astype(float)   (integer targets: the label itself, one output)"
    return f"np.eye({k})[y]   (one-hot rows)"


def _forward_lines(case: Case, config: Config) -> list[str]:
    layers, k = num_layers_of(case), case["t"].shape[1]
    act = config.activation
    lines = [_row(case, "x", "inputs, one example per row"), _row(case, "y", "integer labels"),
             _row(case, "t", "= " + _target_text(config, k))]
    for layer in range(1, layers + 1):
        a_prev = "x" if layer == 1 else f"layer{layer - 1}.a"
        lines += [_row(case, f"layer{layer}.w", "(in, out)"), _row(case, f"layer{layer}.b")]
        z = f"{a_prev} @ layer{layer}.w + layer{layer}.b"
        if layer < layers:
            lines += [_row(case, f"layer{layer}.z", f"= {z}"),
                      _row(case, f"layer{layer}.a", f"= {act}(layer{layer}.z)")]
        else:
            lines.append(_row(case, "o", f"= {z}   (outputs: no activation)"))
    ex, loss = _reduction_text(case, config)[0]
    lines += [_row(case, "p", "= " + _prediction_text(config)[0]),
              _row(case, "error", "= " + _error_text(config)[0]),
              _row(case, "example_loss", "= " + ex), _row(case, "loss", "= " + loss)]
    if layers > 1:
        lines += ["", f"    with {act}(z) = {ACTIVATION_TEXT[act][0]}"]
    return lines


def _backward_lines(case: Case, config: Config) -> list[str]:
    layers = num_layers_of(case)
    gex, gerr = _reduction_text(case, config)[1]
    lines = [_assign("grad.loss", "1"), _assign("grad.example_loss", gex),
             _assign("grad.error", gerr), _assign("grad.p", _error_text(config)[1]),
             _assign("grad.o", _prediction_text(config)[1])]
    if (config.output, config.error, config.targets) == ("softmax", "cross_entropy", "onehot"):
        lines.append(" " * 24 + "which for softmax with cross-entropy is (p - t) * grad.error: "
                     "the famous p - t")
    dz, act = "grad.o", config.activation
    for layer in range(layers, 0, -1):
        a_prev = "x" if layer == 1 else f"layer{layer - 1}.a"
        lines += [_assign(f"grad.layer{layer}.w", f"{a_prev}.T @ {dz}   "
                          f"{_shape(case, f'layer{layer}.w')} like layer{layer}.w"),
                  _assign(f"grad.layer{layer}.b", f"{dz}.sum(axis=0)   (summed over the batch: "
                          f"every example uses the same b)")]
        if layer > 1:
            below = f"layer{layer - 1}"
            lines += [_assign(f"grad.{below}.a", f"{dz} @ layer{layer}.w.T"),
                      _assign(f"grad.{below}.z", f"grad.{below}.a * {act}'({below}.z)")]
            dz = f"grad.{below}.z"
    if layers > 1:
        lines += ["", f"    with {act}'(z) = {ACTIVATION_TEXT[act][1]}"]
    return lines


def _snippet(case: Case, config: Config) -> list[str]:
    layers = num_layers_of(case)
    return [
        "```python",
        "import json",
        "",
        "import numpy as np",
        "",
        "case = {k: np.array(v) for k, v in json.load(open(\"case.json\")).items()}",
        "# or: case = dict(np.load(\"case.npz\"))",
        "",
        "",
        "def act(z):",
        f"    return {SNIPPET_ACTIVATION[config.activation]}  # {config.activation}",
        "",
        "",
        f"a = case[\"x\"]  # {_shape(case, 'x')}: one example per row",
        "mine = {}",
        f"for layer in range(1, {layers + 1}):",
        "    w, b = case[f\"layer{layer}.w\"], case[f\"layer{layer}.b\"]  # w is (in, out)",
        "    z = a @ w + b",
        f"    if layer < {layers}:",
        "        a = act(z)",
        "        mine[f\"layer{layer}.z\"], mine[f\"layer{layer}.a\"] = z, a",
        "mine[\"o\"] = z",
        "print(\"largest difference in o:\", np.abs(mine[\"o\"] - case[\"o\"]).max())",
        "# ... your p, error, loss and backward pass here, saved under the same names ...",
        "with open(\"mine.json\", \"w\") as f:",
        "    json.dump({k: np.asarray(v).tolist() for k, v in mine.items()}, f)",
        "```",
    ]


def _step_effect(case: Case) -> str:
    before, after = float(case["loss"]), float(case["after_step.loss"])
    if after < before:
        return (f"The step lowers the loss from {before:.6g} to {after:.6g}: against the gradient "
                f"is downhill, and this learning rate is small enough not to overshoot.")
    return (f"Here the step raises the loss, from {before:.6g} to {after:.6g}: the slope is only "
            f"true near the parameters, and this learning rate steps past the valley.")


def _factors_text(case: Case, spec: CaseSpec) -> list[str]:
    """Why the case's sizes matter to `check`: the factors of the classic mistakes, and any
    two that coincide in this case."""
    n, k = case["t"].shape
    table = factors.factors_at("grad.layer1.w", n, k, spec.config.learning_rate,
                                     spec.config)
    listed = "; ".join(f"{f.label}: {factors.number(f.value)} x" for f in table)
    clashes = [(a, b) for a, b in itertools.combinations(table, 2)
               if factors.same(a.value, b.value)]
    head = (f"Some classic mistakes scale every gradient below them by one number. In this case "
            f"(N = {n} examples, K = {k} outputs, learning rate {spec.config.learning_rate:g}): "
            f"{listed}.")
    if not clashes:
        return [f"## Why {n} examples and {k} classes", "", head + " They all differ, so "
                "`check` names the cause from the number alone. (With 2 classes, a gradient 2 x "
                "too large could be a missing 1/K or one accumulated over two passes; that is "
                "why the default case has 3 classes and 5 examples.)", ""]
    pairs = "; ".join(f"{a.label} and {b.label} both give {factors.number(a.value)} x"
                      for a, b in clashes)
    return ["## Two mistakes, one factor", "", f"{head} Here {pairs}: where yours differs by "
            f"such a number, `check` lists each cause and says what tells them apart. The "
            f"default case (5 examples, 3 classes, learning rate 0.1) keeps every factor apart.",
            ""]


def case_readme(case: Case, spec: CaseSpec, data: str) -> str:
    """README.md for one case folder."""
    config = spec.config
    n, d = case["x"].shape
    params = "  ".join(f"layer{layer}.w {_shape(case, f'layer{layer}.w')}"
                       for layer in range(1, num_layers_of(case) + 1))
    step = f"after_step.<name> = <name> - {config.learning_rate:g} * grad.<name>"
    text = [
        "# A worked backpropagation case", "",
        f"{describe(case, spec)}. Inputs: {data}. Every number is float64, computed from the "
        f"stored inputs and parameters exactly as they are (the parameters are rounded to 2 "
        f"decimals first, so they can be typed in).", "",
        "- `case.json`: one object, one key per quantity, in the order of the computation; a "
        "value is a number or nested lists, one list per row (every float64 digit is kept: "
        "0.5929999999999999 is how float64 stores 0.593).",
        "- `case.npz`: the same arrays, for `np.load`.",
        "- `settings.json`: how the case was written (`python -m jaxmlp.reference write`).", "",
        "## Layout: one example per row, and w is (in, out)", "",
        f"`x` is (B, D) = ({n}, {d}): one example per row. Every layer computes", "",
        "    z = a_prev @ w + b      (B, in) @ (in, out) + (out,)  ->  (B, out)", "",
        "so a weight matrix has one row per input and one column per unit, and the bias is added "
        "to every row. Textbooks often write z = W a with W of shape (out, in) and one example "
        "as a column: that W is this w transposed. Here: " + params + ".", "",
        "## Forward, in order", "", *_forward_lines(case, config), "",
        "## Backward: grad.X = dloss/dX, the same shape as X", "", *_backward_lines(case, config),
        "",
        "## One plain SGD step", "", f"    {step}   (every w and b)",
        "    after_step.loss = the loss of the same x and t with those parameters", "",
        _step_effect(case), "", *_factors_text(case, spec),
        "## Loading it, and checking yours", "",
        "Run this inside the case folder: it loads the case, redoes the forward pass and saves "
        "what it computed under the case's names.", "", *_snippet(case, config), "",
        "Any subset of the names will do. Then", "",
        "    python -m jaxmlp.reference check . mine.json", "",
        "compares them in this order and names the first that differs, where, and (for the "
        "classic mistakes) why. (`write` replaces a case only in a folder that holds nothing "
        "else: write the next case into a new folder.)", "",
    ]
    return "\n".join(text)

