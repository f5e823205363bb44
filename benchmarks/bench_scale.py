"""Scale by simulation: how a sweep's cost grows from 100 to 1,000 runs on this machine.

    python -m benchmarks.bench_scale                  # 100, 300 and 1,000 runs (a few minutes)
    python -m benchmarks.bench_scale --runs 100 300   # the first two rows only

Each row is one `python -m jaxmlp.sweep` process (fresh, persistent compilation cache off) of a
small network, 784-32-10 trained for one epoch on the first 2,000 MNIST images (batch 100, SGD
with momentum), as a grid of 10 learning rates x R/10 seeds, in chunks of `--max-parallel 100`
runs. It prints wall seconds, the compile and train seconds the sweep records in sweep.json,
seconds per run, and the process's peak resident memory. A sweep that scales should grow
linearly in time (the seconds per run constant) and stay flat in memory (each chunk's state is
freed before the next).

From the per-run figures the last lines estimate what the 1,000-run sweep would take on N
accelerators, and say what would have to be measured on one to confirm it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as common

LEARNING_RATES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5)
CHUNK = 100


def sweep_row(runs: int, data_dir: str | None) -> dict[str, Any]:
    """Run one sweep of `runs` runs in a fresh process; its figures."""
    seeds = runs // len(LEARNING_RATES)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        args = [sys.executable, "-m", "jaxmlp.sweep", "--out", str(out), "--dataset", "mnist",
                "--hidden", "32", "--epochs", "1", "--train-subset", "2000", "--batch-size",
                "100", "--optimizer", "momentum", "--schedule", "constant", "--grid",
                "learning_rate=" + ",".join(map(str, LEARNING_RATES)), "--seeds", str(seeds),
                "--max-parallel", str(CHUNK), "--no-progress", "--no-plots", "--no-probes"]
        if data_dir:
            args += ["--data-dir", data_dir]
        env = {**os.environ, "JAXMLP_NO_COMPILE_CACHE": "1", "XDG_CACHE_HOME": tmp}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(args, check=True, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        record = json.loads((out / "sweep.json").read_text())
    session = record["sessions"][-1]
    return {"runs": seeds * len(LEARNING_RATES), "wall": wall,
            "compile": session.get("compile_seconds"), "train": session.get("train_seconds"),
            # ru_maxrss of children is the largest child so far: only a rise is this row's own.
            "peak_mib": peak_kib / 1024 if peak_kib > before else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or (str(common.SHARED_MNIST) if common.SHARED_MNIST.exists()
                                 else None)
    common.log(f"machine: {common.describe(common.machine())}")
    rows = []
    for runs in sorted(args.runs):
        common.wait_quiet()
        rows.append(sweep_row(runs, data_dir))
        r = rows[-1]
        common.log(f"{r['runs']} runs: wall {r['wall']:.1f} s")
    common.log("\n| runs | wall s | compile s | train s | train s per run | peak memory |")
    common.log("|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] else "not above the previous row"
        common.log(f"| {r['runs']:,} | {r['wall']:.1f} | {r['compile']:.1f} | {r['train']:.1f} | "
                   f"{r['train'] / r['runs'] * 1000:.1f} ms | {peak} |")
    last = rows[-1]
    per_run = last["train"] / last["runs"]
    common.log(f"\nEstimate, from {per_run * 1000:.1f} ms of training per run here: a "
               f"{last['runs']:,}-run sweep splits its runs over devices, so N accelerators "
               f"each as fast as this CPU would train it in about {last['train']:.0f} / N s "
               f"plus one compilation ({last['compile']:.1f} s here). To confirm it on an "
               "accelerator, measure there: the per-run train time at the chunk size that "
               "fills the device, the compile time, and that the chunks overlap transfers with "
               "training (benchmarks/gpu_check.py does this for one device).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
