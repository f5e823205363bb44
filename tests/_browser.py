"""A headless Chromium driven through the DevTools protocol over a pipe, for the page tests.

Debian's `chromium` package is the browser (`.ci/run` installs it when missing); no browser is
ever downloaded. Chromium started with `--remote-debugging-pipe` reads protocol commands from
its file descriptor 3 and writes replies and events to 4, each message JSON ended by a NUL
byte: the standard library is the whole client (no Selenium, no websocket package).

`Browser().open(path)` loads a file and returns what a test checks: every image's
`naturalWidth` and alt text, every console error and uncaught exception, every URL the page
asked for, its text, and a PNG screenshot. For a live page (the lab's), `goto(url)`, then
`evaluate` and `wait_until` in it, `screenshot()` and `errors()`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

# The flags the page tests run Chromium with: headless, no sandbox (containers), no GPU, and
# nothing that reaches the network on its own (first-run, background, component updates, sync).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1200,900", "--hide-scrollbars",
         "--mute-audio", "--disable-extensions")
# A guard against a browser that hangs, never a measurement: a page loads in well under a second.
WAIT_S = 120.0

# What the page reports about itself once loaded (run in the page: the protocol's evaluate).
_INSPECT = """(() => ({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt'),
                                          width: i.naturalWidth, complete: i.complete})),
  figures: [...document.querySelectorAll('svg[role=img]')].map(s => s.getAttribute('aria-label')),
  scripts: document.querySelectorAll('script').length,
  handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])
              .filter(a => a.name.startsWith('on')).length,
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  text: document.body.innerText,
  title: document.title,
}))()"""


def find_chromium() -> str | None:
    """Debian's chromium (or another `chromium` on PATH), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclasses.dataclass
class Loaded:
    """What one page load showed."""

    images: list[dict[str, Any]]
    figures: list[str | None]
    scripts: int
    handlers: int
    pwned: str | None
    text: str
    title: str
    console_errors: list[str]
    requests: list[str]
    screenshot: bytes


class Browser:
    """One headless Chromium for a test module: `open` as many pages as needed, then `close`."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        self.log_path = Path(self.profile) / "chromium.log"
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o600)
        # posix_spawn puts the pipe ends at 3 and 4 in the child, without a preexec_fn (unsafe
        # in a process with threads, as any process that imported jax has); in a session of its
        # own, so `close` can end the browser and every helper process it started, and no other.
        self.pid = os.posix_spawn(
            executable, [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, log, 1),
                          (os.POSIX_SPAWN_DUP2, log, 2),
                          (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                          (os.POSIX_SPAWN_DUP2, from_browser_w, 4)],
            setsid=True)
        for fd in (to_browser_r, from_browser_w, devnull, log):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    # --- the protocol ---------------------------------------------------------------------------

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], WAIT_S)
            if not ready:
                raise TimeoutError(f"chromium sent nothing for {WAIT_S:.0f} s "
                                   f"(its log: {self.log_path})")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (its log: {self.log_path}): "
                                   + self.log_path.read_text()[-2000:])
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.send(method, self.session, **params)

    def _wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message())

    # --- what the tests use -----------------------------------------------------------------------

    def open(self, path: Path) -> Loaded:
        """Load `path` (file://), wait for its load event, and report on it."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._page(f"{domain}.enable")
        self.events.clear()
        self._page("Page.navigate", url=path.resolve().as_uri())
        self._wait_for("Page.loadEventFired")
        found = self._page("Runtime.evaluate", expression=_INSPECT, returnByValue=True)
        page = found["result"]["value"]
        shot = self._page("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return Loaded(**page, console_errors=self._errors(), requests=self._requests(),
                      screenshot=base64.b64decode(shot["data"]))

    def goto(self, url: str) -> None:
        """Load `url` and wait for its load event; its events are kept from here on."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._page(f"{domain}.enable")
        self.events.clear()
        self._page("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise awaited)."""
        found = self._page("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression}: {found['exceptionDetails'].get('text')}")
        return found["result"].get("value")

    def wait_until(self, expression: str, what: str, timeout: float = WAIT_S) -> Any:
        """Poll `expression` until it is truthy; `timeout` only guards against a hang."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.05)
        return value

    def screenshot(self) -> bytes:
        shot = self._page("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])

    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions since the last `goto`."""
        return self._errors()

    def _errors(self) -> list[str]:
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description")))
                                       for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"{p['entry'].get('text')} ({p['entry'].get('url', '')})")
        return errors

    def _requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the browser's own session: its helpers too
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)
