"""Helpers shared by the benchmarks: machine description, load, medians, the matmul ceiling.

Benchmarks on a 2-core machine are at the mercy of whatever else runs on it. Each timed
repetition therefore records how busy the other processes kept the CPUs just before it
(`other_load`, in cores, from /proc/stat), waits a little for a quiet moment, and the tables
quote medians of interleaved repetitions, so a burst of load hits every contender alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxmlp.compilation import cpu_model, vector_extensions

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def other_load(interval: float = 0.25) -> float | None:
    """How many cores other processes kept busy over the next `interval` seconds (we sleep
    meanwhile, so it is their load, not ours). None where /proc/stat is missing."""
    try:
        b0, t0 = _cpu_ticks()
        time.sleep(interval)
        b1, t1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return cores * (b1 - b0) / max(t1 - t0, 1)


def wait_quiet(threshold: float = 0.3, max_wait: float = 20.0) -> float | None:
    """Wait (at most `max_wait` s) until other processes use under `threshold` cores; returns
    the last load seen, so the caller can record how quiet the machine really was."""
    deadline = time.perf_counter() + max_wait
    load = other_load()
    while load is not None and load > threshold and time.perf_counter() < deadline:
        load = other_load()
    return load


class LoadMeter:
    """Other processes' CPU use while a block runs, in cores: all busy CPU time on the machine
    (from /proc/stat) minus this process's own (os.times), over the block's wall time.

    Sampling before a timed block misses a job that starts during it; this catches it. Our
    own worker threads are counted as ours, so it is the competition only.
    """

    def __enter__(self) -> LoadMeter:
        self._t = time.perf_counter()
        self._own = sum(os.times()[:4])
        try:
            self._busy = _cpu_ticks()[0]
        except (OSError, ValueError, IndexError):
            self._busy = None
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t
        own = sum(os.times()[:4]) - self._own
        if self._busy is None or wall <= 0:
            return
        try:
            busy = (_cpu_ticks()[0] - self._busy) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return
        self.cores = max(0.0, (busy - own) / wall)


def quiet_subset(times: Sequence[float], loads: Sequence[float | None],
                 threshold: float = 0.3, minimum: int = 3) -> tuple[list[float], bool]:
    """The times measured while others used under `threshold` cores, if there are at least
    `minimum` of them (else all of them); and whether the filter was applied."""
    quiet = [t for t, ld in zip(times, loads, strict=True) if ld is not None and ld < threshold]
    if len(quiet) >= minimum:
        return quiet, True
    return list(times), False


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a jitted float32 n x n x n matrix product: the ceiling the epoch is held to
    (`jaxmlp.floor`, its one home; imported here, so that only the benchmarks that measure it
    import jax)."""
    from jaxmlp import floor

    return floor.matmul_gflops(n, reps)


def mlp_train_flops(sizes: Sequence[int], batch: int) -> int:
    """Matrix-product FLOPs of one SGD step of an MLP (`jaxmlp.floor`)."""
    from jaxmlp import floor

    return floor.mlp_train_flops(sizes, batch)


def machine() -> dict[str, Any]:
    import jax

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "vector": vector_extensions(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "platform": jax.default_backend(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    import numpy as np

    info["numpy"] = np.__version__
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def describe(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']} ({info['vector']}), {info['cores']} cores, {info['platform']}; "
        f"python {info['python']}, "
        f"jax {info['jax']}, numpy {info['numpy']}, torch {info['torch'] or 'not installed'}; "
        f"1-min load average at start {info['loadavg_1min']}"
    )


def load_mnist(data_dir: str | None) -> Any:
    """MNIST through jaxmlp's own loader (the shared copy beside the repo when it exists)."""
    from jaxmlp import data

    if data_dir is None and SHARED_MNIST.exists():
        data_dir = str(SHARED_MNIST)
    return data.load_dataset("mnist", data_dir=data_dir, progress=False)


def log(msg: str) -> None:
    print(msg, flush=True)
    sys.stdout.flush()
