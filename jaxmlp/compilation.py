"""JAX's persistent compilation cache, on by default, plus the counters that prove it hits.

Compiling the epoch program takes about a second on a small CPU, every run, for a program that
has not changed. JAX can keep compiled executables on disk, keyed by the program, the compile
options, the jax/jaxlib versions and the device; a second identical run then loads instead of
compiling. Out of the box JAX only caches programs that took over a second to compile, which
leaves most of ours out, so the thresholds are dropped here: everything is cached.

    from jaxmlp import compilation
    compilation.enable_compilation_cache()   # before the first jit compile of the process
    ...
    compilation.cache_stats()                # {"hits": 2, "misses": 0, ...}

The cache lives in `data.cache_dir() / "xla"` (that is $XDG_CACHE_HOME/jaxmlp/xla or
~/.cache/jaxmlp/xla); $JAXMLP_COMPILE_CACHE_DIR puts it elsewhere and JAXMLP_NO_COMPILE_CACHE=1
turns it off. The folder only ever holds derived files: deleting it is always safe. Like any
executable cache it is trusted code, so it is created private to the user (mode 0700).

CPU entries are machine specific: XLA compiles for the host's instruction set, and an entry made
on a machine with other CPU features is refused on load (JAX logs a warning and recompiles).
Keep the cache per machine (the default, the user cache is local) rather than on a shared drive.
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path
from typing import Any

import jax

from jaxmlp.data.cache import cache_dir

ENV_DISABLE = "JAXMLP_NO_COMPILE_CACHE"
ENV_DIR = "JAXMLP_COMPILE_CACHE_DIR"
ENV_NO_FLAGS = "JAXMLP_NO_XLA_FLAGS"

# XLA:CPU options that `python -m jaxmlp.train` runs with. Copy insertion with region analysis
# proves that the training loop may update the weights in place, which removes a copy of a
# 512x512 weight matrix per step: 2-4% off a reference epoch, 4% off an Adam one, neutral for
# small networks, bitwise identical results (benchmarks/README.md).
XLA_CPU_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)

_EVENTS = {
    "/jax/compilation_cache/compile_requests_use_cache": "requests",
    "/jax/compilation_cache/cache_hits": "hits",
    # Recorded when a freshly compiled program is written to the cache.
    "/jax/compilation_cache/cache_misses": "misses",
}
_counts: dict[str, int] = dict.fromkeys(_EVENTS.values(), 0)
# What compiling a program takes, as JAX reports it: tracing the function, lowering it to XLA's
# input, and XLA's own compilation (or, with a warm cache, loading its result from disk).
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]
_clock_running = [False]
_lock = threading.Lock()
_listening = False
_enabled_dir: Path | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def default_cache_dir() -> Path:
    """Where the cache goes unless told otherwise: $JAXMLP_COMPILE_CACHE_DIR, else
    `jaxmlp.data.cache_dir() / "xla"`."""
    override = os.environ.get(ENV_DIR, "")
    if override:
        return Path(override).expanduser()
    return cache_dir() / "xla"


def _on_event(event: str, **kwargs: Any) -> None:
    name = _EVENTS.get(event)
    if name is not None:
        with _lock:
            _counts[name] += 1


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process; returns its folder.

    Returns None, changing nothing, when JAXMLP_NO_COMPILE_CACHE is set (to anything but
    0/false/no/off) or the folder cannot be created. Call it before the first compilation:
    JAX decides once per process whether the cache is in use (a late call resets that decision,
    so it still takes effect for everything compiled afterwards).
    """
    global _listening, _enabled_dir
    if _truthy(os.environ.get(ENV_DISABLE)):
        return None
    folder = Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None  # a read-only home must not stop training; it only costs compile time
    from jax.experimental.compilation_cache import compilation_cache

    if _enabled_dir != folder:
        # JAX initialises its cache object once; reset it so a new folder (or a call after an
        # earlier compile in this process) is honoured.
        compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program: the defaults skip those that compile in under 1 s, i.e. all of ours.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # -1, not 0: 0 lets JAX substitute a file-system dependent minimum entry size.
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if not _listening:
        jax.monitoring.register_event_listener(_on_event)
        _listening = True
    _enabled_dir = folder
    return folder


