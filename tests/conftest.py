"""Shared fixtures.

Tests that need real data use `../shared/data` (or `JAXMLP_DATA_DIR`). Locally a missing data set
skips those tests; in CI (`CI=true`) it is a failure, so a broken checkout can never pass by
skipping.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never write into the user's cache (~/.cache/jaxmlp: downloads, decoded arrays, compiled
# programs): each test process gets a fresh one, inherited by the subprocesses it starts.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxmlp-test-cache-")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; in CI missing data is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding `mnist/`, `fashion-mnist/` and `tfds/`."""
    root = Path(os.environ.get("JAXMLP_DATA_DIR", SHARED_DATA))
    return _require(root, "shared data folder")


@pytest.fixture(scope="session")
def mnist_dir(shared_data_dir: Path) -> Path:
    return _require(shared_data_dir / "mnist" / "train-images-idx3-ubyte.gz", "MNIST").parent


@pytest.fixture(scope="session")
def fashion_dir(shared_data_dir: Path) -> Path:
    return _require(
        shared_data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz", "Fashion-MNIST"
    ).parent


@pytest.fixture(scope="session")
def tfds_dir(shared_data_dir: Path) -> Path:
    root = Path(os.environ.get("TFDS_DATA_DIR", shared_data_dir / "tfds"))
    return _require(root / "mnist", "tfds-prepared MNIST").parent
