"""Downloading the IDX files from public mirrors into a folder, all or nothing, each verified by
the SHA-256 of its content; also the temporary files that make writes atomic."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from jaxmlp.data.errors import DataError
from jaxmlp.data.idx import GZIP_MAGIC, _read_content
from jaxmlp.data.specs import IDX_FILES, _Spec

# Seconds to wait on a mirror. To change it, set jaxmlp.data.download.DOWNLOAD_TIMEOUT_S:
# rebinding the name jaxmlp.data re-exports does not reach the code here.
DOWNLOAD_TIMEOUT_S = 10.0


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
            if final.is_file() and _content_sha256(final) == spec.sha256[stem]:
                continue  # already downloaded and still intact
            temp = cleanup.enter_context(_temporary_file(folder))
            base = _download_verified(stem, spec.sha256[stem], base_urls, temp, progress, tried)
            if base is None:
                break
            ready[final] = temp
            used += [base] if base not in used else []
        else:
            for final, temp in ready.items():
                os.replace(temp, final)
            return used
    _remove_if_empty(folder)  # a failed download leaves no trace, not even an empty folder
    return None


def _download_verified(
    stem: str, sha256: str, base_urls: list[str], temp: Path, progress: bool, tried: list[str]
) -> str | None:
    """Download `stem`.gz into `temp` from the first mirror serving the right content.

    Returns that mirror's base URL, or None (each failure recorded in `tried`).
    """
    for base in base_urls:
        url = f"{base}{stem}.gz"
        try:
            _fetch(url, temp, progress)
            _verify_gzip_content(temp.read_bytes(), sha256)
            return base
        except (OSError, http.client.HTTPException, ValueError, DataError) as error:
            tried.append(f"{url}: {_describe_download_error(error)}")
    return None


def _fetch(url: str, dest: Path, progress: bool) -> None:
    """Write the body at `url` into `dest`, with a progress bar."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        bar = tqdm(total=total, desc=url.rsplit("/", 1)[-1], unit="B", unit_scale=True,
                   disable=not progress)
        with bar, open(dest, "wb") as file:
            while chunk := response.read(1 << 16):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DataError(f"connection closed after {received} of {total} bytes")


def _verify_gzip_content(raw: bytes, sha256: str) -> None:
    """Check downloaded bytes are gzip and decompress to the content with this SHA-256."""
    if raw[:2] != GZIP_MAGIC:
        raise DataError("not a gzip file")
    try:
        content = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"corrupt gzip stream ({error})") from error
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256:
        raise DataError(f"SHA-256 checksum mismatch: content has {actual}, expected {sha256}")


def _describe_download_error(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, DataError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _content_sha256(path: Path) -> str | None:
    """SHA-256 of the file's decompressed content, or None if it cannot be read."""
    try:
        return hashlib.sha256(_read_content(path)).hexdigest()
    except DataError:
        return None


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


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or already gone): keep it
        folder.rmdir()
