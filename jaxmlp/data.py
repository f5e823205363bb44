"""Data sets: finding, reading, checking and downloading MNIST-style data.

Everything returns plain NumPy arrays: images uint8 with shape (N, H, W) and values 0..255,
labels int32 with shape (N,) and values 0..9. Preprocessing (scaling, flattening, one-hot) is a
separate, explicit step at the end of this file, so the raw data is always what was on disk.

`load_dataset("mnist")` (and "fashion_mnist") looks in these places, in order, and takes the
first that has the data:

1. the `data_dir` argument, else the `JAXMLP_DATA_DIR` environment variable: a folder with the
   four IDX files, or a parent folder holding `mnist/` or `fashion-mnist/`;
2. the user cache, `cache_dir()/mnist` (where downloads go);
3. Debian's `/usr/share/datasets/<name>` (the `dataset-fashion-mnist` package installs there);
4. tensorflow-datasets, if it is installed and has a prepared copy (honours `TFDS_DATA_DIR`);
5. a download from public mirrors into the user cache, verified by SHA-256.

A place that does not have the data is skipped, and the reason is remembered: if every place
fails, `DatasetNotFound` lists them all. A place that has the files but whose files are broken
is an error straight away: quietly using some other copy would hide the damage.

"digits" is scikit-learn's bundled 8x8 set: small, always available, good for offline smoke runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "DATASETS",
    "SOURCES",
    "DataError",
    "Dataset",
    "DatasetNotFound",
    "cache_dir",
    "flatten",
    "input_affine",
    "load_dataset",
    "one_hot",
    "read_idx",
]


class DataError(Exception):
    """A problem with the data that the user can fix; the message says what and how.

    Command-line tools print `str(error)` without a traceback, so the message must stand alone.
    """


class DatasetNotFound(DataError):
    """No place had the data set; `tried` lists every place looked, in order, with the reason."""

    def __init__(self, message: str, tried: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tried: list[str] = list(tried)


DATASETS = ("mnist", "fashion_mnist", "digits")
SOURCES = ("auto", "local", "tfds", "download")
NUM_CLASSES = 10

# The four files of an IDX data set, without the ".gz" that they usually carry.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Where Debian's dataset packages put data; a module constant so tests can point it elsewhere.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

DOWNLOAD_TIMEOUT_S = 10.0
GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What the loader needs to know about one IDX data set."""

    folders: tuple[str, ...]  # folder names accepted under a parent; the first is used for caching
    tfds_name: str
    mirrors: tuple[str, ...]
    # SHA-256 of each file's *decompressed* bytes: mirrors' gzip wrappers differ, contents do not.
    sha256: dict[str, str]


