"""Shared fixtures.

Tests that need real data find it as jaxmlp does: `../shared/data` where it exists (this
project's own workspace), then `$JAXMLP_DATA_DIR`, the user cache (`~/.cache/jaxmlp`, where
`python -m jaxmlp.train` puts its download) and Debian's `/usr/share/datasets`. Tests that need
only some real digits use the sample committed in `tests/data/mnist-sample`. Locally a missing
data set skips those tests, and the run's last lines say how to fetch it; in CI (`CI=true`) it
is a failure, so a broken checkout can never pass by skipping.

The run compiles with faster XLA:CPU flags (`TEST_XLA_FLAGS`) and one compilation cache; the
tests marked `xla_defaults` run under the user's flags instead (test_at_xla_defaults.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jax
import pytest

from jaxmlp import compilation

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "tests" / "data" / "mnist-sample"
SYSTEM_DATA = Path("/usr/share/datasets")

TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                  "--xla_cpu_copy_insertion_use_region_analysis=true")


def _known_to_xla(flags: tuple[str, ...]) -> tuple[str, ...]:
    """`flags` if this jaxlib's XLA knows them all, else none: XLA aborts a process on a flag
    it does not know, and older jaxlibs lack some of these (one probe process, ~1 s)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"},
        capture_output=True, timeout=300)
    return flags if probe.returncode == 0 else ()


# This file runs first in pytest's own process, then again in each xdist worker, which inherits
# the environment set here; _RUN marks the variables below as already set for this run.
_RUN = "JAXMLP_TEST_RUN"
_OWNS_RUN = _RUN not in os.environ  # this process made the run's folder, and removes it
if _OWNS_RUN:
    os.environ[_RUN] = tempfile.mkdtemp(prefix="jaxmlp-test-run-")
    # Read before the lines below replace it: the cache where the user's own download sits.
    os.environ["JAXMLP_TEST_USER_CACHE"] = str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxmlp")
    # One compilation cache for the whole run, shared by the workers and every process they
    # start: the same small network compiled by two tests (or by a test and the command it
    # runs) is compiled once. Only derived files; it goes with the run's folder.
    os.environ["JAXMLP_COMPILE_CACHE_DIR"] = os.path.join(os.environ[_RUN], "xla")
    # XLA:CPU compiles the suite's hundreds of small programs three times faster at
    # optimisation level 0 with its older (LLVM IR) fusion emitters: compilation is most of the
    # suite's time. They compute the same functions; what differs is the machine code's speed
    # and, in the last bits, rounding (a comparison is always between programs run here, under
    # the same flags). What users see is checked under their own flags: the tests marked
    # `xla_defaults` run in a process with `USER_XLA_FLAGS` (test_at_xla_defaults.py), and
    # speed is measured at XLA's defaults in benchmarks/. Region analysis is the flag jaxmlp
    # itself adds (compilation.XLA_CPU_FLAGS), which a set $XLA_FLAGS would otherwise displace.
    os.environ["JAXMLP_TEST_USER_XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("JAXMLP_TEST_AT_XLA_DEFAULTS") != "1":
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                            *_known_to_xla(TEST_XLA_FLAGS)]).strip()
USER_CACHE = Path(os.environ["JAXMLP_TEST_USER_CACHE"])
USER_XLA_FLAGS = os.environ["JAXMLP_TEST_USER_XLA_FLAGS"]  # $XLA_FLAGS as the run found it
# "1": this run keeps the user's XLA flags, and runs the tests marked `xla_defaults` itself
# (test_at_xla_defaults.py starts such a run for them; the suite's own run passes them over).
AT_XLA_DEFAULTS = os.environ.get("JAXMLP_TEST_AT_XLA_DEFAULTS") == "1"

# Tests never write into the user's cache (~/.cache/jaxmlp: downloads, decoded arrays, compiled
# programs): each test process gets a fresh one, inherited by the subprocesses it starts.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cache-", dir=os.environ[_RUN])
compilation.enable_compilation_cache()  # in the test processes too, as every command does

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MISSING = "data set not found:"  # starts every skip reason for missing data (counted below)
FETCH = {  # the command that gets each missing data set
    "MNIST": "python -m jaxmlp.data fetch mnist",
    "Fashion-MNIST": "python -m jaxmlp.data fetch fashion_mnist",
    "a folder holding mnist/ and fashion-mnist/": "python -m jaxmlp.data fetch mnist && "
                                                  "python -m jaxmlp.data fetch fashion_mnist",
    "tfds-prepared MNIST": "pip install -e '.[tfds]' && python -c \"import tensorflow_datasets "
                           "as t; t.builder('mnist').download_and_prepare()\"",
}


