"""`python -m jaxmlp.train` end to end: a small real run, bad settings, the offline fallback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jaxmlp.train import main

SMALL = ["--hidden", "16", "--epochs", "1", "--train-subset", "1000", "--batch-size", "50",
         "--schedule", "constant", "--learning-rate", "0.01",
         "--no-progress"]


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a download server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture()
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment in which MNIST cannot be had: empty data dir, cache and tfds dir, and a
    mirror that refuses connections (so no test ever touches the real network)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "JAXMLP_DATA_DIR": str(empty),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TFDS_DATA_DIR": str(empty),
        "JAXMLP_MIRRORS": _closed_port_url(),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "jaxmlp.train", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=300)


def test_cli_trains_and_records_everything(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "run"
    proc = _cli([*SMALL, "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["train_subset"] == 1000
    assert record["dataset"]["used"] == "mnist" and record["dataset"]["fallback"] is None
    (row,) = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["epoch"] == 1 and 0.5 < row["test_accuracy"] <= 1.0
    assert (out / "checkpoint.npz").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] == row["test_accuracy"]


def test_cli_resume_continues_a_cut_run(tmp_path: Path, mnist_dir: Path) -> None:
    from jaxmlp.config import Config
    from jaxmlp.train import run

    config = Config(dataset="mnist", data_dir=str(mnist_dir), hidden=(16,), epochs=2,
                    train_subset=1000, batch_size=100)
    run(config, tmp_path / "cut", progress=False, max_epochs=1, log=lambda _: None)
    proc = _cli(["--resume", str(tmp_path / "cut"), "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "2/2 epochs" in proc.stdout
    rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


BAD_SETTINGS = [
    (["--hidden", "0"], "--hidden"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--learning-rate", "-0.1"], "--learning-rate"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--optimizer", "adamw"], "--optimizer"),
    (["--activation", "swish"], "--activation"),
    (["--input-scale", "half"], "--input-scale"),
    (["--targets", "integer"], "--targets integer"),
    (["--no-flatten"], "--no-flatten"),
    (["--batch-size", "5000", "--train-subset", "1000"], "--batch-size 5000"),
    (["--train-subset", "70000"], "--train-subset"),
]


@pytest.mark.parametrize(("args", "named"), BAD_SETTINGS, ids=[" ".join(a) for a, _ in
                                                                 BAD_SETTINGS])
def test_bad_settings_are_refused_before_any_work(
    args: list[str], named: str, tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out),
              "--no-progress"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert err.count("\n") == 1  # one message, one line
    assert not out.exists()  # nothing written


def test_user_errors_print_no_traceback(tmp_path: Path) -> None:
    proc = _cli(["--learning-rate", "-1", "--out", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--learning-rate" in proc.stderr


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path)])
    assert e.value.code != 0 and "config.json" in capsys.readouterr().err


def test_resume_refuses_conflicting_flags(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path), "--epochs", "5"])
    assert e.value.code != 0 and "drop --epochs" in capsys.readouterr().err


def test_offline_fallback_to_digits_is_said_and_recorded(tmp_path: Path, offline_env) -> None:
    out = tmp_path / "run"
    # Exactly the out-of-the-box command, on a machine where MNIST cannot be had.
    proc = _cli(["--no-progress", "--out", str(out)], env=offline_env)
    assert proc.returncode == 0, proc.stderr
    assert "MNIST could not be found" in proc.stdout and "digits" in proc.stdout
    record = json.loads((out / "config.json").read_text())
    assert record["dataset"]["requested"] is None
    assert record["dataset"]["used"] == "digits"
    assert "MNIST could not be found" in record["dataset"]["fallback"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits" and summary["test_accuracy"] > 0.9


def test_named_dataset_that_cannot_be_had_is_an_error(tmp_path: Path, offline_env) -> None:
    proc = _cli(["--dataset", "mnist", "--no-progress", "--out", str(tmp_path / "run")],
                env=offline_env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "mnist" in proc.stderr.lower()
    assert not (tmp_path / "run").exists()


def test_help_explains_every_flag() -> None:
    proc = _cli(["--help"])
    assert proc.returncode == 0
    for flag in ("--input-scale", "--class-reduction", "--example-reduction", "--output",
                 "--schedule", "--resume", "--out", "--init"):
        assert flag in proc.stdout
