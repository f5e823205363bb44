"""The lab's runs: a queue, one training at a time, and what the pages are shown of each.

`Lab.submit` checks a page's settings and queues a `Job`; one worker thread takes the jobs in
turn and trains each with `runner.run` (the command's own run: config.json, metrics.jsonl,
the checkpoint, diagnostics.jsonl, the plots, summary.json and report.html in a new folder under
the runs folder), its epochs as chunks (`stream.live_epochs`) whose frames, epoch rows and
findings (`report.diagnose` on the folder's rows, after every epoch) are published to the `Hub`.
`Lab.snapshot` is everything the pages are shown, for a page that has just opened.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint, data, pages, runner
from jaxmlp.config import Config, ConfigError
from jaxmlp.lab import settings
from jaxmlp.lab.hub import Hub
from jaxmlp.lab.stream import Frame, live_epochs
from jaxmlp.pages.guide import FINDING_GUIDE, WRONG
from jaxmlp.report import diagnose, format_report
from jaxmlp.rundir import (
    CONFIG_JSON,
    DIVERGED,
    FINISHED,
    INTERRUPTED,
    SUMMARY,
    RunDir,
    default_folder,
)

QUEUED, PREPARING, RUNNING = "queued", "preparing", "running"
FAILED, CANCELLED = "failed", "cancelled"  # before its folder held a run; or never started
ENDED = (FINISHED, DIVERGED, INTERRUPTED, FAILED, CANCELLED)
LOG_LINES = 40  # a job's last log lines kept for the pages
# Points of each curve a job keeps for the pages that open later: past it, neighbours merge, so a
# job of any length costs the server the same (the pages drawing it see every step as it comes).
HISTORY = 4000
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
              "epoch_seconds", "diverged_at_step")


@dataclasses.dataclass
class Job:
    """One run asked for on a page, and what the pages are shown of it."""

    number: int
    config: Config  # as asked; the data set's own defaults are applied when it runs
    given: dict[str, Any]  # the settings given, typed
    status: str = QUEUED
    message: str = ""
    folder: Path | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    used: dict[str, Any] | None = None  # the configuration it trains with
    steps: int = 0  # per epoch
    loss: list[list[Any]] = dataclasses.field(default_factory=list)  # [step, loss]
    live: list[list[Any]] = dataclasses.field(default_factory=list)  # [step, accuracy, loss]
    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epochs_seen: int = 0  # rows of metrics.jsonl published
    findings: list[dict[str, str]] = dataclasses.field(default_factory=list)
    healthy: str = ""
    plane: dict[str, Any] | None = None
    picture: str | None = None  # the last frame's plane
    log: list[str] = dataclasses.field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The job as the pages see it (JSON)."""
        return {"number": self.number, "status": self.status, "message": self.message,
                "folder": str(self.folder) if self.folder else None,
                "given": {k: settings.text_of(v) for k, v in self.given.items()},
                "used": self.used, "steps": self.steps, "loss": self.loss,
                "live": self.live, "epochs": self.epochs, "findings": self.findings,
                "healthy": self.healthy, "plane": self.plane, "picture": self.picture,
                "log": self.log}


def _mean(a: list[Any], b: list[Any]) -> list[Any]:
    values = [v for v in (a[1], b[1]) if v is not None]
    return [b[0], sum(values) / len(values) if values else None]


def keep(points: list[Any], new: list[Any], merge: Any = _mean, most: int = HISTORY) -> None:
    """Append `new` to `points`; past `most`, each two neighbours become one (`merge`: the
    later step, the mean of the losses; a row: the later one)."""
    points.extend(new)
    if len(points) > most:
        odd = [points[-1]] if len(points) % 2 else []
        pairs = zip(points[0::2], points[1::2], strict=False)  # an odd last one: `odd`
        points[:] = [merge(a, b) for a, b in pairs] + odd


def _later(a: Any, b: Any) -> Any:
    return b


