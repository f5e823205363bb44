"""The comparisons: a gradient against central finite differences of the loss and against a
hand-written NumPy backpropagation, layer by layer, in float64."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import numpy_mlp
from jaxmlp.config import Config
from jaxmlp.gradcheck.gradients import GradFn, jax_grad
from jaxmlp.gradcheck.problems import Problem, init_params, variant_name
from jaxmlp.losses import Batch, loss_fn
from jaxmlp.model import Params

# A correct float64 gradient agrees with both references to ~1e-9 or better: float64 rounding is
# ~1e-16, the NumPy backprop differs from JAX only in the order of additions (~1e-15), and the
# finite differences below are limited by cancellation, eps * |L| / (h |dL/dv|) ~ 1e-10. A real
# mistake (a missing factor, a wrong sign, a dropped derivative) gives errors of 1e-4 to 1.
# 1e-6 sits between the two with three orders of magnitude to spare on each side.
TOLERANCE = 1e-6
# Finite-difference steps, in parameter units along a unit vector. The most accurate step depends
# on the curvature: too large and the O(h^4) truncation error grows (near a sum_normalize sum
# close to 0 the loss bends sharply), too small and cancellation, eps * |L| / h, grows. So each
# derivative is estimated at three steps and the closest estimate counts. Each estimate is a
# genuine approximation, so a wrong gradient fails at all three; the smallest step also keeps
# pre-activations from crossing a ReLU kink (they move by at most h * |x|).
FD_STEPS = (1e-4, 1e-5, 1e-6)
# Coordinates checked one by one per layer, besides the gradient direction: the largest entries
# (where a mistake matters most), and a few random entries of at least 1e-3 of the largest.
TOP_COORDINATES = 3
RANDOM_COORDINATES = 2


class LayerCheck(NamedTuple):
    layer: int  # 1-based
    grad_norm: float
    fd_error: float  # largest relative error against finite differences
    numpy_error: float  # relative error of the whole layer gradient against NumPy backprop


class VariantCheck(NamedTuple):
    config: Config
    loss: float
    layers: list[LayerCheck]

    @property
    def worst(self) -> float:
        return max(max(c.fd_error, c.numpy_error) for c in self.layers)

    @property
    def ok(self) -> bool:
        # A NaN error compares False, so it fails too.
        return all(c.fd_error <= TOLERANCE and c.numpy_error <= TOLERANCE for c in self.layers)


def relative_error(a: np.ndarray | float, b: np.ndarray | float) -> float:
    """|a - b| / max(|a|, |b|) (vector norms for arrays); 0 when both are exactly 0."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def _flat_layer(layer: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(layer["w"]).ravel(), np.asarray(layer["b"]).ravel()])


