"""Downloading the IDX files from public mirrors into a folder, all or nothing, each verified by
the SHA-256 of its content; also the temporary files that make writes atomic.

Every file's sizes are known in advance, so a mirror cannot make a download use more than that:
reading stops past the compressed size (with some slack), decompression stops past the content
size, and the bytes are hashed as they arrive, never held whole in memory. A socket timeout
bounds each wait and a deadline bounds each file, so a mirror cannot stall it either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.client
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from jaxmlp.data.errors import DataError
from jaxmlp.data.idx import GZIP_MAGIC
from jaxmlp.data.specs import IDX_FILES, _Spec

# Seconds to wait on a mirror. To change it, set jaxmlp.data.download.DOWNLOAD_TIMEOUT_S:
# rebinding the name jaxmlp.data re-exports does not reach the code here.
DOWNLOAD_TIMEOUT_S = 10.0
# Seconds one file may take from one mirror, however steadily it trickles in (Fashion-MNIST's
# 26 MB needs 44 kB/s). Set it here too, like DOWNLOAD_TIMEOUT_S.
DOWNLOAD_DEADLINE_S = 600.0

_READ_BYTES = 1 << 16  # most bytes asked of the socket at once
_INFLATE_BYTES = 1 << 18  # most decompressed bytes made at once: bounds memory against bombs
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's code for "a gzip stream": header, deflate, trailer


@dataclasses.dataclass(frozen=True)
class _Expected:
    """What one .gz file must be, and the bounds that follow from it."""

    name: str  # the file's name on the mirror, e.g. "train-images-idx3-ubyte.gz"
    gz_bytes: int  # its size on the default mirrors
    gz_limit: int  # the most bytes read from any mirror
    content_bytes: int  # its exact decompressed size
    sha256: str  # of the decompressed content


def _expected(spec: _Spec, stem: str) -> _Expected:
    gz_bytes = spec.gz_bytes[stem]
    return _Expected(f"{stem}.gz", gz_bytes, _gz_limit(gz_bytes), spec.content_bytes[stem],
                     spec.sha256[stem])


def _gz_limit(gz_bytes: int) -> int:
    """The most bytes accepted for a .gz file that is `gz_bytes` on the default mirrors.

    Other honest copies differ by a few bytes (a file name in the gzip header, another
    compressor: one re-compressed copy of MNIST's train labels is 21 bytes longer); 3% and 4 kB
    of slack accepts them and still stops an endless body almost at once.
    """
    return gz_bytes + gz_bytes // 32 + 4096


def _mirror_list(spec: _Spec, mirrors: Sequence[str] | None) -> list[str]:
    """Base URLs to try: the argument, else env JAXMLP_MIRRORS, else the defaults."""
    if mirrors is None:
        env = os.environ.get("JAXMLP_MIRRORS", "")
        mirrors = [url.strip() for url in env.split(",") if url.strip()] or spec.mirrors
    return [url if url.endswith("/") else url + "/" for url in mirrors]


def _download_idx_files(
    spec: _Spec, base_urls: list[str], folder: Path, progress: bool, tried: list[str]
) -> list[str] | None:
    """Make `folder` hold four verified .gz files; return the base URLs that served files.

    Files already in the cache with the right content are kept ([] if all four were). None,
    with the reasons in `tried`, if some file could not be had.

    All or nothing: new files wait in temporary files until all four are verified, and are
    deleted on any failure, so the cache never holds a partial, half-written or wrong data set.
    """
    created = _missing_folders(folder)  # removed again if the download fails
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        tried.append(f"download: cannot create the cache folder {folder}: {error}")
        return None
    used: list[str] = []
    with contextlib.ExitStack() as cleanup:  # deletes the temporary files, whatever happens
        ready: dict[Path, Path] = {}  # final path -> verified temporary file
        for stem in IDX_FILES:
            final = folder / f"{stem}.gz"
            expected = _expected(spec, stem)
            if final.is_file() and _is_intact(final, expected):
                continue  # already downloaded and still intact
            temp = cleanup.enter_context(_temporary_file(folder))
            base = _download_verified(expected, base_urls, temp, progress, tried)
            if base is None:
                break
            ready[final] = temp
            used += [base] if base not in used else []
        else:
            for final, temp in ready.items():
                os.replace(temp, final)
            return used
    for path in created:  # a failed download leaves no trace, not even an empty folder
        _remove_if_empty(path)
    return None


def _download_verified(
    expected: _Expected, base_urls: list[str], temp: Path, progress: bool, tried: list[str]
) -> str | None:
    """Download the file into `temp` from the first mirror serving the right content.

    Returns that mirror's base URL, or None (each failure recorded in `tried`, one line each).
    """
    for base in base_urls:
        url = f"{base}{expected.name}"
        try:
            # The check pulls the body through the download: both stop at the first problem.
            with contextlib.closing(_fetch(url, temp, expected, progress)) as chunks:
                _verify_gzip_content(chunks, expected)
            return base
        except (OSError, http.client.HTTPException, ValueError, DataError) as error:
            tried.append(f"{url}: {_describe_download_error(error)}")
    return None


def _fetch(url: str, dest: Path, expected: _Expected, progress: bool) -> Iterator[bytes]:
    """Write the body at `url` into `dest`, yielding each piece once it is written.

    Raises DataError when the mirror announces or sends more than `expected.gz_limit` bytes
    (reading at most one byte past it), or takes longer than DOWNLOAD_DEADLINE_S.
    """
    received = 0
    watchdog = _Watchdog(DOWNLOAD_DEADLINE_S)
    try:
        with watchdog, _opener(watchdog).open(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            total = _announced_length(response.headers.get("Content-Length"))
            if total is not None and total > expected.gz_limit:
                raise DataError(f"announces {total:,} bytes (Content-Length), more than the "
                                f"{_limit(expected)}")
            bar = tqdm(total=total, desc=expected.name, unit="B", unit_scale=True,
                       disable=not progress)
            with bar, open(dest, "wb") as file:
                # read1: one socket read per call, so the deadline is checked between waits.
                while chunk := response.read1(min(_READ_BYTES, expected.gz_limit + 1 - received)):
                    received += len(chunk)
                    if received > expected.gz_limit:
                        raise DataError(f"served more than the {_limit(expected)}")
                    file.write(chunk)
                    bar.update(len(chunk))
                    yield chunk
                    watchdog.check(received)
            watchdog.check(received)  # the watchdog's hang-up also ends a body
    except (OSError, http.client.HTTPException):
        watchdog.check(received)  # an error caused by the watchdog's hang-up says so
        raise
    if total is not None and received != total:
        raise DataError(f"connection closed after {received:,} of {total:,} bytes")


def _limit(expected: _Expected) -> str:
    return (f"{expected.gz_limit:,} bytes allowed for {expected.name} "
            f"({expected.gz_bytes:,} on the default mirrors)")


def _announced_length(header: str | None) -> int | None:
    """The Content-Length, or None when there is none or it is not a number (as http.client)."""
    if header is None:
        return None
    try:
        length = int(header)
    except ValueError:
        return None
    return length if length >= 0 else None


def _verify_gzip_content(chunks: Iterable[bytes], expected: _Expected) -> None:
    """Check the gzip bytes in `chunks` decompress to exactly the expected content.

    Works piece by piece, so memory stays at a few hundred kB whatever the stream holds, and
    stops as soon as the content would be longer than it is.
    """
    stem = expected.name.removesuffix(".gz")
    digest = hashlib.sha256()
    size = 0
    for piece in _gunzip(chunks):
        size += len(piece)
        if size > expected.content_bytes:
            raise DataError(
                f"decompresses to more than the {expected.content_bytes:,} bytes {stem} has"
            )
        digest.update(piece)
    if size != expected.content_bytes:
        raise DataError(f"decompresses to {size:,} bytes; {stem} has {expected.content_bytes:,}")
    if digest.hexdigest() != expected.sha256:
        raise DataError(f"SHA-256 checksum mismatch: content has {digest.hexdigest()}, "
                        f"expected {expected.sha256}")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream (one or more members, zero padding allowed, as gzip.decompress
    reads it) as it arrives, in pieces of at most _INFLATE_BYTES. Raises DataError if it is not
    gzip, corrupt or cut short."""
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    head = b""  # the first two bytes, to tell "not gzip at all" from a corrupt stream
    members = 1
    try:
        for chunk in chunks:
            if len(head) < len(GZIP_MAGIC):
                head += chunk[: len(GZIP_MAGIC) - len(head)]
                if not GZIP_MAGIC.startswith(head):
                    raise DataError("not a gzip file")
            while chunk:
                if decompressor.eof:  # a member ended: zero padding (as gzip allows), or another
                    chunk = chunk.lstrip(b"\0")
                    if not chunk:
                        break
                    decompressor = zlib.decompressobj(_GZIP_WBITS)
                    members += 1
                yield from _inflate(decompressor, chunk)
                chunk = decompressor.unused_data if decompressor.eof else b""
    except zlib.error as error:
        where = "gzip stream" if members == 1 else "bytes after the end of the gzip stream"
        raise DataError(f"corrupt {where} ({error})") from error
    if len(head) < len(GZIP_MAGIC):
        raise DataError("not a gzip file" if head else "empty: not a single byte")
    if not decompressor.eof:
        raise DataError("corrupt gzip stream (cut short before its end)")


def _inflate(decompressor: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Feed `data` to `decompressor`, yielding its output in pieces of at most _INFLATE_BYTES."""
    while True:
        piece = decompressor.decompress(data, _INFLATE_BYTES)
        if piece:
            yield piece
        data = decompressor.unconsumed_tail
        # A full piece may leave output inside zlib even when all input is taken: ask again.
        if decompressor.eof or (not data and len(piece) < _INFLATE_BYTES):
            return


def _describe_download_error(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, TimeoutError):
        return f"no data for {DOWNLOAD_TIMEOUT_S:g} s (socket timeout)"
    if isinstance(error, DataError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _is_intact(path: Path, expected: _Expected) -> bool:
    """Whether a cached file holds the expected content (read in pieces, like a download)."""
    try:
        with open(path, "rb") as file:
            _verify_gzip_content(iter(functools.partial(file.read, _READ_BYTES), b""), expected)
    except (OSError, DataError):
        return False
    return True


# ----------------------------------------------------------------------------------------------
# The per-file deadline
# ----------------------------------------------------------------------------------------------


class _Watchdog:
    """Hangs up a download's connections once its deadline passes.

    The socket timeout bounds each wait, not the whole: a mirror sending a byte every few seconds
    (in its headers, even) would never time out. Shutting the socket down from a timer thread
    wakes the blocked read wherever it is.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        """Hang `sock` up at the deadline (at once if it has passed)."""
        # A duplicate, shut down at the deadline, stops the connection even after TLS has
        # wrapped (and detached) the original.
        with self._lock:
            self._sockets.append(sock.dup())
            if self._expired:
                _hang_up(self._sockets[-1])

    def check(self, received: int) -> None:
        """Raise DataError if the deadline has passed."""
        if self._expired:
            raise DataError(f"took longer than the {self.seconds:g} s allowed for one file "
                            f"(gave up after {received:,} bytes)")

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _hang_up(sock)


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other end: nothing to stop
        sock.shutdown(socket.SHUT_RDWR)


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's usual opener (proxies, redirects), with every HTTP(S) connection watched."""
    return urllib.request.build_opener(_WatchedHTTPHandler(watchdog),
                                       _WatchedHTTPSHandler(watchdog))


class _WatchedHTTPConnection(http.client.HTTPConnection):
    watchdog: _Watchdog

    def connect(self) -> None:
        super().connect()  # for HTTPS, the TLS handshake follows, already watched
        self.watchdog.watch(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection, _WatchedHTTPConnection):
    pass


def _watched(
    connection_class: type[_WatchedHTTPConnection], watchdog: _Watchdog
) -> Callable[..., http.client.HTTPConnection]:
    def make(*args: object, **kwargs: object) -> http.client.HTTPConnection:
        connection = connection_class(*args, **kwargs)
        connection.watchdog = watchdog
        return connection

    return make


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._make = _watched(_WatchedHTTPConnection, watchdog)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._make, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._make = _watched(_WatchedHTTPSConnection, watchdog)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # No context given: http.client makes its default one, verifying certificates as
        # urlopen does.
        return self.do_open(self._make, req)


# ----------------------------------------------------------------------------------------------
# Temporary files
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _temporary_file(folder: Path) -> Iterator[Path]:
    """A fresh temporary file in `folder` (same file system, so os.replace is atomic).

    Deleted on exit unless it was moved into place; also on errors and Ctrl-C.
    """
    handle, name = tempfile.mkstemp(dir=folder, prefix=".jaxmlp-", suffix=".part")
    os.close(handle)
    os.chmod(name, 0o644)  # mkstemp makes it private; cached data sets are not secret
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or already gone): keep it
        folder.rmdir()
