"""Reading IDX files (the MNIST file format), gzip-compressed or not, checking each one fully.

A file that is there but broken raises DataError naming the file and the problem.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path
from typing import NoReturn

import numpy as np

from jaxmlp.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes and the (big-endian) NumPy types they stand for.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, gzip-compressed or not, checking everything it says about itself.

    Any problem (unreadable, empty, bad gzip, bad header, size not matching the header) raises
    DataError naming the file.
    """
    return read_idx_digest(path)[0]


def read_idx_digest(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """`read_idx`, and the SHA-256 of the file's decompressed content (which names the data set:
    hashing MNIST's 55 MB takes about 0.04 s, a quarter of reading it)."""
    path = Path(path)
    data = _read_content(path)
    return _parse(path, data), hashlib.sha256(data).hexdigest()


def _parse(path: Path, data: bytes) -> np.ndarray:
    """The array an IDX file's decompressed `data` holds, after checking its header."""
    if len(data) < 4:
        _damaged(path, f"only {len(data)} bytes, too short for an IDX header")
    zero1, zero2, type_code, ndim = data[:4]
    if (zero1, zero2) != (0, 0):
        _damaged(path, f"bad magic number {data[:4].hex(' ')}: IDX files start with 00 00")
    if type_code not in _IDX_DTYPES:
        codes = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        _damaged(path, f"unknown IDX data type code 0x{type_code:02X} (known: {codes})")
    if ndim == 0:
        _damaged(path, "IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        _damaged(path, f"truncated header: {ndim} dimensions need {header_size} bytes")

    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    # math.prod on Python ints: a corrupt header's huge sizes must not overflow int64.
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "trailing bytes after the data"
        dims = " x ".join(map(str, shape))
        _damaged(
            path,
            f"{problem}: the header says {dims} values of {dtype.itemsize} byte(s), "
            f"{expected} bytes in all, but the content is {len(data)} bytes",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # Hand out native byte order: big-endian arrays are slow and surprise downstream code.
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def _read_content(path: Path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read it: {error.strerror or error}") from error
    if not raw:
        _damaged(path, "the file is empty")
    if raw[:2] != GZIP_MAGIC:
        if path.suffix == ".gz":
            hint = " (it looks like an uncompressed IDX file: drop the .gz)" if raw[0] == 0 else ""
            _damaged(path, f"named .gz but not gzip-compressed{hint}")
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
        _damaged(path, f"corrupt gzip stream ({error})")


def _damaged(path: Path, problem: str) -> NoReturn:
    """Raise the DataError for a file that is there but unusable."""
    raise DataError(f"{path}: {problem}. Replace it with a good copy (or delete it).")
