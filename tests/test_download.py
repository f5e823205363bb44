"""Downloads against misbehaving mirrors: each one a real HTTP server on 127.0.0.1 (tests/_http.py).

Every failure must stop early, in bounded memory, leave nothing behind and say in one line which
mirror and file failed and how. Bounds, and why they can fail:

- Memory: `tracemalloc`'s peak over the download (the servers' allocations, in this process,
  included). Verifying while streaming needs a 64 kB read and a 256 kB decompressed piece at a
  time; holding a file whole, as downloads once did, peaks above 47 MB (the train images).
- Bytes: what the server got into its socket. That is what the client read plus what the kernel
  buffers between them (the client's receive buffer, at most tcp_rmem's maximum on Linux, and the
  server's send buffer), so the bound adds those; an endless body goes on to 256 MiB, far past it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from _http import (
    ENDLESS_CAP,
    SEND_BUFFER,
    body,
    closed_port_url,
    endless,
    serve_directory,
    serve_misbehaving,
    trickle,
)

from jaxmlp import data
from jaxmlp.data import DataError, DatasetNotFound, download, load_dataset
from jaxmlp.data.specs import _SPECS, IDX_FILES

MNIST = _SPECS["mnist"]
TRAIN_IMAGES, TRAIN_LABELS = IDX_FILES[:2]
IMAGES_GZ, LABELS_GZ = f"{TRAIN_IMAGES}.gz", f"{TRAIN_LABELS}.gz"
IMAGES_LIMIT = download._gz_limit(MNIST.gz_bytes[TRAIN_IMAGES])  # 10,226,281

PEAK_MEMORY = 4 << 20  # bytes; see the module docstring
# A gzip header, then empty non-final deflate blocks (what a sync flush writes): a valid stream
# that decompresses to nothing and never ends, so only the limit on bytes read can stop it.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
EMPTY_BLOCK = b"\x00\x00\x00\xff\xff"


def _kernel_buffers() -> int:
    """The most bytes the kernel can hold between the server's send and the client's read."""
    try:
        receive = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        receive = 32 << 20  # not Linux: a generous guess
    return receive + 2 * SEND_BUFFER  # Linux doubles a requested send buffer


KERNEL_BUFFERS = _kernel_buffers()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty user cache, and default mirrors that refuse connections: no test reaches the
    internet or the user's files."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("JAXMLP_MIRRORS", closed_port_url())


def run_download(base_urls: list[str], folder: Path) -> tuple[list[str] | None, list[str], int]:
    """Download MNIST into `folder`: (mirrors used or None, reasons tried, peak traced bytes)."""
    tried: list[str] = []
    tracemalloc.start()
    try:
        used = download._download_idx_files(MNIST, base_urls, folder, False, tried)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return used, tried, peak


def assert_failed_cleanly(folder: Path, tried: list[str], url: str, message: str) -> None:
    """One line for the file that failed, naming mirror and file, and no trace on disk."""
    assert len(tried) == 1, tried
    assert "\n" not in tried[0]
    assert tried[0].startswith(f"{url}"), tried[0]
    assert message in tried[0], tried[0]
    assert not folder.exists(), sorted(folder.rglob("*"))


def test_sizes_in_the_specs_match_the_real_files(shared_data_dir: Path) -> None:
    """The content sizes are exact; every real copy fits under the limit on compressed bytes,
    though these copies' gzip wrappers differ from the mirrors' (some are even larger)."""
    for name, spec in _SPECS.items():
        folder = shared_data_dir / spec.folders[0]
        for stem in IDX_FILES:
            raw = (folder / f"{stem}.gz").read_bytes()
            content = gzip.decompress(raw)
            assert len(content) == spec.content_bytes[stem], (name, stem)
            assert hashlib.sha256(content).hexdigest() == spec.sha256[stem], (name, stem)
            ndim = content[3]
            dims = [int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
            assert 4 + 4 * ndim + math.prod(dims) == len(content)  # one byte per value
            assert spec.gz_bytes[stem] < download._gz_limit(spec.gz_bytes[stem])
            assert len(raw) <= download._gz_limit(spec.gz_bytes[stem]), (name, stem, len(raw))


def test_honest_variants_of_a_file_pass_however_they_arrive(mnist_dir: Path) -> None:
    """Two gzip members, zero padding, and bytes arriving one at a time all verify, as the
    whole-file gzip.decompress did; one byte more or less of content does not."""
    stem = "t10k-labels-idx1-ubyte"
    content = gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes())
    expected = download._expected(MNIST, stem)
    halves = gzip.compress(content[:5000]) + gzip.compress(content[5000:])
    for raw in (halves, halves + bytes(100), (mnist_dir / f"{stem}.gz").read_bytes()):
        download._verify_gzip_content([raw[i:i + 1] for i in range(len(raw))], expected)
    for wrong, problem in ((content + b"\0", "decompresses to more than the 10,008 bytes"),
                           (content[:-1], "decompresses to 10,007 bytes; t10k-labels-idx1-ubyte")):
        with pytest.raises(DataError, match=problem):
            download._verify_gzip_content([gzip.compress(wrong)], expected)


def test_good_download_and_cached_bomb_stay_in_bounded_memory(
    mnist_dir: Path, tmp_path: Path
) -> None:
    """A whole download, and the check of a cached file that is a gzip bomb (replaced), both
    verify piece by piece: the peak is far below one decompressed file."""
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    (folder / LABELS_GZ).write_bytes(gzip.compress(bytes(100 * MNIST.content_bytes[TRAIN_LABELS])))
    with serve_directory(mnist_dir) as url:
        used, tried, peak = run_download([url], folder)
    assert (used, tried) == ([url], [])
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES)
    assert (folder / LABELS_GZ).read_bytes() == (mnist_dir / LABELS_GZ).read_bytes()
    assert peak < PEAK_MEMORY, f"peak {peak:,} bytes"


@pytest.mark.parametrize("chunked", [False, True], ids=["no-content-length", "chunked"])
def test_endless_body_stops_at_the_limit(mnist_dir: Path, tmp_path: Path, chunked: bool) -> None:
    folder = tmp_path / "mnist"
    response = endless(GZIP_HEADER, EMPTY_BLOCK, chunked=chunked)
    with serve_misbehaving(mnist_dir, {IMAGES_GZ: response}) as (url, sent):
        _, tried, peak = run_download([url], folder)
    assert_failed_cleanly(
        folder, tried, f"{url}{IMAGES_GZ}",
        f"served more than the {IMAGES_LIMIT:,} bytes allowed for {IMAGES_GZ} (9,912,422 on "
        f"the default mirrors)",
    )
    assert IMAGES_LIMIT + KERNEL_BUFFERS < ENDLESS_CAP  # so that reading on would fail here
    assert IMAGES_LIMIT < sent[IMAGES_GZ] <= IMAGES_LIMIT + KERNEL_BUFFERS, f"sent {sent}"
    assert peak < PEAK_MEMORY, f"peak {peak:,} bytes"


@pytest.mark.parametrize("junk", [b"junk", b"\0"], ids=["junk", "zero-padding"])
def test_endless_bytes_after_a_good_file(mnist_dir: Path, tmp_path: Path, junk: bytes) -> None:
    """The real file, then endless bytes: junk is rejected where the gzip stream ends; zeros are
    padding that gzip allows, so they run on to the limit."""
    folder = tmp_path / "mnist"
    good = (mnist_dir / IMAGES_GZ).read_bytes()
    with serve_misbehaving(mnist_dir, {IMAGES_GZ: endless(good, junk)}) as (url, sent):
        _, tried, peak = run_download([url], folder)
    if junk == b"junk":
        message, read = "corrupt bytes after the end of the gzip stream (", len(good)
    else:
        message, read = f"served more than the {IMAGES_LIMIT:,} bytes", IMAGES_LIMIT
    assert_failed_cleanly(folder, tried, f"{url}{IMAGES_GZ}", message)
    assert sent[IMAGES_GZ] <= read + KERNEL_BUFFERS, f"sent {sent}"
    assert peak < PEAK_MEMORY, f"peak {peak:,} bytes"


def test_content_length_over_the_limit_is_refused_unread(mnist_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    response = endless(GZIP_HEADER, EMPTY_BLOCK, content_length=400_000_000)
    with serve_misbehaving(mnist_dir, {IMAGES_GZ: response}) as (url, sent):
        _, tried, peak = run_download([url], folder)
    assert_failed_cleanly(
        folder, tried, f"{url}{IMAGES_GZ}",
        f"announces 400,000,000 bytes (Content-Length), more than the {IMAGES_LIMIT:,} bytes "
        f"allowed for {IMAGES_GZ}",
    )
    assert sent[IMAGES_GZ] <= KERNEL_BUFFERS, f"sent {sent}"  # nothing read past the headers
    assert peak < PEAK_MEMORY, f"peak {peak:,} bytes"


def test_gzip_bomb_stops_at_the_content_size(mnist_dir: Path, tmp_path: Path) -> None:
    """Train labels as 7 kB of gzip holding 100 times their 60,008 bytes (the images before
    them are good): decompression stops just past 60,008 bytes, so memory stays small."""
    folder = tmp_path / "mnist"
    bomb = gzip.compress(bytes(100 * MNIST.content_bytes[TRAIN_LABELS]), compresslevel=9)
    with serve_misbehaving(mnist_dir, {LABELS_GZ: body(bomb)}) as (url, sent):
        _, tried, peak = run_download([url], folder)
    assert_failed_cleanly(folder, tried, f"{url}{LABELS_GZ}",
                          f"decompresses to more than the 60,008 bytes {TRAIN_LABELS} has")
    assert sent[LABELS_GZ] == len(bomb) < 10_000
    assert peak < PEAK_MEMORY, f"peak {peak:,} bytes"


@pytest.mark.parametrize("in_headers", [False, True], ids=["slow-body", "slow-headers"])
def test_slow_mirror_meets_the_deadline(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_headers: bool
) -> None:
    """A byte every 50 ms never trips the 10 s socket timeout; the per-file deadline (1 s here)
    stops it, even in the middle of a header line."""
    monkeypatch.setattr(download, "DOWNLOAD_DEADLINE_S", 1.0)
    folder = tmp_path / "mnist"
    response = trickle((mnist_dir / IMAGES_GZ).read_bytes(), 100, 0.05, in_headers=in_headers)
    with serve_misbehaving(mnist_dir, {IMAGES_GZ: response}) as (url, _):
        start = time.monotonic()
        _, tried, _ = run_download([url], folder)
        elapsed = time.monotonic() - start
    assert_failed_cleanly(folder, tried, f"{url}{IMAGES_GZ}",
                          "took longer than the 1 s allowed for one file (gave up after ")
    assert 1.0 <= elapsed < 3.0, f"{elapsed:.2f} s"


def test_silent_mirror_meets_the_socket_timeout(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 0.3)
    folder = tmp_path / "mnist"
    response = trickle((mnist_dir / IMAGES_GZ).read_bytes(), 1000, 1.0)  # a pause of 1 s
    with serve_misbehaving(mnist_dir, {IMAGES_GZ: response}) as (url, _):
        start = time.monotonic()
        _, tried, _ = run_download([url], folder)
        elapsed = time.monotonic() - start
    assert_failed_cleanly(folder, tried, f"{url}{IMAGES_GZ}", "no data for 0.3 s (socket timeout)")
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_every_mirror_failing_keeps_the_not_found_error(mnist_dir: Path) -> None:
    """Each misbehaving mirror gets its own line in DatasetNotFound; the cache stays empty."""
    endless_body = {IMAGES_GZ: endless(GZIP_HEADER, EMPTY_BLOCK)}
    lying_length = {IMAGES_GZ: endless(GZIP_HEADER, EMPTY_BLOCK, content_length=1 << 40)}
    with (serve_misbehaving(mnist_dir, endless_body) as (first, _),
          serve_misbehaving(mnist_dir, lying_length) as (second, _),
          pytest.raises(DatasetNotFound) as error):
        load_dataset("mnist", source="download", mirrors=[first, second], progress=False)
    assert [line.split(": ", 1)[0] for line in error.value.tried] == [
        f"{first}{IMAGES_GZ}", f"{second}{IMAGES_GZ}"
    ]
    assert "served more than" in error.value.tried[0]
    assert "announces 1,099,511,627,776 bytes" in error.value.tried[1]
    assert "connect to the network" in str(error.value)
    # Not even the folders made for the download are left: the whole user cache was new.
    assert not Path(os.environ["XDG_CACHE_HOME"]).exists(), data.cache_dir()
