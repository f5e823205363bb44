"""One compiled program at a time, cold: how long it takes to trace, lower and compile, and how
many kernels XLA made of it. The default run's programs and the experiments' sweep programs,
each compiled alone in a fresh process, from shapes (no data is read).

    python -m benchmarks.bench_programs                        # every program, 3 rounds
    python -m benchmarks.bench_programs --only overfit_small   # one family
    python -m benchmarks.bench_programs --vs ../jaxmlp-old     # each beside another checkout's
    python -m benchmarks.bench_programs --kernels 5            # and XLA:CPU's 5 slowest kernels
    python -m benchmarks.bench_programs --smoke                # one program: the suite's check

`bench_cold.py` times whole commands, where a program compiling in the background shares the
cores with one that trains; this times each program with the machine to itself, so that a change
to one program is seen without that noise. Each program is compiled as its command compiles it:
the default run's initial state, epoch and evaluation as `jaxmlp.programs.compile_programs`
does; an experiment's sweep programs from the spec its `spec_of` builds at the default budget,
planned into groups and compiled as `jaxmlp.sweep.run_sweep` does (every run of a group in one
call, the spec's probes, the group's picks, one CPU device per core, the commands' XLA
options). "kernels" counts the fusions and other kernels in XLA's optimised program.
`--vs CHECKOUT` compiles every program again with that checkout's jaxmlp (and this checkout's
experiment specs), right after this one's (A B A B ...), and adds the paired ratio; that
jaxmlp must have this one's `programs` and `sweep` API (7cec728 or later). `--kernels N` turns
on XLA:CPU's compile log (`TF_CPP_VMODULE=ir_compiler=1`) and lists, per program, the N kernels
LLVM spent longest on: where a program's seconds go.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import _common as common
from jaxmlp import compilation, data, programs, sweep
from jaxmlp.config import Config
from jaxmlp.sweep.plan import group_options

FAMILIES = ("train", "overfit_small", "sweep_loss")
KERNEL_LOG = re.compile(r"Compiled LLVM module: (\S+) time: ([\d.]+) (ms|s|us)")
HERE = Path(__file__).resolve().parent.parent  # the checkout this file is in


def _experiment(name: str) -> Any:
    """experiments/NAME.py of this file's checkout, as a module. Appended to the import path,
    so that jaxmlp still comes from the checkout being measured (its folder comes first)."""
    for folder in (HERE, HERE / "experiments"):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    return importlib.import_module(name)


def _groups(name: str) -> tuple[Any, list[Any], list[tuple[Config, list[int]]]]:
    """(spec, runs, groups) of experiment `name`'s sweep at its default budget: the spec its
    `spec_of` builds, planned as `sweep.run_sweep` plans it."""
    module = _experiment(name)
    spec = module.spec_of(module.BUDGETS["default"], None)
    runs = sweep.plan_runs(spec)
    return spec, runs, sweep.group_runs(runs)


def _programs(family: str) -> list[tuple[str, Any]]:
    """(name, build) for each program of `family`; build() compiles it and returns (seconds
    tracing, lowering and compiling, kernels)."""
    if family == "train":
        return [("train: initial state + epoch + evaluation", _train)]
    spec, runs, groups = _groups(family)
    out = []
    for g, (_, ids) in enumerate(groups):
        names = list(dict.fromkeys(spec.variants[runs[i].variant].name for i in ids))
        label = names[0] + (f" and {len(names) - 1} more, one program" if len(names) > 1 else "")
        out.append((f"{family}: {label}", lambda g=g: _sweep(family, g)))
    return out


def _kernels(compiled: Any) -> int:
    return len(re.findall(r"^\s*%\S+ = \S+ (?:fusion|dot|gather|sort|scatter)\(",
                          compiled.as_text(), re.M))


def _train() -> tuple[float, int]:
    config = Config()
    shape = data.expected_shape("mnist")
    t0 = time.perf_counter()
    p = programs.compile_programs(config, programs.device_shapes(config, shape),
                                  shape.num_classes, diagnose=False)
    return time.perf_counter() - t0, sum(_kernels(f) for f in (p.init, p.epoch, p.evaluate))


def _sweep(name: str, group: int) -> tuple[float, int]:
    """Group `group`'s program of experiment `name`, compiled as `sweep.run_sweep` compiles it
    (every run of the group in one call, the spec's probes, the group's picks), for MNIST's
    shapes."""
    spec, runs, groups = _groups(name)
    config, ids = groups[group]
    shape = data.expected_shape("mnist")
    dev = programs.device_shapes(config, shape)
    test = min(spec.test_subset or shape.num_test, shape.num_test)
    sds = jax.ShapeDtypeStruct
    dev = dev._replace(x_test=sds((test, shape.features), shape.dtype),
                       y_test=sds((test,), jnp.int32))
    mesh = sweep.run_mesh()
    program = sweep.get_program(config, dev, sweep.chunk_size(len(ids), None, mesh.devices.size),
                                mesh, num_classes=shape.num_classes, probes=spec.probes,
                                picks=group_options(runs, ids))
    return program.seconds, _kernels(program.compiled)


def child(family: str, index: int) -> None:
    """Compile one program in this (fresh) process and print its figures as JSON."""
    compilation.tune_xla_cpu()  # the commands' XLA options and devices
    compilation.split_cpu_into_devices()
    jax.jit(lambda x: x + 1)(1.0).block_until_ready()  # the backend's start-up, not timed
    seconds, kernels = _programs(family)[index][1]()
    print(json.dumps({"seconds": seconds, "kernels": kernels}))


def measure(family: str, index: int, repo: Path, kernels: int) -> dict[str, Any]:
    """Compile program `index` of `family` in a fresh process, with `repo`'s jaxmlp (this
    file run by path, from `repo`: its folder comes first on the import path)."""
    env = {**os.environ, "JAXMLP_NO_COMPILE_CACHE": "1", "PYTHONPATH": str(repo)}
    if kernels:
        env.update(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="ir_compiler=1")
    run_file = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], " \
               "run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", run_file, __file__, "--child", family,
                           str(index)], capture_output=True, text=True, env=env, cwd=repo)
    if proc.returncode:
        raise SystemExit(f"{family} #{index} in {repo} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    scale = {"s": 1e3, "ms": 1.0, "us": 1e-3}
    found = sorted(((float(t) * scale[u], name) for name, t, u in
                    KERNEL_LOG.findall(proc.stderr)), reverse=True)
    out["slowest"] = [f"{name} {ms:.0f} ms" for ms, name in found[:kernels]]
    return out


def table(names: list[str], ours: dict[str, list], other: dict[str, list] | None) -> str:
    med = common.median
    head = "| program | kernels | compile (tracing, lowering, XLA) |"
    if other:
        head += " compile, other | paired ratio |"
    lines = [f"Machine: {common.describe(common.machine())}.", "", head,
             "|" + "---|" * head.count(" |")]
    for name in names:
        ms = ours[name]
        row = f"| {name} | {ms[0]['kernels']} | {med([m['seconds'] for m in ms]):.2f} s |"
        if other:
            theirs = other[name]
            ratio = med([a["seconds"] / b["seconds"] for a, b in zip(ms, theirs, strict=True)])
            row += f" {med([m['seconds'] for m in theirs]):.2f} s | {ratio:.2f} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=None)
    parser.add_argument("--vs", type=Path, default=None,
                        help="another checkout: each program again there, back to back")
    parser.add_argument("--kernels", type=int, default=0, metavar="N",
                        help="list each program's N slowest kernels (from XLA's log)")
    parser.add_argument("--smoke", action="store_true", help="one program, once")
    parser.add_argument("--json", default=None, help="also save every figure to this file")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    families = ["sweep_loss"] if args.smoke else args.only or list(FAMILIES)
    cases = [(f, i, name) for f in families for i, (name, _) in enumerate(_programs(f))]
    if args.smoke:
        cases = cases[-1:]
    sides = [common.REPO] + ([args.vs.resolve()] if args.vs else [])
    figures: dict[Path, dict[str, list]] = {repo: {} for repo in sides}
    for _ in range(1 if args.smoke else args.rounds):
        for family, index, name in cases:
            for repo in sides:
                common.wait_quiet()
                m = measure(family, index, repo, args.kernels)
                figures[repo].setdefault(name, []).append(m)
                common.log(f"{name}, {repo.name}: {m['kernels']} kernels, "
                           f"{m['seconds']:.2f} s"
                           + "".join(f"\n    {k}" for k in m["slowest"]))
    names = [name for _, _, name in cases]
    other = figures[sides[-1]] if args.vs else None
    common.log("\n" + table(names, figures[common.REPO], other))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"programs": figures[common.REPO], "other": other,
             "machine": common.machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
