"""A live run's throughput against `python -m jaxmlp.train` with the same settings.

    python -m benchmarks.bench_lab                      # MNIST, default network, 3 epochs, x3
    python -m benchmarks.bench_lab dataset=moons epochs=40
    python -m benchmarks.bench_lab --smoke              # seconds: does it still run?

The lab is started as a person starts it (`python -m jaxmlp.lab`, its own process) and one page
follows it (a reader of its event stream, as the browser is), so the training thread does all it
does for a page: each chunk's frame read back and published. Each repetition asks the lab for a
run with the given settings, then runs the command that run's config.json records (`python -m
jaxmlp.train ... --diagnose --plots`, in a process of its own) on another folder: the same
settings, the same programs' steps, the same outputs. Repetitions alternate lab, command, lab,
... so a burst of load elsewhere hits both alike.

Compared: seconds per epoch, from each run's metrics.jsonl (`epoch_seconds`: the epoch's steps,
its evaluation, its checkpoint and diagnostics, as each run times its own epochs), the first
epoch of each run left out (warm-up), the median over the rest and over the repetitions. The
ratio lab / command is the figure: within 1.10 is the lab's bar. Not a test: it prints figures
and exits 0 (except on a broken setup).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks import _common as common

START_S = 300.0  # guards against a hang, not measurements


class Lab:
    """`python -m jaxmlp.lab` in a process of its own, with one page following it."""

    def __init__(self, runs: Path, data_dir: str | None) -> None:
        args = ["--data-dir", data_dir] if data_dir else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jaxmlp.lab", "--runs", str(runs), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.process.stdout:  # type: ignore[union-attr]
            if line.startswith("jaxmlp lab: open "):
                url = urllib.parse.urlsplit(line.split("open ", 1)[1].strip())
                break
        else:
            raise RuntimeError("the lab did not start")
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        self.port, self.token = url.port, urllib.parse.parse_qs(url.query)["token"][0]
        self.jobs: dict[int, dict[str, Any]] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._follow, daemon=True).start()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=START_S)

    def _follow(self) -> None:
        """The page: every event read, the jobs' states kept."""
        c = self._connection()
        c.request("GET", f"/api/events?token={self.token}")
        response, kind = c.getresponse(), ""
        for raw in response.fp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in ("job", "snapshot"):
                data = json.loads(line[6:])
                with self.changed:
                    for job in data["jobs"] if kind == "snapshot" else [data]:
                        self.jobs[job["number"]] = job
                    self.changed.notify_all()

    def run(self, settings: dict[str, str]) -> Path:
        """Ask for a run, wait for it to end; its folder."""
        c = self._connection()
        c.request("POST", f"/api/runs?token={self.token}", json.dumps({"settings": settings}),
                  {"Content-Type": "application/json"})
        reply = json.loads(c.getresponse().read())
        if "number" not in reply:
            raise SystemExit(f"the lab refused the settings: {reply.get('error')}")
        number = reply["number"]
        with self.changed:
            ended = self.changed.wait_for(
                lambda: self.jobs.get(number, {}).get("status") in (
                    "finished", "diverged", "interrupted", "failed"), START_S)
        job = self.jobs[number]
        if not ended or job["status"] != "finished":
            raise SystemExit(f"the lab's run did not finish: {job}")
        return Path(job["folder"])

    def close(self) -> None:
        self.process.send_signal(2)
        self.process.wait(START_S)


def command_run(lab_folder: Path, out: Path) -> Path:
    """The command the lab's run records, into `out`."""
    argv = json.loads((lab_folder / "config.json").read_text())["command"][1:]
    at = argv.index("--out")
    argv[at + 1] = str(out)
    subprocess.run([sys.executable, "-m", "jaxmlp.train", *argv, "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def epoch_seconds(folder: Path) -> list[float]:
    rows = [json.loads(s) for s in (folder / "metrics.jsonl").read_text().splitlines() if s]
    return [r["epoch_seconds"] for r in rows if r.get("train_loss") is not None][1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="*", metavar="NAME=VALUE",
                        help="the page's settings (e.g. dataset=moons epochs=40)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(common.SHARED_MNIST.parent)
                        if common.SHARED_MNIST.is_dir() else None)
    parser.add_argument("--smoke", action="store_true", help="moons, 3 epochs, once")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    settings = {"dataset": "mnist", "epochs": "3"}
    if args.smoke:
        settings, args.repeats = {"dataset": "moons", "epochs": "3"}, 1
    settings.update(s.split("=", 1) for s in args.settings)
    root = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    lab = Lab(root / "runs", args.data_dir)
    times: dict[str, list[float]] = {"lab": [], "command": []}
    loads: list[float | None] = []
    try:
        for r in range(args.repeats):
            loads.append(common.other_load())
            folder = lab.run(settings)
            times["lab"] += epoch_seconds(folder)
            loads.append(common.other_load())
            times["command"] += epoch_seconds(command_run(folder, root / f"command-{r}"))
    finally:
        lab.close()
        shutil.rmtree(root, ignore_errors=True)
    lab_s, cli_s = common.median(times["lab"]), common.median(times["command"])
    result = {"settings": settings, "repeats": args.repeats, "epochs_timed": times,
              "lab_median_epoch_seconds": lab_s, "command_median_epoch_seconds": cli_s,
              "ratio": lab_s / cli_s, "other_load": loads, "cpu": common.cpu_model()}
    print(f"settings {settings}, {args.repeats} repetitions, first epoch of each left out")
    print(f"seconds per epoch, median: lab {lab_s:.4f}, python -m jaxmlp.train {cli_s:.4f}; "
          f"lab / command = {lab_s / cli_s:.3f} (the bar: 1.10)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
