"""Cold starts: the default run and every experiment, with every cache off, as on a new machine
or after a jax upgrade.

    python -m benchmarks.bench_cold                      # default run x3, each experiment once
    python -m benchmarks.bench_cold --only train --rounds 5
    python -m benchmarks.bench_cold --budget quick       # the experiments' --quick budgets
    python -m benchmarks.bench_cold --write-readme       # and rewrite its table in README.md
    python -m benchmarks.bench_cold --vs ../jaxmlp-old   # each beside another checkout's
    python -m benchmarks.bench_cold --keep runs/cold     # keep the experiments' folders
    python -m benchmarks.bench_cold --smoke              # seconds: the test suite's check

Every measurement is a fresh process with the persistent compilation cache off and a fresh user
cache (MNIST comes from `$JAXMLP_DATA_DIR` or `--data-dir`). The default run is `python -m
jaxmlp.train`: its start-up line says how long the imports took, how long the data took to load,
how long its programs took to compile (in a thread of their own, alongside the data) and when
its first step began. An experiment is `python experiments/NAME.py`: its `experiment.json`
records its wall time and the seconds it spent compiling (tracing, lowering and XLA, every
thread's: `jaxmlp.compilation.compile_seconds`). The table quotes medians over the rounds, with
the CPU model and its vector extensions: figures differ a lot between CPUs.

`--vs CHECKOUT` runs every measurement again in another checkout of jaxmlp, right after this
one's (A B A B ...), and adds its figures and the paired ratio: before and after a change on
one machine. An older checkout whose `experiment.json` does not record compile seconds is read
from its sweeps' `sweep.json` (the sweeps' programs only, so its share reads low).
`--keep DIR` keeps each experiment's output folder as `DIR/NAME` (its `summary.md`, tables and
pictures), so one cold run also gives the figures `experiments/README.md` quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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
OLD_STARTUP = re.compile(r"start-up: import (?P<import>[\d.]+) s, data (?P<data>[\d.]+) s, "
                         r"compile (?P<compile>[\d.]+) s")
README = common.REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- bench_cold: begin -->", "<!-- bench_cold: end -->"


def _env(tmp: str, data_dir: str | None, cold: bool = True,
         repo: Path = common.REPO) -> dict[str, str]:
    """A fresh user cache; with `cold`, the persistent compilation cache off too (`--smoke`, a
    check that this script runs, keeps whatever cache the caller set)."""
    env = {**os.environ, "XDG_CACHE_HOME": tmp, "PYTHONPATH": str(repo)}
    if cold:
        env["JAXMLP_NO_COMPILE_CACHE"] = "1"
    if data_dir:
        env["JAXMLP_DATA_DIR"] = data_dir
    return env


def _call(args: list[str], env: dict[str, str],
          repo: Path = common.REPO) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=repo)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def train(data_dir: str | None, smoke: bool, repo: Path = common.REPO) -> dict[str, float]:
    """One cold `python -m jaxmlp.train` in `repo`: its start-up figures, training and wall
    time. An older checkout's start-up line has no "first step after": its sum stands in."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--epochs", "1", "--train-subset", "2000", "--hidden", "32"] if smoke else []
        proc = _call([sys.executable, "-m", "jaxmlp.train", "--no-progress", "--out",
                      f"{tmp}/run", *extra], _env(tmp, data_dir, not smoke, repo), repo)
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
    found = STARTUP.search(proc.stdout) or OLD_STARTUP.search(proc.stdout)
    if found is None:
        raise SystemExit(f"no start-up line in:\n{proc.stdout[-2000:]}")
    figures = {k: float(v) for k, v in found.groupdict().items() if v is not None}
    figures.setdefault("first", figures["import"] + figures["data"] + figures["compile"])
    return {**figures, "train": summary["train_seconds"], "wall": summary["wall_seconds"],
            "accuracy": summary["test_accuracy"]}


