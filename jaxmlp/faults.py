"""Fail points: every place where a run, a sweep or an experiment writes, named in one table
(`POINTS`), so that a test can stop the process there and check what the next command makes of
the folder (tests/test_faults.py; the outcomes are in docs/faults.md).

A test arms one point through the environment, `JAXMLP_FAIL_AT=POINT:N[:ACTION]`: the N-th time
this process reaches POINT, it does ACTION:

    KILL  (the default) SIGKILL, in the middle of the write: an appended line is left cut in
          half; a replaced file is left whole in its temporary file, not yet renamed over the
          old one (what a crash, a power cut or the out-of-memory killer leaves);
    TERM  send itself SIGTERM, then carry on: what a batch scheduler (SLURM, Kubernetes) sends
          before it kills a job (HUP and INT: SIGHUP, SIGINT, the same way);
    FULL  fill the file system the file is on, then carry on, so the write meets "No space
          left on device". Only on a small file system made for the test (at most
          `FULL_LIMIT_BYTES`), never on a real disk.

Unset, `reach` costs one comparison of a module global with None. The points sit at writes, on
the host, between epochs or chunks: never inside compiled code.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

ENV = "JAXMLP_FAIL_AT"

# Every write point: its name, and what is written there, by which command. One row a point;
# the tests kill, stop and starve the process at each in turn (tests/test_faults.py).
POINTS = MappingProxyType({
    # python -m jaxmlp.train
    "run_config": "config.json, when a run folder is created",
    "metrics_row": "a line of metrics.jsonl, after each epoch",
    "diagnostics_row": "a line of diagnostics.jsonl, after each epoch under --diagnose",
    "checkpoint": "checkpoint.npz, after each epoch",
    "pictures": "the run's PNGs under --plots, at the end: reached before the first is drawn",
    "summary": "summary.json, at the end",
    "page": "report.html, the page of a run (or of a sweep), at the end",
    "overfit": "overfit.json, under --overfit N --out DIR",
    # python -m jaxmlp.sweep, and every experiment through it
    "sweep_record": "sweep.json, the sweep's record: at the start and at the end of each "
                    "session",
    "chunk": "chunks/chunk-N.npz, as each chunk of runs finishes; on the other processes of "
             "a multi-process sweep, the same moment",
    "sweep_tables": "results.csv, runs.csv, summary.csv and summary.md, each a point of its "
                    "own, when every run is done",
    "sweep_pictures": "the sweep's PNGs: reached before the first is drawn",
    # python experiments/NAME.py
    "experiment_log": "experiment.json, the log of each invocation",
    "findings": "summary.md again, with the experiment's findings",
})

SIGNALS = MappingProxyType({"TERM": signal.SIGTERM, "HUP": signal.SIGHUP, "INT": signal.SIGINT})
ACTIONS = ("KILL", *SIGNALS, "FULL")

# FULL fills the file system; refused on anything larger than this (a test's tmpfs is smaller).
FULL_LIMIT_BYTES = 64 * 2**20
FILLER = ".jaxmlp-filler"  # the file FULL writes, at the top of the file system


class Armed(NamedTuple):
    point: str
    count: int
    action: str


def parse(text: str) -> Armed:
    """`POINT:N[:ACTION]` -> Armed; a ValueError names what is wrong."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in POINTS or not parts[1].isdigit() \
            or int(parts[1]) < 1 or (len(parts) == 3 and parts[2] not in ACTIONS):
        raise ValueError(f"{ENV}={text!r}: write POINT:N[:ACTION] with POINT one of "
                         f"{', '.join(POINTS)}, N a count from 1 and ACTION one of "
                         f"{', '.join(ACTIONS)}")
    return Armed(parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "KILL")


_ARMED: Armed | None = parse(os.environ[ENV]) if os.environ.get(ENV) else None
_arrivals = 0
_region: str | None = None


def reach(point: str | None, path: str | os.PathLike | None,
          torn: Callable[[], object] | None = None) -> None:
    """This process arrives at `point` (None: the enclosing `region`'s, if any) to write `path`
    (None: another process writes it). At the armed arrival: KILL calls `torn()` (which leaves
    the write half done) and dies; TERM and FULL act and return, and the write goes on."""
    if _ARMED is None:
        return
    point = point or _region
    if point != _ARMED.point:
        return
    assert point in POINTS, point
    global _arrivals
    _arrivals += 1
    if _arrivals != _ARMED.count:
        return
    if _ARMED.action in SIGNALS:
        os.kill(os.getpid(), SIGNALS[_ARMED.action])
    elif _ARMED.action == "FULL":
        if path is not None:
            fill(Path(path).parent)
    else:
        if torn is not None:
            torn()
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def region(point: str) -> Iterator[None]:
    """Every atomic write inside (`checkpoint.atomic_write` with no point of its own) is an
    arrival at `point`: for writes made by code that does not name its points (the tables)."""
    global _region
    outer, _region = _region, point
    try:
        yield
    finally:
        _region = outer


def top_of(folder: Path) -> Path:
    """The mount point of the file system `folder` is on."""
    folder = folder.resolve()
    while not os.path.ismount(folder):
        folder = folder.parent
    return folder


def fill(folder: Path) -> None:
    """Fill the (small) file system `folder` is on with `FILLER` at its top, to the last byte
    it takes."""
    st = os.statvfs(folder)
    size = st.f_blocks * st.f_frsize
    if size > FULL_LIMIT_BYTES:
        raise RuntimeError(f"{ENV}=...:FULL fills the file system {folder} is on: only on one "
                           f"of at most {FULL_LIMIT_BYTES // 2**20} MiB made for a test (this "
                           f"one is {size // 2**20} MiB)")
    fd = os.open(top_of(folder) / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = 1 << 16
        while block:
            try:
                os.write(fd, b"\0" * block)
            except OSError:
                block //= 2  # full at this size: the remaining bytes, in smaller pieces
    finally:
        os.close(fd)
