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
from jaxmlp.lab.follow import Follower
from jaxmlp.lab.hub import Hub
from jaxmlp.lab.stream import live_epochs
from jaxmlp.loop import steps_per_epoch
from jaxmlp.rundir import (
    CONFIG_JSON,
    DIVERGED,
    FINISHED,
    INTERRUPTED,
    SUMMARY,
    default_folder,
)

QUEUED, PREPARING, RUNNING = "queued", "preparing", "running"
FAILED, CANCELLED = "failed", "cancelled"  # before its folder held a run; or never started
ENDED = (FINISHED, DIVERGED, INTERRUPTED, FAILED, CANCELLED)
LOG_LINES = 40  # a job's last log lines kept for the pages
QUEUE_MAX = 20  # runs waiting at once: more is a page gone wrong, not a person


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
    stopped_by: str = "from the lab's page"  # how its stop is said (PageStop)
    used: dict[str, Any] | None = None  # the configuration it trains with
    steps: int = 0  # per epoch
    loss: list[list[Any]] = dataclasses.field(default_factory=list)  # [step, loss]
    live: list[list[Any]] = dataclasses.field(default_factory=list)  # [step, accuracy, loss]
    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
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


class Lab:
    """The queue and its one worker thread; every change published to `hub`."""

    def __init__(self, runs: Path, data_dir: str | None = None, hub: Hub | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.runs, self.data_dir = Path(runs), data_dir
        self.hub = hub if hub is not None else Hub()
        self._log = log
        self.lock = threading.Lock()  # the jobs' state, and the order of their events
        self._jobs: dict[int, Job] = {}
        self._wake = threading.Condition(self.lock)
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
        with self.lock:
            if self._closing:
                raise settings.SettingsError("the lab is stopping: no new runs")
            waiting = sum(j.status == QUEUED for j in self._jobs.values())
            if waiting >= QUEUE_MAX:
                raise settings.SettingsError(f"{waiting} runs are waiting already: stop some, "
                                             "or let them train, before asking for more")
            job = Job(max(self._jobs, default=0) + 1, config, given)
            self._jobs[job.number] = job
            self._publish_job(job)
            self._wake.notify()
        return job

    def stop(self, number: int) -> Job:
        """Stop job `number`: a queued one never starts, a running one stops before its next
        chunk (its finished epochs stay). KeyError for a job this lab does not have."""
        with self.lock:
            job = self._jobs[number]
            job.stop.set()
            if job.status == QUEUED:
                job.status, job.message = CANCELLED, "stopped before it started"
                self._publish_job(job)
        return job

    def folder(self, number: int) -> Path:
        """The run folder this lab made for job `number` (KeyError when it made none)."""
        with self.lock:
            job = self._jobs[number]
            if job.folder is None or not job.folder.is_dir():
                raise KeyError(number)
            return job.folder

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """(the last event's number, every job's view): what a page that opens now is sent."""
        with self.lock:
            return self.hub.number, {"jobs": [j.view() for j in self._jobs.values()]}

    def close(self, timeout: float | None = None) -> None:
        """Cancel the queued jobs, stop the running one (its folder keeps its finished epochs
        and gets its page), and wait for the worker."""
        with self.lock:
            self._closing = True
            for job in self._jobs.values():
                job.stopped_by = "as the lab stopped"
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
        with self.lock:
            for key, value in changes.items():
                setattr(job, key, value)
            self._publish_job(job)

    def log_line(self, job: Job, line: str) -> None:
        self._log(f"run {job.number}: {line}")
        with self.lock:
            job.log = [*job.log, line][-LOG_LINES:]
            self.hub.publish("log", {"number": job.number, "line": line})

    # --- the worker ---------------------------------------------------------------------------

    def _next(self) -> Job | None:
        with self.lock:
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
        listener = Follower(job, self.lock, self.hub.publish,
                            lambda p, plane: self._started(job, p, plane))
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

    def _started(self, job: Job, p: runner.Prepared, plane: dict[str, Any] | None) -> None:
        steps = steps_per_epoch(p.config, p.dev.x_train.shape[0])
        self._update(job, status=RUNNING, folder=p.run.path, used=p.config.to_dict(),
                     steps=steps, plane=plane)

    def _finish(self, job: Job, listener: Follower, out: Path, status: str,
                message: str) -> None:
        """The folder's page and last rows, then the job's end, published."""
        if (out / CONFIG_JSON).is_file():
            job.folder = out
            try:
                pages.write_run_page(out)
            except (OSError, ConfigError) as e:
                message = f"{message} (no page written: {e})".strip()
            listener.epochs(final=True)
        elif status == INTERRUPTED:  # stopped while preparing, before its folder existed
            status = CANCELLED
        self._update(job, status=status, message=message, folder=job.folder)


def _summary_message(folder: str) -> str:
    """What summary.json says stopped the run."""
    try:
        return str(json.loads((Path(folder) / SUMMARY).read_text()).get("message", ""))
    except (OSError, ValueError):
        return ""
