"""Many runs at once: what a vmapped sweep costs per run, against one run on its own.

    python -m benchmarks.bench_sweep                 # the README table (a few minutes)
    python -m benchmarks.bench_sweep --smoke         # seconds: does everything still run?

For two networks, each trained for one epoch of MNIST (SGD, momentum 0.9, lr 0.1):

- small:     784-64-10, batch 32 (1,875 steps; per-step overhead dominates)
- reference: 784-512-512-10, batch 128 (468 steps; matrix products dominate)

it trains K = 1, 8 and 32 seeds as one jitted program and prints seconds per run (and the ratio
to a single run), compile seconds and the process's peak memory. Each measurement runs in its own
subprocess, so peak memory (the resident-set high-water mark) belongs to that program alone.

Two ways of running K runs in one program are compared:

- `vmap`: `jaxmlp.sweep`'s program, i.e. `jax.vmap(make_train(config))` over all K runs at once
  (or that vmap directly when jaxmlp.sweep is missing);
- `map/B`: `jax.lax.map(..., batch_size=B)`: the runs go B at a time (vmapped) through a loop
  inside the same program, B chosen by `runs_per_batch` from the size of a run's working set;
- `split/N`: N independent vmaps of K/N runs each in one program, which XLA's executor runs
  concurrently (one per core), so the single-threaded parts of a step (the shuffle's sorts, the
  batch gather, elementwise updates) of one half overlap with the other half's work.

Why a plain vmap of K reference runs costs more per run than one run (measured with
jax.profiler on this 2-core CPU; see README.md): every run carries ~8 MB of parameters, momentum
and gradients, so 8 runs (64 MB) no longer fit the 32 MB last-level cache and every elementwise
update streams from memory (~3x slower per run); the batched matrix products that vmap makes
are run by XLA with lower throughput than the unbatched ones (170-310 GFLOP/s against ~450);
and the narrow last-layer weight gradient, batched, costs 0.8 ms a step. Batching only as many
runs as fit the cache keeps each run's state cache-resident and still amortises per-step
overhead for small networks, where vmapping every run is best.
"""

from __future__ import annotations

import argparse
import itertools
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
# The cache a batch of runs should fit: the last-level cache of this machine class (32 MiB on
# the benchmark machine). Read from sysfs where possible.
DEFAULT_CACHE_BYTES = 32 * 2**20


def last_level_cache_bytes() -> int:
    """The largest CPU cache (L3, or L2 where there is none), from sysfs; a default elsewhere."""
    best = 0
    try:
        base = "/sys/devices/system/cpu/cpu0/cache"
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return best or DEFAULT_CACHE_BYTES


def run_state_bytes(sizes: list[int], optimizer: str, batch_size: int) -> int:
    """Bytes one run touches every step: parameters, gradients, optimizer slots (momentum: 1,
    adam: 2) and the batch's activations, all float32."""
    params = sum(i * o + o for i, o in itertools.pairwise(sizes))
    slots = {"sgd": 0, "momentum": 1, "adam": 2}.get(optimizer, 2)
    activations = 2 * batch_size * sum(sizes)  # forward values and their gradients
    return 4 * (params * (2 + slots) + activations)


