"""Stopping when asked: SIGINT (Ctrl-C), SIGTERM (what a batch scheduler such as SLURM or
Kubernetes sends before it kills a job) and SIGHUP (the terminal or the ssh session closed)
stop a run, a sweep or an experiment in the same way.

`handle_signals()`, called where each command starts as a program (its `__main__`, not its
`main()`, which tests call in their own process), makes all three raise `Stopped`, a
KeyboardInterrupt: every `except KeyboardInterrupt` path (keep what is saved, say what to run
next) serves the three alike. While epochs or chunks train, inside `deferred()`, a
signal is noted instead, and the loop calls `check()` once the epoch or chunk in progress is
written: no finished work is lost, and the wait is at most one epoch or chunk (the device cannot
be interrupted mid-program anyway). A second signal stops at once.

The exit status is the shell's convention for a death by signal, 128 + its number: 130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP, so a scheduler or a script tells them apart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import typing
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What each signal is called in messages: "interrupted (Ctrl-C); ..."
WORDS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)",
         signal.SIGHUP: "hung up (SIGHUP)"}


class Stopped(KeyboardInterrupt):
    """A stop asked for by a signal (`signum`); `by`: another process's, when it was that
    process that was asked (a multi-process sweep stops together)."""

    def __init__(self, signum: int, by: str | None = None) -> None:
        super().__init__(signum)
        self.signum = signum
        self.by = by


def exit_code(error: KeyboardInterrupt) -> int:
    """128 + the signal's number (a bare KeyboardInterrupt is SIGINT's)."""
    return 128 + getattr(error, "signum", signal.SIGINT)


def describe(error: KeyboardInterrupt) -> str:
    """'terminated (SIGTERM)', and which process it was sent to when not this one."""
    words = WORDS.get(getattr(error, "signum", signal.SIGINT), "stopped")
    by = getattr(error, "by", None)
    return f"{words} {by}" if by else words


_deferring: str | None = None  # what is finished before stopping: "epoch", "chunk"
_noted: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    global _noted
    if _deferring is not None and _noted is None:
        _noted = signum
        # os.write, not print: a handler may run in the middle of a print to the same stream.
        os.write(2, f"\n{WORDS[signum]}: stopping once the {_deferring} in progress is saved "
                    "(send it again to stop at once)\n".encode())
        return
    raise Stopped(signum)


def handle_signals() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to `Stopped`, in the main thread. A signal the process
    was started with ignored (`nohup`, a shell's background job) stays ignored. Called again, it
    takes back what a library set below Python in between (`jax.distributed` sets its own
    SIGTERM handler, which Python's record of the handler does not show)."""
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler, _handler):
            signal.signal(signum, _handler)


@contextlib.contextmanager
def deferred(what: str) -> Iterator[None]:
    """Inside, a signal waits for the loop's next `check()`; `what` finishes first (named in
    the line the signal prints)."""
    global _deferring, _noted
    outer, _deferring, _noted = _deferring, what, None
    try:
        yield
    finally:
        _deferring = outer


def requested() -> int | None:
    """The signal noted inside `deferred`, if any."""
    return _noted


def check() -> None:
    """Raise `Stopped` for a signal noted inside `deferred`."""
    if _noted is not None:
        stop(_noted)


def stop(signum: int, by: str | None = None) -> typing.NoReturn:
    """Raise `Stopped` for `signum` (noted here, or `by` another process), forgetting it."""
    global _noted
    _noted = None
    raise Stopped(signum, by)
