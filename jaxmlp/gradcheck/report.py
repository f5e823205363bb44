"""Plain-text tables of the gradient checks and of the step-size study (pure string formatting)."""

from __future__ import annotations

from collections.abc import Sequence

from jaxmlp.config import Config
from jaxmlp.gradcheck.check import VariantCheck
from jaxmlp.gradcheck.problems import Problem, variant_name
from jaxmlp.gradcheck.steps import StepRow, describe_steps


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
