"""The lab's HTTP side: a Starlette application over a `Lab`.

Local means local. `Guard`, around every route, refuses a request whose `Host` header names
another site (a page elsewhere that rebinds its own name to 127.0.0.1 sends its own name) and
one without the lab's token: in the query (`?token=`, the address the command prints) or in the
cookie the first such request sets (so the pictures a run's page names by relative address load
too); it refuses any query parameter but the token. No route takes a path: a run is named by
its number, and only the folders this lab made are read; a picture by a plain file name in
that folder; a guide page by its name in a fixed list.

Routes: the page and its script and stylesheet (package data in `static/`), `api/form`,
`api/events` (server-sent events: a snapshot, then every change), `POST api/runs` (queue a run;
the settings refused with the command line's one-line message, status 400), `POST
api/runs/N/stop`, `runs/N/report.html` and its pictures, `guide/PAGE`.
"""

from __future__ import annotations

import hmac
import http.cookies
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from jaxmlp.config import ConfigError
from jaxmlp.lab import settings
from jaxmlp.lab.hub import encode
from jaxmlp.lab.jobs import Lab
from jaxmlp.pages import markdown
from jaxmlp.pages.guide import DOCS, FINDING_GUIDE
from jaxmlp.rundir import REPORT_HTML

STATIC = Path(__file__).resolve().parent / "static"
_ENV = jinja2.Environment(
    loader=jinja2.ChoiceLoader([jinja2.PackageLoader("jaxmlp.lab", "static"),
                                jinja2.PackageLoader("jaxmlp.pages", "templates")]),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
# The guide's pages the lab serves: those the findings link to, and a few a learner reads next.
GUIDE_PAGES = frozenset({page for page, _ in FINDING_GUIDE.values()}
                        | {"README.md", "lab.md", "toy-problems.md", "words.md", "runs.md"})
PICTURE = re.compile(r"[A-Za-z0-9_-]+\.png")
# The page's own script and stylesheet only; nothing from elsewhere, never framed.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
# A run's page and the guide: no script at all, their one inline stylesheet, their pictures.
DOCUMENT = {**HEADERS, "Content-Security-Policy": (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'")}
# The pages' stylesheet, then the lab's own rules: one home for the look they share.
STYLESHEETS = (Path(__file__).resolve().parent.parent / "pages" / "templates" / "style.css",
               STATIC / "lab.css")


def refuse(status: int, message: str) -> JSONResponse:
    """A refusal: the status, and one line saying what is wrong and what to do."""
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


class Guard:
    """ASGI middleware: the Host header, then the token, then the query's keys."""

    def __init__(self, app: ASGIApp, token: str, hosts: frozenset[str], cookie: str) -> None:
        self.app, self.token, self.hosts, self.cookie = app, token, hosts, cookie

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if host.lower() not in self.hosts:
            return 403, (f"the Host header {host!r} is not this lab's: open the address the lab "
                         "printed (another site's page may not use it)")
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                      keep_blank_values=True)
        others = sorted(set(query) - {"token"})
        if others:
            return 400, (f"the lab takes no query parameter but its token (got "
                         f"{', '.join(others)}): runs are named by their number")
        given = query.get("token", [""])[-1]
        if not given:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            try:
                jar.load(headers.get("cookie", ""))
            except http.cookies.CookieError:  # a malformed Cookie header carries no token
                pass
            given = jar[self.cookie].value if self.cookie in jar else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 403, ("this address needs the lab's token: open the address that "
                         "python -m jaxmlp.lab printed, with its ?token=...")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is not None:
            await refuse(*problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class EventStream:
    """`api/events`: a snapshot, then every event the hub publishes, until the page goes away
    (noticed at once: the disconnect is awaited beside the stream) or the lab stops."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((k.lower().encode(), v.encode()) for k, v in HEADERS.items())]})
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                await self._stream(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the page went away between two events
                pass
            group.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        hub = self.lab.hub
        hub.streams += 1  # on the server's one thread: no lock needed
        try:
            await self._events(send, hub)
        finally:
            hub.streams -= 1

    async def _events(self, send: Send, hub: Any) -> None:
        number = -1
        while not hub.closed:
            events = None if number < 0 else hub.since(number)
            if events is None:  # new, or further behind than the hub keeps
                number, snapshot = self.lab.snapshot()
                body = encode("snapshot", snapshot)
            elif events:
                number += len(events)
                body = b"".join(events)
            else:
                await hub.wait(number)
                body = b"" if hub.number > number else b": still here\n\n"
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})


class Routes:
    """The handlers, over one `Lab`."""

    def __init__(self, lab: Lab, token: str, cookie: str, docs: Path) -> None:
        self.lab, self.token, self.cookie, self.docs = lab, token, cookie, docs

    async def page(self, request: Request) -> Response:
        response = HTMLResponse(_ENV.get_template("lab.html").render(token=self.token),
                                headers=HEADERS)
        # The token as a cookie too, for the addresses a run's page names without it.
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
        return response

    async def script(self, request: Request) -> Response:
        return FileResponse(STATIC / "lab.js", media_type="text/javascript", headers=HEADERS)

    async def stylesheet(self, request: Request) -> Response:
        css = "\n".join(path.read_text() for path in STYLESHEETS)
        return Response(css, media_type="text/css", headers=HEADERS)

    async def form(self, request: Request) -> Response:
        return JSONResponse(settings.form(), headers=HEADERS)

    async def events(self, request: Request) -> Any:
        return EventStream(self.lab)

    async def status(self, request: Request) -> Response:
        """How many pages follow the lab now, and how many wait for an event."""
        hub = self.lab.hub
        return JSONResponse({"streams": hub.streams, "waiting": hub.waiting}, headers=HEADERS)

    async def submit(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return refuse(400, "the request body must be JSON: {\"settings\": {...}}")
        if not isinstance(body, dict) or set(body) - {"settings"}:
            keys = sorted(body) if isinstance(body, dict) else []
            return refuse(400, "send {\"settings\": {...}} and nothing else"
                          + (f" (got {', '.join(keys)}): the lab chooses each run's folder"
                             if keys else ""))
        try:
            job = self.lab.submit(body.get("settings", {}))
        except ConfigError as e:
            return refuse(400, str(e))
        return JSONResponse({"number": job.number, "status": job.status}, status_code=202,
                            headers=HEADERS)

    async def stop(self, request: Request) -> Response:
        number = request.path_params["number"]
        try:
            job = self.lab.stop(number)
        except KeyError:
            return refuse(404, f"there is no run {number} in this lab")
        return JSONResponse({"number": job.number, "status": job.status}, headers=HEADERS)

    async def run_file(self, request: Request) -> Response:
        number, name = request.path_params["number"], request.path_params["name"]
        if name != REPORT_HTML and not PICTURE.fullmatch(name):
            return refuse(400, f"{name!r} is not a file a run's page shows (report.html or a "
                               "picture's plain name)")
        try:
            path = self.lab.folder(number) / name
        except KeyError:
            return refuse(404, f"run {number} of this lab has no folder")
        if path.is_symlink() or not path.is_file():
            return refuse(404, f"run {number}'s folder holds no {name}")
        kind = "text/html" if name == REPORT_HTML else "image/png"
        return FileResponse(path, media_type=kind, headers=DOCUMENT)

    async def guide(self, request: Request) -> Response:
        name = request.path_params["page"]
        if name not in GUIDE_PAGES or not (self.docs / name).is_file():
            return refuse(404, f"the lab serves no guide page {name!r}")
        return HTMLResponse(guide_html(self.docs / name), headers=DOCUMENT)


def make_app(lab: Lab, token: str, hosts: frozenset[str], cookie: str,
             docs: Path = DOCS) -> ASGIApp:
    """The lab's application: `lab` behind a `Guard` for `token` and `hosts`."""
    r = Routes(lab, token, cookie, docs)
    routes = [Route("/", r.page), Route("/lab.js", r.script), Route("/lab.css", r.stylesheet),
              Route("/api/form", r.form), Route("/api/events", r.events),
              Route("/api/status", r.status), Route("/api/runs", r.submit, methods=["POST"]),
              Route("/api/runs/{number:int}/stop", r.stop, methods=["POST"]),
              Route("/runs/{number:int}/{name}", r.run_file), Route("/guide/{page}", r.guide)]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return Guard(app, token, hosts, cookie)


async def not_found(request: Request, exc: Exception) -> Response:
    """Any other address (a path smuggled into a route's part among them)."""
    return refuse(404, f"the lab has no {request.method} {request.url.path}: runs are named by "
                       "their number, a run's files by their plain names")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it (the guide's links name sections so)."""
    text = heading.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def guide_html(path: Path) -> str:
    """A page of the guide as HTML, its headings anchored as on GitHub (links stay text)."""
    blocks, seen = [], {}
    for b in markdown.parse(path.read_text()):
        anchor = ""
        if b.kind == "heading":
            base = slug("".join(s.text for s in b.spans))
            anchor = base if base not in seen else f"{base}-{seen[base]}"
            seen[base] = seen.get(base, 0) + 1
        blocks.append((b, anchor))
    return _ENV.get_template("guide.html").render(title=path.name, blocks=blocks)
