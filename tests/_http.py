"""A real HTTP server on 127.0.0.1 for download tests: real sockets, no mocks."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL on a port that was free a moment ago: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
