"""The run folder: the one place that knows its file names, how they are written, how a resumed
run truncates and restores them, and how they are read back.

    config.json        what was asked and what was used (data set, source, versions, devices)
    metrics.jsonl      one line per finished epoch (a diverged epoch ends it with one more line)
    checkpoint.npz     the state after the last finished epoch, written atomically
    diagnostics.jsonl  with --diagnose: one line per evaluation, epoch 0 = initialisation
    summary.json       written at the end, and when the run diverges or is interrupted
                       (`status`, and the `message` that says what stopped it)
    overfit.json       written by --overfit
    report.html        the run's page (`jaxmlp.pages`), rebuilt from the files above

Every file that is replaced is replaced atomically (`checkpoint.atomic_write_text`); jsonl files
are appended a line at a time, so an interruption loses at most the line being written, and the
readers (`read_jsonl`, which resume, `python -m jaxmlp.plots` and the pages all go through) skip
such a cut last line with a warning. A run writes only into a folder of its own: a new run into
an empty folder, and never through a symbolic link inside it. Each write is a fail point
(`jaxmlp.faults`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint, faults
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
# The files a run writes itself, whose interrupted atomic writes may leave temporary files.
RUN_FILES = (CONFIG_JSON, METRICS, CHECKPOINT, DIAGNOSTICS, SUMMARY, OVERFIT, REPORT_HTML)

# The keys every row must have for its readers (the plots, the report, the pages); a finished
# epoch's metrics row (train_loss not null) has its accuracies and test loss as well.
METRICS_KEYS = ("epoch", "train_loss", "epoch_seconds", "step_loss")
FINISHED_EPOCH_KEYS = ("train_accuracy", "test_loss", "test_accuracy")
DIAGNOSTICS_KEYS = ("epoch", "steps", "layers")


class RunDirError(ConfigError):
    """A run folder that cannot be used as it is: another's files, a link, a malformed row.
    The message names the file (and line) and what to do."""


def make_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder `path` (and its parents), or a ConfigError naming `flag` that
    says why it cannot be: a file in the way, a parent that is a file, no permission, a folder
    that exists but takes no files (/proc/1, a read-only folder)."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker == path:
        raise ConfigError(f"{flag} {path} is a file, not a folder: choose a folder name (a new "
                          "one is created)")
    if blocker is not None:
        raise ConfigError(f"{flag} {path} cannot be created: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Existing is not enough: try a file there now, before any work.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be written into ({e.strerror or e}); choose "
                          "a folder you can write to") from None
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


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_jsonl(path: Path, keys: Sequence[str] = (),
               more_keys: Callable[[dict[str, Any]], Sequence[str]] = lambda row: (),
               warn: Callable[[str], None] = warn) -> list[dict[str, Any]]:
    """The rows of a jsonl file (none when it does not exist), for every reader of a run or sweep
    folder. A last line cut short (no newline at its end and not JSON: what a process killed or
    a disk filled mid-append leaves) is left out, with a warning naming it. Any other line that
    is not a JSON object, or a row without one of `keys` (or of `more_keys(row)`), is a
    RunDirError naming the file, the line and the key."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} cannot be read ({getattr(e, 'strerror', None) or e})"
                          ) from None
    lines = text.split("\n")  # the last item: what follows the last newline ("" when whole)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: its write was cut short
                warn(f"{path}: line {number} is cut short (its write was interrupted); it is "
                     "left out")
                continue
            raise RunDirError(f"{path}: line {number} is not JSON ({e.msg}); fix or remove "
                              "that line") from None
        if not isinstance(row, dict):
            raise RunDirError(f"{path}: line {number} is not a JSON object; fix or remove that "
                              "line")
        missing = next((k for k in (*keys, *more_keys(row)) if k not in row), None)
        if missing is not None:
            raise RunDirError(f"{path}: line {number} has no {missing!r}; fix or remove that "
                              "line")
        rows.append(row)
    return rows


def _finished_epoch_keys(row: dict[str, Any]) -> Sequence[str]:
    return FINISHED_EPOCH_KEYS if row.get("train_loss") is not None else ()


def refuse_links(folder: Path, flag: str) -> None:
    """A RunDirError for a symbolic link among the folder's entries: a write would go through
    it to a file outside."""
    if not folder.is_dir():
        return
    links = sorted(p.name for p in folder.iterdir() if p.is_symlink())
    if links:
        raise RunDirError(f"{flag} {folder} holds symbolic links ({', '.join(links)}): jaxmlp "
                          "writes only files of the folder's own; remove the links, or choose "
                          "another folder")


def refuse_others(folder: Path, flag: str, ours: Collection[str] = (),
                  written: Collection[str] = RUN_FILES) -> None:
    """A RunDirError naming the files in `folder` other than `ours`. The temporary files that an
    interrupted write of one of `written` left are removed first."""
    if not folder.is_dir():
        return
    checkpoint.remove_temporary(folder, written)
    others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5
                                         else "")
        raise RunDirError(f"{flag} {folder} holds files that are not a jaxmlp run's ({shown}): "
                          "choose an empty or new folder")


