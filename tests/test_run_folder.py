"""The run folder is the run's alone, settings are checked in the precision they are used in,
readers take what a crash or a hand leaves, and a resumed run says what it does: one table per
kind of bad input (issue 28's kinds), each case through the command a user types.

A refused case is one line on stderr starting "error: ", a non-zero exit, no traceback, and the
folder as it was (every file's bytes, and any file a link points to).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from test_faults import small_filesystem_problem

from jaxmlp import compilation, rundir, runner, sizes
from jaxmlp.config import Config, ConfigError, validate
from jaxmlp.overfit_run import run_overfit
from jaxmlp.plots.cli import main as plots_main
from jaxmlp.sweep.cli import main as sweep_main
from jaxmlp.train import format_summary
from jaxmlp.train import main as train_main

REPO = Path(__file__).resolve().parent.parent


def data(sample: Path) -> list[str]:
    return ["--dataset", "mnist", "--data-dir", str(sample), "--no-progress"]


def small(sample: Path, **settings) -> Config:
    return Config(dataset="mnist", data_dir=str(sample), hidden=(8,), epochs=2, batch_size=100,
                  train_subset=300, **settings)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def refused(command: Callable[[list[str]], int], argv: list[str],
            capsys: pytest.CaptureFixture) -> str:
    """The one error line `command(argv)` ends with (exit 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        command(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, mnist_sample_dir: Path) -> Path:
    """A finished run folder, copied by the tests that change one."""
    out = tmp_path_factory.mktemp("finished") / "run"
    runner.run(small(mnist_sample_dir), out, progress=False, log=lambda s: None)
    return out


def copy_run(finished: Path, to: Path) -> Path:
    to.mkdir()
    for p in finished.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    return to


# --- 1. a setting is checked in the precision it is used in ------------------------------------

# (setting, a value that passes as a float64 and breaks the check as the float32 it becomes)
PRECISION = [
    ("dropout", 0.999999999, "--dropout 0.999999999 is 1.0 in float32"),
    ("input_dropout", 1 - 1e-10, "--input-dropout 0.9999999999 is 1.0 in float32"),
    ("learning_rate", 1e-50, "--learning-rate 1e-50 is 0.0 in float32"),
    ("learning_rate", 1e39, "--learning-rate 1e+39 is inf in float32"),
    ("init_scale", 1e-46, "--init-scale 1e-46 is 0.0 in float32"),
    ("momentum", 1 - 1e-12, "--momentum 0.999999999999 is 1.0 in float32"),
    ("weight_decay", 1e40, "--weight-decay 1e+40 is inf in float32"),
]


@pytest.mark.parametrize(("name", "value", "says"), PRECISION, ids=[p[0] for p in PRECISION])
def test_a_setting_is_checked_as_the_float32_it_becomes(name: str, value: float,
                                                        says: str) -> None:
    with pytest.raises(ConfigError, match="precision training computes in") as e:
        validate(Config(hidden=(8,), **{name: value}))
    assert str(e.value).startswith(says), str(e.value)


def test_the_largest_float32_below_one_is_a_rate_still() -> None:
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))  # 0.99999994
    for name in ("dropout", "input_dropout", "momentum"):
        validate(Config(hidden=(8,), **{name: below_one}))


