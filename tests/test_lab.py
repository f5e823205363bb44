"""`python -m jaxmlp.lab`: the real server on 127.0.0.1 (a process of its own), driven by plain
HTTP, by its event stream and by headless Chromium (tests/_browser.py).

- A live run is the command's run: trained in chunks, its metrics.jsonl and diagnostics.jsonl
  are those of `python -m jaxmlp.train` with the same settings (its recorded command reproduces
  it), and `--resume` finishes one stopped from the page.
- The page loads, starts a small run on a 2-D set, its curve and boundary redraw as the run
  goes, it stops the run, and the run's folder holds its report.html (the screenshot is
  test-output/pages/lab.png, the one docs/lab.md shows).
- Local means local: no token, a foreign Host, a path in any parameter and invalid settings are
  refused with a clear status, and nothing is run or written.
- Load: 20 pages follow one run and every request is answered while it trains; pages that hang
  up mid-stream leave nothing behind; the server's memory stays flat.
- One training at a time, the next queued; Ctrl-C stops the lab cleanly.

Every run trains a toy set (moons: 1,000 points) or the committed MNIST sample with a tiny
network, so the file stays within about a minute of CPU.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import PIL.Image
import pytest
from _browser import Browser, find_chromium
from _lab import WAIT_S, Events, LabProcess, jobs, request, start_lab, wait_for

from jaxmlp import programs, runner
from jaxmlp.config import Config
from jaxmlp.lab import settings
from jaxmlp.lab.stream import Frame, live_epochs
from jaxmlp.rundir import REPORT_HTML, SUMMARY
from jaxmlp.train import main as train_main

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("JAXMLP_TEST_OUTPUT", REPO / "test-output")) / "pages"
# A run that cannot end before the test stops it: moons, a thousand epochs of 31 steps.
LONG = {"dataset": "moons", "epochs": "1000"}
# A bound on answering one request while a run trains, far above the milliseconds it takes: a
# server that made requests wait for the training (a lock held through a chunk, a blocking
# call on the event loop) would wait for the whole run, which lasts far longer.
ANSWER_S = 10.0


def read(folder: Path, name: str) -> Any:
    text = (folder / name).read_text()
    return ([json.loads(s) for s in text.splitlines() if s.strip()] if name.endswith(".jsonl")
            else json.loads(text))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcess]:
    server = start_lab(tmp_path_factory.mktemp("lab") / "runs")
    yield server
    server.stop()


def submit(lab: LabProcess, values: dict[str, str]) -> int:
    status, body = request(lab, "POST", "/api/runs", {"settings": values})
    assert status == 202, body
    return body["number"]


def stop(lab: LabProcess, number: int) -> dict[str, Any]:
    status, body = request(lab, "POST", f"/api/runs/{number}/stop")
    assert status == 200, body
    return wait_for(lab, number, lambda j: j["status"] in ("interrupted", "cancelled",
                                                            "finished"), "its end")


# --- a live run is the command's run -------------------------------------------------------------


class Recorder:
    """A `stream.Listener` that keeps the frames and stops after `stop_after` of them."""

    stopped_by = "from the lab's page"

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop, self.frames, self.stop_after = threading.Event(), [], stop_after
        self.every_frame = True

    def started(self, p: runner.Prepared, plane: dict[str, Any] | None) -> None:
        self.plane = plane

    def frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.stop_after is not None and len(self.frames) >= self.stop_after:
            self.stop.set()

    def epoch_begins(self, p: runner.Prepared) -> None:
        pass

    def due(self) -> bool:
        return self.every_frame


def test_epochs_of_one_chunk_compute_the_view_only_when_a_frame_is_due(tmp_path: Path) -> None:
    """A toy epoch is one chunk (the epoch program): its frame carries the step losses always,
    the live test numbers and the plane only when the pages would get them, and after the last
    epoch; the run's own metrics are the same either way."""
    config = Config(dataset="moons", hidden=(8,), epochs=3)
    seen = {}
    for every in (True, False):
        listener = Recorder()
        listener.every_frame = every
        out = tmp_path / str(every)
        runner.run(config, out, progress=False, log=lambda s: None,
                   epochs=live_epochs(listener))
        seen[every] = read(out, "metrics.jsonl")
        assert [f.step_loss for f in listener.frames] == [m["step_loss"] for m in seen[every]]
        viewed = [f.test_accuracy is not None and f.plane is not None for f in listener.frames]
        assert viewed == ([True] * 3 if every else [False, False, True])
    assert [m["step_loss"] for m in seen[True]] == [m["step_loss"] for m in seen[False]]


