"""Mistakes that rescale an array by one constant: recognised by the ratio yours / case's.

A missing 1/N (N examples, the batch), a missing 1/K (K classes), the 2 of the square, a
gradient accumulated over two passes, the learning rate folded into the gradient: each gives one
number, and in some cases two of them give the same one (2 classes: a missing 1/K and an
accumulated gradient are both 2x). `causes_of` finds every cause that fits a factor; where more
than one does, the check says so and `tell_apart` says what would separate them, instead of
naming one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import NamedTuple

from jaxmlp.config import Config
from jaxmlp.reference.case import MAX_CLASSES, MAX_EXAMPLES, MIN_CLASSES, CaseSpec, write_flags

# Two factors are the same when they agree to this relative precision: the ratio is measured
# from arrays that match to the check's RTOL (1e-4), so 1e-3 holds it with a tenfold margin, and
# the factors of distinct causes in a small case differ by far more (1/5 against 1/4 is 25%).
SAME = 1e-3


class Factor(NamedTuple):
    """One cause of a constant factor: its name, its size, a short label for comparisons, what
    it is in words, and the fix."""

    name: str
    value: float
    label: str
    says: str
    fix: str


def _example_factors(n: int, config: Config, grad: bool) -> list[Factor]:
    if config.example_reduction == "mean":
        missing = Factor(
            "examples_mean_missing", n, "a missing 1/N",
            f"summed over the {n} examples (the batch) where the loss takes their mean: the "
            f"1/N = 1/{n} of the mean is missing",
            f"multiply by 1/{n}: the mean's derivative, dloss/dexample_loss = 1/{n} per example, "
            f"is part of every gradient below the loss" if grad else "loss = example_loss.mean()")
        twice = Factor(
            "examples_divided", 1 / n, "a second 1/N",
            f"divided by N = {n} twice: the mean's 1/{n} is already in grad.example_loss, and "
            f"another / {n} came after it (a weight or bias gradient divided by the batch size?)",
            f"divide by {n} once: grad.example_loss = 1/{n} carries it to every gradient below")
        return [missing, twice] if grad else [missing]
    return [Factor("examples_divided", 1 / n, "a 1/N too many",
                   f"divided by N = {n} (a mean over the examples) where this loss sums them",
                   "dloss/dexample_loss = 1 per example: no 1/N" if grad
                   else "loss = example_loss.sum()")]


def _class_factors(k: int, config: Config, grad: bool) -> list[Factor]:
    if k < 2:
        return []
    if config.class_reduction == "mean":
        return [Factor("classes_mean_missing", k, "a missing 1/K",
                       f"summed over the {k} classes where each example's loss is their mean: "
                       f"the 1/K = 1/{k} is missing",
                       f"grad.error = grad.example_loss[:, None] / {k}" if grad
                       else "example_loss = error.mean(axis=1)")]
    return [Factor("classes_divided", 1 / k, "a 1/K too many",
                   f"divided by K = {k} (a mean over the classes) where this loss sums them",
                   "grad.error = grad.example_loss[:, None], no 1/K" if grad
                   else "example_loss = error.sum(axis=1)")]


def _both(examples: Factor, classes: Factor) -> Factor:
    return Factor("both_reductions", examples.value * classes.value, "both reductions",
                  f"both reductions are wrong: {examples.says}; and {classes.says}",
                  f"{examples.fix}; {classes.fix}")


def _depth(key: str) -> int:
    """How far down the backward pass `key` is: 0 the loss, 1 the per-example losses, 2 the
    errors, 3 the predictions and below, 4 a parameter's gradient."""
    order = {"grad.loss": 0, "grad.example_loss": 1, "grad.error": 2}
    if key in order:
        return order[key]
    return 4 if key[-2:] in (".w", ".b") else 3


def gradient_factors(key: str, n: int, k: int, lr: float, config: Config) -> list[Factor]:
    """The constant-factor causes that can show at the gradient `key` of a case with `n`
    examples, `k` outputs and learning rate `lr`."""
    depth = _depth(key)
    if depth == 0:
        return []
    examples = _example_factors(n, config, grad=True)
    factors = list(examples)
    if depth >= 2:
        classes = _class_factors(k, config, grad=True)
        factors += classes + [_both(examples[0], c) for c in classes]
    if depth >= 3 and (config.error == "mse" or config.targets == "integer"):
        factors.append(Factor("square_two_missing", 0.5, "the square's missing 2",
                              "the 2 of d(p - t)^2/dp = 2 (p - t) is missing",
                              "grad.p = grad.error * 2 * (p - t)"))
    factors.append(Factor(
        "accumulated_twice", 2.0, "gradients accumulated twice",
        "gradients accumulated across passes: the backward pass ran twice and added to "
        "gradients that were not reset to zero in between",
        "set every gradient to zero before each backward pass (grad_w = np.zeros_like(w); "
        "zero_grad() in PyTorch, p.grad = 0 in micrograd)"))
    if depth == 4:
        factors.append(Factor(
            "times_learning_rate", lr, "the learning rate in the gradient",
            f"the gradient times the learning rate {lr:g}: the update lr * grad was saved where "
            f"the gradient belongs", "save the gradient itself; only the step multiplies it by "
            "the learning rate"))
    return factors


