"""Cold starts: the default run and every experiment, with every cache off, as on a new machine
or after a jax upgrade.

    python -m benchmarks.bench_cold                      # default run x3, each experiment once
    python -m benchmarks.bench_cold --only train --rounds 5
    python -m benchmarks.bench_cold --budget quick       # the experiments' --quick budgets
    python -m benchmarks.bench_cold --write-readme       # and rewrite its table in README.md
    python -m benchmarks.bench_cold --smoke              # seconds: the test suite's check

Every measurement is a fresh process with the persistent compilation cache off and a fresh user
cache (MNIST comes from `$JAXMLP_DATA_DIR` or `--data-dir`). The default run is `python -m
jaxmlp.train`: its start-up line says how long the imports took, how long the data took to load,
how long its programs took to compile (in a thread of their own, alongside the data) and when
its first step began. An experiment is `python experiments/NAME.py`: its `experiment.json`
records its wall time and the seconds it spent compiling (tracing, lowering and XLA, every
thread's: `jaxmlp.compilation.compile_seconds`). The table quotes medians over the rounds, with
the CPU model and its vector extensions: figures differ a lot between CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import _common as common

EXPERIMENTS = ("sweep_reduction", "sweep_loss", "sweep_lr", "overfit_small", "sweep_init",
               "sweep_pixels", "paper_table")
STARTUP = re.compile(r"start-up: import (?P<import>[\d.]+) s, data (?P<data>[\d.]+) s, compile "
                     r"(?P<compile>[\d.]+) s alongside, first step after (?P<first>[\d.]+) s")
README = common.REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- bench_cold: begin -->", "<!-- bench_cold: end -->"


def _env(tmp: str, data_dir: str | None, cold: bool = True) -> dict[str, str]:
    """A fresh user cache; with `cold`, the persistent compilation cache off too (`--smoke`, a
    check that this script runs, keeps whatever cache the caller set)."""
    env = {**os.environ, "XDG_CACHE_HOME": tmp, "PYTHONPATH": str(common.REPO)}
    if cold:
        env["JAXMLP_NO_COMPILE_CACHE"] = "1"
    if data_dir:
        env["JAXMLP_DATA_DIR"] = data_dir
    return env


def _call(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=common.REPO)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def train(data_dir: str | None, smoke: bool) -> dict[str, float]:
    """One cold `python -m jaxmlp.train`: its start-up figures and its training and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--epochs", "1", "--train-subset", "2000", "--hidden", "32"] if smoke else []
        proc = _call([sys.executable, "-m", "jaxmlp.train", "--no-progress", "--out",
                      f"{tmp}/run", *extra], _env(tmp, data_dir, cold=not smoke))
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
    found = STARTUP.search(proc.stdout)
    if found is None:
        raise SystemExit(f"no start-up line in:\n{proc.stdout[-2000:]}")
    figures = {k: float(v) for k, v in found.groupdict().items()}
    return {**figures, "train": summary["train_seconds"], "wall": summary["wall_seconds"],
            "accuracy": summary["test_accuracy"]}


def experiment(name: str, budget: str, data_dir: str | None) -> dict[str, float]:
    """One cold `python experiments/NAME.py`: its wall time and its seconds compiling."""
    with tempfile.TemporaryDirectory() as tmp:
        flags = [] if budget == "default" else [f"--{budget}"]
        _call([sys.executable, f"experiments/{name}.py", *flags, "--out", f"{tmp}/out",
               "--no-progress"], _env(tmp, data_dir, cold=budget != "smoke"))
        log = json.loads(Path(tmp, "out", "experiment.json").read_text())["invocations"][-1]
    return {"wall": log["wall_seconds"], "compile": log["compile_seconds"]}


def table(runs: list[dict[str, float]], exps: dict[str, list[dict[str, float]]],
          budget: str) -> str:
    med = common.median
    lines = [f"Machine: {common.describe(common.machine())}.", ""]
    if runs:
        lines += ["| `python -m jaxmlp.train`, cold | import | data | compile (alongside) | "
                  "first step after | train | wall |", "|---|---|---|---|---|---|---|",
                  f"| median of {len(runs)} | " + " | ".join(
                      f"{med([r[k] for r in runs]):.2f} s" for k in
                      ("import", "data", "compile", "first", "train", "wall")) + " |", ""]
    if exps:
        lines += [f"| experiment ({budget} budget), cold | wall | compiling | share |",
                  "|---|---|---|---|"]
        for name, ms in exps.items():
            wall, comp = med([m["wall"] for m in ms]), med([m["compile"] for m in ms])
            lines.append(f"| `{name}.py` | {wall:.1f} s | {comp:.1f} s | {comp / wall:.0%} |")
    return "\n".join(lines)


def write_readme(text: str, path: Path = README) -> None:
    doc = path.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="default runs (default 3)")
    parser.add_argument("--only", nargs="+", choices=("train", *EXPERIMENTS), default=None)
    parser.add_argument("--budget", choices=("default", "quick"), default="default")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--write-readme", action="store_true",
                        help="rewrite the table between its markers in benchmarks/README.md")
    parser.add_argument("--smoke", action="store_true",
                        help="one tiny default run: checks that this script runs")
    parser.add_argument("--json", default=None, help="also save every figure to this file")
    args = parser.parse_args(argv)
    chosen = args.only or ["train", *EXPERIMENTS]
    budget = "smoke" if args.smoke else args.budget
    if args.smoke:
        chosen = ["train"]
    runs: list[dict[str, float]] = []
    exps: dict[str, list[dict[str, Any]]] = {}
    for r in range(1 if args.smoke else args.rounds):
        if "train" in chosen:
            common.wait_quiet()
            runs.append(train(args.data_dir, args.smoke))
            common.log(f"train, round {r + 1}: {runs[-1]}")
    for name in (c for c in chosen if c != "train"):
        common.wait_quiet()
        exps[name] = [experiment(name, budget, args.data_dir)]
        common.log(f"{name}: {exps[name][0]}")
    text = table(runs, exps, budget)
    common.log("\n" + text)
    if args.write_readme:
        write_readme(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"train": runs, "experiments": exps,
                                               "budget": budget, "table": text}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
