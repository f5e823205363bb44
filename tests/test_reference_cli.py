"""`python -m jaxmlp.reference`: the command's files, folders, limits and messages. Bad input is
one line on stderr naming the problem and the fix, exit 2, and nothing of the user's replaced or
half-written."""

from __future__ import annotations

import errno
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import _learner as ln
import numpy as np
import pytest

from jaxmlp.reference import all_names, compare, image_inputs
from jaxmlp.reference.case import (
    MAX_CLASSES,
    MAX_EXAMPLES,
    MAX_HIDDEN_LAYERS,
    MAX_WIDTH,
    CaseSpec,
)
from jaxmlp.reference.cli import main

Values = dict[str, np.ndarray]
CASE_FILES = ["README.md", "case.json", "case.npz", "settings.json"]


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command, whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_case(folder: Path, capsys: pytest.CaptureFixture, **settings: Any) -> Values:
    argv = ["write", str(folder)]
    for name, value in settings.items():
        argv += ["--" + name.replace("_", "-"), *(str(v) for v in np.atleast_1d(value))]
    code, _out, err = run(argv, capsys)
    assert code == 0, err
    return load(folder)


def load(folder: Path) -> Values:
    with np.load(folder / "case.npz") as loaded:
        return {k: loaded[k] for k in loaded.files}


def spec_of(folder: Path) -> CaseSpec:
    settings = json.loads((folder / "settings.json").read_text())
    settings.pop("data")
    return CaseSpec.from_settings(settings)


def save_json(path: Path, values: Values) -> Path:
    path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in values.items()}))
    return path


def one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2 and out == "", (code, out)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def default_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("default")
    assert main(["write", str(folder)]) == 0
    return folder


# --- check: files it cannot use -------------------------------------------------------------------