def runs_per_batch(sizes: list[int], optimizer: str, batch_size: int, num_runs: int,
                   cache_bytes: int | None = None) -> int:
    """How many runs to vmap together: as many as fit half the last-level cache (the other half
    is for the data being streamed through), at least 1, at most all of them, and a divisor of
    `num_runs`.

    The proposal for `jaxmlp.sweep`: train a chunk as
    `jax.lax.map(one_run, (keys, hypers), batch_size=runs_per_batch(...))` instead of one
    `jax.vmap` over every run of the chunk. Same results (each run's arithmetic is unchanged),
    one compilation, and per-run cost at or below a single run's.
    """
    budget = (cache_bytes or last_level_cache_bytes()) // 2
    fit = max(1, min(num_runs, budget // run_state_bytes(sizes, optimizer, batch_size)))
    # A divisor of num_runs: lax.map handles a remainder with a second, separately compiled vmap.
    return max(b for b in range(1, fit + 1) if num_runs % b == 0)


# --- one measurement (in a subprocess) --------------------------------------------------------


def _rss_mib() -> float:
    """This process's peak resident set so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(network: str, k: int, mode: str, reps: int, subset: int | None,
            data_dir: str | None) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from jaxmlp import train
    from jaxmlp.config import Config

    spec = NETWORKS[network]
    config = Config(dataset="mnist", hidden=spec["hidden"], batch_size=spec["batch_size"],
                    optimizer="momentum", learning_rate=0.1, momentum=0.9, schedule="constant",
                    epochs=1, train_subset=subset)
    ds = common.load_mnist(data_dir)
    dev = train.device_data(ds, config)
    hyper = train.hyper_from_config(config, np.asarray(dev.x_train))
    rss_data = _rss_mib()
    sizes = train.model_sizes(config, dev.x_train.shape[1])
    seeds = list(range(k))
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    hypers = train.Hyper(*(jnp.full((k,), v, jnp.float32) for v in hyper))
    one = train.make_train(config)

    def one_run(key_data: jax.Array, dev: train.DeviceData, h: train.Hyper) -> jax.Array:
        _, metrics = one(jax.random.wrap_key_data(key_data), dev, h)
        return metrics.test_accuracy[-1]

    batch = None
    engine = "jaxmlp.sweep"
    t0 = time.perf_counter()
    if mode == "single":
        fn = jax.jit(one_run).lower(keys[0], dev, hyper).compile()
        args: tuple = (keys[0], dev, hyper)
    elif mode == "vmap":
        try:
            from jaxmlp import sweep

            mesh = sweep.run_mesh(jax.devices()[:1])
            program = sweep.get_program(config, dev, k, mesh)
            fn = program.compiled
            placed = sweep.place_data(dev, mesh)
            args = (keys, placed, hypers)
        except ImportError:  # the sweep engine is not there: the same vmap, by hand
            engine = "jax.vmap(make_train)"
            fn = jax.jit(jax.vmap(one_run, in_axes=(0, None, 0)))
            fn = fn.lower(keys, dev, hypers).compile()
            args = (keys, dev, hypers)
    elif mode.startswith("split/"):  # N independent vmaps of K/N runs: one per core
        engine = "split"
        groups = int(mode.split("/")[1])
        batch = k // groups

        def split_runs(keys: jax.Array, dev: train.DeviceData, hypers: train.Hyper) -> jax.Array:
            vm = jax.vmap(one_run, in_axes=(0, None, 0))
            return jnp.concatenate([
                vm(keys[g * batch:(g + 1) * batch], dev,
                   jax.tree.map(lambda a, g=g: a[g * batch:(g + 1) * batch], hypers))
                for g in range(groups)])

        fn = jax.jit(split_runs).lower(keys, dev, hypers).compile()
        args = (keys, dev, hypers)
    else:  # "map": lax.map over batches of `runs_per_batch` vmapped runs
        engine = "lax.map"
        batch = runs_per_batch(sizes, config.optimizer, config.batch_size, k)
        if mode.startswith("map/"):
            batch = int(mode.split("/")[1])

        def all_runs(keys: jax.Array, dev: train.DeviceData, hypers: train.Hyper) -> jax.Array:
            # batch_size=1 would still vmap (over a batch of one), which changes the kernels
            # XLA picks; one at a time is a plain loop.
            return jax.lax.map(lambda kh: one_run(kh[0], dev, kh[1]), (keys, hypers),
                               batch_size=batch if batch > 1 else None)

        fn = jax.jit(all_runs).lower(keys, dev, hypers).compile()
        args = (keys, dev, hypers)
    compile_seconds = time.perf_counter() - t0

    times, loads = [], []
    for _ in range(reps):
        common.wait_quiet(0.3 if subset is None else 10.0, 20.0)
        with common.LoadMeter() as meter:
            seconds, out = common.timed(lambda: jax.block_until_ready(fn(*args)))
        times.append(seconds)
        loads.append(meter.cores)
    quiet, filtered = common.quiet_subset(times, loads, minimum=1)
    accuracy = np.asarray(jax.device_get(out if not isinstance(out, dict) else
                                         out["test_accuracy"][..., -1])).reshape(-1)
    return {
        "network": network, "k": k, "mode": mode, "engine": engine, "batch": batch,
        "compile_seconds": compile_seconds, "seconds": times, "other_load": loads,
        "median_seconds": common.median(quiet), "min_seconds": min(times),
        "quiet_reps": len(quiet) if filtered else None,
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
    parser.add_argument("--modes", nargs="*", default=["vmap", "map"],
                        help="ways to run K > 1 runs: vmap, map (batch from runs_per_batch), "
                             "map/B (batch B), split/N (N concurrent vmaps)")
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
        print(json.dumps(measure(network, int(k), mode, args.reps, subset, args.data_dir)))
        return 0

    ks = [1, 8] if args.smoke else args.ks
    networks = ["small"] if args.smoke else args.networks
    reps = 1 if args.smoke else args.reps
    info = common.machine()
    common.log(f"machine: {common.describe(info)}; last-level cache "
               f"{last_level_cache_bytes() / 2**20:.0f} MiB")
    common.log(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')} (added by jaxmlp: "
               f"{' '.join(xla_flags)})")
    rows = []
    header = (f"{'network':10s} {'K':>3s} {'how':12s} {'s/run':>7s} {'vs 1 run':>8s} "
              f"{'compile s':>9s} {'peak MiB':>8s} {'test acc':>8s}  other load during")
    common.log(header)
    for network in networks:
        single = None
        for k in ks:
            modes = ["single"] if k == 1 else args.modes
            for mode in modes:
                r = _child(args, network, k, mode, reps)
                per_run = r["median_seconds"] / k
                if mode == "single":
                    single = per_run
                r["seconds_per_run"] = per_run
                r["ratio_to_single"] = per_run / single if single else None
                how = mode if mode != "map" else f"map/{r['batch']}"
                loads = " ".join(f"{v:.1f}" if v is not None else "?" for v in r["other_load"])
                if r["quiet_reps"] is None:
                    loads += " LOADED"
                common.log(f"{network:10s} {k:3d} {how:12s} {per_run:7.3f} "
                           f"{r['ratio_to_single']:7.2f}x {r['compile_seconds']:9.2f} "
                           f"{r['peak_rss_mib']:8.0f} {r['mean_test_accuracy']:8.2%}  {loads}")
                rows.append(r)
    common.log("s/run: median of the repetitions during which other processes used < 0.3 cores "
               "(all of them, flagged LOADED, if none was that quiet) divided by K; vs 1 run: "
               "against K = 1 of the same network; other load: cores used by other processes "
               "during each repetition; peak MiB: the measuring process's peak resident "
               f"memory (data set included: {rows[0]['rss_after_data_mib']:.0f} MiB after "
               "loading it)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
