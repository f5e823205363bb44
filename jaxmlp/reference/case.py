"""The worked case: a tiny MLP, one batch, every number of one forward pass, one backward pass
and one plain SGD step, in float64.

Names (the keys of `case.json`), for a net with layers 1..L (L - 1 hidden layers):

    x, y, t                          inputs (B, D), integer labels (B,), targets (B, K)
    layer{l}.w, layer{l}.b           weights (in, out) and biases (out,) of every layer
    layer{l}.z, layer{l}.a           hidden layers only: z = a_prev @ w + b, a = act(z)
    o                                outputs: the last layer's z (it has no activation)
    p, error, example_loss, loss     predictions, per-class errors (B, K), per-example losses (B,),
                                     the scalar loss
    grad.<name>                      dloss/d<name> for every intermediate and parameter
    after_step.layer{l}.w / .b       the parameters after  w - learning_rate * grad.w

The gradients are JAX's, of the chain written out stage by stage (`_chain`): a zero is added to
every intermediate, and the gradient with respect to that zero is the gradient with respect to
the intermediate. The chain uses the project's own pieces (`model.ACTIVATIONS`,
`losses.predictions`, `losses.reduce_examples`), so its loss and parameter gradients are those of
`jax.grad(losses.loss_fn)`; the tests check that for every loss variant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import numpy_mlp
from jaxmlp.config import Config, validate
from jaxmlp.losses import EPS, predictions, reduce_examples
from jaxmlp.model import ACTIVATIONS, init_mlp

Case = dict[str, np.ndarray]

INPUTS = ("toy", "mnist")
TOY_PIXELS = 4  # a 2x2 image, pixels row by row
TOY_CLASSES = 2
# Parameters are rounded to this many decimals, so they can be read and typed by hand; the
# whole case is then computed, exactly, from the rounded values.
PARAM_DECIMALS = 2
# For relu, draws whose hidden pre-activations come within this distance of 0 are skipped: at
# the kink the derivative is a convention (0 here, as in JAX), and a float32 implementation's z
# (off by ~1e-7) could land on the other side. A worked case should hinge on neither.
KINK_MARGIN = 1e-4
MAX_DRAWS = 1000


@dataclass(frozen=True)
class CaseSpec:
    """Everything that decides a case's numbers (written to `settings.json` beside it)."""

    hidden: tuple[int, ...] = (3,)
    examples: int = 5
    activation: str = "relu"
    init: str = "he"
    output: str = "softmax"
    error: str = "cross_entropy"
    class_reduction: str = "sum"
    example_reduction: str = "mean"
    targets: str = "onehot"
    learning_rate: float = 0.1
    seed: int = 0
    inputs: str = "toy"

    def config(self) -> Config:
        """The training configuration with the same loss and model choices."""
        return Config(hidden=self.hidden, activation=self.activation, init=self.init,
                      output=self.output, error=self.error,
                      class_reduction=self.class_reduction,
                      example_reduction=self.example_reduction, targets=self.targets,
                      learning_rate=self.learning_rate, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


def validate_spec(spec: CaseSpec) -> CaseSpec:
    """Refuse impossible settings with the project's own messages (`config.validate`)."""
    validate(spec.config())
    if isinstance(spec.examples, bool) or not isinstance(spec.examples, int) or spec.examples < 1:
        raise ValueError(f"--examples must be a positive whole number, got {spec.examples!r}")
    if spec.inputs not in INPUTS:
        raise ValueError(f"--inputs {spec.inputs!r} is not known; choose one of: "
                         f"{', '.join(INPUTS)}")
    return spec


def num_outputs(spec: CaseSpec, num_classes: int) -> int:
    return 1 if spec.targets == "integer" else num_classes


def toy_inputs(examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): 2x2 'images' with pixels 0.0, 0.1, ..., 1.0, and labels 0, 1, 0, 1, ...

    The labels carry no meaning: the point of the case is the arithmetic, not the task.
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 11, size=(examples, TOY_PIXELS)) / 10.0
    return x, (np.arange(examples) % TOY_CLASSES).astype(np.int64)


