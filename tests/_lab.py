"""The lab's server as the tests meet it: `python -m jaxmlp.lab` started as a real process on
127.0.0.1, plain HTTP requests to it (http.client: the Host header is the test's to choose), and
a reader of its server-sent events.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Guards against a hang, never measurements: a server starts in seconds, answers in milliseconds.
START_S = 180.0
WAIT_S = 120.0


@dataclasses.dataclass
class LabProcess:
    """A running `python -m jaxmlp.lab`: its process, address, token and console lines."""

    process: subprocess.Popen
    runs: Path
    lines: list[str]
    url: str = ""

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port or 0

    @property
    def token(self) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)["token"][0]

    def rss_kb(self) -> int:
        """The server's resident memory (Linux's /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("VmRSS:")))

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send `signum` (Ctrl-C's by default) and wait for the process to end."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(WAIT_S)


def start_lab(runs: Path, *args: str) -> LabProcess:
    """Start the lab on a free port, and wait for the line with its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxmlp.lab", "--runs", str(runs), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ)
    lab = LabProcess(process, runs, [])
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lab.lines.append(line.rstrip("\n"))
            if line.startswith("jaxmlp lab: open "):
                lab.url = line.split("open ", 1)[1].strip()
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(START_S) or not lab.url:
        process.kill()
        raise RuntimeError("the lab did not start:\n" + "\n".join(lab.lines))
    return lab


def request(lab: LabProcess, method: str, path: str, body: Any = None, *, token: bool = True,
            host: str | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Any]:
    """(status, JSON or bytes) of one request; the token added to the query unless not."""
    if token:
        path += ("&" if "?" in path else "?") + f"token={lab.token}"
    connection = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=WAIT_S)
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    connection.putrequest(method, path, skip_host=True)
    connection.putheader("Host", host or f"127.0.0.1:{lab.port}")
    for k, v in {**({"Content-Type": "application/json"} if data else {}),
                 **(headers or {})}.items():
        connection.putheader(k, v)
    connection.putheader("Content-Length", str(len(data or b"")))
    connection.endheaders(data)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    kind = response.getheader("Content-Type", "")
    return response.status, json.loads(raw) if kind.startswith("application/json") else raw


class Events:
    """One page's stream of server-sent events: `next()` is (kind, data)."""

    def __init__(self, lab: LabProcess) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=WAIT_S)
        self.connection.request("GET", f"/api/events?token={lab.token}",
                                headers={"Host": f"127.0.0.1:{lab.port}"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        kind, data = "", []
        while True:
            line = self.response.fp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: "):
                data.append(text[6:])
            elif text == "" and data:
                yield kind, json.loads("".join(data))
                kind, data = "", []

    def close(self) -> None:
        """Hang up mid-stream, as a closed tab does."""
        self.connection.sock.shutdown(2)  # type: ignore[union-attr]
        self.connection.close()


def jobs(lab: LabProcess) -> list[dict[str, Any]]:
    """Every job as a page that opens now sees it (the stream's first event)."""
    stream = Events(lab)
    kind, data = next(iter(stream))
    stream.close()
    assert kind == "snapshot"
    return data["jobs"]


def wait_for(lab: LabProcess, number: int, check: Any, what: str) -> dict[str, Any]:
    """Follow the events until job `number`'s view (kept up to date here) passes `check`."""
    stream = Events(lab)
    view: dict[str, Any] = {}
    deadline = time.monotonic() + WAIT_S
    try:
        for kind, data in stream:
            if kind == "snapshot":
                view = next((j for j in data["jobs"] if j["number"] == number), {})
            elif data.get("number") == number:
                view = {**view, **data} if kind == "job" else view
                if kind == "frame":
                    view["frames"] = view.get("frames", 0) + 1
                if kind == "epoch":
                    view["epochs"] = [*view.get("epochs", []), *data["rows"]]
            if view and check(view):
                return view
            if time.monotonic() > deadline:
                break
    finally:
        stream.close()
    raise TimeoutError(f"job {number}: {what} did not happen (last seen: {view})")