def guide_href(code: str) -> str:
    """Where the lab serves the guide's section on finding `code` (`server`'s /guide route)."""
    page, anchor = FINDING_GUIDE.get(code, (WRONG, ""))
    return f"guide/{page}" + (f"#{anchor}" if anchor else "")


def finding_views(run: RunDir, config: Config, num_classes: int) -> tuple[list[dict], str]:
    """The report's findings on the folder's rows so far, as the run's report gives them at
    its end (`report.diagnose`), each with its guide link; or the line that says all is well."""
    rows = run.diagnostics(warn=lambda _: None)
    history = [r for r in run.metrics(warn=lambda _: None) if r.get("train_loss") is not None]
    found = diagnose(config, rows, history, num_classes)
    views = [{"code": f.code, "message": f.message, "advice": f.advice,
              "guide": guide_href(f.code)} for f in found]
    healthy = "" if found or not rows else format_report([], rows).removeprefix("diagnosis: ")
    return views, healthy


class Lab:
    """The queue and its one worker thread; every change published to `hub`."""

    def __init__(self, runs: Path, data_dir: str | None = None, hub: Hub | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.runs, self.data_dir = Path(runs), data_dir
        self.hub = hub if hub is not None else Hub()
        self._log = log
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="jaxmlp-lab-training",
                                        daemon=True)
        self._worker.start()

    # --- what the server calls ------------------------------------------------------------------

    def submit(self, page_settings: Any) -> Job:
        """Queue a run of the page's settings; a `SettingsError` (or ConfigError) refuses them
        before anything is queued or written."""
        config, given = settings.parse(page_settings)
        if self.data_dir is not None:
            config = dataclasses.replace(config, data_dir=self.data_dir)
        with self._lock:
            if self._closing:
                raise settings.SettingsError("the lab is stopping: no new runs")
            job = Job(max(self._jobs, default=0) + 1, config, given)
            self._jobs[job.number] = job
            self._publish_job(job)
            self._wake.notify()
        return job

    def stop(self, number: int) -> Job:
        """Stop job `number`: a queued one never starts, a running one stops before its next
        chunk (its finished epochs stay). KeyError for a job this lab does not have."""
        with self._lock:
            job = self._jobs[number]
            job.stop.set()
            if job.status == QUEUED:
                job.status, job.message = CANCELLED, "stopped before it started"
                self._publish_job(job)
        return job

    def folder(self, number: int) -> Path:
        """The run folder this lab made for job `number` (KeyError when it made none)."""
        with self._lock:
            job = self._jobs[number]
            if job.folder is None or not job.folder.is_dir():
                raise KeyError(number)
            return job.folder

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """(the last event's number, every job's view): what a page that opens now is sent."""
        with self._lock:
            return self.hub.number, {"jobs": [j.view() for j in self._jobs.values()]}

    def close(self, timeout: float | None = None) -> None:
        """Cancel the queued jobs, stop the running one (its folder keeps its finished epochs
        and gets its page), and wait for the worker."""
        with self._lock:
            self._closing = True
            for job in self._jobs.values():
                job.stop.set()
                if job.status == QUEUED:
                    job.status, job.message = CANCELLED, "the lab stopped before it started"
                    self._publish_job(job)
            self._wake.notify_all()
        self._worker.join(timeout)
        self.hub.close()

    # --- changes, published -------------------------------------------------------------------

    def _publish_job(self, job: Job) -> None:
        """Under the lock: the job's state, as the pages see it, without its curves."""
        view = job.view()
        for key in ("loss", "live", "epochs", "picture"):
            view.pop(key)
        self.hub.publish("job", view)

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            self._publish_job(job)

    def log_line(self, job: Job, line: str) -> None:
        self._log(f"run {job.number}: {line}")
        with self._lock:
            job.log = [*job.log, line][-LOG_LINES:]
            self.hub.publish("log", {"number": job.number, "line": line})

    def frame(self, job: Job, f: Frame) -> None:
        base = (f.epoch - 1) * f.steps + f.first
        with self._lock:
            keep(job.loss, [[base + k + 1, v] for k, v in enumerate(f.step_loss)])
            if f.test_accuracy is not None:
                keep(job.live, [[base + len(f.step_loss), f.test_accuracy, f.test_loss]],
                     _later)
            job.picture = f.plane or job.picture
            self.hub.publish("frame", {"number": job.number, **f._asdict()})

    def epochs_done(self, job: Job, run: RunDir, config: Config, num_classes: int) -> None:
        """The folder's new epoch rows and the report's findings on them."""
        rows = run.metrics(warn=lambda _: None)
        found, healthy = finding_views(run, config, num_classes)
        with self._lock:
            new = [{k: r.get(k) for k in EPOCH_KEYS} for r in rows[job.epochs_seen:]]
            if not new and found == job.findings:
                return
            job.epochs_seen = len(rows)
            keep(job.epochs, new, _later)
            job.findings, job.healthy = found, healthy
            self.hub.publish("epoch", {"number": job.number, "rows": new, "findings": found,
                                       "healthy": healthy})

    # --- the worker ---------------------------------------------------------------------------

    def _next(self) -> Job | None:
        with self._lock:
            while True:
                job = next((j for j in self._jobs.values() if j.status == QUEUED), None)
                if job is not None:
                    job.status = PREPARING
                    self._publish_job(job)
                    return job
                if self._closing:
                    return None
                self._wake.wait()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._train(job)
            except Exception as e:  # never the worker's end: said on the page and the console
                self._log(traceback.format_exc())
                self._update(job, status=FAILED, message=f"the lab failed: {e!r}")

    def _train(self, job: Job) -> None:
        out = default_folder(job.config.dataset or "mnist", self.runs)
        listener = _Listener(self, job)
        try:
            runner.run(job.config, out, progress=False, log=lambda s: self.log_line(job, s),
                       diagnose=True, plots=True, given=set(job.given),
                       command=settings.command(job.given, out, self.data_dir),
                       epochs=live_epochs(listener))
            status, message = FINISHED, ""
        except runner.Diverged as e:
            status, message = DIVERGED, str(e)
        except runner.Interrupted as e:
            status, message = INTERRUPTED, _summary_message(e.folder)
        except (ConfigError, data.DataError, checkpoint.CheckpointError,
                runner.WriteFailed) as e:
            status, message = FAILED, str(e)
        self._finish(job, listener, out, status, message)

    def _finish(self, job: Job, listener: _Listener, out: Path, status: str,
                message: str) -> None:
        """The folder's page and last rows, then the job's end, published."""
        if (out / CONFIG_JSON).is_file():
            job.folder = out
            try:
                pages.write_run_page(out)
            except (OSError, ConfigError) as e:
                message = f"{message} (no page written: {e})".strip()
            if listener.prepared is not None:
                p = listener.prepared
                self.epochs_done(job, p.run, p.config, p.dataset.num_classes)
        elif status == INTERRUPTED:  # stopped while preparing, before its folder existed
            status = CANCELLED
        self._update(job, status=status, message=message, folder=job.folder)


def _summary_message(folder: str) -> str:
    """What summary.json says stopped the run."""
    try:
        return str(json.loads((Path(folder) / SUMMARY).read_text()).get("message", ""))
    except (OSError, ValueError):
        return ""


class _Listener:
    """`stream.Listener` for one job: the run's frames and epochs, to the lab."""

    def __init__(self, lab: Lab, job: Job) -> None:
        self.lab, self.job, self.stop = lab, job, job.stop
        self.prepared: runner.Prepared | None = None

    def started(self, p: runner.Prepared, plane: dict[str, Any] | None) -> None:
        self.prepared = p
        chunks = p.programs.chunks
        self.lab._update(self.job, status=RUNNING, folder=p.run.path, used=p.config.to_dict(),
                         steps=chunks.steps if chunks else 0, plane=plane)

    def frame(self, frame: Frame) -> None:
        self.lab.frame(self.job, frame)

    def epoch_begins(self, p: runner.Prepared) -> None:
        self.lab.epochs_done(self.job, p.run, p.config, p.dataset.num_classes)
