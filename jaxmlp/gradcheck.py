"""Is my backprop right? Check `jax.grad(loss_fn)` three ways, then measure what a step does.

    python -m jaxmlp.gradcheck            # toy 2-D problem and a small MNIST subset
    python -m jaxmlp.gradcheck --wrong activation   # a deliberately wrong gradient: must FAIL

For every loss variant (output x error x class reduction x example reduction, plus integer
targets) and every layer, the gradient JAX computes is compared, in float64, with

1. central finite differences of the loss itself: (L(p + h v) - L(p - h v)) / 2h approximates
   the derivative along v, with no calculus at all (a 5-point stencil, accurate to O(h^4));
2. a hand-written NumPy backpropagation (`jaxmlp.numpy_mlp`), the chain rule written out.

The relative errors are printed as a table; any above `TOLERANCE` fails the command (exit 1).
Then the step-size demo answers "which direction, and how far": the loss after a step of
-lr x gradient for a range of lr (it falls, then overshoots), and after +lr x gradient (it rises).

float64 is switched on only inside this module's functions (`jax.enable_x64` as a context), so
importing it changes nothing for the rest of jaxmlp.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import numpy_mlp
from jaxmlp.config import ERRORS, OUTPUTS, REDUCTIONS, Config
from jaxmlp.losses import Batch, loss_fn, loss_from_logits
from jaxmlp.model import ACTIVATIONS, Params, init_mlp

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

DEFAULT_LRS = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
WRONG_KINDS = ("activation", "scale", "sign")

GradFn = Callable[[Params, Batch, Config], Params]


# --- the problems ---------------------------------------------------------------------------------


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


# --- gradients to check ---------------------------------------------------------------------------


def jax_grad(params: Params, batch: Batch, config: Config) -> Params:
    """The gradient under test: JAX's reverse-mode differentiation of `losses.loss_fn`."""
    return jax.grad(loss_fn)(params, batch, config)


def wrong_grad(kind: str) -> GradFn:
    """A deliberately wrong gradient, to prove the check can fail.

    activation: backprop that forgets act'(z) in the hidden layers (treats act as if its
                derivative were 1), a classic hand-written-backprop mistake;
    scale:      the first layer's gradient 0.01% too large, a subtle mistake;
    sign:       the gradient negated, so "descent" climbs.
    """
    if kind == "activation":

        def grad(params: Params, batch: Batch, config: Config) -> Params:
            act = ACTIVATIONS[config.activation]

            @jax.custom_jvp
            def forgetful(z: jax.Array) -> jax.Array:
                return act(z)

            forgetful.defjvp(lambda primals, tangents: (act(primals[0]), tangents[0]))

            def loss(p: Params) -> jax.Array:
                x = batch.x
                for layer in p[:-1]:
                    x = forgetful(x @ layer["w"] + layer["b"])
                return loss_from_logits(x @ p[-1]["w"] + p[-1]["b"], batch.y, config)

            return jax.grad(loss)(params)

        return grad
    if kind == "scale":

        def grad(params: Params, batch: Batch, config: Config) -> Params:
            g = jax_grad(params, batch, config)
            return [{k: v * 1.0001 for k, v in g[0].items()}, *g[1:]]

        return grad
    if kind == "sign":
        return lambda params, batch, config: jax.tree.map(jnp.negative,
                                                          jax_grad(params, batch, config))
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(WRONG_KINDS)}")


# --- the comparisons ------------------------------------------------------------------------------


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


def finite_difference(loss_at: Callable[[list[Params]], np.ndarray], params: Params, layer: int,
                      direction: np.ndarray, h: float) -> float:
    """dL/dv along the unit vector `direction` of `layer`'s flattened (w, b), by finite
    differences of the loss alone: no derivative of anything is used."""
    return _stencil(*loss_at(_stencil_points(params, layer, direction, h)), h)