_SPECS = {
    "mnist": _Spec(
        folders=("mnist",),
        tfds_name="mnist",
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
    ),
    "fashion_mnist": _Spec(
        folders=("fashion-mnist", "fashion_mnist"),
        tfds_name="fashion_mnist",
        mirrors=("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
    ),
}


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------


# eq=False: comparing arrays with == is elementwise, so generated __eq__ would be meaningless.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split: images uint8 (N, H, W) in 0..255, labels int32 (N,) in 0..9."""

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    source: str  # where the data came from, in words; recorded with every run

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def image_shape(self) -> tuple[int, int]:
        height, width = self.x_train.shape[1:]
        return (int(height), int(width))


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Dataset:
    """Find, read and check a data set (see the module docstring for where it looks).

    `source` narrows the search: "local" = data_dir / JAXMLP_DATA_DIR, the user cache and
    /usr/share/datasets; "tfds" = tensorflow-datasets only; "download" = the mirrors only (a valid
    copy already in the cache is reused). `mirrors` (else env JAXMLP_MIRRORS, comma-separated)
    replaces the default download base URLs. Raises DatasetNotFound when no place has the data,
    DataError when a place has it but it is broken.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if name == "digits":
        return _load_digits(source)

    spec = _SPECS[name]
    tried: list[str] = []
    if source in ("auto", "local"):
        for place, folder in _local_places(spec, data_dir):
            found = _find_idx_folder(folder, spec, place, tried)
            if found is not None:
                return _load_idx_folder(name, found, f"idx files in {found}")
    if source in ("auto", "tfds"):
        dataset = _load_from_tfds(name, spec, progress, tried)
        if dataset is not None:
            return dataset
    if source in ("auto", "download"):
        base_urls = _mirror_list(spec, mirrors)
        folder = cache_dir() / spec.folders[0]
        used = _download_idx_files(spec, base_urls, folder, progress, tried)
        if used is not None:
            where = f"downloaded from {', '.join(used)} into" if used else "cached download in"
            return _load_idx_folder(name, folder, f"{where} {folder} (SHA-256 verified)")
    raise DatasetNotFound(_not_found_message(name, source, tried), tried)


def _not_found_message(name: str, source: str, tried: list[str]) -> str:
    places = "\n".join(f"  - {entry}" for entry in tried)
    narrowed = "" if source == "auto" else f" (source={source!r}; 'auto' tries every place)"
    return (
        f"Could not find the {name} data set{narrowed}. Looked in:\n{places}\n"
        f"To get it: point --data-dir or JAXMLP_DATA_DIR at a folder with the four IDX files "
        f"({', '.join(f + '.gz' for f in IDX_FILES)}); or pip install 'jaxmlp[tfds]' and prepare "
        f"it with tensorflow-datasets; or connect to the network so it can be downloaded into "
        f"{cache_dir()}."
    )


def cache_dir() -> Path:
    """The user cache: $XDG_CACHE_HOME/jaxmlp, else ~/.cache/jaxmlp (not created here)."""
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "jaxmlp"


# ----------------------------------------------------------------------------------------------
# Reading IDX files
# ----------------------------------------------------------------------------------------------

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
    path = Path(path)
    data = _read_content(path)
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


# ----------------------------------------------------------------------------------------------
# Local folders (lookup steps 1-3)
# ----------------------------------------------------------------------------------------------


def _local_places(
    spec: _Spec, data_dir: str | os.PathLike[str] | None
) -> Iterator[tuple[str, Path | None]]:
    """(description, folder or None when unset) for each local place, in lookup order."""
    if data_dir is not None:
        yield f"data_dir {data_dir}", Path(data_dir)
    else:
        env = os.environ.get("JAXMLP_DATA_DIR", "")
        yield (f"JAXMLP_DATA_DIR={env}", Path(env)) if env else ("JAXMLP_DATA_DIR", None)
    yield f"user cache {cache_dir() / spec.folders[0]}", cache_dir() / spec.folders[0]
    for folder in spec.folders:
        yield f"system data {SYSTEM_DATA_DIR / folder}", SYSTEM_DATA_DIR / folder


def _find_idx_folder(root: Path | None, spec: _Spec, place: str, tried: list[str]) -> Path | None:
    """The folder (root or a known subfolder of it) holding all four files, else None.

    Records why in `tried` when there is none.
    """
    if root is None:
        tried.append(f"{place}: not set")
        return None
    if not root.is_dir():
        tried.append(f"{place}: no such folder")
        return None
    for folder in (root, *(root / sub for sub in spec.folders)):
        present = [stem for stem in IDX_FILES if _idx_path(folder, stem) is not None]
        if len(present) == len(IDX_FILES):
            return folder
        if present:  # half a data set is worth a specific reason
            missing = [stem for stem in IDX_FILES if stem not in present]
            tried.append(f"{place}: {folder} lacks {', '.join(missing)} (.gz or not)")
            return None
    subfolders = ", ".join(f"{sub}/" for sub in spec.folders)
    tried.append(f"{place}: no IDX files in it or in {subfolders}")
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    """The file for `stem` in `folder`: uncompressed (faster) if present, else gzipped."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _load_idx_folder(name: str, folder: Path, source: str) -> Dataset:
    """Read and check the four IDX files in `folder`.

    A plain gunzip + np.frombuffer of MNIST takes about 0.15 s, so there is no decoded cache.
    """
    paths = [_idx_path(folder, stem) for stem in IDX_FILES]
    if None in paths:
        raise DataError(f"{folder}: some IDX files disappeared while loading; try again.")
    train_images, train_labels, test_images, test_labels = paths
    x_train, y_train = _checked_split(read_idx(train_images), read_idx(train_labels),
                                      str(train_images), str(train_labels))
    x_test, y_test = _checked_split(read_idx(test_images), read_idx(test_labels),
                                    str(test_images), str(test_labels))
    return _dataset(name, x_train, y_train, x_test, y_test, source, str(folder))


def _checked_split(
    images: np.ndarray, labels: np.ndarray, images_from: str, labels_from: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check one split's images and labels fit together; return labels as int32."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_from}: expected uint8 images of shape (N, height, width), got "
            f"{images.dtype} with shape {images.shape}. Is this an image file?"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_from}: expected integer labels of shape (N,), got {labels.dtype} "
            f"with shape {labels.shape}. Is this a label file?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_from} holds {len(images)} images but {labels_from} holds "
            f"{len(labels)} labels; the two files must come from the same data set."
        )
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DataError(
            f"{labels_from}: {bad.size} labels outside 0..{NUM_CLASSES - 1} (the first: "
            f"{labels[bad[0]]} at index {bad[0]}). The file is damaged or not a label file."
        )
    return images, labels.astype(np.int32)


