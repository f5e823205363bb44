"""Many runs at once: what a sweep costs per run, against one run on its own.

    python -m benchmarks.bench_sweep                 # the README table (~10 minutes)
    python -m benchmarks.bench_sweep --smoke         # seconds: does everything still run?

For two networks, each trained for one epoch of MNIST (SGD, momentum 0.9, lr 0.1):

- small:     784-64-10, batch 32 (1,875 steps; per-step overhead dominates)
- reference: 784-512-512-10, batch 128 (468 steps; matrix products dominate)

it trains K = 1, 8 and 32 seeds as one jitted program and prints seconds per run (and the ratio
to a single run), compile seconds and the process's peak memory. Each measurement runs in its own
subprocess, so peak memory (the resident-set high-water mark) and the CPU device count belong to
that program alone.

How the K runs are laid out (modes; all but `single` are `jaxmlp.sweep.get_program`):

- `single`: K = 1, `jax.jit(make_train(config))`: one run as `python -m jaxmlp.train` trains it;
  the reference every other row is divided by;
- `vmap`: one device, every run vmapped at once (what `jaxmlp.sweep` did before; the naive way);
- `map`: one device, the runs in a loop `auto_runs_per_batch` at a time (`map/B`: B at a time);
- `sweep`: what `python -m jaxmlp.sweep` does by default: one CPU device per core
  (`compilation.split_cpu_into_devices`), each looping over its share of the runs
  `auto_runs_per_batch` at a time (`sweep/N`: N devices).

Why each layout costs what it does is in README.md (profiles of the vmapped programs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks import _common as common

NETWORKS: dict[str, dict[str, Any]] = {
    "small": {"hidden": (64,), "batch_size": 32},
    "reference": {"hidden": (512, 512), "batch_size": 128},
}
KS = (1, 8, 32)


def devices_for(mode: str) -> int | None:
    """The CPU device count a mode runs with (None: JAX's default, one)."""
    if mode == "sweep":
        from jaxmlp.compilation import cpu_cores

        return cpu_cores()
    if mode.startswith("sweep/"):
        return int(mode.split("/")[1])
    return None


# --- one measurement (in a subprocess) --------------------------------------------------------


def _rss_mib() -> float:
    """This process's peak resident set so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(network: str, k: int, mode: str, reps: int, subset: int | None,
            data_dir: str | None) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxmlp import loop
    from jaxmlp.config import Config

    spec = NETWORKS[network]
    config = Config(dataset="mnist", hidden=spec["hidden"], batch_size=spec["batch_size"],
                    optimizer="momentum", learning_rate=0.1, momentum=0.9, schedule="constant",
                    epochs=1, train_subset=subset)
    ds = common.load_mnist(data_dir)
    dev = loop.device_data(ds, config)
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    rss_data = _rss_mib()
    seeds = list(range(k))
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    hypers = loop.Hyper(*(jnp.full((k,), v, jnp.float32) for v in hyper))
    one = loop.make_train(config)

    def one_run(key_data: jax.Array, dev: loop.DeviceData, h: loop.Hyper) -> jax.Array:
        _, metrics = one(jax.random.wrap_key_data(key_data), dev, h)
        return metrics.test_accuracy[-1]

    # Every row also times one run alone, interleaved with its own repetitions: this VM's
    # speed drifts (up to 2x within minutes, for every program alike), so a ratio is only
    # trustworthy between programs timed side by side.
    t0 = time.perf_counter()
    single = jax.jit(one_run).lower(keys[0], dev, hyper).compile()
    single_compile = time.perf_counter() - t0
    single_args = (keys[0], dev, hyper)
    batch = None
    ndev = 1
    t0 = time.perf_counter()
    if mode == "single":
        fn, args = single, single_args
    else:
        from jaxmlp import sweep

        mesh = sweep.run_mesh(jax.devices()[:devices_for(mode) or 1])
        ndev = mesh.devices.size
        runs_per_batch = None  # auto
        if mode == "vmap":
            runs_per_batch = k
        elif mode.startswith("map/"):
            runs_per_batch = int(mode.split("/")[1])
        program = sweep.get_program(config, dev, k, mesh, runs_per_batch=runs_per_batch)
        fn = program.compiled
        batch = program.runs_per_batch
        runs = NamedSharding(mesh, P("runs"))
        args = (jax.device_put(keys, runs), sweep.place_data(dev, mesh),
                jax.device_put(hypers, runs))
    compile_seconds = single_compile if mode == "single" else time.perf_counter() - t0

    def timed_quietly(f: Any, a: tuple) -> tuple[float, float | None, Any]:
        common.wait_quiet(0.3 if subset is None else 10.0, 20.0)
        with common.LoadMeter() as meter:
            seconds, out = common.timed(lambda: jax.block_until_ready(f(*a)))
        return seconds, meter.cores, out

    times, loads, alone, alone_loads = [], [], [], []
    jax.block_until_ready(single(*single_args))  # warm-up (first-call allocations)
    for _ in range(reps):
        seconds, load, _ = timed_quietly(single, single_args)
        alone.append(seconds)
        alone_loads.append(load)
        if mode != "single":
            seconds, load, out = timed_quietly(fn, args)
            times.append(seconds)
            loads.append(load)
    if mode == "single":
        times, loads = alone, alone_loads
        out = single(*single_args)
    quiet, filtered = common.quiet_subset(times, loads, minimum=1)
    quiet_alone, _ = common.quiet_subset(alone, alone_loads, minimum=1)
    # Paired: each repetition's seconds per run over the lone run timed just before it.
    paired = [t / k / a for t, a in zip(times, alone, strict=True)]
    accuracy = np.asarray(jax.device_get(out if not isinstance(out, dict) else
                                         out["test_accuracy"][..., -1])).reshape(-1)
    return {
        "network": network, "k": k, "mode": mode, "devices": ndev, "batch": batch,
        "compile_seconds": compile_seconds, "seconds": times, "other_load": loads,
        "median_seconds": common.median(quiet), "min_seconds": min(times),
        "quiet_reps": len(quiet) if filtered else None,
        "alone_seconds": alone, "alone_median_seconds": common.median(quiet_alone),
        "paired_ratio_median": common.median(paired),
        "peak_rss_mib": _rss_mib(), "rss_after_data_mib": rss_data,
        "mean_test_accuracy": float(np.mean(accuracy)),
    }


def _child(args: argparse.Namespace, network: str, k: int, mode: str, reps: int) -> dict:
    if args.smoke:  # in-process: quick (peak memory is then the whole benchmark's)
        return measure(network, k, mode, reps, 1024, args.data_dir)
    cmd = [sys.executable, "-m", "benchmarks.bench_sweep", "--one", network, str(k), mode,
           "--reps", str(reps)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budget (small network, 1,024 examples, K = 1 and 8, in "
                             "one process): checks that it runs, in seconds")
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--ks", nargs="*", type=int, default=list(KS))
    parser.add_argument("--modes", nargs="*", default=["vmap", "map", "sweep"],
                        help="ways to run K > 1 runs: vmap (all at once), map (a loop, "
                             "auto_runs_per_batch at a time), map/B (B at a time), sweep "
                             "(one device per core, as python -m jaxmlp.sweep), sweep/N "
                             "(N devices); see the module docstring")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--one", nargs=3, metavar=("NETWORK", "K", "MODE"),
                        help=argparse.SUPPRESS)  # internal: one measurement, JSON on stdout
    args = parser.parse_args(argv)
    # The XLA:CPU options `python -m jaxmlp.train` runs with; before JAX initialises. The
    # persistent compilation cache stays off: compile times here are cold ones.
    from jaxmlp import compilation

    xla_flags = compilation.tune_xla_cpu() or ["(none added)"]
    subset = 1024 if args.smoke else None

    if args.one:
        network, k, mode = args.one
        if devices_for(mode):
            compilation.split_cpu_into_devices(devices_for(mode))
        print(json.dumps(measure(network, int(k), mode, args.reps, subset, args.data_dir)))
        return 0

    ks = [1, 8] if args.smoke else args.ks
    networks = ["small"] if args.smoke else args.networks
    reps = 1 if args.smoke else args.reps
    info = common.machine()
    from jaxmlp.sweep import last_level_cache_bytes

    common.log(f"machine: {common.describe(info)}; last-level cache "
               f"{last_level_cache_bytes() / 2**20:.0f} MiB")
    common.log(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')} (added by jaxmlp: "
               f"{' '.join(xla_flags)})")
    rows = []
    header = (f"{'network':10s} {'K':>3s} {'how':22s} {'s/run':>7s} {'1 run alone':>11s} "
              f"{'vs alone':>8s} {'compile s':>9s} {'peak MiB':>8s} {'test acc':>8s}  "
              "other load during")
    common.log(header)
    for network in networks:
        for k in ks:
            for mode in ["single"] if k == 1 else args.modes:
                r = _child(args, network, k, mode, reps)
                per_run = r["median_seconds"] / k
                r["seconds_per_run"] = per_run
                how = mode if mode == "single" else \
                    f"{mode} ({r['devices']} dev, B={r['batch']})"
                loads = " ".join(f"{v:.1f}" if v is not None else "?" for v in r["other_load"])
                if r["quiet_reps"] is None:
                    loads += " LOADED"
                common.log(f"{network:10s} {k:3d} {how:22s} {per_run:7.3f} "
                           f"{r['alone_median_seconds']:11.3f} {r['paired_ratio_median']:7.2f}x "
                           f"{r['compile_seconds']:9.2f} {r['peak_rss_mib']:8.0f} "
                           f"{r['mean_test_accuracy']:8.2%}  {loads}")
                rows.append(r)
    common.log("s/run: median over the repetitions (those during which other processes used "
               "< 0.3 cores; all, flagged LOADED, if none was that quiet) divided by K; 1 run "
               "alone: median of the same network trained alone (jax.jit(make_train)), timed in "
               "the same process just before each repetition; vs alone: median over the "
               "repetitions of (seconds per run) / (that lone run's seconds); dev: CPU devices, "
               "B: runs vmapped together on each; other load: cores used by other processes "
               "during each repetition; peak MiB: the measuring process's peak resident memory "
               f"(data set included: {rows[0]['rss_after_data_mib']:.0f} MiB after loading it)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