def _batched_loss(batch: Batch, config: Config) -> Callable[[list[Params]], np.ndarray]:
    """The loss at many parameter sets at once (vmap), so finite differences stay fast."""

    # One compiled program per variant: cheaper than compiling each eager operation.
    many_losses = jax.jit(jax.vmap(lambda p: loss_fn(p, batch, config)))

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
        loss = float(loss_fn(params, batch, config))
        grads = [_flat_layer(g) for g in jax.device_get(grad_fn(params, batch, config))]
        np_params = [{k: np.asarray(v) for k, v in p.items()} for p in params]
        np_grads = numpy_mlp.backward(np_params, problem.x, problem.y, config)
        rng = np.random.default_rng(seed)
        # Every (layer, direction, step) at once: one vmapped evaluation of the loss.
        probes = [(i, v) for i, g in enumerate(grads) for v in probe_directions(g, rng)]
        points = [p for i, v in probes for h in FD_STEPS for p in _stencil_points(params, i, v, h)]
        values = _batched_loss(batch, config)(points).reshape(len(probes), len(FD_STEPS), 4)
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


# --- which direction, how far ---------------------------------------------------------------------


class StepRow(NamedTuple):
    lr: float
    predicted: float  # first-order prediction of the change: -lr * |g|^2
    descent: float  # change of the loss after p - lr * g
    ascent: float  # change of the loss after p + lr * g


def step_sizes(problem: Problem, config: Config, lrs: Sequence[float] = DEFAULT_LRS,
               grad_fn: GradFn = jax_grad) -> tuple[float, float, list[StepRow]]:
    """(loss, |g|, rows): the loss change after one step of -lr*g and of +lr*g, per lr."""
    config = dataclasses.replace(config, activation=problem.activation)
    with jax.enable_x64(True):
        params = init_params(problem, config)
        batch = Batch(jnp.asarray(problem.x, jnp.float64), jnp.asarray(problem.y, jnp.int32))
        loss = float(loss_fn(params, batch, config))
        g = grad_fn(params, batch, config)
        g2 = float(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g)))
        loss_at = _batched_loss(batch, config)
        moved = [jax.tree.map(lambda p, d, s=s: p + s * d, params, g)
                 for lr in lrs for s in (-lr, lr)]
        after = loss_at(moved).reshape(len(lrs), 2)
    rows = [StepRow(lr, -lr * g2, float(d - loss), float(a - loss))
            for lr, (d, a) in zip(lrs, after, strict=True)]
    return loss, math.sqrt(g2), rows


def describe_steps(loss: float, rows: Sequence[StepRow]) -> list[str]:
    """What the step table shows, read off the numbers."""
    lines = []
    falls = [r for r in rows if r.descent < 0]
    if not falls:
        lines.append("NO step against the gradient lowered the loss: this 'gradient' does not "
                     "point uphill, so it is wrong (or the loss is already at a minimum).")
    else:
        best = min(rows, key=lambda r: r.descent)
        lines.append(f"a step against the gradient (-lr x g) lowers the loss for lr "
                     f"{falls[0].lr:g} .. {falls[-1].lr:g}; the largest fall is at lr={best.lr:g} "
                     f"({loss:.4f} -> {loss + best.descent:.4f}).")
        linear = [r for r in rows if r.predicted and abs(r.descent / r.predicted - 1) <= 0.1]
        if linear:
            lines.append(f"up to lr={linear[-1].lr:g} the fall is within 10% of the slope's "
                         f"prediction lr x |g|^2: the gradient says how fast the loss falls "
                         f"right here, not how far to go.")
        further = [r for r in rows if r.lr > best.lr]
        if further:
            rose = [r for r in further if r.descent > 0]
            text = f"past lr={best.lr:g} the step overshoots: it falls less"
            if rose:
                text += (f", and from lr={rose[0].lr:g} on the loss ends higher than it started "
                         f"({loss:.4f} -> {loss + rose[0].descent:.4f})")
            lines.append(text + ".")
    rises = sum(r.ascent > 0 for r in rows)
    text = f"a step along the gradient (+lr x g) raises the loss for {rises} of {len(rows)} lr"
    if rises == len(rows):
        text += ": the gradient points uphill, which is why training subtracts it."
    else:
        text += ": for small steps it should always rise, since the gradient points uphill."
    lines.append(text)
    return lines


# --- output ---------------------------------------------------------------------------------------


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


