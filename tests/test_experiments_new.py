"""experiments/paper_table.py and experiments/sweep_pixels.py run end to end on their smoke
budgets, and the library pieces they stand on: the validation split and the pixel permutation.

As in test_experiments.py, the scripts run in this process (`--smoke`, a hidden budget smaller
than `--quick`) so that JAX starts once; what is checked is the sweep outputs, each script's own
extras, and that summary.md ends with generated findings, each a sentence with numbers in it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from _experiments import assert_findings_follow_numbers, findings, load, run

from jaxmlp import data, loop, sweep
from jaxmlp.config import Config, ConfigError, validate
from jaxmlp.data.preprocess import permute_pixels, pixel_permutation


def record(out: Path) -> dict:
    for name in ("results.csv", "summary.md", "sweep.json"):
        assert (out / name).is_file(), f"{out / name} missing"
    rec = json.loads((out / "sweep.json").read_text())
    assert rec["status"] == "complete"
    return rec


@pytest.fixture(scope="module")
def data_dir(shared_data_dir: Path, mnist_dir: Path) -> Path:
    return shared_data_dir


# --- the experiments ---------------------------------------------------------------------------


def test_paper_table(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "table"
    module = run("paper_table", out, data_dir)
    rows = module.rows_of(module.BUDGETS["smoke"])
    rec = record(out)
    assert rec["num_variants"] == 2 * len(rows)  # each row: paper recipe, today's defaults
    val = record(module.validation_folder(out))
    assert val["num_variants"] == len(rows) * module.BUDGETS["smoke"].rates
    # The validation sweep evaluated on training images: the split, not the test set.
    assert "validation split" in next(iter(val["datasets"].values()))["source"]
    text = (out / "summary.md").read_text()
    assert "## The paper table" in text and "## Learning rates chosen on the validation" in text
    for row in rows:
        assert f"{row.paper_error:g}%" in text
    said = " ".join(findings(out))
    assert "chosen on the validation split" in said and "nothing was chosen on the test" in said
    assert re.search(r"\b(met|not met), \d+\.\d\d points", said)
    # The method stands whatever the numbers; the tally over the smoke budget's one row of
    # 500 images is far from every published figure, so no change of its numbers moves it.
    assert_findings_follow_numbers("paper_table", out, data_dir, (
        "Each paper recipe's learning rate was chosen", "Over the 1 rows"))


def test_sweep_pixels(data_dir: Path, tmp_path: Path) -> None:
    module = run("sweep_pixels", tmp_path, data_dir)
    rec = record(tmp_path)
    perms = module.BUDGETS["smoke"].permutations
    assert rec["num_variants"] == 1 + len(perms)
    # Each permutation is its own data, so its own group; the program is the same for all
    # (the pixel order only chooses the data), compiled once.
    assert rec["num_groups"] == 1 + len(perms)
    assert rec["programs_compiled"] == 1, rec["programs"]
    assert (tmp_path / module.PICTURE).read_bytes()[:4] == b"\x89PNG"
    said = " ".join(findings(tmp_path))
    assert "convolutional" in said and "correlation with its right-hand neighbour" in said
    # Each permutation really trained on permuted pixels (a sweep that placed one copy of the
    # data for every group would train the same runs twice).
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    by_variant: dict[str, list[str]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r["train_loss"])
    assert by_variant[module.IN_PLACE] != by_variant[module.permuted(perms[0])]
    # The picture's correlations come from the images, the rest is what the design implies.
    assert_findings_follow_numbers("sweep_pixels", tmp_path, data_dir, (
        "The picture (", "Why equal is expected", "What this does not show"))


@pytest.mark.parametrize("name,min_seeds", [("paper_table", 3), ("sweep_pixels", 5)])
def test_quick_and_default_budgets_are_real(name: str, min_seeds: int) -> None:
    module = load(name)
    assert set(module.BUDGETS) == {"default", "quick", "smoke"}
    assert module.BUDGETS["default"].seeds >= min_seeds
    assert module.BUDGETS["quick"] != module.BUDGETS["default"]


# --- the validation split ----------------------------------------------------------------------


def test_validation_split_is_training_images_never_trained_on() -> None:
    module = load("paper_table")
    rng = np.random.default_rng(0)
    ds = data.Dataset("mnist", rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
                      np.arange(100, dtype=np.int32) % 10,
                      np.zeros((7, 28, 28), np.uint8), np.zeros(7, np.int32), "test arrays")
    split = module.carve_validation(ds, 30)
    assert len(split.y_train) == 70 and len(split.y_test) == 30
    np.testing.assert_array_equal(split.x_test, ds.x_train[70:])  # the last 30 training images
    np.testing.assert_array_equal(split.x_train, ds.x_train[:70])
    for b in module.BUDGETS.values():  # every budget's training images precede the split
        assert b.train_subset + b.validation <= module.MNIST_TRAIN
    with pytest.raises(ConfigError, match="--validation"):
        module.carve_validation(ds, 100)


def test_validation_flag_is_checked_in_one_line(capsys: pytest.CaptureFixture) -> None:
    module = load("paper_table")
    with pytest.raises(ConfigError, match="--validation 59999"):
        module.main(["--smoke", "--validation", "59999", "--no-progress"])
    with pytest.raises(SystemExit):
        module.split_argv(["--validation", "x"])
    assert "--validation must be a whole number" in capsys.readouterr().err


# --- the pixel permutation ---------------------------------------------------------------------


def test_pixel_permutation_is_one_fixed_bijection() -> None:
    p = pixel_permutation(3, 784)
    np.testing.assert_array_equal(np.sort(p), np.arange(784))
    np.testing.assert_array_equal(p, pixel_permutation(3, 784))  # the seed decides it
    assert not np.array_equal(p, pixel_permutation(4, 784))
    flat = np.arange(2 * 784).reshape(2, 784)
    out = permute_pixels(flat, 3)
    np.testing.assert_array_equal(out[0], flat[0][p])  # every image, the same order
    np.testing.assert_array_equal(out[1], flat[1][p])
    assert permute_pixels(flat, None) is flat  # unset: the array itself, untouched


def test_device_data_permutes_train_and_test_alike(mnist_sample_dir: Path) -> None:
    ds = data.load_dataset("mnist", data_dir=mnist_sample_dir, source="local", progress=False)
    plain_cfg = Config(dataset="mnist", train_subset=100)
    plain = loop.device_data(ds, plain_cfg)
    shuffled = loop.device_data(ds, dataclasses.replace(plain_cfg, pixel_permutation=5))
    p = pixel_permutation(5, 784)
    np.testing.assert_array_equal(np.asarray(shuffled.x_train), np.asarray(plain.x_train)[:, p])
    np.testing.assert_array_equal(np.asarray(shuffled.x_test), np.asarray(plain.x_test)[:, p])
    np.testing.assert_array_equal(np.asarray(shuffled.y_test), np.asarray(plain.y_test))
    # Unset, the data are what they were before the setting existed.
    np.testing.assert_array_equal(np.asarray(plain.x_train), data.flatten(ds.x_train[:100]))
    key = sweep.structural_key
    assert key(dataclasses.replace(plain_cfg, pixel_permutation=5)) != key(plain_cfg)


@pytest.mark.parametrize("value", [-1, 2**32, 1.5, True])
def test_bad_permutation_seeds_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="--pixel-permutation must be a whole number"):
        validate(Config(pixel_permutation=value))
