"""Shared fixtures.

Tests that need real data find it as jaxmlp does: `../shared/data` where it exists (this
project's own workspace), then `$JAXMLP_DATA_DIR`, the user cache (`~/.cache/jaxmlp`, where
`python -m jaxmlp.train` puts its download) and Debian's `/usr/share/datasets`. Tests that need
only some real digits use the sample committed in `tests/data/mnist-sample`. Locally a missing
data set skips those tests, and the run's last lines say how to fetch it; in CI (`CI=true`) it
is a failure, so a broken checkout can never pass by skipping.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "tests" / "data" / "mnist-sample"
# Read before the line below replaces it: the cache where the user's own download sits.
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxmlp"
SYSTEM_DATA = Path("/usr/share/datasets")

# Tests never write into the user's cache (~/.cache/jaxmlp: downloads, decoded arrays, compiled
# programs): each test process gets a fresh one, inherited by the subprocesses it starts.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxmlp-test-cache-")

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
