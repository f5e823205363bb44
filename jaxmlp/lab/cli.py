"""`python -m jaxmlp.lab`: the lab's server on this machine, until Ctrl-C.

It prints the address to open, with the token every request must carry, and trains what the
page asks for, one run at a time, each in a new folder under `--runs`. Ctrl-C (or SIGTERM)
stops it: the run in progress stops before its next chunk, keeps its finished epochs and gets
its page, the queued ones are dropped, and the command ends with status 0.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import webbrowser
from types import FrameType

import uvicorn

from jaxmlp import cli, compilation
from jaxmlp.config import ConfigError
from jaxmlp.lab.jobs import Lab
from jaxmlp.lab.server import make_app
from jaxmlp.rundir import make_folder

LOCAL = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m jaxmlp.lab",
        description="Watch networks learn, live, in the browser: a local server that trains "
                    "what its page asks for, each run a normal run folder.")
    parser.add_argument("--port", type=int, default=0,
                        help="port to listen on (default: a free one, printed)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; "
                             "anything else is said with a warning)")
    parser.add_argument("--runs", default="runs",
                        help="folder the runs' folders are made in (default: runs)")
    parser.add_argument("--data-dir", default=None,
                        help="the runs' --data-dir (default: where python -m jaxmlp.train "
                             "looks)")
    parser.add_argument("--open", action="store_true",
                        help="open the address in the default browser")
    return parser


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one), or one line saying why not."""
    if not 0 <= port <= 65535:
        cli.fail(f"--port must be from 0 (a free port) to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        cli.fail(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); "
                 "choose another --port, or leave it out for a free one")
    return sock


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers this lab answers: this machine's names, and `--host`'s."""
    names = {"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]"}
    return frozenset(f"{name}:{port}".lower() for name in names)


class Server(uvicorn.Server):
    """uvicorn's server, which also ends the pages' streams when asked to stop (they would
    otherwise hold the shutdown open)."""

    def __init__(self, config: uvicorn.Config, lab: Lab) -> None:
        super().__init__(config)
        self.lab = lab

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.lab.hub.close()
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> int:
    compilation.tune_xla_cpu()  # as python -m jaxmlp.train: the same programs, as fast
    args = build_parser().parse_args(argv)
    try:
        runs = make_folder(args.runs, "--runs")
    except ConfigError as e:
        cli.fail(str(e))
    compilation.enable_compilation_cache()
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    if args.host not in LOCAL:
        print(f"warning: --host {args.host}: the lab listens beyond this machine; anyone who "
              f"can reach {args.host}:{port} and has the token can train on it and read its "
              "runs' pages", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    shown = args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/?token={token}"
    lab = Lab(runs, args.data_dir)
    app = make_app(lab, token, allowed_hosts(args.host, port), f"jaxmlp-lab-{port}")
    print(f"jaxmlp lab: open {url}\n(Ctrl-C stops it; runs go to {runs}/)", flush=True)
    if args.open:
        webbrowser.open(url)
    server = Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                   timeout_graceful_shutdown=5, lifespan="off"), lab)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # the signal uvicorn caught, raised again once it has stopped
        pass
    try:
        lab.close()  # the run in progress stops before its next chunk, with its page
    except KeyboardInterrupt:
        cli.fail(f"stopped at once; the runs in {runs}/ keep the epochs they had saved "
                 "(python -m jaxmlp.train --resume DIR continues one)", code=130)
    finally:
        sock.close()
    print(f"jaxmlp lab stopped; its runs are in {runs}/", flush=True)
    return 0
