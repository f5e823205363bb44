"""The lab's events, from the training thread to every page that follows it (server-sent events).

An event is serialised once, when it is published, into the bytes every stream sends; the hub
keeps the last `KEEP` of them, numbered. A stream sends the events after the number it has
sent, then waits; one that falls further behind than the hub keeps is sent a fresh snapshot
instead (`since` says so). So a page costs the server a number and a waiting future, however
long it follows, and one that goes away leaves nothing behind (`waiting` counts what is left).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import Any

KEEP = 1024  # events kept for streams that are behind (a few MB at most)
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies and the browser from timing out


def encode(kind: str, data: Any, number: int | None = None) -> bytes:
    """One server-sent event: its number (the browser's Last-Event-ID), kind and JSON data."""
    head = f"id: {number}\n" if number is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Hub:
    """Published events, numbered from 1; thread-safe to publish, awaited from the server's loop."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._events: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=keep)
        self._number = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.closed = False
        self.streams = 0  # streams open now (the server counts them in and out)

    @property
    def number(self) -> int:
        """The last event's number (0: none yet)."""
        with self._lock:
            return self._number

    def publish(self, kind: str, data: Any) -> int:
        with self._lock:
            self._number += 1
            self._events.append((self._number, encode(kind, data, self._number)))
            waiters, self._waiters = self._waiters, set()
        self._wake(waiters)
        return self._number

    def since(self, number: int) -> list[bytes] | None:
        """The events after `number`, or None when some of them are no longer kept."""
        with self._lock:
            if number >= self._number:
                return []
            if not self._events or self._events[0][0] > number + 1:
                return None
            return [text for n, text in self._events if n > number]

    async def wait(self, number: int, timeout: float = HEARTBEAT_S) -> None:
        """Until an event after `number` is published, the hub closes, or `timeout` passes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._number > number or self.closed:
                return
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)

    @property
    def waiting(self) -> int:
        """Streams waiting for an event now."""
        with self._lock:
            return len(self._waiters)

    def close(self) -> None:
        """Wake every stream for the last time: the server is stopping."""
        with self._lock:
            self.closed = True
            waiters, self._waiters = self._waiters, set()
        self._wake(waiters)

    @staticmethod
    def _wake(waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_done, future)
            except RuntimeError:  # that loop has closed: nobody waits there any more
                pass


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