def continued_outputs(path: str | os.PathLike, asked: dict[str, bool],
                      log: Callable[[str], None]) -> dict[str, bool]:
    """What a resumed run writes besides its metrics: what this session `asked` for
    ({"diagnose": ..., "plots": ...}) and what the run was started with (config.json's
    "outputs"), said when this session did not ask for it."""
    try:
        recorded = RunDir(path).read_record().get("outputs", {})
    except ConfigError:  # not a run folder: the resume itself says so
        return asked
    kept = sorted(k for k, on in recorded.items() if on and not asked.get(k))
    if kept:
        log(f"{path} was started with {' '.join('--' + k for k in kept)}: this session goes "
            "on writing it")
    return {k: bool(on or recorded.get(k)) for k, on in asked.items()}


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
        a folder that already holds a run, so nothing written before is lost, and one that
        holds anything else."""
        run = cls(path)
        if (run.path / CONFIG_JSON).exists() or (run.path / CHECKPOINT).exists():
            raise RunDirError(f"--out {run} already holds a run; continue it with --resume "
                              f"{run} or choose another --out")
        make_folder(run.path)  # first: a folder that takes no files is said as such
        refuse_links(run.path, "--out")
        refuse_others(run.path, "--out")
        # config.json first: with it the folder is a run (resumable), without it still empty.
        try:
            checkpoint.atomic_write_text(run.path / CONFIG_JSON,
                                         json.dumps(record, indent=2) + "\n", "run_config")
        except checkpoint.WriteError as e:
            raise checkpoint.WriteError(f"{e}; the run did not start: once there is room, run "
                                        "the same command again") from None
        try:
            checkpoint.atomic_write_text(run.path / METRICS, "")
        except checkpoint.WriteError as e:
            raise checkpoint.WriteError(f"{e}; once there is room, continue with --resume "
                                        f"{run}") from None
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
        that fell back to digits resumes on digits). Refuses a folder with links in it, or one
        that takes no files: the callers (resume, the plots, the pages) write into it."""
        recorded = self.read_record(flag)
        refuse_links(self.path, flag)
        make_folder(self.path, flag)  # exists: this only tries a file there
        config = validate(Config.from_dict(recorded["config"]))
        return dataclasses.replace(config, dataset=recorded["dataset"]["used"])

    def restore(self, template: Any) -> tuple[Any, int]:
        """(state, epoch) from checkpoint.npz, shaped like `template`; `(template, 0)` when no
        epoch was saved yet (a run stopped in its first epoch starts again from the first)."""
        if not (self.path / CHECKPOINT).exists():
            if self.metrics():
                warn(f"{self.path / CHECKPOINT} is missing although {METRICS} has rows: "
                     "training starts again from the first epoch")
            return template, 0
        state, meta = checkpoint.load(self.path / CHECKPOINT, template)
        return state, int(meta["epoch"])

    def truncate(self, epoch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Keep only the metrics and diagnostics rows of epochs up to `epoch` (the checkpoint's:
        an interrupted epoch may have logged after it, or left a cut line); returns (metrics,
        diagnostics) kept."""
        checkpoint.remove_temporary(self.path, RUN_FILES)
        metrics = [r for r in self.metrics() if r["epoch"] <= epoch]
        diagnostics = [r for r in self.diagnostics() if r["epoch"] <= epoch]
        self._rewrite(METRICS, metrics)
        if (self.path / DIAGNOSTICS).exists():
            self._rewrite(DIAGNOSTICS, diagnostics)
        return metrics, diagnostics

    # --- writing -----------------------------------------------------------------------------

    def _rewrite(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        checkpoint.atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in rows))

    def _append(self, name: str, row: dict[str, Any], point: str) -> None:
        """One line at the end of `name`, never through a link; a failed write (a full disk)
        leaves the file as it was, whole lines only."""
        path, line = self.path / name, (json.dumps(row) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            raise checkpoint.write_error(path, e) from None
        try:
            size = os.fstat(fd).st_size
            faults.reach(point, path, torn=lambda: os.write(fd, line[:len(line) // 2]))
            try:
                written = 0
                while written < len(line):
                    written += os.write(fd, line[written:])
            except OSError as e:
                os.ftruncate(fd, size)
                raise checkpoint.write_error(path, e) from None
        finally:
            os.close(fd)

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._append(METRICS, row, "metrics_row")

    def start_diagnostics(self, rows: Sequence[dict[str, Any]]) -> None:
        """(Re)write diagnostics.jsonl with `rows` (none for a new run)."""
        self._rewrite(DIAGNOSTICS, rows)

    def append_diagnostics(self, row: dict[str, Any]) -> None:
        self._append(DIAGNOSTICS, row, "diagnostics_row")

    def save_checkpoint(self, state: Any, epoch: int) -> None:
        checkpoint.save(self.path / CHECKPOINT, state, {"epoch": epoch}, "checkpoint")

    def write_json(self, name: str, value: dict[str, Any], indent: int | None = 2,
                   point: str | None = None) -> None:
        checkpoint.atomic_write_text(self.path / name, json.dumps(value, indent=indent) + "\n",
                                     point)

    # --- reading -----------------------------------------------------------------------------

    def metrics(self, warn: Callable[[str], None] = warn) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS, METRICS_KEYS, _finished_epoch_keys, warn)

    def diagnostics(self, warn: Callable[[str], None] = warn) -> list[dict[str, Any]]:
        return read_jsonl(self.path / DIAGNOSTICS, DIAGNOSTICS_KEYS, warn=warn)

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
