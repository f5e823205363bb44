"""Every accelerator figure jaxmlp quotes, taken in one invocation.

    python -m benchmarks.gpu_check --out gpu-figures       # on the accelerator: at most ~8 min
    python -m benchmarks.gpu_check --smoke --out /tmp/gc   # seconds, on a CPU: every step runs
                                                           # (784-32-10 for the reference one)

It installs nothing and needs no network: run it from the checkout (`PYTHONPATH=.` or
`pip install --no-deps -e .`) with a JAX that sees the accelerator. Steps, each timed with its
compilation apart:

1. `environment`: the device, jax/jaxlib and CUDA versions.
2. `reference_epoch`: the reference workload (784-512-512-10, batch 128, SGD momentum 0.9,
   lr 0.1, one epoch = 468 batches of MNIST), median of timed epochs after a warm-up, with the
   matrix products in float32 and, through `jax.default_matmul_precision`, as TF32 and as
   bfloat16 passes (jaxmlp has no precision flag of its own; on a CPU all three are float32).
3. `default_train`: `python -m jaxmlp.train` as a user runs it (a fresh process): wall time,
   compile time and training seconds until 98% test accuracy, read from its summary.json.
4. `sweep_vs_sequential`: 64 runs (seeds) of the reference network, one epoch each, as one
   `jaxmlp.sweep` program against the same 64 trained one after another with one compiled
   `make_train`; the ratio is the headline (vmapping should be worth >= 20x there).
5. `small_sweep`: 1,000 runs of a 784-64-10 network (batch 32, 10,000 images, one epoch).

A step that fails is recorded with its error and the others still run: one accelerator session
should not be lost to one broken step. Writes `gpu_check.json` and `gpu_check.md` (a table) into
`--out`. Not a test: it prints figures and exits 0 unless a step failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common as common

PRECISIONS = (("float32", "highest"), ("tf32", "tensorfloat32"), ("bfloat16", "bfloat16"))


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the accelerator run, or the CPU smoke run."""

    epoch_subset: int | None  # training images of the reference epoch (None: all 60,000)
    timed_epochs: int
    train_args: tuple[str, ...]  # extra flags of the default-run step
    sweep_runs: int
    sweep_subset: int | None
    small_runs: int
    small_subset: int
    # Hidden layers of the reference epoch and of sweep_vs_sequential. The smoke run checks
    # that every step runs, not the figures: a small network halves its time on a CPU.
    reference_hidden: tuple[int, ...] = (512, 512)


FULL = Sizes(None, 5, (), 64, None, 1000, 10_000)
SMOKE = Sizes(512, 1, ("--epochs", "1", "--train-subset", "1024", "--hidden", "32"), 4, 512, 8,
              512, reference_hidden=(32,))


def reference_config(subset: int | None, hidden: tuple[int, ...] = (512, 512),
                     batch_size: int = 128) -> Any:
    from jaxmlp.config import Config

    return Config(dataset="mnist", hidden=hidden, batch_size=batch_size, optimizer="momentum",
                  momentum=0.9, learning_rate=0.1, schedule="constant", epochs=1,
                  train_subset=subset)


# --- the steps ---------------------------------------------------------------------------------