def _dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    source: str,
    where: str,
) -> Dataset:
    """Build a Dataset after checking the train and test images have the same size."""
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{where}: train images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; the files come from different data sets."
        )
    return Dataset(name, x_train, y_train, x_test, y_test, source)


# ----------------------------------------------------------------------------------------------
# tensorflow-datasets (lookup step 4)
# ----------------------------------------------------------------------------------------------

_TFDS_BATCH = 2000  # examples per random-access read: far fewer calls than one at a time


def _load_from_tfds(name: str, spec: _Spec, progress: bool, tried: list[str]) -> Dataset | None:
    """Load a prepared tensorflow-datasets copy, via a decoded-array cache; None if unavailable.

    Decoding 70,000 PNGs takes seconds, so the decoded arrays are saved in cache_dir()/decoded,
    keyed by the tfds files' names, sizes and modification times.
    """
    data_dir = os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    place = f"tensorflow-datasets data_dir {data_dir}"
    try:
        import tensorflow_datasets as tfds
    except Exception as error:  # not only ImportError: a broken install must not stop the search
        tried.append(f"tensorflow-datasets: cannot import ({error}); pip install 'jaxmlp[tfds]'")
        return None
    try:
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            tried.append(f"{place}: no prepared {spec.tfds_name} {builder.version}")
            return None
        prepared = Path(builder.data_dir)
    except Exception as error:  # tfds raises many kinds; each just means "not here"
        tried.append(f"{place}: {type(error).__name__}: {_first_line(error)}")
        return None

    source = f"tfds data_dir {data_dir} ({spec.tfds_name} {builder.version}, tfds's example order)"
    cached = cache_dir() / "decoded" / f"tfds-{spec.tfds_name}-{_files_key(prepared)}.npz"
    arrays = _read_decoded(cached)
    if arrays is None:
        try:
            sources = builder.as_data_source()
            arrays = {}
            for split in ("train", "test"):
                images, labels = _decode_tfds_split(sources[split], f"{name} {split}", progress)
                arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
        except DataError:
            raise
        except Exception as error:  # e.g. prepared as tfrecord, which has no random access
            tried.append(f"{place}: {type(error).__name__}: {_first_line(error)}")
            return None
        _write_decoded(cached, arrays)
    else:
        source += f", decoded copy {cached}"
    x_train, y_train = _checked_split(arrays["x_train"], arrays["y_train"], source, source)
    x_test, y_test = _checked_split(arrays["x_test"], arrays["y_test"], source, source)
    return _dataset(name, x_train, y_train, x_test, y_test, source, source)