def experiment(name: str, budget: str, data_dir: str | None, repo: Path = common.REPO,
               keep: Path | None = None) -> dict[str, float]:
    """One cold `python experiments/NAME.py` in `repo`: its wall time and its seconds
    compiling; its output folder moved to `keep` when given."""
    with tempfile.TemporaryDirectory() as tmp:
        flags = [] if budget == "default" else [f"--{budget}"]
        _call([sys.executable, f"experiments/{name}.py", *flags, "--out", f"{tmp}/out",
               "--no-progress"], _env(tmp, data_dir, budget != "smoke", repo), repo)
        log = json.loads(Path(tmp, "out", "experiment.json").read_text())["invocations"][-1]
        compiled = log.get("compile_seconds")
        if compiled is None:  # an older checkout: its sweeps' programs only
            compiled = sum(json.loads(f.read_text())["compile_seconds"]
                           for f in Path(tmp, "out").rglob("sweep.json"))
        if keep is not None:  # with the folders written beside it (paper_table's validation)
            keep.parent.mkdir(parents=True, exist_ok=True)
            for folder in Path(tmp).glob("out*"):
                target = keep.with_name(keep.name + folder.name[len("out"):])
                shutil.rmtree(target, ignore_errors=True)
                shutil.move(folder, target)
    return {"wall": log["wall_seconds"], "compile": compiled}


def _ratio(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> str:
    """The median of the paired ratios a/b of `key`, round by round."""
    return f"{common.median([x[key] / y[key] for x, y in zip(a, b, strict=True)]):.2f}"


def table(runs: list[dict[str, float]], exps: dict[str, list[dict[str, float]]],
          budget: str, vs_runs: list[dict[str, float]] | None = None,
          vs_exps: dict[str, list[dict[str, float]]] | None = None) -> str:
    """Medians (and, beside another checkout, its medians and the paired ratios)."""
    med = common.median
    keys = ("import", "data", "compile", "first", "train", "wall")
    lines = [f"Machine: {common.describe(common.machine())}.", ""]
    if runs:
        lines += ["| `python -m jaxmlp.train`, cold | import | data | compile (alongside) | "
                  "first step after | train | wall |", "|---|---|---|---|---|---|---|"]
        for label, rs in (("this checkout", runs), ("the other (`--vs`)", vs_runs)):
            if rs:
                lines.append(f"| {label}, median of {len(rs)} | " + " | ".join(
                    f"{med([r[k] for r in rs]):.2f} s" for k in keys) + " |")
        if vs_runs:
            lines.append("| paired ratio, median | | | | " + " | ".join(
                _ratio(runs, vs_runs, k) for k in ("first", "train", "wall")) + " |")
        lines.append("")
    if exps:
        head = f"| experiment ({budget} budget), cold | wall | compiling | share |"
        if vs_exps:
            head += " wall, other | compiling, other | share, other | wall ratio |"
        lines += [head, "|" + "---|" * head.count(" |")]
        for name, ms in exps.items():
            wall, comp = med([m["wall"] for m in ms]), med([m["compile"] for m in ms])
            row = f"| `{name}.py` | {wall:.1f} s | {comp:.1f} s | {comp / wall:.0%} |"
            if vs_exps:
                other = vs_exps[name]
                w, c = med([m["wall"] for m in other]), med([m["compile"] for m in other])
                row += f" {w:.1f} s | {c:.1f} s | {c / w:.0%} | {_ratio(ms, other, 'wall')} |"
            lines.append(row)
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
    parser.add_argument("--vs", type=Path, default=None,
                        help="another checkout: each measurement again there, back to back")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each experiment's output folder as KEEP/NAME")
    args = parser.parse_args(argv)
    chosen = args.only or ["train", *EXPERIMENTS]
    budget = "smoke" if args.smoke else args.budget
    if args.smoke:
        chosen = ["train"]
    sides = [common.REPO] + ([args.vs.resolve()] if args.vs else [])
    runs: dict[Path, list[dict[str, float]]] = {repo: [] for repo in sides}
    exps: dict[Path, dict[str, list[dict[str, Any]]]] = {repo: {} for repo in sides}
    for r in range(1 if args.smoke else args.rounds):
        for repo in sides if "train" in chosen else ():
            common.wait_quiet()
            runs[repo].append(train(args.data_dir, args.smoke, repo))
            common.log(f"train, round {r + 1}, {repo.name}: {runs[repo][-1]}")
    for name in (c for c in chosen if c != "train"):
        for repo in sides:
            common.wait_quiet()
            keep = args.keep / name if args.keep and repo == common.REPO else None
            exps[repo][name] = [experiment(name, budget, args.data_dir, repo, keep)]
            common.log(f"{name}, {repo.name}: {exps[repo][name][0]}")
    other = sides[-1] if args.vs else None
    text = table(runs[common.REPO], exps[common.REPO], budget,
                 runs[other] if other else None, exps[other] if other else None)
    common.log("\n" + text)
    if args.write_readme:
        write_readme(text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"train": runs[common.REPO], "experiments": exps[common.REPO], "budget": budget,
             "vs": {"checkout": str(other), "train": runs[other], "experiments": exps[other]}
             if other else None, "table": text}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
