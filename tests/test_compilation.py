"""The persistent compilation cache: where it lives, opting out, and that it really hits.

Each check runs in a fresh interpreter with its own XDG_CACHE_HOME under tmp_path: JAX decides
once per process whether the cache is in use, and the user's real cache must never be touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, time
from jaxmlp import compilation
folder = compilation.enable_compilation_cache()
import jax, jax.numpy as jnp
t0 = time.perf_counter()
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum()).lower(jnp.ones((64, 64))).compile()
seconds = time.perf_counter() - t0
print(json.dumps({"folder": str(folder) if folder else None, "seconds": seconds,
                  **compilation.cache_stats()}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("JAXMLP_NO_COMPILE_CACHE", "JAXMLP_COMPILE_CACHE_DIR")}
    full_env.update({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(REPO),
                     "JAX_PLATFORMS": "cpu", **env})
    out = subprocess.run([sys.executable, "-c", PROBE], env=full_env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_from_the_cache(tmp_path: Path) -> None:
    first = _probe(tmp_path)
    assert first["folder"] == str(tmp_path / "xdg" / "jaxmlp" / "xla")
    assert first["misses"] >= 1 and first["hits"] == 0
    assert any(Path(first["folder"]).iterdir())
    second = _probe(tmp_path)
    # Every program the first process compiled is loaded, none recompiled: on this CPU the
    # entries are accepted on reload.
    assert second["hits"] >= 1 and second["misses"] == 0
    assert second["hits"] == second["requests"]


def test_opt_out(tmp_path: Path) -> None:
    result = _probe(tmp_path, JAXMLP_NO_COMPILE_CACHE="1")
    assert result["folder"] is None and result["requests"] == 0
    assert not (tmp_path / "xdg" / "jaxmlp" / "xla").exists()


def test_explicit_folder(tmp_path: Path) -> None:
    result = _probe(tmp_path, JAXMLP_COMPILE_CACHE_DIR=str(tmp_path / "elsewhere"))
    assert result["folder"] == str(tmp_path / "elsewhere")
    assert any((tmp_path / "elsewhere").iterdir())
    assert not (tmp_path / "xdg" / "jaxmlp" / "xla").exists()


AGE = """
import time
time.sleep(1.0)
from jaxmlp import compilation
print(compilation.process_age_seconds())
"""


def test_process_age_counts_from_the_process_start() -> None:
    """A process that waits 1 s before asking is at least 1 s old (less the 0.01 s ticks of
    /proc's clocks); a parser that read the wrong field of /proc/self/stat, or gave up, would
    say otherwise. The upper bound only excludes nonsense (a start-up on a loaded machine can
    take many seconds)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("process_age_seconds reads /proc, which only Linux has")
    out = subprocess.run([sys.executable, "-c", AGE], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    age = float(out.stdout.strip().splitlines()[-1])
    assert 0.98 <= age < 120


TUNE = """
import json, os
from jaxmlp import compilation
added = compilation.tune_xla_cpu()
import jax.numpy as jnp
jnp.ones(3).block_until_ready()  # XLA is initialised from here on: a late call adds nothing
print(json.dumps({"added": added, "flags": os.environ.get("XLA_FLAGS", ""),
                  "late": compilation.tune_xla_cpu()}))
"""


def _tune(**env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("XLA_FLAGS", "JAXMLP_NO_XLA_FLAGS")}
    full_env.update({"PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", **env})
    out = subprocess.run([sys.executable, "-c", TUNE], env=full_env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_xla_cpu_flags_added_before_xla_starts() -> None:
    from jaxmlp import compilation

    result = _tune()
    assert result["added"] == list(compilation.XLA_CPU_FLAGS)
    assert result["flags"].split() == list(compilation.XLA_CPU_FLAGS)
    assert result["late"] == []


def test_xla_cpu_flags_respect_the_user() -> None:
    assert _tune(JAXMLP_NO_XLA_FLAGS="1") == {"added": [], "flags": "", "late": []}
    mine = "--xla_cpu_copy_insertion_use_region_analysis=false"
    result = _tune(XLA_FLAGS=mine)
    assert result["added"] == [] and result["flags"] == mine


def test_the_cpu_is_described_by_its_model_and_vector_extensions() -> None:
    """Every quoted figure names its CPU: the cores this process may use, the model, and the
    widest vector extension the flags show (what XLA:CPU's kernels depend on)."""
    from jaxmlp import compilation

    described = compilation.describe_cpu()
    assert described == (f"{compilation.cpu_cores()}-core {compilation.cpu_model()} "
                         f"({compilation.vector_extensions()})")
    info = Path("/proc/cpuinfo")
    if info.exists():  # Linux: the flags line decides
        line = next(line for line in info.read_text().splitlines() if line.startswith("flags"))
        flags = set(line.split(":", 1)[1].split())
        assert compilation.vector_extensions() == (
            "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
        assert compilation.cpu_model() in info.read_text()
