"""The command `python -m jaxmlp.gradcheck`: parse the flags, load the problems, run the checks,
print the tables, and exit 1 when any relative error is above `TOLERANCE`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from jaxmlp import cli, data
from jaxmlp.config import Config, ConfigError, positive_int, validate
from jaxmlp.gradcheck.check import (
    FD_STEPS,
    RANDOM_COORDINATES,
    TOLERANCE,
    TOP_COORDINATES,
    check_all,
    check_variant,
    format_table,
)
from jaxmlp.gradcheck.gradients import WRONG_KINDS, GradFn, jax_grad, wrong_grad
from jaxmlp.gradcheck.problems import (
    Problem,
    loss_variants,
    mnist_problem,
    toy_problem,
    variant_name,
)
from jaxmlp.gradcheck.steps import format_steps, step_sizes
from jaxmlp.model import ACTIVATIONS


def _add_problem_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--examples", type=int, default=64, help="MNIST examples (default 64)")
    parser.add_argument("--no-mnist", action="store_true", help="only the toy problem")


def _add_check_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="only the toy problem and the default loss (softmax cross_entropy): "
                             "a few seconds")
    parser.add_argument("--wrong", choices=WRONG_KINDS, default=None,
                        help="check a deliberately wrong gradient instead (must fail): "
                             "activation (act' forgotten), scale (layer 1 +0.01%%), sign")


# The loss of the one-step table ("which way, and how far"): any loss, e.g. the notes' own
# (--output sum_normalize --error mse --class-reduction mean).
STEP_LOSS_FIELDS = ("output", "error", "class_reduction", "example_reduction", "targets")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m jaxmlp.gradcheck",
        description="Check the training step's gradient (jax.grad of losses.loss_fn, as a run "
                    "computes it) against finite differences and a hand-written NumPy backprop "
                    "for every loss variant, then show what one gradient step does.")
    _add_problem_flags(parser)
    _add_check_flags(parser)
    cli.add_dataclass_flags(parser, Config, "the loss of the one-step table (the checks cover "
                            "every loss)", fields=STEP_LOSS_FIELDS)
    return parser


def _load_mnist_problem(data_dir: str | None, n: int) -> tuple[Problem, str | None]:
    try:
        ds = data.load_dataset("mnist", data_dir=data_dir, progress=False)
        return mnist_problem(ds.x_train, ds.y_train, n), None
    except data.DatasetNotFound:
        ds = data.load_dataset("digits")
        note = "MNIST not found: using scikit-learn's 8x8 digits instead (see --data-dir)"
        return mnist_problem(ds.x_train, ds.y_train, n, name="digits"), note


def _load_problems(args: argparse.Namespace) -> list[Problem]:
    """The toy problem, then (unless --no-mnist or --quick) the MNIST subset."""
    problems = [toy_problem()]
    if not (args.no_mnist or args.quick):
        problem, note = _load_mnist_problem(args.data_dir, args.examples)
        if note:
            print(note)
        problems.append(problem)
    return problems


def _check_variants(problems: list[Problem], quick: bool, grad_fn: GradFn) -> list[str]:
    """Print one table per problem; return the failed cases."""
    failed: list[str] = []
    for problem in problems:
        variants = [Config()] if quick else loss_variants(problem.activation)
        checks = check_all(problem, variants, grad_fn)
        print(format_table(problem, checks) + "\n")
        failed += [f"{problem.name}: {variant_name(c.config)} (worst {c.worst:.1e})"
                   for c in checks if not c.ok]
    return failed


def _check_activations(toy: Problem, grad_fn: GradFn) -> list[str]:
    """Print every activation on the toy problem; return the failed cases."""
    failed: list[str] = []
    act_checks = [check_variant(toy._replace(activation=a), Config(), grad_fn)
                  for a in ACTIVATIONS]
    print("every activation, softmax cross_entropy, toy problem:")
    for a, c in zip(ACTIVATIONS, act_checks, strict=True):
        cells = "  ".join(f"L{lc.layer} FD {lc.fd_error:.1e} NumPy {lc.numpy_error:.1e}"
                          for lc in c.layers)
        print(f"  {a:<8} {cells}  {'ok' if c.ok else 'FAIL'}")
        if not c.ok:
            failed.append(f"{toy.name}: activation {a} (worst {c.worst:.1e})")
    return failed


def _print_legend() -> None:
    print(f"\n(relative errors; FD: largest over the gradient direction and "
          f"{TOP_COORDINATES + RANDOM_COORDINATES} single coordinates per layer, 5-point "
          f"central differences, the closest of h = {', '.join(f'{h:g}' for h in FD_STEPS)}; "
          f"NumPy: whole layer. Pass: <= {TOLERANCE:g})\n")


def _print_steps(problems: list[Problem], config: Config, grad_fn: GradFn) -> None:
    for problem in problems:
        loss, gnorm, rows = step_sizes(problem, config, grad_fn=grad_fn)
        print(format_steps(problem, config, loss, gnorm, rows) + "\n")


def _verdict(failed: list[str]) -> int:
    """Exit code 1 with every failed case on stderr, or 0 with a one-line pass."""
    if failed:
        print(f"GRADIENT CHECK FAILED for {len(failed)} case(s), relative error above "
              f"{TOLERANCE:g}:", file=sys.stderr)
        for f in failed:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"gradient check passed: every relative error <= {TOLERANCE:g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        positive_int(args.examples, "--examples")
        step_loss = validate(dataclasses.replace(
            Config(), **{name: getattr(args, name) for name in STEP_LOSS_FIELDS}))
    except ConfigError as e:
        cli.fail(str(e))
    grad_fn = jax_grad if args.wrong is None else wrong_grad(args.wrong)
    if args.wrong:
        print(f"checking a DELIBERATELY WRONG gradient ({args.wrong}): this must fail\n")

    try:
        problems = _load_problems(args)
    except data.DataError as e:  # a named --data-dir that fails is said, not searched past
        cli.fail(str(e))
    failed = _check_variants(problems, args.quick, grad_fn)
    failed += _check_activations(problems[0], grad_fn)
    _print_legend()
    _print_steps(problems, step_loss, grad_fn)
    return _verdict(failed)