def test_a_live_run_is_the_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """In chunks of 4 steps (the 31 steps of an epoch of moons: 7 chunks of 4 and one of 3), a
    live run writes the metrics and diagnostics rows that the command's run writes, and its
    frames cover every step once, in order; its recorded command reproduces it; stopped after
    an epoch and a half, `--resume` finishes it to the same numbers."""
    monkeypatch.setattr(programs, "CHUNK_EXAMPLES", 128)  # batch 32: chunks of 4 steps
    given = {"dataset": "moons", "hidden": (8,), "epochs": 2}
    config = Config(**given)
    live, listener = tmp_path / "live", Recorder()
    runner.run(config, live, progress=False, diagnose=True, log=lambda s: None,
               given=set(given), command=settings.command(given, tmp_path / "again"),
               epochs=live_epochs(listener))
    assert [(f.epoch, f.first, len(f.step_loss)) for f in listener.frames] == [
        (e, first, 4 if first < 28 else 3) for e in (1, 2) for first in range(0, 31, 4)]
    # The recorded command, run as typed (python -m jaxmlp.train ... --out again --diagnose
    # --plots): the same numbers.
    argv = read(live, "config.json")["command"][1:]
    assert train_main([*argv, "--no-progress"]) == 0
    again = tmp_path / "again"
    metrics, expected = read(live, "metrics.jsonl"), read(again, "metrics.jsonl")
    for m, e in zip(metrics, expected, strict=True):
        # Every step, the test numbers: the same computation, bit for bit. The epoch's mean
        # loss: the mean of the same float32 losses, reduced in another order (concatenated
        # chunks), so within a few float32 roundings of 31 numbers (31 * 2**-24 relative).
        assert m["step_loss"] == e["step_loss"] == [v for f in listener.frames
                                                    if f.epoch == m["epoch"]
                                                    for v in f.step_loss]
        assert (m["test_accuracy"], m["test_loss"]) == (e["test_accuracy"], e["test_loss"])
        assert m["train_loss"] == pytest.approx(e["train_loss"], rel=31 * 2**-24)
    assert read(live, "diagnostics.jsonl") == read(again, "diagnostics.jsonl")

    stopped, halfway = tmp_path / "stopped", Recorder(stop_after=12)
    with pytest.raises(runner.Interrupted):
        runner.run(config, stopped, progress=False, diagnose=True, log=lambda s: None,
                   given=set(given), epochs=live_epochs(halfway))
    summary = read(stopped, SUMMARY)
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 1
    assert f"stopped from the lab's page; the finished epochs are checkpointed: continue with " \
           f"--resume {stopped}" == summary["message"]
    assert train_main(["--resume", str(stopped), "--no-progress"]) == 0
    assert [m["step_loss"] for m in read(stopped, "metrics.jsonl")] == [
        m["step_loss"] for m in expected]