def _unflat_layer(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    nw = np.asarray(like["w"]).size
    return {"w": flat[:nw].reshape(np.shape(like["w"])),
            "b": flat[nw:].reshape(np.shape(like["b"]))}


def probe_directions(grad_layer: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Unit vectors to differentiate along: the gradient's own direction, then single
    coordinates (the largest entries, and random ones that are not negligibly small)."""
    n = grad_layer.size
    norm = np.linalg.norm(grad_layer)
    dirs = []
    if norm > 0:
        dirs.append(grad_layer / norm)
    mag = np.abs(grad_layer)
    chosen = list(np.argsort(-mag)[:TOP_COORDINATES])
    candidates = np.flatnonzero(mag >= 1e-3 * mag.max()) if norm > 0 else np.arange(n)
    candidates = np.setdiff1d(candidates, chosen)
    if candidates.size:
        chosen += list(rng.choice(candidates, min(RANDOM_COORDINATES, candidates.size),
                                  replace=False))
    for i in chosen:
        e = np.zeros(n)
        e[i] = 1.0
        dirs.append(e)
    return dirs


def _stencil_points(params: Params, layer: int, direction: np.ndarray, h: float
                    ) -> list[Params]:
    """Parameters moved along `direction` within `layer` by +2h, +h, -h, -2h."""
    base = [{k: np.asarray(v) for k, v in p.items()} for p in params]
    flat = _flat_layer(base[layer])
    points = []
    for t in (2 * h, h, -h, -2 * h):
        p = list(base)
        p[layer] = _unflat_layer(flat + t * direction, base[layer])
        points.append(p)
    return points


def _stencil(f2: float, f1: float, m1: float, m2: float, h: float) -> float:
    """The 5-point central difference [-L(+2h) + 8 L(+h) - 8 L(-h) + L(-2h)] / 12h."""
    return float((-f2 + 8 * f1 - 8 * m1 + m2) / (12 * h))


def batched_loss(batch: Batch, config: Config) -> Callable[[list[Params]], np.ndarray]:
    """The loss at many parameter sets at once (vmap), so finite differences stay fast."""

    # One compiled program per variant: cheaper than compiling each eager operation.
    many_losses = jax.jit(jax.vmap(lambda p: loss_fn(p, batch, config)[0]))

    def loss_at(many: list[Params]) -> np.ndarray:
        # Stack on the host: one transfer per leaf instead of one per parameter set.
        return np.asarray(many_losses(jax.tree.map(lambda *leaves: np.stack(leaves), *many)))

    return loss_at


def check_variant(problem: Problem, config: Config, grad_fn: GradFn = jax_grad, seed: int = 0
                  ) -> VariantCheck:
    """Compare `grad_fn` with finite differences and with NumPy backprop, layer by layer."""
    config = dataclasses.replace(config, activation=problem.activation)
    with jax.enable_x64(True):
        params = init_params(problem, config, seed)
        batch = Batch(jnp.asarray(problem.x, jnp.float64), jnp.asarray(problem.y, jnp.int32))
        loss = float(loss_fn(params, batch, config)[0])
        grads = [_flat_layer(g) for g in jax.device_get(grad_fn(params, batch, config))]
        np_params = [{k: np.asarray(v) for k, v in p.items()} for p in params]
        np_grads = numpy_mlp.backward(np_params, problem.x, problem.y, config)
        rng = np.random.default_rng(seed)
        # Every (layer, direction, step) at once: one vmapped evaluation of the loss.
        probes = [(i, v) for i, g in enumerate(grads) for v in probe_directions(g, rng)]
        points = [p for i, v in probes for h in FD_STEPS for p in _stencil_points(params, i, v, h)]
        values = batched_loss(batch, config)(points).reshape(len(probes), len(FD_STEPS), 4)
    fd_errors: list[list[float]] = [[] for _ in grads]
    for (i, v), per_step in zip(probes, values, strict=True):
        analytic = grads[i] @ v
        fd_errors[i].append(min(relative_error(_stencil(*f, h), analytic)
                                for f, h in zip(per_step, FD_STEPS, strict=True)))
    layers = [LayerCheck(i + 1, float(np.linalg.norm(g)), max(fd_errors[i], default=0.0),
                         relative_error(g, _flat_layer(np_grads[i])))
              for i, g in enumerate(grads)]
    return VariantCheck(config, loss, layers)


def check_all(problem: Problem, configs: Sequence[Config], grad_fn: GradFn = jax_grad
              ) -> list[VariantCheck]:
    return [check_variant(problem, c, grad_fn) for c in configs]


def format_table(problem: Problem, checks: Sequence[VariantCheck]) -> str:
    n_layers = len(checks[0].layers)
    head = f"{'variant':<46}" + "".join(f"| {f'L{i + 1} FD':>8} {'NumPy':>8} "
                                        for i in range(n_layers))
    lines = [f"{problem.name}; net {problem.x.shape[1]}-"
             f"{'-'.join(map(str, problem.hidden))}-K (K = {problem.num_classes} outputs, 1 for "
             f"integer targets), {problem.activation}, float64",
             head + "| ok", "-" * (len(head) + 4)]
    for c in checks:
        cells = "".join(f"| {lc.fd_error:8.1e} {lc.numpy_error:8.1e} " for lc in c.layers)
        lines.append(f"{variant_name(c.config):<46}{cells}| {'ok' if c.ok else 'FAIL'}")
    return "\n".join(lines)
