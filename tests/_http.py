"""A real HTTP server on 127.0.0.1 for download tests: real sockets, no mocks.

`serve_directory` serves a folder, optionally cutting each response short. `serve_misbehaving`
serves chosen paths with a misbehaving response (an endless body, a lying Content-Length, a
trickle) and counts the body bytes it got into the socket, so a test can bound what a client
read; every other path comes from a folder, as `serve_directory` serves it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

# An "endless" body stops here, so that a client that never stops reading fails its test
# instead of hanging it. Far beyond any download's limit plus what kernel buffers hold.
ENDLESS_CAP = 256 << 20
# A trickle stops after this many seconds, for the same reason.
TRICKLE_CAP_S = 5.0
# The misbehaving server's send buffer, kept small so that the bytes it counts as sent are
# close to the bytes the client read (Linux doubles the figure).
SEND_BUFFER = 1 << 16
POLL_S = 0.05  # how often the server checks whether to stop: tests end promptly

_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)  # the client hung up


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    cut_after: int | None = None  # if set, send only this many bytes of each body, then hang up

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        if self.cut_after is None:
            super().copyfile(source, outputfile)
        else:  # the Content-Length header already promised the whole file
            outputfile.write(source.read(self.cut_after))
            self.close_connection = True


@contextlib.contextmanager
def serve_directory(folder: Path, cut_after: int | None = None) -> Iterator[str]:
    """Serve `folder` over HTTP on a free port; yields the base URL (ending in '/').

    `cut_after` simulates an interrupted transfer: each response stops after that many bytes.
    """
    handler_class = type("Handler", (_QuietHandler,), {"cut_after": cut_after})
    handler = functools.partial(handler_class, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with _running(server):
        yield f"http://127.0.0.1:{server.server_address[1]}/"


def closed_port_url() -> str:
    """A URL on a port that was free a moment ago: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ----------------------------------------------------------------------------------------------
# Misbehaving mirrors
# ----------------------------------------------------------------------------------------------

# A response: given the request's handler, writes the whole reply through `_send`.
Response = Callable[["_MisbehavingHandler"], None]


class _MisbehavingHandler(_QuietHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies need it
    # Both set per server, in a subclass.
    responses: dict[str, Response]  # file name -> its misbehaving response
    sent: Counter[str]  # body bytes written into the socket, per file name

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    def do_GET(self) -> None:
        response = self.responses.get(self.path.lstrip("/"))
        if response is None:
            super().do_GET()
            return
        self.close_connection = True
        with contextlib.suppress(*_GONE):
            response(self)

    def send_body(self, data: bytes) -> None:
        """Write body bytes, counting each byte as the socket takes it. Counted per `send`, not
        per block: when the client hangs up mid-block, the part of the block the kernel took
        (and the client may have read) still counts, so the count is never below what the
        client read, however the threads are scheduled."""
        view = memoryview(data)
        while view:
            taken = self.request.send(view)
            self.sent[self.path.lstrip("/")] += taken
            view = view[taken:]


@contextlib.contextmanager
def serve_misbehaving(
    folder: Path, responses: dict[str, Response]
) -> Iterator[tuple[str, Counter[str]]]:
    """Serve `responses` (file name -> response) and the rest of `folder`; yields the base URL and
    the body bytes sent per file name, final once the block has left (the server waits for its
    handlers)."""
    sent: Counter[str] = Counter()
    handler_class = type("Handler", (_MisbehavingHandler,), {"responses": responses, "sent": sent})
    handler = functools.partial(handler_class, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = False  # so that server_close waits for the handlers: counts are final
    with _running(server):
        yield f"http://127.0.0.1:{server.server_address[1]}/", sent


@contextlib.contextmanager
def _running(server: http.server.ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _headers(handler: _MisbehavingHandler, headers: dict[str, str]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def endless(head: bytes, piece: bytes, chunked: bool = False,
            content_length: int | None = None) -> Response:
    """`head`, then `piece` over and over (up to ENDLESS_CAP bytes): with no Content-Length (the
    body ends when the connection does), as chunked transfer encoding, or under a Content-Length
    that lies about it."""

    def respond(handler: _MisbehavingHandler) -> None:
        if chunked:
            _headers(handler, {"Transfer-Encoding": "chunked"})
        elif content_length is not None:
            _headers(handler, {"Content-Length": str(content_length)})
        else:
            _headers(handler, {"Connection": "close"})
        block = piece * max(1, (1 << 16) // len(piece))
        data = head
        while handler.sent[handler.path.lstrip("/")] < ENDLESS_CAP:
            handler.send_body(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            data = block

    return respond


def body(data: bytes) -> Response:
    """`data` with an honest Content-Length (a gzip bomb is well-formed: only its content lies)."""

    def respond(handler: _MisbehavingHandler) -> None:
        _headers(handler, {"Content-Length": str(len(data))})
        handler.send_body(data)

    return respond


def trickle(data: bytes, step: int, every_s: float, in_headers: bool = False) -> Response:
    """A slow mirror: `step` bytes of `data` every `every_s` seconds (for at most TRICKLE_CAP_S),
    with an honest Content-Length; `in_headers` trickles an endless header line instead, so the
    body never starts. Stops as soon as the client hangs up."""

    def respond(handler: _MisbehavingHandler) -> None:
        end = time.monotonic() + TRICKLE_CAP_S
        if in_headers:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while time.monotonic() < end and not _hung_up(handler, every_s):
                handler.wfile.write(b"z" * step)
            return
        _headers(handler, {"Content-Length": str(len(data))})
        for start in range(0, len(data), step):
            handler.send_body(data[start:start + step])
            if time.monotonic() >= end or _hung_up(handler, every_s):
                return

    return respond


def _hung_up(handler: _MisbehavingHandler, wait_s: float) -> bool:
    """Wait up to `wait_s`; True as soon as the client has closed the connection."""
    readable, _, _ = select.select([handler.connection], [], [], wait_s)
    if not readable:
        return False
    try:  # readable with nothing to read: the end of the stream
        return handler.connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
