"""A run's programs compiled ahead of time, from the data's expected shapes, while the data loads
(`jaxmlp.programs`): the shapes are right, the programs compiled in the background are the ones
that train, data of other shapes gets programs of its own, and a failure leaves no thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from jaxmlp import data, programs, runner
from jaxmlp.config import TOY_DATASETS, Config


def _loaded_shape(ds: data.Dataset) -> tuple:
    return (len(ds.y_train), len(ds.y_test), int(np.prod(ds.x_train.shape[1:])),
            ds.num_classes, ds.x_train.dtype)


@pytest.mark.parametrize("name", ["mnist", "digits", *TOY_DATASETS])
def test_expected_shapes_are_what_the_loaders_give(name: str, shared_data_dir: Path) -> None:
    folder = shared_data_dir if name == "mnist" else None
    ds = data.load_dataset(name, data_dir=folder, progress=False)
    assert tuple(data.expected_shape(name)) == _loaded_shape(ds)


def test_device_shapes_take_the_training_subset() -> None:
    shape = data.expected_shape("mnist")
    dev = programs.device_shapes(Config(train_subset=512), shape)
    assert dev.x_train.shape == (512, 784) and dev.y_train.shape == (512,)
    assert dev.x_test.shape == (10_000, 784) and str(dev.x_train.dtype) == "uint8"
    # A subset larger than the set is the set (check_against_data refuses it, later).
    assert programs.device_shapes(Config(train_subset=10**6), shape).x_train.shape[0] == 60_000


def _quiet(**kw) -> dict:
    return {"progress": False, "log": lambda _: None, **kw}


def test_programs_compiled_alongside_the_data_are_the_ones_that_train(
        tmp_path: Path, lowered: list[str]) -> None:
    """A toy set's shapes are known before it is generated: each program is built once, in the
    background, and trains (with --diagnose: the probe too)."""
    config = Config(dataset="spirals", hidden=(7, 5), epochs=2, batch_size=50)
    summary = runner.run(config, tmp_path / "run", diagnose=True, **_quiet())
    epochs = [n for n in lowered if n == "jit(epoch)"] + [n for n in lowered
                                                           if n == "jit(diagnosed)"]
    assert len(epochs) == 1, lowered
    assert summary["epochs_done"] == 2 and summary["compile_seconds"] > 0
    assert summary["startup_seconds"] >= summary["data_seconds"]


def test_data_of_other_shapes_gets_programs_of_its_own(
        tmp_path: Path, mnist_sample_dir: Path, lowered: list[str]) -> None:
    """The committed MNIST sample has 1,000 training and 500 test images where MNIST has 60,000
    and 10,000: the programs compiled for MNIST's shapes are set aside, and the run trains and
    evaluates on programs of the sample's own shapes (its accuracy counts 500 test images)."""
    config = Config(dataset="mnist", data_dir=str(mnist_sample_dir), hidden=(8,), epochs=1,
                    batch_size=100)
    summary = runner.run(config, tmp_path / "a", **_quiet())
    assert lowered.count("jit(epoch)") == 2  # MNIST's shapes, then the sample's
    assert summary["epochs_done"] == 1
    correct = summary["test_accuracy"] * 500
    assert abs(correct - round(correct)) < 1e-3 and 0 < correct < 500


def test_a_failure_while_the_data_loads_leaves_no_thread(tmp_path: Path) -> None:
    """A data folder that does not exist fails the run while its programs compile: the error
    comes out, the compile thread is waited for, nothing of the run folder is written."""
    config = Config(dataset="mnist", data_dir=str(tmp_path / "nowhere"), hidden=(8,))
    with pytest.raises(data.DataError):
        runner.run(config, tmp_path / "out", **_quiet())
    assert not any(t.name.startswith("jaxmlp-compile") for t in threading.enumerate())
    assert not (tmp_path / "out").exists()