def test_the_page_settings_become_the_commands_config() -> None:
    """The page's text becomes the Config the flags would; presets and data set defaults as
    the command line's."""
    config, given = settings.parse({"dataset": "moons", "hidden": "8, 4", "learning_rate":
                                    "0.05", "train_subset": "", "epochs": 3})
    assert config == Config(dataset="moons", hidden=(8, 4), learning_rate=0.05, epochs=3)
    assert given == {"dataset": "moons", "hidden": (8, 4), "learning_rate": 0.05,
                     "train_subset": None, "epochs": 3}
    assert settings.parse({"hidden": ""})[0].hidden == ()
    form = settings.form()
    assert form["presets"]["notes"]["output"] == "sum_normalize"
    assert form["dataset_defaults"]["moons"]["hidden"] == "16 16"
    offered = [f["name"] for g in form["groups"] for f in g["fields"]]
    assert "data_dir" not in offered and all(f["meaning"] for g in form["groups"]
                                             for f in g["fields"])
    assert settings.command({"hidden": (8, 4)}, Path("runs/x"))[1:] == [
        "--hidden", "8", "4", "--out", "runs/x", "--diagnose", "--plots"]


# --- the page in a browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing, a skip here and a failure in CI."""
    executable = find_chromium()
    if executable is None:
        message = ("chromium not found: apt-get install chromium (Debian's package; .ci/run "
                   "installs it)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; in CI a missing browser is a failure, not a skip")
        pytest.skip(message)
    b = Browser(executable)
    yield b
    b.close()


def choose(browser: Browser, values: dict[str, str]) -> None:
    """Set form fields as a person does: a value, then its change event."""
    for name, value in values.items():
        browser.evaluate(f"(() => {{ const e = document.querySelector('[name={name}]'); "
                         f"e.value = {json.dumps(value)}; "
                         "e.dispatchEvent(new Event('change')); })()")


def draws(browser: Browser) -> list[int]:
    return browser.evaluate("['loss-chart', 'plane'].map(i => "
                            "Number(document.getElementById(i).dataset.draws))")


def test_the_page_trains_shows_and_stops(lab: LabProcess, browser: Browser) -> None:
    """The page starts a run on moons; the loss curve and the boundary redraw at least twice as
    it trains; its stop button stops it; the folder the page names holds report.html, and the
    page's link to it loads. Then a second, finished run drawn beside it, the settings that
    differ highlighted: the screenshot docs/lab.md shows."""
    browser.goto(lab.url)
    browser.wait_until("document.querySelectorAll('#fields select').length > 5", "the form")
    choose(browser, LONG)
    browser.evaluate("document.getElementById('train').click()")
    browser.wait_until("!!document.querySelector('#runs .badge.running')", "the run starts")
    before = draws(browser)
    browser.wait_until("Number(document.getElementById('loss-chart').dataset.draws) >= "
                       f"{before[0] + 2} && Number(document.getElementById('plane')"
                       f".dataset.draws) >= {before[1] + 2}", "two redraws of each")
    browser.evaluate("document.querySelector('#runs button.stop').click()")
    browser.wait_until("!!document.querySelector('#runs .badge.interrupted')", "the run stops")
    folder = Path(browser.wait_until("document.querySelector('#run-head code.folder')"
                                     "?.textContent", "the folder named"))
    assert (folder / REPORT_HTML).is_file()
    summary = read(folder, SUMMARY)
    assert summary["status"] == "interrupted" and summary["epochs_done"] >= 1
    assert "stopped from the lab's page" in browser.evaluate("document.body.innerText")
    assert "stopped as the lab stopped" not in summary["message"]
    status = browser.evaluate("fetch(document.querySelector('#runs a').href).then(r => r.status)")
    assert status == 200

    choose(browser, {"epochs": "30", "example_reduction": "sum", "learning_rate": "0.001"})
    browser.evaluate("document.getElementById('train').click()")
    browser.wait_until("!!document.querySelector('#runs tr[data-number] .badge.finished')",
                       "the second run finishes")
    browser.evaluate("document.querySelector(`#runs tr[data-number='${[...document"
                     ".querySelectorAll('#runs tr[data-number]')].map(r => +r.dataset.number)"
                     ".sort((a, b) => a - b)[0]}'] input`).click()")
    differs = browser.wait_until("[...document.querySelectorAll('table.diff tr.differs "
                                 "td:first-child')].map(t => t.textContent)", "the diff")
    assert set(differs) == {"epochs", "example_reduction", "learning_rate"}
    browser.wait_until("document.querySelectorAll('#loss-chart polyline').length == 2",
                       "both curves")
    browser.wait_until("!!document.querySelector('#findings li, #findings p')", "the diagnosis")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with PIL.Image.open(io.BytesIO(browser.screenshot())) as shot:  # 256 colours: a small file
        shot.convert("RGB").quantize(256).save(SCREENSHOTS / "lab.png", optimize=True)
    assert browser.errors() == []


