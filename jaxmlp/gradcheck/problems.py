"""The problems the gradients are checked on: a toy 2-D problem, a small MNIST subset, every
loss variant the configuration can compose, and float64 parameters for them."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp.config import ERRORS, OUTPUTS, REDUCTIONS, Config
from jaxmlp.model import Params, init_mlp


class Problem(NamedTuple):
    name: str
    x: np.ndarray  # float64 (n, features)
    y: np.ndarray  # int32 (n,)
    hidden: tuple[int, ...]
    activation: str
    init: str
    num_classes: int


def toy_problem(n: int = 60, num_classes: int = 3, seed: int = 0) -> Problem:
    """2-D points in `num_classes` clusters around the unit circle: small enough to reason
    about (a point near (1, 0) is class 0), with some overlap so the loss is not trivially 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    angles = 2 * np.pi * y / num_classes
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centres + 0.4 * rng.standard_normal((n, 2))
    # tanh: smooth everywhere, so finite differences never straddle a kink.
    return Problem(f"toy: {n} 2-D points in {num_classes} classes", x, y.astype(np.int32),
                   (8, 8), "tanh", "glorot", num_classes)


def mnist_problem(images: np.ndarray, labels: np.ndarray, n: int = 64, name: str = "mnist"
                  ) -> Problem:
    """The first `n` examples, flattened and scaled to 0..1, for a small ReLU net."""
    x = images[:n].reshape(n, -1).astype(np.float64) / 255.0
    return Problem(f"{name}: first {n} training images", x, labels[:n].astype(np.int32),
                   (32, 16), "relu", "he", 10)


def loss_variants(activation: str = "relu") -> list[Config]:
    """Every loss the configuration can compose: 3 outputs x 2 errors x 2 x 2 reductions, plus
    integer targets (one output, mse, no transform) with both reductions."""
    onehot = [
        Config(activation=activation, output=o, error=e, class_reduction=c, example_reduction=x)
        for o, e, c, x in itertools.product(OUTPUTS, ERRORS, REDUCTIONS, REDUCTIONS)
    ]
    integer = [
        Config(activation=activation, targets="integer", output="none", error="mse",
               class_reduction=c, example_reduction=x)
        for c, x in itertools.product(REDUCTIONS, REDUCTIONS)
    ]
    return onehot + integer


def variant_name(c: Config) -> str:
    if c.targets == "integer":
        return f"integer {c.error} cls={c.class_reduction} ex={c.example_reduction}"
    return f"{c.output} {c.error} cls={c.class_reduction} ex={c.example_reduction}"


def init_params(problem: Problem, config: Config, seed: int = 0) -> Params:
    """float64 parameters (call inside `jax.enable_x64(True)`). Biases get small random values
    so that their gradients are checked away from the special point 0."""
    k = 1 if config.targets == "integer" else problem.num_classes
    sizes = [problem.x.shape[1], *problem.hidden, k]
    key_w, key_b = jax.random.split(jax.random.key(seed))
    params = init_mlp(key_w, sizes, problem.init, dtype=jnp.float64)
    bias_keys = jax.random.split(key_b, len(params))
    return [{"w": p["w"], "b": 0.1 * jax.random.normal(kb, p["b"].shape, jnp.float64)}
            for p, kb in zip(params, bias_keys, strict=True)]