BAD_FILES = {
    "missing.json": (None, "cannot read"),
    "garbage.json": (b"{not json", "not valid JSON"),
    "list.json": (b"[1, 2]", "not an object"),
    "empty.json": (b"{}", "no quantities"),
    "unknown.json": (b'{"layer2.z": [[1, 2]]}', "'layer2.z'"),
    "typo.json": (b'{"grad.layer1.W": [[1]]}', "did you mean 'grad.layer1.w'"),
    "ragged.json": (b'{"o": [[1, 2], [3]]}', "'o' is not an array of numbers"),
    "shape.json": (b'{"loss": [1, 2]}', "'loss' has shape (2,)"),
    "text.npz": (b"hello", "not a readable .npz"),
    "mine.txt": (b"{}", "must end in .json"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_it_cannot_use_gets_one_line_and_exit_2(
        name: str, default_case: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content, says = BAD_FILES[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run(["check", str(default_case), str(path)], capsys)
    one_line_error(code, out, err)
    assert says in err


def test_a_folder_without_a_case_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    code, out, err = run(["check", str(tmp_path), str(tmp_path / "mine.json")], capsys)
    one_line_error(code, out, err)
    assert "not a case folder" in err and "write" in err


def test_a_subset_of_keys_is_checked_and_the_rest_reported_as_not_given(
        default_case: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case, spec = load(default_case), spec_of(default_case)
    mine = ln.Learner()(case, spec.config)
    code, out, _ = run(["check", str(default_case), str(save_json(tmp_path / "few.json", {
        k: mine[k] for k in ("o", "loss", "grad.layer1.w")}))], capsys)
    assert code == 0 and f"3 of {len(case)} quantities" in out
    np.savez(tmp_path / "few.npz", **{"grad.o": mine["grad.o"] * 1.01})
    code, out, _ = run(["check", str(default_case), str(tmp_path / "few.npz")], capsys)
    assert code == 1 and "FIRST DIFFERENCE grad.o" in out and "1.01 x" in out


def test_check_prints_the_mistake_and_its_fix(default_case: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    case, spec = load(default_case), spec_of(default_case)
    mine = ln.Learner({"d_z": ln.no_activation_derivative})(case, spec.config)
    code, out, _ = run(["check", str(default_case), str(save_json(tmp_path / "m.json", mine))],
                       capsys)
    words = " ".join(out.split())
    assert code == 1 and "FIRST DIFFERENCE grad.layer1.z" in out
    assert "likely mistake: the activation's derivative is missing" in words
    assert "fix: multiply by act'(z)" in words


def test_check_prints_each_cause_of_an_ambiguous_factor(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """2 classes with a class mean: a gradient accumulated twice is 2 x, as is a missing
    1/K. The report lists both, each with its fix, and what tells them apart."""
    folder = tmp_path / "two"
    case = write_case(folder, capsys, classes=2, class_reduction="mean")
    spec = spec_of(folder)
    mine = ln.Learner(passes=2)(case, spec.config)
    path = save_json(tmp_path / "m.json", {k: v for k, v in mine.items()
                                           if k.startswith("grad.layer")})
    code, out, _ = run(["check", str(folder), str(path)], capsys)
    words = " ".join(out.split())
    assert code == 1
    assert "likely mistake: yours is exactly 2 x the case's, which fits 2 mistakes" in words
    assert "- gradients accumulated across passes" in words and "the 1/K = 1/2" in words
    assert words.count("fix: ") == 2 and "to tell them apart: write a case" in words


def test_after_step_loss_is_checked_and_a_stale_one_named(
        default_case: Path, capsys: pytest.CaptureFixture) -> None:
    case, spec = load(default_case), spec_of(default_case)
    assert "after_step.loss" in case
    result = compare(case, {"after_step.loss": case["loss"]}, spec)
    assert result.first.key == "after_step.loss"
    assert [f.name for f in result.findings] == ["loss_before_step"]
    uphill = ln.Learner({"sgd": ln.step_uphill})(case, spec.config)
    result = compare(case, {"after_step.loss": uphill["after_step.loss"]}, spec)
    assert [f.name for f in result.findings] == ["step_uphill"]
    assert float(uphill["after_step.loss"]) > float(case["loss"]) > float(case["after_step.loss"])


# --- write: the files -----------------------------------------------------------------------------


def test_write_gives_json_npz_and_a_readme_whose_snippet_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "case"
    case = write_case(folder, capsys, activation="tanh", output="sum_normalize", error="mse",
                      example_reduction="sum")
    from_json = json.loads((folder / "case.json").read_text())
    assert list(from_json) == list(case) == all_names(2)
    for key, value in case.items():
        assert np.array_equal(np.asarray(from_json[key]), value), key  # every digit kept
    readme = (folder / "README.md").read_text()
    words = " ".join(readme.split())
    for formula in ("w is (in, out)", "z = a_prev @ w + b", "error (5, 3) = (p - t) ** 2",
                    "loss () = example_loss.sum()", "tanh(z) = np.tanh(z)",
                    "s = o.sum(axis=1, keepdims=True)", "grad.p = grad.error * 2 * (p - t)",
                    "grad.layer1.z = grad.layer1.a * tanh'(layer1.z)",
                    "grad.layer1.w = x.T @ grad.layer1.z", "- 0.1 * grad.<name>",
                    "after_step.loss = the loss of the same x and t"):
        assert formula in words, formula
    snippet = readme.split("```python\n")[1].split("```")[0]
    assert len(snippet.splitlines()) <= 30
    monkeypatch.chdir(folder)
    exec(compile(snippet, "README snippet", "exec"), {"print": lambda *a: None})
    code, out, _ = run(["check", ".", "mine.json"], capsys)
    assert code == 0 and "match" in out


def test_the_readme_says_why_these_sizes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The default's factors all differ, and its README says so; a case where two coincide
    says which, and that check then lists both."""
    write_case(tmp_path / "default", capsys)
    words = " ".join((tmp_path / "default" / "README.md").read_text().split())
    assert "## Why 5 examples and 3 classes" in words and "They all differ" in words
    assert "a missing 1/N: 5 x" in words and "gradients accumulated twice: 2 x" in words
    assert "The step lowers the loss from" in words
    write_case(tmp_path / "two", capsys, classes=2, class_reduction="mean")
    words = " ".join((tmp_path / "two" / "README.md").read_text().split())
    assert "## Two mistakes, one factor" in words
    assert "a missing 1/K and gradients accumulated twice both give 2 x" in words


def test_image_inputs_come_from_the_project_loader(mnist_sample_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """--inputs mnist: the first training images as `data.load_data` gives them (from the
    committed MNIST sample: the same first images as full MNIST, quick to read)."""
    case = write_case(tmp_path / "mnist", capsys, inputs="mnist", data_dir=mnist_sample_dir)
    assert case["x"].shape == (5, 784) and case["t"].shape == (5, 10)
    assert 0.0 <= case["x"].min() and case["x"].max() == 1.0
    spec = spec_of(tmp_path / "mnist")
    assert spec.inputs == "mnist" and spec.classes is None
    mine = ln.Learner()(case, spec.config)
    result = compare(case, {k: np.asarray(v, np.float64) for k, v in mine.items()}, spec)
    assert result.ok, result.first
    with pytest.raises(ValueError, match="more than"):
        image_inputs(np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int32), 3)


def test_the_module_runs_as_a_command(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m jaxmlp.reference` (its __main__, run in this process: a new one would
    spend seconds importing JAX)."""
    monkeypatch.setattr(sys, "argv", ["jaxmlp.reference", "write", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("jaxmlp.reference", run_name="__main__")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "4-3-3 net, relu" in out and "after the step" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == CASE_FILES


def test_the_help_says_where_the_case_flags_and_limits_are(capsys: pytest.CaptureFixture
                                                           ) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "python -m jaxmlp.reference write --help" in top and "--classes" in top
    with pytest.raises(SystemExit):
        main(["write", "--help"])
    words = " ".join(capsys.readouterr().out.split())
    for limit in (f"at most {MAX_HIDDEN_LAYERS} layers of at most {MAX_WIDTH} units",
                  f"1 to {MAX_EXAMPLES}", f"2 to {MAX_CLASSES}"):
        assert limit in words, limit


# --- write: what it refuses, and the folder it writes into ----------------------------------------


REFUSED = {
    "too many layers": (["--hidden", *["2"] * (MAX_HIDDEN_LAYERS + 1)],
                        f"--hidden gives 5 hidden layers, at most {MAX_HIDDEN_LAYERS} fit"),
    "too wide": (["--hidden", "100000", "100000"], "--hidden (every width) must be a whole "
                                                     f"number from 1 to {MAX_WIDTH}"),
    "zero width": (["--hidden", "0"], "--hidden (every width)"),
    "too many examples": (["--examples", "100000"], f"--examples must be a whole number from "
                                                    f"1 to {MAX_EXAMPLES}"),
    "no examples": (["--examples", "0"], "--examples"),
    "examples not a number": (["--examples", "five"], "--examples"),
    "one class": (["--classes", "1"], f"--classes must be a whole number from 2 to "
                                      f"{MAX_CLASSES}"),
    "too many classes": (["--classes", "11"], "--classes"),
    "classes for mnist": (["--inputs", "mnist", "--classes", "3"], "--classes sets the toy"),
    "unknown inputs": (["--inputs", "cifar"], "--inputs 'cifar' is not known"),
    "integer targets alone": (["--targets", "integer"], "--targets integer"),
    "negative learning rate": (["--learning-rate", "-1"], "--learning-rate must be"),
    "unknown activation": (["--activation", "relux"], "did you mean relu"),
    "seed too large": (["--seed", str(2**40)], "--seed"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_write_refuses_bad_or_oversized_settings_in_one_line_and_writes_nothing(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flags, says = REFUSED[name]
    folder = tmp_path / "never"
    code, out, err = run(["write", str(folder), *flags], capsys)
    one_line_error(code, out, err)
    assert says in err, err
    assert not folder.exists()


def test_the_largest_case_within_the_limits_is_written(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    case = write_case(tmp_path / "big", capsys, hidden=[MAX_WIDTH] * MAX_HIDDEN_LAYERS,
                      examples=MAX_EXAMPLES, classes=MAX_CLASSES)
    assert case["x"].shape == (MAX_EXAMPLES, 4) and case["t"].shape == (MAX_EXAMPLES, MAX_CLASSES)
    assert len([k for k in case if k.endswith(".w") and k.startswith("layer")]) == 5


# What a folder can hold before `write`: (files made there, refused, the line names)
FOLDERS = {
    "a file of the user's": ({"notes.txt": "mine"}, True, "notes.txt"),
    "the user's metrics beside a case": ({"case.npz": "", "metrics.jsonl": "{}"}, True,
                                         "metrics.jsonl"),
    "a learner's file in the case": ({"settings.json": "{}", "mine.json": "{}"}, True,
                                     "mine.json"),
    "a folder inside": ({"sub/": ""}, True, "sub"),
    "an empty folder": ({}, False, ""),
    "an interrupted earlier case": ({"case.npz": "", ".case.json.x1y2.tmp": ""}, False, ""),
}


@pytest.mark.parametrize("name", FOLDERS)
def test_write_refuses_a_folder_holding_anything_but_an_earlier_case(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    made, refused, named = FOLDERS[name]
    folder = tmp_path / "dir"
    folder.mkdir()
    for path, text in made.items():
        if path.endswith("/"):
            (folder / path).mkdir()
        else:
            (folder / path).write_text(text)
    before = {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}
    code, out, err = run(["write", str(folder)], capsys)
    if refused:
        one_line_error(code, out, err)
        assert named in err and "not a case's" in err
        assert {p.name: p.read_bytes() if p.is_file() else None
                for p in folder.iterdir()} == before  # nothing replaced
    else:
        assert code == 0, err
        assert ("replacing the earlier case" in out) == bool(made)
        assert set(CASE_FILES) <= {p.name for p in folder.iterdir()}


def test_write_says_when_it_replaces_an_earlier_case(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "case"
    first = write_case(folder, capsys)
    code, out, _ = run(["write", str(folder), "--examples", "4"], capsys)
    assert code == 0 and "replacing the earlier case" in out.splitlines()[0]
    assert load(folder)["x"].shape[0] == 4 != first["x"].shape[0]
    assert spec_of(folder).examples == 4
    code, out, _err = run(["write", str(tmp_path / "new")], capsys)
    assert code == 0 and "replacing" not in out


def test_a_write_that_fails_leaves_the_earlier_case_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while the new case is written (the third file's flush fails): one line,
    the earlier case as it was, no stray temporary files."""
    folder = tmp_path / "case"
    write_case(folder, capsys)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, out, err = run(["write", str(folder), "--examples", "4"], capsys)
    one_line_error(code, out, err)
    assert "No space left on device" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_write_refuses_a_file_where_the_folder_goes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "case"
    path.write_text("mine")
    code, out, err = run(["write", str(path)], capsys)
    one_line_error(code, out, err)
    assert "not a folder" in err and path.read_text() == "mine"


# --- older cases ----------------------------------------------------------------------------------


def test_an_older_case_still_loads_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture
                                              ) -> None:
    """A case written before "classes" and after_step.loss: its settings.json has no
    "classes" (its toy inputs had 2) and its case.npz no after_step.loss."""
    folder = tmp_path / "old"
    case = write_case(folder, capsys, classes=2)
    settings = json.loads((folder / "settings.json").read_text())
    del settings["classes"]
    (folder / "settings.json").write_text(json.dumps(settings))
    old = {k: v for k, v in case.items() if k != "after_step.loss"}
    np.savez(folder / "case.npz", **old)
    spec = spec_of(folder)
    assert spec.classes == 2
    mine = ln.Learner()(case, spec.config)
    code, out, err = run(["check", str(folder), str(save_json(tmp_path / "m.json", mine))],
                         capsys)
    assert code == 0, out + err
    assert f"all {len(case)} quantities you gave match" in out  # after_step.loss included


@pytest.mark.parametrize(("edit", "says"), [
    (lambda s: {**s, "hidden": [3, "x"]}, "cannot have (--hidden"),
    (lambda s: {**s, "examples": 1000}, "cannot have (--examples"),
    (lambda s: {**s, "surprise": 1}, "damaged (unknown settings: surprise"),
    (lambda s: {k: v for k, v in s.items() if k != "error"}, "damaged (missing settings: error"),
    (lambda s: {k: v for k, v in s.items() if k != "data"}, "damaged (no 'data'"),
    (lambda s: [1, 2], "damaged (a JSON list, not an object"),
])
def test_a_damaged_settings_file_is_refused_in_one_line(
        edit: Any, says: str, tmp_path: Path, default_case: Path,
        capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "damaged"
    write_case(folder, capsys)
    settings = json.loads((folder / "settings.json").read_text())
    (folder / "settings.json").write_text(json.dumps(edit(settings)))
    code, out, err = run(["check", str(folder), str(folder / "case.json")], capsys)
    one_line_error(code, out, err)
    assert "settings.json" in err and says in err and "write the case again" in err
