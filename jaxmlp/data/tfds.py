"""Loading a prepared tensorflow-datasets copy, through a cache of the decoded arrays.

tensorflow_datasets is optional: it is imported only when this path is tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxmlp.data.cache import cache_dir
from jaxmlp.data.dataset import Dataset, _checked_split, _dataset
from jaxmlp.data.download import _temporary_file
from jaxmlp.data.errors import DataError
from jaxmlp.data.specs import _Spec

_TFDS_BATCH = 2000  # examples per random-access read: far fewer calls than one at a time


def tfds_advice() -> str:
    """How to get a data set through tensorflow-datasets from here: install it only where it
    is not installed already (found without importing it, which takes seconds)."""
    if importlib.util.find_spec("tensorflow_datasets") is None:
        return "pip install 'jaxmlp[tfds]' and prepare it with tensorflow-datasets"
    return ("prepare it with tensorflow-datasets (installed here; TFDS_DATA_DIR names its "
            "data folder)")


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
        with _quiet_tfds():
            builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
            prepared_here = builder.is_prepared()
        if not prepared_here:
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


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Keep tensorflow-datasets' warnings (through absl's logger) out of jaxmlp's output while it
    probes for a copy: "Variant folder ... has no dataset_info.json" on every run without a
    prepared copy says nothing the lookup's own "not found" list does not."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]