# --- local means local ---------------------------------------------------------------------------


def nothing_happened(lab: LabProcess, before: tuple[int, list[str]]) -> None:
    assert (len(jobs(lab)), sorted(os.listdir(lab.runs))) == before


def state(lab: LabProcess) -> tuple[int, list[str]]:
    return len(jobs(lab)), sorted(os.listdir(lab.runs))


def test_requests_without_the_token_or_from_another_host_are_refused(lab: LabProcess) -> None:
    before = state(lab)
    good = {"settings": {"dataset": "moons"}}
    for method, path, body in (("GET", "/", None), ("GET", "/api/events", None),
                               ("POST", "/api/runs", good), ("GET", "/lab.js", None)):
        status, reply = request(lab, method, path, body, token=False)
        assert status == 403 and "token" in reply["error"], (path, reply)
        status, reply = request(lab, method, path + "?token=not-the-token", body, token=False)
        assert status == 403, path
        # DNS rebinding: another site's name resolved to 127.0.0.1, with the token even.
        status, reply = request(lab, method, path, body, host=f"evil.example:{lab.port}")
        assert status == 403 and "Host" in reply["error"], (path, reply)
    status, _ = request(lab, "GET", "/", host=f"localhost:{lab.port}")
    assert status == 200
    nothing_happened(lab, before)


def test_no_route_takes_a_path(lab: LabProcess) -> None:
    before = state(lab)
    cases = [
        ("POST", "/api/runs", {"settings": {"dataset": "moons", "data_dir": "/etc"}}),
        ("POST", "/api/runs", {"settings": {"dataset": "../../etc/passwd"}}),
        ("POST", "/api/runs", {"settings": {"dataset": "moons"}, "out": "/tmp/elsewhere"}),
        ("GET", "/api/form?file=/etc/passwd", None),
        ("GET", "/runs/1/..%2F..%2Fconfig.json", None),
        ("GET", "/runs/1/%2Fetc%2Fpasswd", None),
        ("GET", "/guide/..%2F..%2Fpyproject.toml", None),
        ("GET", "/guide/%2Fetc%2Fpasswd", None),
    ]
    for method, path, body in cases:
        status, reply = request(lab, method, path, body)
        assert status in (400, 404) and reply["error"], (path, reply)
    nothing_happened(lab, before)