def _roots() -> list[Path]:
    """Folders that may hold `mnist/` and `fashion-mnist/`, in the order they are preferred."""
    env = os.environ.get("JAXMLP_DATA_DIR")
    return [SHARED_DATA, *([Path(env)] if env else []), USER_CACHE, SYSTEM_DATA]


def _find(what: str, candidates: list[Path]) -> Path:
    """The first candidate folder holding the four IDX files; else a failure (CI) or a skip."""
    for folder in candidates:
        if all((folder / f"{stem}.gz").is_file() or (folder / stem).is_file()
               for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
            return folder
    return _missing(what, candidates)


def _missing(what: str, looked: list[Path]) -> Path:
    message = f"{MISSING} {what} (looked in {', '.join(map(str, looked))})"
    if IN_CI:
        pytest.fail(f"{message}; in CI missing data is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """A folder holding `mnist/` and `fashion-mnist/` (for the parent-folder lookup)."""
    for root in _roots():
        if (root / "mnist").is_dir() and (root / "fashion-mnist").is_dir():
            return root
    return _missing("a folder holding mnist/ and fashion-mnist/", _roots())


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Full MNIST: the four IDX files."""
    return _find("MNIST", [root / "mnist" for root in _roots()])


@pytest.fixture(scope="session")
def mnist_sample_dir() -> Path:
    """1,000 train and 500 test images of real MNIST, committed (see its README.md)."""
    return _find("the committed MNIST sample", [SAMPLE])


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return _find("Fashion-MNIST", [root / sub for root in _roots()
                                   for sub in ("fashion-mnist", "fashion_mnist")])


@pytest.fixture(scope="session")
def tfds_dir() -> Path:
    env = os.environ.get("TFDS_DATA_DIR")
    candidates = [*([Path(env)] if env else []), SHARED_DATA / "tfds",
                  Path.home() / "tensorflow_datasets"]
    for root in candidates:
        if (root / "mnist").is_dir():
            return root
    return _missing("tfds-prepared MNIST", candidates)


def _event_names(event: str) -> Iterator[list[str]]:
    """The names of the functions for which JAX reports `event` while the fixture lives."""
    names: list[str] = []

    def listener(name: str, duration: float, **kw: object) -> None:
        if name == event:
            names.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture()
def compiled() -> Iterator[list[str]]:
    """The functions XLA compiles during the test (one loaded from the persistent compilation
    cache is not among them)."""
    yield from _event_names("/jax/core/compile/backend_compile_duration")


@pytest.fixture()
def lowered() -> Iterator[list[str]]:
    """The functions JAX lowers to a program during the test, whether or not the compilation
    cache then holds it, so the count does not depend on which tests ran before."""
    yield from _event_names("/jax/core/compile/jaxpr_to_mlir_module_duration")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "xla_defaults: the claim is about what users run (a README example's "
        "outcome, two different programs giving bitwise the same numbers): run under the "
        "user's XLA flags, by test_at_xla_defaults.py, not under the suite's faster ones")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the fast flags, the `xla_defaults` tests are passed over (test_at_xla_defaults.py
    runs them); at XLA's defaults they run here, and the test that would start them is idle."""
    away = (lambda item: item.path.name == "test_at_xla_defaults.py") if AT_XLA_DEFAULTS else (
        lambda item: item.get_closest_marker("xla_defaults") is not None)
    deselected = [item for item in items if away(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not away(item)]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWNS_RUN:
        shutil.rmtree(os.environ[_RUN], ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say, last, how many tests were skipped for want of data and how to get it."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(MISSING):
            what = reason.removeprefix(MISSING).split(" (looked in", 1)[0].strip()
            counts[what] = counts.get(what, 0) + 1
    for what, count in counts.items():
        fetch = FETCH.get(what, "")
        terminalreporter.write_line(
            f"{count} tests skipped: {what} not found. To run them: {fetch}" if fetch
            else f"{count} tests skipped: {what} not found.")