def test_a_sweep_grid_value_is_checked_as_the_float32_it_becomes(
        tmp_path: Path, mnist_sample_dir: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(sweep_main, [*data(mnist_sample_dir), "--hidden", "8", "--grid",
                               "dropout=0.5,0.999999999", "--out", str(tmp_path / "s")], capsys)
    assert "--dropout 0.999999999 is 1.0 in float32" in err, err
    assert not (tmp_path / "s").exists()


def test_parameters_that_end_non_finite_are_a_divergence(
        tmp_path: Path, mnist_sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever produced them (here: parameters spoiled after training, which no loss saw), a
    run whose final parameters are not finite is diverged: Diverged (exit 3) and a summary that
    says so."""
    train = runner.train_epochs

    def spoiled(*args, **kw):
        state, history = train(*args, **kw)
        params = jax.tree.map(lambda x: x * np.float32("nan"), state.params)
        return state._replace(params=params), history

    monkeypatch.setattr(runner, "train_epochs", spoiled)
    out = tmp_path / "run"
    with pytest.raises(runner.Diverged, match="parameters after epoch 2 hold non-finite"):
        runner.run(small(mnist_sample_dir), out, progress=False, log=lambda s: None)
    summary = json.loads((out / rundir.SUMMARY).read_text())
    assert summary["status"] == rundir.DIVERGED
    assert "parameters after epoch 2 hold non-finite" in summary["message"]
    assert summary["epochs_done"] == 2


# --- 2. a run writes only into a folder that is its own ----------------------------------------


def other_files(root: Path) -> Path:
    folder = root / "mine"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text('{"my": "own"}\n')
    (folder / "summary.json").write_text('{"mine": true}\n')
    return folder


def linked(root: Path, finished: Path) -> Path:
    """A finished run whose metrics.jsonl is a link to a file outside the folder."""
    folder = copy_run(finished, root / "linked")
    outside = root / "outside.jsonl"
    outside.write_text("the user's file, outside the run\n")
    (folder / rundir.METRICS).unlink()
    (folder / rundir.METRICS).symlink_to(outside)
    return folder


def link_only(root: Path) -> Path:
    folder = root / "link-only"
    folder.mkdir()
    (root / "elsewhere.png").write_bytes(b"not ours")
    (folder / "learning_curves.png").symlink_to(root / "elsewhere.png")
    return folder


# (command, argv from (root, finished run, sample), what the error line says)
OWN_FOLDER = [
    ("train into another's files", train_main,
     lambda r, f, s: [*data(s), "--out", str(other_files(r))],
     "holds files that are not a jaxmlp run's (metrics.jsonl, summary.json)"),
    ("overfit into another's files", train_main,
     lambda r, f, s: [*data(s), "--overfit", "10", "--out", str(other_files(r))],
     "holds files that are not a jaxmlp run's (metrics.jsonl, summary.json)"),
    ("resume through a link", train_main,
     lambda r, f, s: ["--resume", str(linked(r, f)), "--no-progress"],
     "holds symbolic links (metrics.jsonl)"),
    ("plots through a link", plots_main, lambda r, f, s: [str(linked(r, f))],
     "holds symbolic links (metrics.jsonl)"),
    ("train into a folder with a link", train_main,
     lambda r, f, s: [*data(s), "--out", str(link_only(r))],
     "holds symbolic links (learning_curves.png)"),
    ("sweep into a folder with a link", sweep_main,
     lambda r, f, s: [*data(s), "--hidden", "8", "--grid", "learning_rate=0.1", "--out",
                      str(link_only(r))], "holds symbolic links (learning_curves.png)"),
    ("train into /proc/1", train_main, lambda r, f, s: [*data(s), "--out", "/proc/1"],
     "--out /proc/1 cannot be written into"),
    ("train into /sys/kernel", train_main, lambda r, f, s: [*data(s), "--out", "/sys/kernel"],
     "--out /sys/kernel cannot be written into"),
    ("sweep into /proc/1", sweep_main,
     lambda r, f, s: [*data(s), "--grid", "learning_rate=0.1", "--out", "/proc/1"],
     "--out /proc/1 cannot be written into"),
    ("overfit into /proc/1", train_main,
     lambda r, f, s: [*data(s), "--overfit", "10", "--out", "/proc/1"],
     "--out /proc/1 cannot be written into"),
]


@pytest.mark.parametrize("case", OWN_FOLDER, ids=[c[0] for c in OWN_FOLDER])
def test_a_run_writes_only_into_a_folder_of_its_own(case, tmp_path: Path, finished: Path,
                                                    mnist_sample_dir: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    _, command, make_argv, says = case
    argv = make_argv(tmp_path, finished, mnist_sample_dir)
    before = snapshot(tmp_path)
    err = refused(command, argv, capsys)
    assert says in err, err
    assert snapshot(tmp_path) == before  # nothing there, nor outside through a link, changed


def test_a_read_only_folder_is_one_line_for_every_command(tmp_path: Path, finished: Path,
                                                          mnist_sample_dir: Path) -> None:
    """A folder on a file system mounted read-only (tests run as root, whom permissions do not
    stop): a new run, a resumed one and the plots each say so in one line, exit 2."""
    problem = small_filesystem_problem()
    if problem:
        pytest.skip(problem)
    run, empty = copy_run(finished, tmp_path / "run"), tmp_path / "empty"
    empty.mkdir()
    before = snapshot(tmp_path)
    commands = {
        "train": ["-m", "jaxmlp.train", *data(mnist_sample_dir), "--out", str(empty)],
        "resume": ["-m", "jaxmlp.train", "--resume", str(run)],
        "plots": ["-m", "jaxmlp.plots", str(run)],
    }
    script = [f"mount --bind {tmp_path} {tmp_path}",
              f"mount -o remount,bind,ro {tmp_path}"]
    for name, args in commands.items():
        script.append(f"cd {REPO} && {sys.executable} {' '.join(args)} > /dev/null "
                      f"2> {tmp_path.parent / (tmp_path.name + name)}.err; "
                      f"echo $? > {tmp_path.parent / (tmp_path.name + name)}.code")
    subprocess.run(["unshare", "-rm", "bash", "-c", "\n".join(script)], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    for name, folder, flag in (("train", empty, "--out"), ("resume", run, "--resume"),
                               ("plots", run, "RUN_DIR")):
        err = (tmp_path.parent / f"{tmp_path.name}{name}.err").read_text()
        code = int((tmp_path.parent / f"{tmp_path.name}{name}.code").read_text())
        assert code == 2 and err.count("\n") == 1, (name, code, err)
        assert err == (f"error: {flag} {folder} cannot be written into (Read-only file "
                       "system); choose a folder you can write to\n"), err
    assert snapshot(tmp_path) == before


def test_every_file_of_a_run_gets_the_mode_the_umask_gives(tmp_path: Path,
                                                           mnist_sample_dir: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "jaxmlp.train", *data(mnist_sample_dir), "--hidden", "8",
         "--epochs", "1", "--diagnose", "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        umask=0o027, timeout=300)
    assert done.returncode == 0, done.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes) >= {rundir.CONFIG_JSON, rundir.METRICS, rundir.CHECKPOINT,
                          rundir.DIAGNOSTICS, rundir.SUMMARY}
    assert set(modes.values()) == {0o640}, modes


# --- 3. readers take what a crash or a hand leaves ---------------------------------------------

ROW = {"epoch": 1, "train_loss": 1.0, "epoch_seconds": 0.1, "step_loss": [1.0],
       "train_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.5}

# (what the file holds after the finished run's rows, refused with, or None: read with a warning)
DAMAGE = [
    ("a cut last line", '{"epoch": 3, "train_lo', None),
    ("a row without its epoch", json.dumps({k: v for k, v in ROW.items() if k != "epoch"})
     + "\n", "line 3 has no 'epoch'"),
    ("a finished epoch without test_accuracy",
     json.dumps({k: v for k, v in ROW.items() if k != "test_accuracy"}) + "\n",
     "line 3 has no 'test_accuracy'"),
    ("a line that is not JSON, then a row", "not json\n" + json.dumps(ROW) + "\n",
     "line 3 is not JSON"),
    ("a line that is not an object", "[1, 2]\n", "line 3 is not a JSON object"),
]


@pytest.mark.parametrize(("added", "says"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_every_reader_takes_a_cut_line_and_refuses_a_broken_row(
        added: str, says: str | None, tmp_path: Path, finished: Path,
        capsys: pytest.CaptureFixture) -> None:
    folder = copy_run(finished, tmp_path / "run")
    with open(folder / rundir.METRICS, "a") as f:
        f.write(added)
    if says is None:
        assert [r["epoch"] for r in rundir.RunDir(folder).metrics()] == [1, 2]
        assert (f"warning: {folder / rundir.METRICS}: line 3 is cut short (its write was "
                "interrupted); it is left out") in capsys.readouterr().err
        assert plots_main([str(folder)]) == 0
        assert "line 3 is cut short" in capsys.readouterr().err
        return
    with pytest.raises(rundir.RunDirError) as e:
        rundir.RunDir(folder).metrics()
    assert str(e.value).startswith(f"{folder / rundir.METRICS}: {says}"), str(e.value)
    assert str(e.value).endswith("; fix or remove that line"), str(e.value)
    before = snapshot(folder)
    for command, argv in ((plots_main, [str(folder)]),
                          (train_main, ["--resume", str(folder), "--no-progress"])):
        err = refused(command, argv, capsys)
        assert f"{folder / rundir.METRICS}: {says}" in err, err
    assert snapshot(folder) == before


# --- 4. sizes within reason -------------------------------------------------------------------


def too_wide() -> str:
    """A width whose square layer alone holds more bytes than this device has memory."""
    memory = sizes.memory_bytes(jax.devices()[0])
    assert memory, "the device's memory is unknown here"
    return str(math.isqrt(memory // 4) + 1)


# (command, argv from (tmp folder, sample), what the error line says)
SIZES = [
    ("train a network too wide to fit", train_main,
     lambda t, s: [*data(s), "--hidden", too_wide(), too_wide(), "--out", str(t / "o")],
     "more than the"),
    ("overfit with a network too wide to fit", train_main,
     lambda t, s: [*data(s), "--hidden", too_wide(), too_wide(), "--overfit", "10", "--out",
                   str(t / "o")], "more than the"),
    ("sweep a network too wide to fit", sweep_main,
     lambda t, s: [*data(s), "--grid", f"hidden=8,{too_wide()}x{too_wide()}", "--out",
                   str(t / "o")], "more than the"),
    ("more overfit steps than kept", train_main,
     lambda t, s: [*data(s), "--hidden", "8", "--overfit", "10", "--overfit-steps",
                   str(sizes.OVERFIT_STEPS_MAX + 1), "--out", str(t / "o")],
     f"--overfit-steps must be at most {sizes.OVERFIT_STEPS_MAX:,}"),
    ("more CPU devices than cores can use", sweep_main,
     lambda t, s: [*data(s), "--grid", "learning_rate=0.1", "--cpu-devices",
                   str(sizes.CPU_DEVICES_PER_CORE * compilation.cpu_cores() + 1), "--out",
                   str(t / "o")], "--cpu-devices must be at most"),
]


@pytest.mark.parametrize("case", SIZES, ids=[c[0] for c in SIZES])
def test_a_flag_that_sizes_work_is_refused_beyond_its_limit_by_name(
        case, tmp_path: Path, mnist_sample_dir: Path, capsys: pytest.CaptureFixture) -> None:
    _, command, make_argv, says = case
    err = refused(command, make_argv(tmp_path, mnist_sample_dir), capsys)
    assert says in err, err
    if says == "more than the":
        assert f"--hidden {too_wide()} {too_wide()} with --batch-size" in err, err
    out = tmp_path / "o"  # refused before any work (--overfit makes its folder first: empty)
    assert not out.exists() or not any(out.iterdir())


class Accelerator:
    """A device with 1 GB for JAX's allocator, as an accelerator reports it."""

    platform = "gpu"

    def memory_stats(self) -> dict[str, int]:
        return {"bytes_limit": 10**9}


def test_runs_side_by_side_must_fit_together() -> None:
    config = Config(hidden=(1000, 1000), optimizer="adam", batch_size=128)
    # 1,796,010 parameters (7.2 MB): 30.6 MB to train one with adam (parameters, gradients,
    # two slots, activations); each other run holds 21.6 MB (parameters and two slots).
    layers = [784, 1000, 1000, 10]
    sizes.check_memory(config, layers, Accelerator(), runs=1)
    sizes.check_memory(config, layers, Accelerator(), runs=40)  # 0.87 GB
    with pytest.raises(ConfigError) as e:
        sizes.check_memory(config, layers, Accelerator(), runs=60)
    assert str(e.value).startswith(
        "--hidden 1000 1000 with --batch-size 128: training 60 runs of 1,796,010 parameters "
        "side by side needs at least 1.3 GB"), str(e.value)  # 30.6 MB + 59 x 21.6 MB
    assert str(e.value).endswith("or fewer runs at a time (--max-parallel)"), str(e.value)


def test_the_memory_a_run_needs_is_what_it_holds() -> None:
    # 784-512-512-10 with momentum: 669,706 parameters x 3 (parameters, gradients, one slot),
    # and 128 x 1,818 activations x 2 (values and gradients), 4 bytes each.
    assert sizes.run_bytes([784, 512, 512, 10], "momentum", 128) == 4 * (669_706 * 3
                                                                         + 2 * 128 * 1818)
    assert sizes.run_bytes([2, 3], "adam", 1) > sizes.run_bytes([2, 3], "sgd", 1)


# --- 5. say what happened ---------------------------------------------------------------------


def test_a_resumed_run_goes_on_diagnosing_and_says_so(tmp_path: Path,
                                                      mnist_sample_dir: Path) -> None:
    out = tmp_path / "run"
    config = dataclasses.replace(small(mnist_sample_dir), epochs=3)
    runner.run(config, out, progress=False, log=lambda s: None, max_epochs=1, diagnose=True)
    said: list[str] = []
    runner.run(config, out, resume=True, progress=False, log=said.append)  # no diagnose asked
    assert f"{out} was started with --diagnose: this session goes on writing it" in said
    assert [r["epoch"] for r in rundir.RunDir(out).diagnostics()] == [0, 1, 2, 3]


def test_a_resumed_summary_says_which_seconds_span_every_session(tmp_path: Path,
                                                                 mnist_sample_dir: Path) -> None:
    out = tmp_path / "run"
    config = dataclasses.replace(small(mnist_sample_dir), epochs=3)
    runner.run(config, out, progress=False, log=lambda s: None, max_epochs=1)
    summary = runner.run(config, out, resume=True, progress=False, log=lambda s: None)
    line = next(s for s in format_summary(summary).splitlines() if s.startswith("seconds"))
    assert "(epochs 1-3, every session)" in line and "(this session, after epoch 1)" in line
    fresh = runner.run(config, tmp_path / "fresh", progress=False, log=lambda s: None)
    assert "session" not in format_summary(fresh)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(
        tmp_path: Path, finished: Path, mnist_sample_dir: Path) -> None:
    folder = copy_run(finished, tmp_path / "run")
    (folder / rundir.CHECKPOINT).unlink()
    (folder / rundir.METRICS).write_text("")
    summary = runner.run(Config(), folder, resume=True, progress=False, log=lambda s: None)
    assert summary["epochs_done"] == 2
    again, first = (np.load(f / rundir.CHECKPOINT) for f in (folder, finished))
    assert sorted(again.files) == sorted(first.files)
    for name in first.files:
        assert again[name].tobytes() == first[name].tobytes(), name


def test_an_overfit_into_its_own_earlier_folder_says_it_replaces_it(
        tmp_path: Path, mnist_sample_dir: Path) -> None:
    out, said = tmp_path / "overfit", []
    config = Config(dataset="mnist", data_dir=str(mnist_sample_dir), hidden=(8,))
    run_overfit(config, 10, out, max_steps=5, progress=False, log=said.append)
    assert not any("replaced" in s for s in said)
    run_overfit(config, 10, out, max_steps=5, progress=False, log=said.append)
    assert f"{out}: the earlier overfit.json is replaced by this one" in said
