"""Measuring the answers into a notes folder, with its side effects: each answer's folder is
made anew (the one it replaces is kept aside until the new one is whole, and put back if the
measurement fails or is interrupted), notes.json records at which budget and how long, and the
page is rebuilt from the folders after every answer."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxmlp import compilation
from jaxmlp.config import ConfigError
from jaxmlp.notes.budget import Setting
from jaxmlp.notes.page import NOTES_JSON, read_record, write_notes_page, write_record
from jaxmlp.notes.questions import Question
from jaxmlp.rundir import make_folder


def open_folder(out: Path) -> dict[str, Any]:
    """Create `out`, or check that it is a notes folder (or empty); returns its record. A
    folder holding anything else is refused before any work, so nothing of it is touched."""
    out = Path(out)
    if out.is_dir() and not (out / NOTES_JSON).is_file():
        others = sorted(p.name for p in out.iterdir())
        if others:
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            raise ConfigError(f"--out {out} holds files that are not a notes folder's "
                              f"({', '.join(others[:3])}{more}); give a new or empty folder, "
                              "or the folder of an earlier python -m jaxmlp.notes")
    make_folder(out)
    return read_record(out)


def measure(q: Question, setting: Setting, out: Path) -> float:
    """Make `out/q.name` anew with `q`'s measurement; returns its seconds. Until it is whole,
    the folder it replaces waits beside it, and comes back if the measurement does not end."""
    folder, aside = out / q.name, out / f".{q.name}.old"
    shutil.rmtree(aside, ignore_errors=True)
    if folder.exists():
        folder.rename(aside)
    started = time.perf_counter()
    try:
        folder.mkdir()
        q.measure(setting, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if aside.exists():
            aside.rename(folder)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return time.perf_counter() - started


def run_notes(out: Path, questions: Sequence[Question], setting: Setting,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure `questions` into `out` (a notes folder: `open_folder`), recording each in
    notes.json and rewriting index.html after each; returns the record. An error or an
    interruption leaves the answers already measured, their record and the page."""
    record = open_folder(out)
    started, cache = time.perf_counter(), compilation.cache_stats()
    session = {"command": list(setting.command), "mode": setting.budget.mode, "answers": [],
               "started": time.strftime("%Y-%m-%d %H:%M")}
    record["sessions"].append(session)
    _measure_all(out, questions, setting, record, echo, (started, cache))
    return record


def _measure_all(out: Path, questions: Sequence[Question], setting: Setting,
                 record: dict[str, Any], echo: Callable[[str], None],
                 since: tuple[float, dict[str, int]]) -> None:
    session = record["sessions"][-1]
    try:
        for q in questions:
            seconds = measure(q, setting, out)
            record["answers"][q.name] = {"status": "done", "mode": setting.budget.mode,
                                         "seconds": round(seconds, 2),
                                         "data_dir": setting.data_dir,
                                         "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            session["answers"].append(q.name)
            _close(session, since)
            write_record(out, record)
            write_notes_page(out)
            echo(f"{q.name}: measured in {seconds:.1f} s")
    finally:
        _close(session, since)
        write_record(out, record)
        write_notes_page(out)


def _close(session: dict[str, Any], since: tuple[float, dict[str, int]]) -> None:
    """The session's wall time, and the programs it loaded from the compilation cache and
    compiled (and stored there): what a cold cache adds shows between two sessions."""
    started, cache = since
    now = compilation.cache_stats()
    session.update(wall_seconds=round(time.perf_counter() - started, 1),
                   cache_hits=now.get("hits", 0) - cache.get("hits", 0),
                   cache_misses=now.get("misses", 0) - cache.get("misses", 0))