def image_inputs(images: np.ndarray, labels: np.ndarray, examples: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the first `examples` images, flattened and scaled to 0..1, and their labels."""
    if examples > len(images):
        raise ValueError(f"--examples {examples} is more than the {len(images)} images there are")
    x = images[:examples].reshape(examples, -1).astype(np.float64) / 255.0
    return x, labels[:examples].astype(np.int64)


def targets(y: np.ndarray, k: int, spec: CaseSpec) -> np.ndarray:
    """One-hot rows (B, K), or for integer targets the label itself as one number (B, 1)."""
    if spec.targets == "integer":
        return y.astype(np.float64)[:, None]
    return np.eye(k)[y]


def _draw_params(sizes: list[int], spec: CaseSpec, draw: int) -> list[dict[str, np.ndarray]]:
    key_w, key_b = jax.random.split(jax.random.fold_in(jax.random.key(spec.seed), draw))
    with jax.enable_x64(True):
        params = init_mlp(key_w, sizes, spec.init, dtype=jnp.float64)
        bias_keys = jax.random.split(key_b, len(params))
        # Small random biases, not the usual zeros, so a wrong bias gradient cannot hide.
        biases = [0.1 * jax.random.normal(k, p["b"].shape, jnp.float64)
                  for p, k in zip(params, bias_keys, strict=True)]
        return [{"w": np.round(np.asarray(p["w"]), PARAM_DECIMALS),
                 "b": np.round(np.asarray(b), PARAM_DECIMALS)}
                for p, b in zip(params, biases, strict=True)]


def _hidden_z(params: list[dict[str, np.ndarray]], x: np.ndarray, spec: CaseSpec
              ) -> list[np.ndarray]:
    zs, a = [], x
    for layer in params[:-1]:
        zs.append(a @ layer["w"] + layer["b"])
        a = numpy_mlp.activation(zs[-1], spec.activation)
    return zs


def _clear_of_kinks(zs: list[np.ndarray], activation: str) -> bool:
    return activation != "relu" or all(np.all(np.abs(z) >= KINK_MARGIN) for z in zs)


def _every_unit_switches(zs: list[np.ndarray]) -> bool:
    """Every hidden unit is on (z > 0) for some example and off for another, so relu's
    derivative matters and no unit is dead for the whole batch."""
    return all(np.all((z > 0).any(axis=0) & (z < 0).any(axis=0)) for z in zs)


def initial_params(x: np.ndarray, k: int, spec: CaseSpec) -> list[dict[str, np.ndarray]]:
    """The project's initialisation (`model.init_mlp`, scheme `spec.init`), rounded: for relu,
    the first draw for `spec.seed` whose hidden pre-activations stay clear of 0 (KINK_MARGIN)
    and, on two or more examples, preferably one where every hidden unit switches."""
    sizes = [x.shape[1], *spec.hidden, k]
    want_switching = spec.activation == "relu" and x.shape[0] >= 2
    fallback = None
    for draw in range(MAX_DRAWS):
        params = _draw_params(sizes, spec, draw)
        zs = _hidden_z(params, x, spec)
        if not _clear_of_kinks(zs, spec.activation):
            continue
        if not want_switching or _every_unit_switches(zs):
            return params
        fallback = fallback or params
    if fallback is None:
        raise ValueError(f"none of {MAX_DRAWS} draws keeps every hidden pre-activation away "
                         f"from relu's kink at 0; use fewer --examples or narrower --hidden "
                         f"layers (this is a case to read, not to train)")
    return fallback


def error_of(p: jax.Array, t: jax.Array, spec: CaseSpec) -> jax.Array:
    """Per-class error: (p - t)^2, or -t log p (softmax's p is never 0 here; other outputs can
    reach 0 or below, so their log is clamped at log(EPS), as `losses.class_errors` does)."""
    if spec.targets == "integer" or spec.error == "mse":
        return (p - t) ** 2
    if spec.output == "softmax":
        return -t * jnp.log(p)
    return -t * jnp.log(jnp.maximum(p, EPS))


def reduce_classes(error: jax.Array, spec: CaseSpec) -> jax.Array:
    return jnp.sum(error, axis=-1) if spec.class_reduction == "sum" else jnp.mean(error, axis=-1)


def intermediate_names(num_layers: int) -> list[str]:
    """The forward quantities that are computed (not given), in the order they are computed."""
    names = []
    for layer in range(1, num_layers):
        names += [f"layer{layer}.z", f"layer{layer}.a"]
    return [*names, "o", "p", "error", "example_loss", "loss"]


def param_names(num_layers: int) -> list[str]:
    return [f"layer{layer}.{kind}" for layer in range(1, num_layers + 1) for kind in ("w", "b")]


def forward_names(num_layers: int) -> list[str]:
    """Every forward key in the order a hand implementation meets it."""
    names = ["x", "y", "t"]
    for layer in range(1, num_layers):
        names += [f"layer{layer}.w", f"layer{layer}.b", f"layer{layer}.z", f"layer{layer}.a"]
    return [*names, f"layer{num_layers}.w", f"layer{num_layers}.b",
            "o", "p", "error", "example_loss", "loss"]


def backward_names(num_layers: int) -> list[str]:
    """Every gradient key in the order backpropagation computes it: from the loss down."""
    names = ["grad.loss", "grad.example_loss", "grad.error", "grad.p", "grad.o"]
    for layer in range(num_layers, 0, -1):
        if layer < num_layers:
            names += [f"grad.layer{layer}.a", f"grad.layer{layer}.z"]
        names += [f"grad.layer{layer}.w", f"grad.layer{layer}.b"]
    return names


def step_names(num_layers: int) -> list[str]:
    return ["after_step." + name for name in param_names(num_layers)]


def all_names(num_layers: int) -> list[str]:
    return forward_names(num_layers) + backward_names(num_layers) + step_names(num_layers)


def num_layers_of(case: Case) -> int:
    return sum(1 for key in case if key.startswith("layer") and key.endswith(".w"))


def _chain(params: list[dict[str, jax.Array]], zeros: dict[str, jax.Array], x: jax.Array,
           t: jax.Array, spec: CaseSpec) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, every intermediate): the forward pass one stage at a time, with `zeros[name]`
    added to each stage so that its gradient is dloss/d(that stage)."""
    act: Callable[[jax.Array], jax.Array] = ACTIVATIONS[spec.activation]
    values: dict[str, jax.Array] = {}
    a = x
    for layer, p in enumerate(params[:-1], start=1):
        z = a @ p["w"] + p["b"] + zeros[f"layer{layer}.z"]
        a = act(z) + zeros[f"layer{layer}.a"]
        values[f"layer{layer}.z"], values[f"layer{layer}.a"] = z, a
    values["o"] = a @ params[-1]["w"] + params[-1]["b"] + zeros["o"]
    values["p"] = predictions(values["o"], spec.output) + zeros["p"]
    values["error"] = error_of(values["p"], t, spec) + zeros["error"]
    values["example_loss"] = reduce_classes(values["error"], spec) + zeros["example_loss"]
    values["loss"] = reduce_examples(values["example_loss"], spec.example_reduction) + zeros["loss"]
    return values["loss"], values


def _shapes(x: np.ndarray, k: int, spec: CaseSpec) -> dict[str, tuple[int, ...]]:
    b, widths = x.shape[0], list(spec.hidden)
    shapes = {}
    for layer, width in enumerate(widths, start=1):
        shapes[f"layer{layer}.z"] = shapes[f"layer{layer}.a"] = (b, width)
    shapes.update({"o": (b, k), "p": (b, k), "error": (b, k), "example_loss": (b,), "loss": ()})
    return shapes


def compute_case(x: np.ndarray, y: np.ndarray, num_classes: int, spec: CaseSpec) -> Case:
    """Every number of the case, float64 (labels int64), keyed and ordered as `all_names`."""
    k = num_outputs(spec, num_classes)
    t = targets(y, k, spec)
    params = initial_params(x, k, spec)
    with jax.enable_x64(True):
        zeros = {n: jnp.zeros(s, jnp.float64) for n, s in _shapes(x, k, spec).items()}
        grad_fn = jax.grad(_chain, argnums=(0, 1), has_aux=True)
        (g_params, g_values), values = grad_fn(params, zeros, jnp.asarray(x), jnp.asarray(t),
                                               spec)
        values, g_params, g_values = jax.device_get((values, g_params, g_values))
    found: Case = {"x": x, "y": y, "t": t}
    for layer, (p, g) in enumerate(zip(params, g_params, strict=True), start=1):
        for kind in ("w", "b"):
            found[f"layer{layer}.{kind}"] = p[kind]
            found[f"grad.layer{layer}.{kind}"] = g[kind]
            found[f"after_step.layer{layer}.{kind}"] = p[kind] - spec.learning_rate * g[kind]
    for name, value in values.items():
        found[name] = value
        found["grad." + name] = g_values[name]
    return {name: np.asarray(found[name]) for name in all_names(len(params))}