def _decode_tfds_split(
    data_source: Any, desc: str, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, H, W) uint8 and labels (N,) int32 of one tfds random-access split."""
    count = len(data_source)
    first = data_source[0]["image"]
    if first.ndim != 3 or first.shape[-1] != 1:
        raise DataError(f"tfds {desc}: expected (H, W, 1) grayscale images, got {first.shape}")
    # Batched reads are ~2x faster than one example at a time; older tfds lacks __getitems__.
    read_batch = getattr(data_source, "__getitems__", lambda ids: [data_source[i] for i in ids])
    images = np.empty((count, *first.shape[:2]), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int32)
    with tqdm(total=count, desc=f"decoding {desc}", unit="img", disable=not progress) as bar:
        for start in range(0, count, _TFDS_BATCH):
            indices = range(start, min(start + _TFDS_BATCH, count))
            batch = read_batch(indices)
            images[start : indices.stop] = [example["image"][..., 0] for example in batch]
            labels[start : indices.stop] = [example["label"] for example in batch]
            bar.update(len(indices))
    return images, labels


def _files_key(folder: Path) -> str:
    """A short key that changes whenever a file in `folder` changes (name, size or mtime)."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(folder.iterdir()):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _read_decoded(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays from a decoded cache file, or None if it is missing or unreadable (then rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_decoded(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save decoded arrays atomically; a cache that cannot be written only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _temporary_file(path.parent) as temp:
            with open(temp, "wb") as file:  # a file object: np.savez would append ".npz"
                np.savez(file, **arrays)
            os.replace(temp, path)
    except OSError as error:
        warnings.warn(f"could not cache decoded arrays in {path}: {error}", stacklevel=3)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


# ----------------------------------------------------------------------------------------------
# Downloading (lookup step 5)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# scikit-learn's digits
# ----------------------------------------------------------------------------------------------

_DIGITS_TRAIN = 1437  # of 1797: 80 %, leaving 360 for test


def _load_digits(source: str) -> Dataset:
    """scikit-learn's 8x8 digits, rescaled to 0..255, with a fixed seeded train/test split."""
    if source not in ("auto", "local"):
        raise DataError(f"digits ships with scikit-learn: use source 'auto', not {source!r}.")
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError("digits needs scikit-learn: pip install scikit-learn") from error
    digits = load_digits()
    # Pixel values are counts 0..16; round(v * 255 / 16) spreads them over the uint8 range.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:_DIGITS_TRAIN], order[_DIGITS_TRAIN:]
    source = (
        "scikit-learn's bundled digits (8x8, values 0..16 rescaled to 0..255; "
        f"split by numpy default_rng(0) permutation: {len(train)} train / {len(test)} test)"
    )
    return Dataset("digits", images[train], labels[train], images[test], labels[test], source)


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------

SCALINGS = ("unit", "raw", "standardize")


def flatten(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H*W); a view, not a copy, when the array is contiguous."""
    return images.reshape(len(images), -1)


def input_affine(scaling: str, x_train: np.ndarray) -> tuple[float, float]:
    """(scale, shift) such that the model's input is `raw_uint8 * scale + shift`.

    "unit": x/255 in [0, 1]; "raw": unchanged; "standardize": zero mean and unit standard
    deviation over the training set, one scalar for all pixels (so it never leaks test data).
    """
    if scaling == "unit":
        return (1.0 / 255.0, 0.0)
    if scaling == "raw":
        return (1.0, 0.0)
    if scaling == "standardize":
        mean, std = _pixel_mean_std(x_train)
        mean, std = mean / 255.0, std / 255.0
        if std == 0.0:
            raise ValueError("cannot standardize: every training pixel has the same value")
        return (1.0 / (255.0 * std), -mean / std)
    raise ValueError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")


def _pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all pixel values, computed in float64."""
    if images.dtype == np.uint8:
        # A 256-bin histogram is exact and avoids a float64 copy of the whole set (~376 MB).
        counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256, dtype=np.float64)
        mean = float(counts @ values / counts.sum())
        return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    return float(images.mean(dtype=np.float64)), float(images.std(dtype=np.float64))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) integer labels -> (N, num_classes) float32 rows with a single 1."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return np.eye(num_classes, dtype=np.float32)[labels]