@pytest.mark.parametrize("values", [
    {"dataset": "moons", "learning_rate": "abc"}, {"dataset": "moons", "epochs": "0"},
    {"dataset": "moons", "batch_size": "5000"}, {"hidden": "16 -3"},
    {"dataset": "moons", "activation": "relux"}, {"dataset": "spiral"},
    {"dataset": "moons", "warmup_epochs": "2", "epochs": "2"},
])
def test_invalid_settings_are_refused_as_the_command_refuses_them(
        lab: LabProcess, values: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Status 400 with the command line's own one-line message; nothing queued or written."""
    before = state(lab)
    status, reply = request(lab, "POST", "/api/runs", {"settings": values})
    assert status == 400
    argv = [a for k, v in values.items() for a in (f"--{k.replace('_', '-')}", *v.split())]
    with pytest.raises(SystemExit) as exit_:
        train_main([*argv, "--no-progress", "--out", str(lab.runs / "never")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {reply['error']}"
    nothing_happened(lab, before)


# --- load, the queue, Ctrl-C ---------------------------------------------------------------------


def follow(lab: LabProcess, number: int, frames: int, out: list[Any]) -> None:
    """A page: the stream until `frames` frames of job `number`, then hang up mid-stream."""
    stream, seen = Events(lab), 0
    try:
        for kind, data in stream:
            seen += kind == "frame" and data["number"] == number
            if seen >= frames:
                out.append(seen)
                return
    finally:
        stream.close()


def timed(lab: LabProcess, method: str, path: str) -> float:
    t0 = time.monotonic()
    status, _ = request(lab, method, path)
    assert status == 200
    return time.monotonic() - t0


def test_twenty_pages_follow_one_run(lab: LabProcess) -> None:
    """20 pages follow a run (5 rounds, each hanging up mid-stream): every request is answered
    within `ANSWER_S` while the run trains, the pages that left leave no stream behind, and the
    server's memory does not grow with them."""
    number = submit(lab, LONG)
    wait_for(lab, number, lambda j: j.get("frames", 0) >= 1, "a first frame")
    _, baseline = request(lab, "GET", "/api/status")  # the pages already there (a browser's)
    rss = []
    for _ in range(5):
        got: list[int] = []
        pages = [threading.Thread(target=follow, args=(lab, number, 3, got)) for _ in range(20)]
        for p in pages:
            p.start()
        answers = [timed(lab, "GET", path) for path in ("/", "/api/form", "/api/status",
                                                        "/lab.js", "/lab.css")]
        for p in pages:
            p.join(WAIT_S)
        assert got == [3] * 20 and max(answers) < ANSWER_S, (got, answers)
        _, status = request(lab, "GET", "/api/status")
        # The pages that hung up are gone as soon as the server notices (at once: it awaits
        # the disconnect beside each stream); the guard only bounds the wait for that.
        wait = time.monotonic() + WAIT_S
        while status["streams"] > baseline["streams"]:
            assert time.monotonic() < wait, status
            _, status = request(lab, "GET", "/api/status")
        rss.append(lab.rss_kb())
    assert jobs(lab)[number - 1]["status"] == "running"  # all of it while the run trained
    # Flat: after the first round, 80 more pages cost less than 16 MB (a leak of what one
    # page is sent, a snapshot of some 100 kB, would be 8 MB; the event ring's bound is 6 MB).
    assert rss[-1] - rss[0] < 16 * 1024, rss
    stop(lab, number)


def test_one_training_at_a_time_the_next_queued(lab: LabProcess) -> None:
    first = submit(lab, LONG)
    second = submit(lab, {"dataset": "moons", "epochs": "2"})
    wait_for(lab, first, lambda j: j["status"] == "running", "the first runs")
    views = {j["number"]: j for j in jobs(lab)}
    assert (views[first]["status"], views[second]["status"]) == ("running", "queued")
    stop(lab, first)
    done = wait_for(lab, second, lambda j: j["status"] == "finished", "the second finishes")
    assert (Path(done["folder"]) / REPORT_HTML).is_file()
    third = submit(lab, LONG)
    fourth = submit(lab, LONG)
    assert stop(lab, fourth)["status"] == "cancelled"  # stopped while queued: never started
    stop(lab, third)
    assert all(j["number"] != fourth or j["folder"] is None for j in jobs(lab))


def test_ctrl_c_stops_the_lab_cleanly(tmp_path: Path) -> None:
    """Ctrl-C while a run trains: the run stops before its next chunk with its finished epochs
    and its page, the queued one never starts, and the command ends with status 0."""
    server = start_lab(tmp_path / "runs")
    try:
        number = submit(server, LONG)
        submit(server, LONG)
        view = wait_for(server, number, lambda j: len(j.get("epochs", [])) >= 1, "an epoch")
        assert server.stop(signal.SIGINT) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
    folder = Path(view["folder"])
    summary = read(folder, SUMMARY)
    assert summary["status"] == "interrupted"
    # Ctrl-C itself ends the epoch in progress (as in any run), or the lab, stopping, ends the
    # run before its next chunk: whichever comes first says so.
    assert re.match(r"(interrupted \(Ctrl-C\)|stopped as the lab stopped); the finished "
                    "epochs are checkpointed", summary["message"]), summary["message"]
    assert (folder / REPORT_HTML).is_file()
    assert os.listdir(server.runs) == [folder.name]  # the queued run never made a folder
    assert server.lines[-1].startswith("jaxmlp lab stopped"), server.lines
    assert not any("Traceback" in line for line in server.lines), server.lines
    shutil.rmtree(server.runs)


def test_a_run_that_diverges_says_why_with_its_guide_section(lab: LabProcess) -> None:
    """The report's finding on a diverged run reaches the pages with its guide link, and the
    guide page the lab serves has the section the link names; a finished run's pictures are
    served from its folder."""
    number = submit(lab, {"dataset": "moons", "optimizer": "sgd", "learning_rate": "1e30",
                          "schedule": "constant", "epochs": "3"})
    view = wait_for(lab, number, lambda j: j["status"] == "diverged", "its divergence")
    assert view["message"].startswith("the loss became non-finite")
    job = next(j for j in jobs(lab) if j["number"] == number)
    codes = {f["code"]: f["guide"] for f in job["findings"]}
    assert "nonfinite" in codes, job["findings"]
    page, anchor = codes["nonfinite"].split("#")
    status, html = request(lab, "GET", "/" + page)
    assert status == 200 and f'id="{anchor}"'.encode() in html
    status, report = request(lab, "GET", f"/runs/{number}/{REPORT_HTML}")
    assert status == 200 and b"non-finite" in report
    finished = next(j for j in jobs(lab) if j["status"] == "finished")
    status, png = request(lab, "GET", f"/runs/{finished['number']}/learning_curves.png")
    assert status == 200 and png.startswith(b"\x89PNG")


def test_the_token_may_come_as_the_pages_cookie(lab: LabProcess) -> None:
    """The cookie the page sets carries the token for the addresses a run's page names
    without it (its pictures); a malformed Cookie header is refused like a missing token."""
    cookie = f"jaxmlp-lab-{lab.port}={lab.token}"
    status, _ = request(lab, "GET", "/api/form", token=False, headers={"Cookie": cookie})
    assert status == 200
    for bad in (f"jaxmlp-lab-{lab.port}=wrong", 'x="unclosed; ;;=', ""):
        status, reply = request(lab, "GET", "/api/form", token=False, headers={"Cookie": bad})
        assert status == 403 and "token" in reply["error"], bad


def test_a_stream_behind_the_hub_gets_a_snapshot_and_waiters_wake() -> None:
    """The hub keeps its last events; one asked for events it no longer keeps says so (the
    stream then sends a snapshot); a waiting stream wakes on an event from another thread, and
    leaves nothing behind."""
    import asyncio

    from jaxmlp.lab.hub import Hub

    hub = Hub(keep=3)
    for k in range(5):
        hub.publish("frame", {"k": k})
    assert hub.since(5) == [] and len(hub.since(2)) == 3 and hub.since(1) is None
    assert b'"k":4' in hub.since(4)[0]

    async def wait() -> int:
        threading.Timer(0.01, hub.publish, ("frame", {"k": 5})).start()
        await hub.wait(5, timeout=WAIT_S)
        return hub.number

    assert asyncio.run(wait()) == 6 and hub.waiting == 0
    hub.close()
    assert asyncio.run(asyncio.wait_for(hub.wait(6), WAIT_S)) is None and hub.waiting == 0
