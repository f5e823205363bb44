"""The run folder: the one place that knows its file names, how they are written, and how a
resumed run truncates and restores them.

    config.json        what was asked and what was used (data set, source, versions, devices)
    metrics.jsonl      one line per finished epoch (a diverged epoch ends it with one more line)
    checkpoint.npz     the state after the last finished epoch, written atomically
    diagnostics.jsonl  with --diagnose: one line per evaluation, epoch 0 = initialisation
    summary.json       written at the end, and when the run diverges or is interrupted
                       (`status`, and the `message` that says what stopped it)
    overfit.json       written by --overfit
    report.html        the run's page (`jaxmlp.pages`), rebuilt from the files above

Every file that is replaced is replaced atomically (`checkpoint.atomic_write_text`); jsonl files
are appended a line at a time, so an interruption loses at most the line being written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint
from jaxmlp.config import Config, ConfigError, validate

CONFIG_JSON = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
DIAGNOSTICS = "diagnostics.jsonl"
SUMMARY = "summary.json"
OVERFIT = "overfit.json"
REPORT_HTML = "report.html"  # a run's page, and a sweep's in its folder

# summary.json's `status`: how the run ended.
FINISHED = "finished"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"


def make_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder `path` (and its parents), or a ConfigError naming `flag` that
    says why it cannot be: a file in the way, a parent that is a file, no permission."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker == path:
        raise ConfigError(f"{flag} {path} is a file, not a folder: choose a folder name (a new "
                          "one is created)")
    if blocker is not None:
        raise ConfigError(f"{flag} {path} cannot be created: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be created ({e.strerror or e}); choose a "
                          "folder you can write to") from None
    return path


def default_folder(dataset: str, root: str | os.PathLike = "runs") -> Path:
    """A new folder name under `root`: the time and the data set, made unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(root) / f"{stamp}-{dataset}"
    k = 1
    while out.exists():
        k += 1
        out = Path(root) / f"{stamp}-{dataset}-{k}"
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


class RunDir:
    """A run folder. `RunDir.create(path, record)` starts one; `RunDir(path)` opens an existing
    one (for --resume or plots)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    # --- starting and reopening ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, record: dict[str, Any]) -> RunDir:
        """A new run folder holding config.json (`record`) and an empty metrics.jsonl. Refuses
        a folder that already holds a run, so nothing written before is lost."""
        run = cls(path)
        if (run.path / CONFIG_JSON).exists() or (run.path / CHECKPOINT).exists():
            raise ConfigError(f"--out {run} already holds a run; continue it with --resume "
                              f"{run} or choose another --out")
        make_folder(run.path)
        checkpoint.atomic_write_text(run.path / CONFIG_JSON, json.dumps(record, indent=2) + "\n")
        (run.path / METRICS).write_text("")
        return run

    def read_record(self, flag: str = "--resume") -> dict[str, Any]:
        """config.json, or a ConfigError naming `flag` when this is not a run folder."""
        path = self.path / CONFIG_JSON
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError(f"{flag} {self}: no {CONFIG_JSON} there, so it is not a jaxmlp "
                              "run folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{flag} {self}: {CONFIG_JSON} is corrupt ({e})") from None

    def config(self, flag: str = "--resume") -> Config:
        """The configuration the run was started with, on the data set it really used (a run
        that fell back to digits resumes on digits)."""
        recorded = self.read_record(flag)
        config = validate(Config.from_dict(recorded["config"]))
        return dataclasses.replace(config, dataset=recorded["dataset"]["used"])

    def restore(self, template: Any) -> tuple[Any, int]:
        """(state, epoch) from checkpoint.npz, shaped like `template`."""
        state, meta = checkpoint.load(self.path / CHECKPOINT, template)
        return state, int(meta["epoch"])

    def truncate(self, epoch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Keep only the metrics and diagnostics rows of epochs up to `epoch` (the checkpoint's:
        an interrupted epoch may have logged after it); returns (metrics, diagnostics) kept."""
        kept = []
        for name in (METRICS, DIAGNOSTICS):
            rows = [r for r in _read_jsonl(self.path / name) if r.get("epoch", 0) <= epoch]
            if name == METRICS or (self.path / name).exists():
                self._rewrite(name, rows)
            kept.append(rows)
        return kept[0], kept[1]

    # --- writing -----------------------------------------------------------------------------

    def _rewrite(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        checkpoint.atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in rows))

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path / name, "a") as f:
            f.write(json.dumps(row) + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._append(METRICS, row)

    def start_diagnostics(self, rows: Sequence[dict[str, Any]]) -> None:
        """(Re)write diagnostics.jsonl with `rows` (none for a new run)."""
        self._rewrite(DIAGNOSTICS, rows)

    def append_diagnostics(self, row: dict[str, Any]) -> None:
        self._append(DIAGNOSTICS, row)

    def save_checkpoint(self, state: Any, epoch: int) -> None:
        checkpoint.save(self.path / CHECKPOINT, state, {"epoch": epoch})

    def write_json(self, name: str, value: dict[str, Any], indent: int | None = 2) -> None:
        checkpoint.atomic_write_text(self.path / name, json.dumps(value, indent=indent) + "\n")

    # --- reading -----------------------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / METRICS)

    def diagnostics(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.path / DIAGNOSTICS)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT


def result_lines(s: dict[str, Any]) -> list[str]:
    """What summary.json says of the result: accuracy after how many epochs, final train loss
    (the console's closing lines and the page's result line)."""
    acc, loss = s.get("test_accuracy"), s.get("final_train_loss")
    return [f"{s['dataset']}: test accuracy {acc:.2%} after {s['epochs_done']}/{s['epochs']} "
            "epochs" if acc is not None else f"{s['dataset']}: no epoch completed",
            *([f"final train loss {loss:.4f}"] if loss is not None else [])]