def format_steps(problem: Problem, config: Config, loss: float, gnorm: float,
                 rows: Sequence[StepRow]) -> str:
    lines = [f"one step on {problem.name} ({variant_name(config)}): loss {loss:.4f}, "
             f"|g| = {gnorm:.4g}",
             f"{'lr':>7} | {'predicted':>10} | {'after -lr*g':>11} | {'actual/pred':>11} | "
             f"{'after +lr*g':>11}",
             "-" * 63]
    for r in rows:
        ratio = r.descent / r.predicted if r.predicted else float("nan")
        lines.append(f"{r.lr:7g} | {r.predicted:+10.3g} | {r.descent:+11.4g} | {ratio:11.2f} | "
                     f"{r.ascent:+11.4g}")
    lines.append("(changes of the loss; predicted = -lr x |g|^2, what the slope alone foretells)")
    return "\n".join(lines + ["  " + s for s in describe_steps(loss, rows)])


def _load_mnist_problem(data_dir: str | None, n: int) -> tuple[Problem, str | None]:
    from jaxmlp import data

    try:
        ds = data.load_dataset("mnist", data_dir=data_dir, progress=False)
        return mnist_problem(ds.x_train, ds.y_train, n), None
    except data.DatasetNotFound:
        ds = data.load_dataset("digits")
        note = "MNIST not found: using scikit-learn's 8x8 digits instead (see --data-dir)"
        return mnist_problem(ds.x_train, ds.y_train, n, name="digits"), note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmlp.gradcheck",
        description="Check jax.grad(loss_fn) against finite differences and a hand-written NumPy "
                    "backprop for every loss variant, then show what one gradient step does.")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--examples", type=int, default=64, help="MNIST examples (default 64)")
    parser.add_argument("--no-mnist", action="store_true", help="only the toy problem")
    parser.add_argument("--quick", action="store_true",
                        help="only the toy problem and the default loss (softmax cross_entropy): "
                             "a few seconds")
    parser.add_argument("--wrong", choices=WRONG_KINDS, default=None,
                        help="check a deliberately wrong gradient instead (must fail): "
                             "activation (act' forgotten), scale (layer 1 +0.01%%), sign")
    args = parser.parse_args(argv)
    if args.examples <= 0:
        from jaxmlp import cli

        cli.fail(f"--examples must be a positive whole number, got {args.examples}")
    grad_fn = jax_grad if args.wrong is None else wrong_grad(args.wrong)
    if args.wrong:
        print(f"checking a DELIBERATELY WRONG gradient ({args.wrong}): this must fail\n")

    problems = [toy_problem()]
    if not (args.no_mnist or args.quick):
        problem, note = _load_mnist_problem(args.data_dir, args.examples)
        if note:
            print(note)
        problems.append(problem)

    failed: list[str] = []
    for problem in problems:
        variants = [Config()] if args.quick else loss_variants(problem.activation)
        checks = check_all(problem, variants, grad_fn)
        print(format_table(problem, checks) + "\n")
        failed += [f"{problem.name}: {variant_name(c.config)} (worst {c.worst:.1e})"
                   for c in checks if not c.ok]
    toy = problems[0]
    act_checks = [check_variant(toy._replace(activation=a), Config(), grad_fn)
                  for a in ACTIVATIONS]
    print("every activation, softmax cross_entropy, toy problem:")
    for a, c in zip(ACTIVATIONS, act_checks, strict=True):
        cells = "  ".join(f"L{lc.layer} FD {lc.fd_error:.1e} NumPy {lc.numpy_error:.1e}"
                          for lc in c.layers)
        print(f"  {a:<8} {cells}  {'ok' if c.ok else 'FAIL'}")
        if not c.ok:
            failed.append(f"{toy.name}: activation {a} (worst {c.worst:.1e})")
    print(f"\n(relative errors; FD: largest over the gradient direction and "
          f"{TOP_COORDINATES + RANDOM_COORDINATES} single coordinates per layer, 5-point "
          f"central differences, the closest of h = {', '.join(f'{h:g}' for h in FD_STEPS)}; "
          f"NumPy: whole layer. Pass: <= {TOLERANCE:g})\n")

    for problem in problems:
        loss, gnorm, rows = step_sizes(problem, Config(), grad_fn=grad_fn)
        print(format_steps(problem, Config(), loss, gnorm, rows) + "\n")

    if failed:
        print(f"GRADIENT CHECK FAILED for {len(failed)} case(s), relative error above "
              f"{TOLERANCE:g}:", file=sys.stderr)
        for f in failed:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"gradient check passed: every relative error <= {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
