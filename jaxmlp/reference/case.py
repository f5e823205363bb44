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
    after_step.loss                  the loss of the same batch with those parameters

The settings are a training `Config` (its model and loss choices, the learning rate and the
seed: `CASE_FIELDS`) and the case's own: how many examples, which inputs, how many toy classes.
The gradients are JAX's, of the chain written out stage by stage (`_chain`) from the project's
own pieces (`model.ACTIVATIONS`, `losses.predictions`, `losses.error`, the reductions): a zero is
added to every intermediate, and the gradient with respect to that zero is the gradient with
respect to the intermediate. The tests check that its loss and parameter gradients are those of
`jax.grad(losses.loss_fn)` for every loss variant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import losses, numpy_mlp
from jaxmlp.config import Config, ConfigError, flag_name, validate
from jaxmlp.model import ACTIVATIONS, init_mlp

Case = dict[str, np.ndarray]

# The `Config` fields that decide a case's numbers; the rest (optimizer, data, epochs...) play
# no part in one plain SGD step on one batch.
CASE_FIELDS = ("hidden", "activation", "init", "output", "error", "class_reduction",
               "example_reduction", "targets", "learning_rate", "seed")
# Config's defaults are MNIST training's; a case is read by hand, so it is small, and its one
# plain SGD step takes a rate at which a step visibly lowers the loss.
CASE_DEFAULTS: Mapping[str, Any] = MappingProxyType({"hidden": (3,), "learning_rate": 0.1})
CASE_CONFIG = Config.from_dict(dict(CASE_DEFAULTS))

INPUTS = ("toy", "mnist")
TOY_PIXELS = 4  # a 2x2 image, pixels row by row
# 5 examples and 3 classes, with the learning rate 0.1: the classic mistakes' factors then all
# differ (a missing 1/N is 5x, a missing 1/K 3x, a gradient accumulated twice 2x, the square's
# missing 2 1/2x, the learning rate 0.1x), so a factor names one cause (see `factors`).
TOY_CLASSES = 3
DEFAULT_EXAMPLES = 5
# Older cases (before the toy inputs had 3 classes) wrote no "classes": theirs was 2.
LEGACY_TOY_CLASSES = 2

# A case is read and typed by hand: these bound its size (and the time `write` takes).
MAX_HIDDEN_LAYERS = 4
MAX_WIDTH = 16
MAX_EXAMPLES = 32
MIN_CLASSES, MAX_CLASSES = 2, 10

# Parameters are rounded to this many decimals, so they can be read and typed by hand; the
# whole case is then computed, exactly, from the rounded values.
PARAM_DECIMALS = 2
# For relu, draws whose hidden pre-activations come within this distance of 0 are skipped: at
# the kink the derivative is a convention (0 here, as in JAX), and a float32 implementation's z
# (off by ~1e-7) could land on the other side. A worked case should hinge on neither.
KINK_MARGIN = 1e-4
# Draws tried for one whose units can all be made to switch (`_switching_biases`).
MAX_DRAWS = 1000


@dataclass(frozen=True)
class CaseSpec:
    """Everything that decides a case's numbers (written to `settings.json` beside it): the
    training configuration (`CASE_FIELDS` of it) and the case's own settings."""

    config: Config = CASE_CONFIG
    examples: int = DEFAULT_EXAMPLES
    inputs: str = "toy"
    classes: int | None = TOY_CLASSES  # toy inputs only; None: the data set's own (MNIST: 10)

    def settings(self) -> dict[str, Any]:
        """`settings.json`'s flat object: the Config fields by their own names, then the case's."""
        d = {name: getattr(self.config, name) for name in CASE_FIELDS}
        d["hidden"] = list(self.config.hidden)
        return {**d, "examples": self.examples, "inputs": self.inputs, "classes": self.classes}

    @classmethod
    def from_settings(cls, d: Mapping[str, Any]) -> CaseSpec:
        """The inverse of `settings` (KeyError, TypeError or ConfigError where it does not fit);
        an older file without "classes" had the 2 toy classes of its day."""
        own = {"examples", "inputs", "classes"}
        unknown = sorted(set(d) - own - set(CASE_FIELDS))
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        missing = [name for name in (*CASE_FIELDS, "examples", "inputs") if name not in d]
        if missing:
            raise ConfigError(f"missing settings: {', '.join(missing)}")
        config = Config.from_dict({name: d[name] for name in CASE_FIELDS})
        legacy = LEGACY_TOY_CLASSES if d["inputs"] == "toy" else None
        return cls(config, d["examples"], d["inputs"], d.get("classes", legacy))