def environment(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    import jax

    dev = jax.devices()[0]
    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.startswith(("jax", "nvidia-cuda-runtime", "nvidia-cudnn")):
            packages[name] = dist.version
    try:
        platform_version = dev.client.platform_version
    except Exception as e:  # a figure we can do without; say why it is missing
        platform_version = f"unknown ({type(e).__name__})"
    return {"platform": dev.platform, "device_kind": dev.device_kind,
            "devices": len(jax.devices()), "jax": jax.__version__,
            "platform_version": platform_version, "packages": dict(sorted(packages.items())),
            "cpu": common.cpu_model(), "cores": os.cpu_count()}


def _epoch_program(config: Any, dev: Any, hyper: Any, precision: str) -> tuple[Any, Any, Any]:
    """(compiled epoch, initial state, data key) with matrix products at `precision` (the
    setting is read while tracing, so the program is compiled inside it)."""
    import jax

    from jaxmlp import loop

    with jax.default_matmul_precision(precision):
        state, data_key, tx = loop.initial_state(jax.random.key(0), config, dev, hyper)
        epoch = jax.jit(loop.make_epoch(config, tx), donate_argnums=0)
        compiled = epoch.lower(state, dev, hyper, jax.random.fold_in(data_key, 0)).compile()
    return compiled, state, data_key


def reference_epoch(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    import jax

    from jaxmlp import loop

    config = reference_config(sizes.epoch_subset, sizes.reference_hidden)
    dev = loop.device_data(ctx["mnist"], config)
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    evaluate = jax.jit(loop.make_evaluate(config))
    out = {}
    for name, precision in PRECISIONS:
        t0 = time.perf_counter()
        epoch, state, data_key = _epoch_program(config, dev, hyper, precision)
        compile_seconds = time.perf_counter() - t0
        times = []
        for e in range(sizes.timed_epochs + 1):  # epoch 0 is the warm-up
            t0 = time.perf_counter()
            state, _ = jax.block_until_ready(epoch(state, dev, hyper,
                                                   jax.random.fold_in(data_key, e)))
            if e:
                times.append(time.perf_counter() - t0)
        _, accuracy = evaluate(state.params, dev.x_test, dev.y_test, hyper)
        out[name] = {"precision": precision, "compile_seconds": compile_seconds,
                     "epoch_seconds": times, "median_epoch_seconds": common.median(times),
                     "steps": int(dev.x_train.shape[0]) // config.batch_size,
                     "test_accuracy": float(accuracy)}
    return out


def default_train(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    """`python -m jaxmlp.train` in a fresh process, with a fresh compilation cache (cold) and
    then again (warm), as a user meets it the first and the second time."""
    out: dict[str, Any] = {}
    cache = ctx["out"] / "xla-cache"
    env = {**os.environ, "JAXMLP_COMPILE_CACHE_DIR": str(cache)}
    if ctx["data_dir"]:
        env["JAXMLP_DATA_DIR"] = ctx["data_dir"]
    for when in ("cold", "warm"):
        folder = ctx["out"] / f"train-{when}"
        cmd = [sys.executable, "-m", "jaxmlp.train", "--no-progress", "--out", str(folder),
               *sizes.train_args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-500:]}")
        summary = json.loads((folder / "summary.json").read_text())
        out[when] = {"process_wall_seconds": wall,
                     **{k: summary[k] for k in ("test_accuracy", "epochs_done", "data_seconds",
                                                "compile_seconds", "train_seconds",
                                                "wall_seconds", "train_seconds_to_98pct")}}
    out["command"] = "python -m jaxmlp.train " + " ".join(sizes.train_args)
    return out


def _sequential(config: Any, dev: Any, hyper: Any, seeds: list[int]) -> tuple[float, float,
                                                                              list[float]]:
    """(compile seconds, seconds for every seed one after another, final test accuracies)."""
    import jax

    from jaxmlp import loop

    t0 = time.perf_counter()
    train = jax.jit(loop.make_train(config)).lower(jax.random.key(0), dev, hyper).compile()
    compile_seconds = time.perf_counter() - t0
    jax.block_until_ready(train(jax.random.key(seeds[0]), dev, hyper))  # warm-up
    accuracies = []
    t0 = time.perf_counter()
    for s in seeds:
        _, metrics = train(jax.random.key(s), dev, hyper)
        accuracies.append(float(metrics.test_accuracy[-1]))  # waits for this run
    return compile_seconds, time.perf_counter() - t0, accuracies


def _swept(config: Any, dev: Any, x_train: np.ndarray, seeds: list[int]
           ) -> tuple[float, float, list[float], int]:
    """(compile seconds, seconds, final test accuracies, runs side by side) of one program."""
    import dataclasses

    import jax

    from jaxmlp import loop, sweep

    mesh = sweep.run_mesh()
    size = sweep.chunk_size(len(seeds), None, mesh.devices.size)
    t0 = time.perf_counter()
    program = sweep.get_program(config, dev, size, mesh)
    compile_seconds = time.perf_counter() - t0
    configs = [dataclasses.replace(config, seed=s) for s in seeds]
    hypers = [loop.hyper_from_config(c, x_train) for c in configs]
    placed = sweep.place_data(dev, mesh)
    sweep.execute(program, seeds, hypers, placed, mesh, size)  # warm-up
    t0 = time.perf_counter()
    result = sweep.execute(program, seeds, hypers, placed, mesh, size)
    seconds = time.perf_counter() - t0
    jax.block_until_ready(result)
    return (compile_seconds, seconds, [float(a) for a in result["test_accuracy"][:, -1]],
            program.runs_per_batch)


def sweep_vs_sequential(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    from jaxmlp import loop

    config = reference_config(sizes.sweep_subset, sizes.reference_hidden)
    dev = loop.device_data(ctx["mnist"], config)
    x_train = np.asarray(dev.x_train)
    hyper = loop.hyper_from_config(config, x_train)
    seeds = list(range(sizes.sweep_runs))
    seq_compile, seq_seconds, seq_acc = _sequential(config, dev, hyper, seeds)
    sw_compile, sw_seconds, sw_acc, batch = _swept(config, dev, x_train, seeds)
    network = "-".join(map(str, loop.model_sizes(config, int(dev.x_train.shape[1]))))
    return {"runs": len(seeds), "epochs": config.epochs, "network": network,
            "sequential_seconds": seq_seconds, "sequential_compile_seconds": seq_compile,
            "sweep_seconds": sw_seconds, "sweep_compile_seconds": sw_compile,
            "runs_per_batch": batch, "speedup": seq_seconds / sw_seconds,
            # The same runs: a sweep changes the kernels, not the arithmetic of a run.
            "max_accuracy_difference": float(np.max(np.abs(np.subtract(seq_acc, sw_acc)))),
            "mean_test_accuracy": float(np.mean(sw_acc))}


def small_sweep(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    from jaxmlp import loop

    config = reference_config(sizes.small_subset, hidden=(64,), batch_size=32)
    dev = loop.device_data(ctx["mnist"], config)
    x_train = np.asarray(dev.x_train)
    seeds = list(range(sizes.small_runs))
    compile_seconds, seconds, acc, batch = _swept(config, dev, x_train, seeds)
    return {"runs": len(seeds), "network": "784-64-10", "batch_size": 32,
            "examples": int(x_train.shape[0]), "epochs": 1, "seconds": seconds,
            "compile_seconds": compile_seconds, "seconds_per_run": seconds / len(seeds),
            "runs_per_second": len(seeds) / seconds, "runs_per_batch": batch,
            "mean_test_accuracy": float(np.mean(acc))}


STEPS: tuple[tuple[str, Callable[[Sizes, dict[str, Any]], dict[str, Any]]], ...] = (
    ("environment", environment), ("reference_epoch", reference_epoch),
    ("default_train", default_train), ("sweep_vs_sequential", sweep_vs_sequential),
    ("small_sweep", small_sweep),
)


# --- the report -----------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 3, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return (f"{x:.{digits}g}" if isinstance(x, float) else str(x)) + unit


def markdown(results: dict[str, Any]) -> str:
    """The figures as a table, one row per measurement, with the machine above it."""
    env = results["steps"].get("environment", {}).get("result", {})
    rows = [f"Device: {env.get('device_kind', '?')} ({env.get('platform', '?')}, "
            f"{env.get('devices', '?')} device(s)); jax {env.get('jax', '?')}; "
            f"{env.get('platform_version', '?')}; host {env.get('cpu', '?')}, "
            f"{env.get('cores', '?')} cores. Command: `{results['command']}`.", "",
            "| measurement | figure | compile s |", "| --- | --- | --- |"]
    steps = {k: v.get("result") for k, v in results["steps"].items()}
    for name, r in (steps.get("reference_epoch") or {}).items():
        epoch = _fmt(r["median_epoch_seconds"], unit=" s")
        rows.append(f"| reference epoch, {name} matmuls | {epoch} (test acc "
                    f"{r['test_accuracy']:.2%}) | {_fmt(r['compile_seconds'])} |")
    for when, r in ((k, v) for k, v in (steps.get("default_train") or {}).items()
                    if isinstance(v, dict)):
        rows.append(f"| `python -m jaxmlp.train`, {when} cache | wall "
                    f"{_fmt(r['wall_seconds'], unit=' s')}, to 98%: "
                    f"{_fmt(r['train_seconds_to_98pct'], unit=' s')}, acc "
                    f"{_fmt(r['test_accuracy'], 4)} | {_fmt(r['compile_seconds'])} |")
    if s := steps.get("sweep_vs_sequential"):
        rows.append(f"| {s['runs']} reference runs: sequential / sweep | "
                    f"{_fmt(s['sequential_seconds'])} s / {_fmt(s['sweep_seconds'])} s = "
                    f"**{s['speedup']:.1f}x** | {_fmt(s['sequential_compile_seconds'])} / "
                    f"{_fmt(s['sweep_compile_seconds'])} |")
    if s := steps.get("small_sweep"):
        rows.append(f"| {s['runs']} runs of {s['network']} | {_fmt(s['seconds'])} s "
                    f"({_fmt(s['runs_per_second'])} runs/s) | {_fmt(s['compile_seconds'])} |")
    failed = [f"- {k} FAILED: {v['error']}" for k, v in results["steps"].items()
              if v.get("error")]
    return "\n".join(rows + (["", *failed] if failed else [])) + "\n"


def run_steps(sizes: Sizes, ctx: dict[str, Any]) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for name, fn in STEPS:
        t0 = time.perf_counter()
        try:
            steps[name] = {"result": fn(sizes, ctx)}
        except Exception as e:  # record and go on: see the module docstring
            steps[name] = {"error": f"{type(e).__name__}: {e}",
                           "traceback": traceback.format_exc(limit=5)}
        steps[name]["seconds"] = time.perf_counter() - t0
        common.log(f"{name}: {'FAILED ' + steps[name]['error'] if 'error' in steps[name] else 'ok'}"
                   f" ({steps[name]['seconds']:.1f} s)")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and .md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does every step run?")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; name a folder")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ctx = {"out": out, "data_dir": args.data_dir, "mnist": common.load_mnist(args.data_dir)}
    steps = run_steps(SMOKE if args.smoke else FULL, ctx)
    results = {"command": " ".join(["python -m benchmarks.gpu_check", *sys.argv[1:]]),
               "smoke": args.smoke, "wall_seconds": time.perf_counter() - t_start,
               "steps": steps}
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "gpu_check.md").write_text(table)
    common.log("\n" + table + f"(wall {results['wall_seconds']:.0f} s; figures in {out})")
    return 1 if any("error" in s for s in steps.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
