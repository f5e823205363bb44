"""One run followed for the pages: its chunks' frames, its folder's rows, the report's findings.

`Follower` is the `stream.Listener` of a job. Every chunk's losses and live accuracy go into
the job's curves at once; they are published as one `frame` event at most every `FRAME_S`
seconds (and at every epoch's end), so a toy run whose epochs take milliseconds sends the pages
what they can draw, not an event per millisecond. After each epoch the rows the run appended
to metrics.jsonl and diagnostics.jsonl are read (`Rows`: only what was added, whole lines), and
the report's rules (`report.diagnose`, as the run's own report runs them) say what they find, at
most every `FINDINGS_S` seconds while it trains and always at its end.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp.config import Config
from jaxmlp.lab.stream import Frame
from jaxmlp.pages.guide import FINDING_GUIDE, WRONG
from jaxmlp.report import diagnose, format_report
from jaxmlp.rundir import DIAGNOSTICS, METRICS
from jaxmlp.runner import Prepared

FRAME_S = 0.05  # at most 20 frames a second reach a page: more than it can draw
FINDINGS_S = 0.25  # the findings, at most 4 times a second while a run trains
# Points of each curve a job keeps for the pages that open later: past it, neighbours merge, so a
# job of any length costs the server the same (the pages drawing it see every step as it comes).
HISTORY = 4000
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
              "epoch_seconds", "diverged_at_step")


class Rows:
    """A jsonl file of the run being trained, read as it grows: the whole lines added since the
    last read (a line still being written waits for the next). `rundir.read_jsonl` reads a
    folder at rest; this follows one that is being written, without reading it all again."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def _mean(a: list[Any], b: list[Any]) -> list[Any]:
    values = [v for v in (a[1], b[1]) if v is not None]
    return [b[0], sum(values) / len(values) if values else None]


def _later(a: Any, b: Any) -> Any:
    return b


def keep(points: list[Any], new: list[Any], merge: Callable[[Any, Any], Any] = _mean,
         most: int = HISTORY) -> None:
    """Append `new` to `points`; past `most`, each two neighbours become one (`merge`: the
    later step and the mean of the losses; `_later`: the later one)."""
    points.extend(new)
    if len(points) > most:
        odd = [points[-1]] if len(points) % 2 else []
        pairs = zip(points[0::2], points[1::2], strict=False)  # an odd last one: `odd`
        points[:] = [merge(a, b) for a, b in pairs] + odd


def guide_href(code: str) -> str:
    """Where the lab serves the guide's section on finding `code` (the server's guide route)."""
    page, anchor = FINDING_GUIDE.get(code, (WRONG, ""))
    return f"guide/{page}" + (f"#{anchor}" if anchor else "")


def findings(config: Config, rows: list[dict[str, Any]], history: list[dict[str, Any]],
             num_classes: int) -> tuple[list[dict[str, str]], str]:
    """The report's findings on the rows so far, each with its guide link; or, with none, the
    report's line that says all is well."""
    found = diagnose(config, rows, history, num_classes)
    views = [{"code": f.code, "message": f.message, "advice": f.advice,
              "guide": guide_href(f.code)} for f in found]
    healthy = "" if found or not rows else format_report([], rows).removeprefix("diagnosis: ")
    return views, healthy


class Follower:
    """A job's `stream.Listener`: changes the job under `lock` and publishes them with
    `publish(kind, data)` (the lab's lock and hub)."""

    def __init__(self, job: Any, lock: threading.Lock, publish: Callable[[str, Any], Any],
                 started: Callable[[Prepared, dict[str, Any] | None], None]) -> None:
        self.job, self.lock, self.publish, self._started = job, lock, publish, started
        self.stop = job.stop
        self.prepared: Prepared | None = None
        self._pending: dict[str, Any] | None = None
        self._sent = self._judged = float("-inf")
        self._metrics: Rows | None = None
        self._diagnostics: Rows | None = None
        self._history: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []

    @property
    def stopped_by(self) -> str:
        return self.job.stopped_by

    def started(self, p: Prepared, plane: dict[str, Any] | None) -> None:
        self.prepared = p
        self._metrics, self._diagnostics = Rows(p.run.path / METRICS), Rows(
            p.run.path / DIAGNOSTICS)
        self._started(p, plane)

    def frame(self, f: Frame) -> None:
        base = (f.epoch - 1) * f.steps + f.first
        live = ([[base + len(f.step_loss), f.test_accuracy, f.test_loss]]
                if f.test_accuracy is not None else [])
        with self.lock:
            keep(self.job.loss, [[base + k + 1, v] for k, v in enumerate(f.step_loss)])
            keep(self.job.live, live, _later)
            if self._pending is None:
                self._pending = {"number": self.job.number, "start": base, "step_loss": [],
                                 "live": [], "plane": None}
            self._pending["step_loss"] += f.step_loss
            self._pending["live"] += live
            self._pending["epoch"] = f.epoch
            if f.plane is not None:
                self._pending["plane"] = f.plane
        if self.due():
            self.flush()

    def due(self) -> bool:
        return time.monotonic() - self._sent >= FRAME_S

    def flush(self) -> None:
        """Publish the frames not yet sent, as one."""
        with self.lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return
            if pending["plane"] is not None:
                picture = np.clip(pending["plane"], 0, 255).astype(np.uint8).tobytes()
                pending["plane"] = self.job.picture = base64.b64encode(picture).decode()
            self.publish("frame", pending)
        self._sent = time.monotonic()

    def epoch_begins(self, p: Prepared) -> None:
        self.epochs(final=False)

    def epochs(self, final: bool) -> None:
        """The rows added to the folder since the last call, and (when due, or `final`) the
        findings on all of them."""
        p = self.prepared
        if p is None or self._metrics is None or self._diagnostics is None:
            return
        if not final and not self.due():
            return  # epochs of a few ms (the toy sets): their rows go with a later event
        self.flush()
        new = self._metrics.new()
        self._rows += self._diagnostics.new()
        self._history += [r for r in new if r.get("train_loss") is not None]
        judge = final or time.monotonic() - self._judged >= FINDINGS_S
        found = (findings(p.config, self._rows, self._history, p.dataset.num_classes)
                 if judge else None)
        self._judged = time.monotonic() if judge else self._judged
        with self.lock:
            job = self.job
            if found is not None and found != (job.findings, job.healthy):
                job.findings, job.healthy = found
            elif not new:
                return
            rows = [{k: r.get(k) for k in EPOCH_KEYS} for r in new]
            keep(job.epochs, rows, _later)
            self.publish("epoch", {"number": job.number, "rows": rows,
                                   "findings": job.findings, "healthy": job.healthy})
