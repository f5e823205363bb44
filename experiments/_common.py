"""What every experiment script shares: its command line, budgets, and the closing summary.

Each experiment has three budgets:

- default: the real measurement (at least 5 seeds per variant; at most 10 minutes on 2 CPU cores,
  but for `paper_table.py`: 4 seeds of the papers' recipes, far longer);
- `--quick`: the same experiment shrunk to finish within 60 seconds, to check that it runs;
- `--smoke` (hidden): smaller still, for the test suite only.

The budget's settings are written into summary.md, so a number is never separated from the
size of network and data that produced it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python experiments/x.py` from a checkout
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from jaxmlp import cli, compilation, data, faults, pages, stats, stopping, sweep  # noqa: E402
from jaxmlp.checkpoint import CheckpointError, WriteError, atomic_write_text  # noqa: E402
from jaxmlp.config import Config, ConfigError  # noqa: E402
from jaxmlp.rundir import make_folder  # noqa: E402
from jaxmlp.sweep import distributed  # noqa: E402

MODES = ("default", "quick", "smoke")

# What the user can fix (missing data, a bad setting, a folder holding another sweep): one line,
# as the jaxmlp commands print it, not a traceback.
USER_ERRORS = (data.DataError, ConfigError, CheckpointError, sweep.SpecError, sweep.SweepError)


def entry(main: Callable[[], int]) -> typing.NoReturn:
    """Run an experiment's `main` as a command: its exit code, or one line for a user error, a
    failed write (exit 1) or a signal (Ctrl-C, SIGTERM, SIGHUP: exit 128 + its number, once the
    chunk in progress is saved)."""
    stopping.handle_signals()
    try:
        code = main()
    except distributed.ProcessLost as e:  # a peer died: leave now, not after JAX's 100 s wait
        distributed.leave(str(e), 2)
    except USER_ERRORS as e:
        cli.fail(str(e))
    except WriteError as e:
        cli.fail(f"{e}; the finished runs are intact: once there is room, the same command "
                 "again resumes", code=1)
    except KeyboardInterrupt as e:
        message = (f"{stopping.describe(e)}; the finished runs are saved: the same command "
                   "again resumes")
        if jax.process_count() > 1:  # JAX's shutdown would wait for the others
            distributed.leave(message, stopping.exit_code(e))
        cli.fail(message, code=stopping.exit_code(e))
    raise SystemExit(code)


@dataclasses.dataclass(frozen=True)
class Args:
    mode: str
    out: Path
    data_dir: str | None
    max_parallel: int | None
    progress: bool
    # Process 0 of a multi-process sweep writes the output folder; the others only train.
    writer: bool = True
    # What the sweeps of one invocation share: each structure compiles once and each data set
    # is read once (a control sweep that repeats a structure of the main grid reuses its program).
    programs: sweep.ProgramCache = dataclasses.field(
        default_factory=sweep.ProgramCache, compare=False, repr=False)
    datasets: sweep.DataCache = dataclasses.field(
        default_factory=sweep.DataCache, compare=False, repr=False)
    # Runs trained by each sweep of this invocation (a rerun reads finished runs back).
    trained: list[int] = dataclasses.field(default_factory=list, compare=False, repr=False)
    # `compilation.compile_seconds()` when this invocation began (the clock is per process).
    compile_start: float = 0.0


def summary(doc: str) -> str:
    """A script's `--help` description: its docstring's first paragraph as one line (its
    first line alone can stop mid-sentence)."""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def parse_args(name: str, description: str, argv: Sequence[str] | None = None) -> Args:
    parser = cli.ArgumentParser(prog=f"python experiments/{name}.py",
                                     description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a reduced budget that finishes within 60 s (checks that it runs)")
    # For the test suite: smaller than --quick, to keep CI short. Not a measurement.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None,
                        help=f"output folder (default: runs/{name}, runs/{name}-quick); the same "
                        "folder again reuses finished runs")
    parser.add_argument("--data-dir", default=None,
                        help="folder with MNIST's IDX files or a parent of mnist/ (default: "
                        "$JAXMLP_DATA_DIR, then jaxmlp's usual places)")
    parser.add_argument("--max-parallel", type=int, default=None, metavar="K",
                        help="train at most K runs at a time")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    distributed.add_process_flags(parser)
    a = parser.parse_args(argv)
    # Before JAX starts (no-ops after): the trainer's XLA:CPU options, one CPU device per core
    # so runs train side by side, the sweep's other processes if it has several, and the
    # compilation cache, so a second run skips compiling.
    compilation.tune_xla_cpu()
    compilation.split_cpu_into_devices()
    distributed.start_processes(a)
    compilation.enable_compilation_cache()
    compilation.start_compile_clock()
    mode = "smoke" if a.smoke else "quick" if a.quick else "default"
    suffix = "" if mode == "default" else f"-{mode}"
    out = Path(a.out) if a.out else Path("runs") / f"{name}{suffix}"
    writer = jax.process_index() == 0
    if writer:
        try:  # a file in the way is said now, before any data is read or run trained
            make_folder(out)
        except ConfigError as e:
            cli.fail(str(e))
    return Args(mode, out, a.data_dir, a.max_parallel, a.progress, writer,
                compile_start=compilation.compile_seconds())


def compile_mode(mode: str) -> str:
    # Quick and smoke runs are a few seconds of training behind many compilations; XLA's fast
    # CPU compilation halves their wall time. Default runs train long enough to want full speed.
    return "default" if mode == "default" else "fast"


def run(
    spec: sweep.SweepSpec, out: Path, args: Args, **kw: Any
) -> sweep.SweepResult:
    result = sweep.run_sweep(spec, out, max_parallel=kw.pop("max_parallel", args.max_parallel),
                             progress=args.progress, compile_mode=compile_mode(args.mode),
                             log=lambda s: print(s, file=sys.stderr),
                             programs=args.programs, datasets=args.datasets, **kw)
    if not result.complete:
        raise SystemExit(f"sweep {out} did not complete")
    args.trained.append(result.record["sessions"][-1]["runs_trained"])
    if args.writer:  # its page now; `finish` rewrites the experiment's own with its findings
        pages.write_sweep_page(out)
    return result


def machine() -> str:
    """The CPU (model, vector extensions) or the accelerators the experiment ran on."""
    return (compilation.describe_cpu() if all(d.platform == "cpu" for d in jax.devices())
            else ", ".join(sorted({d.device_kind for d in jax.devices()})))


def budget_section(args: Args, budget: Any, started: float, extra: str = "") -> tuple[str, str]:
    """A summary.md section naming the budget, the machine and the experiment's wall time.

    Each invocation is logged in `args.out/experiment.json` (by process 0 alone): a rerun in the
    same folder reads finished runs back instead of training them, so its own wall time says
    little; the log keeps the time of the invocation that did the training.
    """
    mode, out = args.mode, args.out
    log_path = out / "experiment.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {"invocations": []}
    log["invocations"].append({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": mode,
        "wall_seconds": round(time.perf_counter() - started, 1),
        # Tracing, lowering and XLA, every thread's (a group compiling while another trains
        # counts in full); from the persistent cache, the time to load instead.
        "compile_seconds": round(compilation.compile_seconds() - args.compile_start, 1),
        "runs_trained": sum(args.trained),
        "machine": machine(),
        "jax": jax.__version__,
        "command": sys.argv,
    })
    if jax.process_index() == 0:
        atomic_write_text(log_path, json.dumps(log, indent=2) + "\n", "experiment_log")
    fields = ", ".join(f"{k}={sweep.format_value(v)}" for k, v in
                       dataclasses.asdict(budget).items())
    runs = "; ".join(f"{i['wall_seconds']:.1f} s (compiling {i.get('compile_seconds', 0):.1f} s), "
                     f"{i['runs_trained']} runs trained" for i in log["invocations"])
    text = (f"Mode: {mode} ({fields}). Machine: {machine()}, jax {jax.__version__}. Wall time "
            f"of each invocation in this folder, compilation and extra measurements included "
            f"(a rerun reads finished runs back instead of training them): {runs}.")
    if extra:
        text += " " + extra
    return ("Budget", text)


SMALL_BUDGET = ("{mode} is a smoke budget: it checks that the script runs, on too few seeds, "
                "examples and updates to support conclusions. The sentences below are what these "
                "small numbers say, not findings, and they can contradict the default budget's; "
                "run without --{mode} for the measured findings (experiments/README.md).")


def finish(result: sweep.SweepResult, findings: Sequence[str],
           sections: Sequence[tuple[str, str]] = (),
           echo: Callable[[str], None] = print, *, mode: str = "default") -> None:
    """End summary.md with the findings and print them (under a smaller budget than the
    default, labelled as what they are: a check that the script runs)."""
    if mode != "default":  # said just above the sentences, in summary.md and on the screen
        sections = [*sections, (f"The {mode} budget", SMALL_BUDGET.format(mode=mode))]
    if jax.process_index() == 0:  # the others of a multi-process sweep only train
        with faults.region("findings"):
            sweep.write_findings(result, findings, sections)
        pages.write_sweep_page(result.out)
    heading = "findings"
    if mode != "default":
        echo("\n" + SMALL_BUDGET.format(mode=mode))
        heading = f"what the {mode} budget's numbers say"
    echo(f"\n{result.spec.name}: {heading}")
    for f in findings:
        echo(f"- {f}")
    echo(f"outputs in {result.out}; page: {result.out / pages.REPORT_HTML}"
         if jax.process_index() == 0 else
         f"process {jax.process_index()}: trained its share; process 0 writes the outputs")


@dataclasses.dataclass(frozen=True)
class SweepBudget:
    """The size of an experiment's sweep: seeds per variant, the MNIST subset it trains on
    (`test_subset` None: the whole test set), the hidden widths, epochs and batch size.
    Experiments with more to size subclass it."""

    seeds: int
    train_subset: int
    test_subset: int | None
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int


def mnist(data_dir: str | None, **settings: Any) -> Config:
    """A Config on MNIST (named explicitly: a missing MNIST is an error, never a silent switch to
    the 8x8 digits)."""
    return Config(dataset="mnist", data_dir=data_dir, **settings)


def acc(row: dict[str, Any]) -> str:
    """'91.23% (95% CI [90.10, 92.00])' for a summary row."""
    return (f"{stats.pct(row['test_acc_mean'])} (95% CI "
            f"{stats.fmt_ci(row['test_acc_ci_lo'], row['test_acc_ci_hi'], 100, 2)})")


def diverged(row: dict[str, Any]) -> str:
    return f"{round(row['diverged_frac'] * row['seeds'])}/{row['seeds']}"


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return stats.intervals_overlap(
        {"ci_lo": a["test_acc_ci_lo"], "ci_hi": a["test_acc_ci_hi"]},
        {"ci_lo": b["test_acc_ci_lo"], "ci_hi": b["test_acc_ci_hi"]})


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