def write_flags(spec: CaseSpec, always: Collection[str] = ()) -> list[str]:
    """The `write` flags that give `spec`: those that differ from the defaults, and `always`."""
    default = CaseSpec()
    flags = []
    for name in CASE_FIELDS:
        value = getattr(spec.config, name)
        if value != getattr(CASE_CONFIG, name) or name in always:
            words = [str(v) for v in value] if name == "hidden" else [f"{value:g}" if
                                                                       isinstance(value, float)
                                                                       else str(value)]
            flags += [flag_name(name), *words]
    for name in ("examples", "inputs", "classes"):
        value = getattr(spec, name)
        if (value != getattr(default, name) or name in always) and value is not None:
            flags += [flag_name(name), str(value)]
    return flags


def _whole_number(value: Any, flag: str, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{flag} must be a whole number from {low} to {high}, got "
                          f"{value!r}{why}")


SMALL = ": a worked case is read and typed by hand (python -m jaxmlp.train trains big ones)"


def validate_spec(spec: CaseSpec) -> CaseSpec:
    """Refuse impossible or oversized settings, one line each: the training settings with the
    project's own checks (`config.validate`), then the case's limits."""
    validate(spec.config)
    if len(spec.config.hidden) > MAX_HIDDEN_LAYERS:
        raise ConfigError(f"--hidden gives {len(spec.config.hidden)} hidden layers, at most "
                          f"{MAX_HIDDEN_LAYERS} fit{SMALL}")
    for width in spec.config.hidden:
        _whole_number(width, "--hidden (every width)", 1, MAX_WIDTH, SMALL)
    _whole_number(spec.examples, "--examples", 1, MAX_EXAMPLES, SMALL)
    if spec.inputs not in INPUTS:
        raise ConfigError(f"--inputs {spec.inputs!r} is not known; choose one of: "
                          f"{', '.join(INPUTS)}")
    if spec.inputs != "toy" and spec.classes is not None:
        raise ConfigError(f"--classes sets the toy inputs' classes; --inputs {spec.inputs} has "
                          f"its data set's own: drop --classes, or use --inputs toy")
    if spec.inputs == "toy":
        _whole_number(spec.classes, "--classes", MIN_CLASSES, MAX_CLASSES, "")
    return spec


def toy_inputs(examples: int, seed: int, classes: int = TOY_CLASSES
               ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): 2x2 'images' with pixels 0.0, 0.1, ..., 1.0, and labels 0, 1, ..., K-1, 0, 1, ...

    The labels carry no meaning: the point of the case is the arithmetic, not the task.
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 11, size=(examples, TOY_PIXELS)) / 10.0
    return x, (np.arange(examples) % classes).astype(np.int64)