def forward_factors(key: str, n: int, k: int, config: Config) -> list[Factor]:
    """The constant-factor causes that can show at the forward `key` (the two reductions)."""
    if key == "example_loss":
        return _class_factors(k, config, grad=False)
    if key != "loss":
        return []
    examples = _example_factors(n, config, grad=False)
    classes = _class_factors(k, config, grad=False)
    return examples + classes + [_both(examples[0], c) for c in classes]


def factors_at(key: str, n: int, k: int, lr: float, config: Config) -> list[Factor]:
    """The causes that can show at `key`, less those whose factor is 1 (1/N with one
    example, a learning rate of 1): those change nothing."""
    found = (gradient_factors(key, n, k, lr, config) if key.startswith("grad.")
             else forward_factors(key, n, k, config))
    return [f for f in found if not same(f.value, 1.0)]


def same(a: float, b: float) -> bool:
    return abs(a - b) <= SAME * max(abs(a), abs(b))


def causes_of(c: float, factors: list[Factor]) -> list[tuple[Factor, bool]]:
    """(cause, sign flipped as well) for every cause whose factor is c or -c."""
    return [(f, c < 0) for f in factors if same(abs(c), f.value)]


def _numbers(case_shape: tuple[int, int], spec: CaseSpec) -> Iterator[tuple[int, int, float]]:
    """Other (examples, classes, learning rate) for a case, nearest first: one setting changed,
    then two. Classes change only for the toy inputs (a data set has its own)."""
    n, k = case_shape
    lr = spec.config.learning_rate
    ns = sorted((m for m in range(2, MAX_EXAMPLES + 1) if m != n), key=lambda m: (abs(m - n), m))
    ks = sorted((m for m in range(MIN_CLASSES, MAX_CLASSES + 1) if m != k),
                key=lambda m: (abs(m - k), m)) if spec.inputs == "toy" and k > 1 else []
    lrs = [lr * m for m in (2.0, 0.5, 3.0)]
    yield from ((m, k, lr) for m in ns[:6])
    yield from ((n, m, lr) for m in ks[:6])
    yield from ((n, k, r) for r in lrs)
    yield from ((m, j, lr) for m, j in itertools.product(ns[:6], ks[:6]))


def _other_case(spec: CaseSpec, n: int, k: int, lr: float) -> CaseSpec:
    config = dataclasses.replace(spec.config, learning_rate=lr)
    return dataclasses.replace(spec, config=config, examples=n,
                               classes=k if spec.inputs == "toy" else spec.classes)


def tell_apart(key: str, names: list[str], case_shape: tuple[int, int], spec: CaseSpec
               ) -> str | None:
    """How to separate the factor causes `names`: a case (the nearest to this one) in which
    each gives another factor, and the factor each gives there; None if no small case does."""
    config = spec.config
    for n, k, lr in _numbers(case_shape, spec):
        table = {f.name: f for f in factors_at(key, n, k, lr, config)}
        if not all(name in table for name in names):
            continue
        values = [table[name].value for name in names]
        if all(not same(a, b) for a, b in itertools.combinations(values, 2)):
            there = ", ".join(f"{table[name].label} gives {number(table[name].value)} x"
                              for name in names)
            changed = [name for name, now, was in (
                ("examples", n, case_shape[0]), ("classes", k, case_shape[1]),
                ("learning_rate", lr, config.learning_rate)) if now != was]
            flags = " ".join(write_flags(_other_case(spec, n, k, lr), always=changed))
            return (f"write a case where they differ (python -m jaxmlp.reference write OTHER "
                    f"{flags}) and check yours against it: there {there}")
    return None


def number(c: float) -> str:
    """A factor as a reader knows it: 5, 1/5, -1/2, or 0.3333."""
    if abs(c) >= 1 and abs(c - round(c)) < SAME:
        return str(round(c))
    inverse = 1 / c
    if abs(inverse - round(inverse)) < SAME * abs(inverse):
        return f"1/{round(inverse)}" if inverse > 0 else f"-1/{-round(inverse)}"
    return f"{c:.4g}"