def tune_xla_cpu() -> list[str]:
    """Add `XLA_CPU_FLAGS` to $XLA_FLAGS (those not set there already); returns the ones added.

    XLA reads $XLA_FLAGS once, when JAX first initialises a backend, so call this before any
    computation (the first lines of a `main`). Adds nothing when JAXMLP_NO_XLA_FLAGS is set, or
    when JAX has already initialised (the flags would silently not apply).
    """
    if _truthy(os.environ.get(ENV_NO_FLAGS)) or _backends_initialized():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    given = {f.split("=", 1)[0] for f in current.split()}
    added = [f for f in XLA_CPU_FLAGS if f.split("=", 1)[0] not in given]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge  # no public API says whether backends exist yet

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name, as the OS reports it ("AMD EPYC", "Intel(R) Xeon(R) ...")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_extensions() -> str:
    """'AVX-512', 'AVX2' or 'no AVX2': XLA:CPU's kernels, and so every timing and some results'
    last bits, differ a lot between them."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def describe_cpu() -> str:
    """'2-core AMD EPYC (AVX-512)': what a figure quoted from this machine was measured on."""
    return f"{cpu_cores()}-core {cpu_model()} ({vector_extensions()})"


def split_cpu_into_devices(count: int | None = None) -> int | None:
    """Make JAX's CPU backend `count` devices (default: one per core); returns the count set.

    Programs on different devices run at the same time, each on its own thread, which is how a
    sweep (`jaxmlp.sweep`) trains runs side by side on a multi-core CPU: most of a small run's
    step is single-threaded work (small matrix products, the gather, the updates, the shuffle's
    sorts), so one device leaves the other cores mostly idle. Like `tune_xla_cpu`, call it
    before any computation; it changes nothing (returns None) once JAX has initialised, when
    XLA_FLAGS already sets --xla_force_host_platform_device_count, or when jax_num_cpu_devices
    was set. The CPU devices share the machine's memory; each holds its own copy of the data.
    Accelerators are unaffected.
    """
    if _backends_initialized():
        return None
    if "--xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices != -1:
        return None
    count = cpu_cores() if count is None else count
    if count < 1:
        raise ValueError(f"a CPU device count must be at least 1, got {count}")
    jax.config.update("jax_num_cpu_devices", count)
    return count


def _on_duration(event: str, seconds: float, **kwargs: Any) -> None:
    if event in COMPILE_EVENTS:
        with _lock:
            _compile_seconds[0] += seconds


def start_compile_clock() -> None:
    """Count, from now on, the seconds this process spends compiling (every thread's; see
    `COMPILE_EVENTS`). For the experiments' record of where their time went."""
    with _lock:
        if not _clock_running[0]:
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            _clock_running[0] = True


def compile_seconds() -> float:
    """Seconds spent compiling since `start_compile_clock` (0 if it was never started). Summed
    over threads: a program compiled while another trains counts in full."""
    with _lock:
        return _compile_seconds[0]


def cache_stats() -> dict[str, int]:
    """Counts since the cache was enabled: compile requests that consulted the cache, hits, and
    misses (programs compiled and written)."""
    with _lock:
        return dict(_counts)


def process_age_seconds() -> float | None:
    """Seconds since this Python process started (interpreter start-up plus imports, when
    called first thing in `main`). Linux only (reads /proc); None elsewhere."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 22 (starttime, in clock ticks since boot); the command name in field 2 may hold
        # spaces, so count from the closing parenthesis.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def startup_line(import_seconds: float | None, data_seconds: float, compile_seconds: float,
                 startup_seconds: float | None, folder: Path | None) -> str:
    """One line on where start-up time went, and whether the compilation cache was used.

    `compile_seconds`: tracing, lowering and XLA (with a warm cache: loading the executables
    from disk instead), on the thread that compiled while the data loaded;
    `startup_seconds`: from the run's start to its programs ready and its first state made,
    which the overlap makes less than data plus compile.
    """
    parts = []
    if import_seconds is not None:
        parts.append(f"import {import_seconds:.2f} s")
    parts.append(f"data {data_seconds:.2f} s")
    parts.append(f"compile {compile_seconds:.2f} s" + (" alongside" if startup_seconds else ""))
    if startup_seconds is not None:
        first = startup_seconds + (import_seconds or 0.0)
        parts.append(f"first step after {first:.2f} s" + (" of the process"
                                                           if import_seconds else ""))
    if folder is None:
        why = "off: JAXMLP_NO_COMPILE_CACHE is set" if _truthy(os.environ.get(ENV_DISABLE)) \
            else "off"
        cache = f"compilation cache {why}"
    else:
        s = cache_stats()
        cache = f"compilation cache {folder}: {s['hits']} hits, {s['misses']} compiled and stored"
    return f"start-up: {', '.join(parts)} ({cache})"