def image_inputs(images: np.ndarray, labels: np.ndarray, examples: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the first `examples` images, flattened and scaled to 0..1, and their labels."""
    if examples > len(images):
        raise ValueError(f"--examples {examples} is more than the {len(images)} images there are")
    x = images[:examples].reshape(examples, -1).astype(np.float64) / 255.0
    return x, labels[:examples].astype(np.int64)


def _draw_params(sizes: list[int], config: Config, draw: int) -> list[dict[str, np.ndarray]]:
    key_w, key_b = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), draw))
    with jax.enable_x64(True):
        params = init_mlp(key_w, sizes, config.init, config.init_scale, jnp.float64)
        # Small random biases, not the usual zeros, so a wrong bias gradient cannot hide (relu's
        # hidden ones are then set to make every unit switch: `_switching_biases`).
        biases = np.asarray(0.1 * jax.random.normal(key_b, (sum(sizes[1:]),), jnp.float64))
    ends = np.cumsum(sizes[1:])[:-1]
    return [{"w": np.round(np.asarray(p["w"]), PARAM_DECIMALS), "b": np.round(b, PARAM_DECIMALS)}
            for p, b in zip(params, np.split(biases, ends), strict=True)]


def _hidden_z(params: list[dict[str, np.ndarray]], x: np.ndarray, activation: str
              ) -> list[np.ndarray]:
    zs, a = [], x
    for layer in params[:-1]:
        zs.append(a @ layer["w"] + layer["b"])
        a = numpy_mlp.activation(zs[-1], activation)
    return zs


def _usable(zs: list[np.ndarray], activation: str) -> bool:
    """For relu: no z at the kink, and every hidden layer both on somewhere (else nothing
    passes it) and, where it has two values or more, off somewhere (else relu' is 1 throughout
    and a forgotten relu' could not show)."""
    if activation != "relu":
        return True
    return all(np.all(np.abs(z) >= KINK_MARGIN) and np.any(z > 0) and (z.size < 2 or np.any(z < 0))
               for z in zs)


def _switching_biases(params: list[dict[str, np.ndarray]], x: np.ndarray
                      ) -> list[dict[str, np.ndarray]] | None:
    """`params` with each hidden relu unit's bias set so that the unit is on for some examples
    and off for the others: every unit switches, so relu' matters everywhere and no unit is dead
    for the batch, by construction (in deep, narrow networks a draw where every unit switches by
    chance is rarer than 1 in 1,000). The kink goes into the widest gap between two of the
    unit's pre-activations in the middle half of them, rounded like every parameter; None when
    a gap is too narrow for the rounded bias to keep KINK_MARGIN from both sides."""
    out, a = [], x
    n = x.shape[0]
    lo, hi = max(1, n // 4), max(1, min(n - 1, n - n // 4))
    for layer in params[:-1]:
        z = a @ layer["w"]
        s = np.sort(z, axis=0)
        gaps = s[lo:hi + 1] - s[lo - 1:hi]  # gap m: between sorted values m - 1 and m
        m = lo + np.argmax(gaps, axis=0)
        units = np.arange(z.shape[1])
        below, above = s[m - 1, units], s[m, units]
        b = np.round(-(below + above) / 2, PARAM_DECIMALS)
        if np.any(below + b > -KINK_MARGIN) or np.any(above + b < KINK_MARGIN):
            return None
        out.append({"w": layer["w"], "b": b})
        a = np.maximum(z + b, 0.0)
    return [*out, params[-1]]


def initial_params(x: np.ndarray, k: int, config: Config) -> list[dict[str, np.ndarray]]:
    """The project's initialisation of the weights (`model.init_mlp`, scheme `config.init`),
    rounded: the first draw for `config.seed` that is usable (`_usable`); for relu on two or
    more examples, with hidden biases that make every unit switch (`_switching_biases`)."""
    sizes = [x.shape[1], *config.hidden, k]
    switching = config.activation == "relu" and x.shape[0] >= 2
    for draw in range(MAX_DRAWS):
        params = _draw_params(sizes, config, draw)
        if switching:
            params = _switching_biases(params, x)
            if params is None:
                continue
        if _usable(_hidden_z(params, x, config.activation), config.activation):
            return params
    raise ConfigError(f"none of {MAX_DRAWS} draws keeps every hidden relu layer both on and "
                      f"off and away from the kink at 0; try another --seed, or fewer or "
                      f"wider --hidden layers")


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
    return [*("after_step." + name for name in param_names(num_layers)), "after_step.loss"]


def all_names(num_layers: int) -> list[str]:
    return forward_names(num_layers) + backward_names(num_layers) + step_names(num_layers)


def num_layers_of(case: Case) -> int:
    return sum(1 for key in case if key.startswith("layer") and key.endswith(".w"))


def _chain(params: list[dict[str, jax.Array]], zeros: dict[str, jax.Array], x: jax.Array,
           t: jax.Array, config: Config) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, every intermediate): the forward pass one stage at a time, with `zeros[name]`
    added to each stage so that its gradient is dloss/d(that stage)."""
    act: Callable[[jax.Array], jax.Array] = ACTIVATIONS[config.activation]
    values: dict[str, jax.Array] = {}
    a = x
    for layer, p in enumerate(params[:-1], start=1):
        z = a @ p["w"] + p["b"] + zeros[f"layer{layer}.z"]
        a = act(z) + zeros[f"layer{layer}.a"]
        values[f"layer{layer}.z"], values[f"layer{layer}.a"] = z, a
    values["o"] = a @ params[-1]["w"] + params[-1]["b"] + zeros["o"]
    values["p"] = losses.predictions(values["o"], config.output) + zeros["p"]
    values["error"] = losses.error(values["p"], t, config) + zeros["error"]
    values["example_loss"] = (losses.reduce_classes(values["error"], config.class_reduction)
                              + zeros["example_loss"])
    values["loss"] = (losses.reduce_examples(values["example_loss"], config.example_reduction)
                      + zeros["loss"])
    return values["loss"], values


def _shapes(x: np.ndarray, k: int, hidden: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    b = x.shape[0]
    shapes = {}
    for layer, width in enumerate(hidden, start=1):
        shapes[f"layer{layer}.z"] = shapes[f"layer{layer}.a"] = (b, width)
    shapes.update({"o": (b, k), "p": (b, k), "error": (b, k), "example_loss": (b,), "loss": ()})
    return shapes


@functools.partial(jax.jit, static_argnums=4)
def _computed(params: list[dict[str, jax.Array]], zeros: dict[str, jax.Array], x: jax.Array,
              t: jax.Array, config: Config) -> tuple[Any, ...]:
    """Every intermediate, the gradients of the loss with respect to them and to the
    parameters, the stepped parameters and the loss after the step: one compiled program per
    case shape (op by op, every operation is compiled apart for each new shape)."""
    (g_params, g_values), values = jax.grad(_chain, argnums=(0, 1), has_aux=True)(
        params, zeros, x, t, config)
    stepped = jax.tree.map(lambda p, g: p - config.learning_rate * g, params, g_params)
    loss_after, _ = _chain(stepped, zeros, x, t, config)
    return values, g_params, g_values, stepped, loss_after


def compute_case(x: np.ndarray, y: np.ndarray, num_classes: int, spec: CaseSpec) -> Case:
    """Every number of the case, float64 (labels int64), keyed and ordered as `all_names`."""
    config = spec.config
    k = losses.num_outputs(config, num_classes)
    params = initial_params(x, k, config)
    with jax.enable_x64(True):
        t = losses.targets(jnp.asarray(y), config, k).astype(jnp.float64)
        zeros = {n: jnp.zeros(s, jnp.float64) for n, s in _shapes(x, k, config.hidden).items()}
        values, g_params, g_values, stepped, loss_after = jax.device_get(
            _computed(params, zeros, jnp.asarray(x), t, config))
        t = np.asarray(t)
    found: Case = {"x": x, "y": y, "t": t, "after_step.loss": loss_after}
    for layer, (p, g, s) in enumerate(zip(params, g_params, stepped, strict=True), start=1):
        for kind in ("w", "b"):
            found[f"layer{layer}.{kind}"] = p[kind]
            found[f"grad.layer{layer}.{kind}"] = g[kind]
            found[f"after_step.layer{layer}.{kind}"] = s[kind]
    for name, value in values.items():
        found[name] = value
        found["grad." + name] = g_values[name]
    return {name: np.asarray(found[name]) for name in all_names(len(params))}


def loss_after_step(case: Case, config: Config) -> np.ndarray:
    """`after_step.loss` for a case written before it was part of one, from the stepped
    parameters, by the NumPy reference."""
    layers = num_layers_of(case)
    params = [{kind: case[f"after_step.layer{layer}.{kind}"] for kind in ("w", "b")}
              for layer in range(1, layers + 1)]
    return np.asarray(numpy_mlp.loss(params, case["x"], case["y"], config))

