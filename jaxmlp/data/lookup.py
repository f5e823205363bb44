"""`load_dataset`: the lookup order over folders, tensorflow-datasets and downloads.

The order, and what a failed place means, is described in the `jaxmlp.data` package docstring.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmlp.config import DATASETS, SOURCES, TOY_DATASETS, Config
from jaxmlp.data.cache import cache_dir
from jaxmlp.data.dataset import NUM_CLASSES, Dataset, _checked_split, _dataset
from jaxmlp.data.digits import DIGITS_TOTAL, DIGITS_TRAIN, _load_digits
from jaxmlp.data.download import _download_idx_files, _mirror_list
from jaxmlp.data.errors import DataError, DatasetNotFound
from jaxmlp.data.idx import read_idx_digest
from jaxmlp.data.specs import _SPECS, IDX_FILES, _Spec
from jaxmlp.data.tfds import _load_from_tfds, tfds_advice
from jaxmlp.data.toy import TOY_TEST, TOY_TRAIN, TOYS, load_toy

# Where Debian's dataset packages put data; a module constant so tests can point it elsewhere
# (set jaxmlp.data.lookup.SYSTEM_DATA_DIR: rebinding the name jaxmlp.data re-exports does not
# reach the code here).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    data_seed: int = 0,
) -> Dataset:
    """Find, read and check a data set (see the `jaxmlp.data` docstring for where it looks).

    `source` narrows the search: "local" = data_dir / JAXMLP_DATA_DIR, the user cache and
    /usr/share/datasets; "tfds" = tensorflow-datasets only; "download" = the mirrors only (a valid
    copy already in the cache is reused). `mirrors` (else env JAXMLP_MIRRORS, comma-separated)
    replaces the default download base URLs. Raises DatasetNotFound when no place has the data,
    DataError when a place has it but it is broken. The toy sets (spirals, moons, ...) are
    generated from `data_seed` (the only thing they use it for), not looked for.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if name == "digits":
        return _load_digits(source)
    if name in TOY_DATASETS:
        return load_toy(name, data_seed, source)

    spec = _SPECS[name]
    tried: list[str] = []
    if source in ("auto", "local"):
        named = _named_folder(data_dir)
        if named is not None:
            # The user said where the data is: that folder, or an error. Searching on would
            # train on some other copy (or the digits) and hide the mistake.
            place, root = named
            found = _find_idx_folder(root, spec, place, tried)
            if found is None:
                raise DataError(_named_folder_message(name, tried[-1]))
            return _load_idx_folder(name, found, f"idx files in {found}")
        for place, folder in _local_places(spec):
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
            return _load_idx_folder(name, folder, f"{where} {folder}")
    raise DatasetNotFound(_not_found_message(name, source, tried), tried)


def _not_found_message(name: str, source: str, tried: list[str]) -> str:
    places = "\n".join(f"  - {entry}" for entry in tried)
    narrowed = "" if source == "auto" else f" (source={source!r}; 'auto' tries every place)"
    return (
        f"Could not find the {name} data set{narrowed}. Looked in:\n{places}\n"
        f"To get it: point --data-dir or JAXMLP_DATA_DIR at a folder with the four IDX files "
        f"({', '.join(f + '.gz' for f in IDX_FILES)}); or {tfds_advice()}; or connect to the "
        f"network so it can be downloaded into {cache_dir()}."
    )


# ----------------------------------------------------------------------------------------------
# Local folders (lookup steps 1-3)
# ----------------------------------------------------------------------------------------------


def _named_folder(data_dir: str | os.PathLike[str] | None) -> tuple[str, Path] | None:
    """(description, folder) of the folder the user named (data_dir, else JAXMLP_DATA_DIR)."""
    if data_dir is not None:
        return f"--data-dir {data_dir}", Path(data_dir)
    env = os.environ.get("JAXMLP_DATA_DIR", "")
    return (f"JAXMLP_DATA_DIR={env}", Path(env)) if env else None


def _named_folder_message(name: str, reason: str) -> str:
    return (
        f"{reason}. A named data folder is the only place looked: point --data-dir (or "
        f"JAXMLP_DATA_DIR) at a folder with the four {name} IDX files "
        f"({', '.join(IDX_FILES)}, each .gz or not), or at a parent of "
        f"{'/ or '.join(_SPECS[name].folders)}/; or leave both unset to let jaxmlp search the "
        f"usual places and download it."
    )


def _local_places(spec: _Spec) -> Iterator[tuple[str, Path | None]]:
    """(description, folder or None when unset) for each automatic local place, in order."""
    yield "JAXMLP_DATA_DIR or --data-dir", None  # so "not found" says that none was named
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
    """Read and check the four IDX files in `folder`, and say whether they are the published
    `name` files (by content hash); another known data set's files are an error.

    A plain gunzip + np.frombuffer of MNIST takes about 0.15 s, so there is no decoded cache.
    """
    paths = [_idx_path(folder, stem) for stem in IDX_FILES]
    if None in paths:
        raise DataError(f"{folder}: some IDX files disappeared while loading; try again.")
    read = {stem: read_idx_digest(path) for stem, path in zip(IDX_FILES, paths, strict=True)}
    verified = _check_identity(name, folder, {stem: digest for stem, (_, digest) in read.items()})
    (x_train, y_train, x_test, y_test) = (read[stem][0] for stem in IDX_FILES)
    train_images, train_labels, test_images, test_labels = map(str, paths)
    x_train, y_train = _checked_split(x_train, y_train, train_images, train_labels)
    x_test, y_test = _checked_split(x_test, y_test, test_images, test_labels)
    note = ("the published files, SHA-256 verified" if verified else
            f"unverified: not the published {name} files, used as your own IDX data")
    return _dataset(name, x_train, y_train, x_test, y_test, f"{source}; {note}", str(folder),
                    verified=verified)


def _check_identity(name: str, folder: Path, digests: dict[str, str]) -> bool:
    """True when every file is the published `name` file. Raises DataError when any file is
    another known data set's: training on it would record the wrong name beside the result."""
    for other, spec in _SPECS.items():
        if other == name:
            continue
        theirs = [stem for stem in IDX_FILES if digests[stem] == spec.sha256[stem]]
        if theirs:
            which = "all four files" if len(theirs) == len(IDX_FILES) else ", ".join(theirs)
            raise DataError(
                f"{folder} holds {other}, not {name} ({which}: their SHA-256 is {other}'s). "
                f"Use --dataset {other}, or point --data-dir at the {name} files."
            )
    return all(digests[stem] == _SPECS[name].sha256[stem] for stem in IDX_FILES)


def load_data(config: Config, *, progress: bool) -> tuple[Dataset, str | None]:
    """(data set, fallback note or None) for `config.dataset`, `data_dir` and `source`."""
    if config.dataset is not None:
        ds = load_dataset(config.dataset, data_dir=config.data_dir, source=config.source,
                          progress=progress, data_seed=config.data_seed)
        return ds, None
    try:
        return load_dataset("mnist", data_dir=config.data_dir, source=config.source,
                            progress=progress), None
    except DatasetNotFound as e:
        tried = "; ".join(e.tried) if e.tried else "every source"
        note = (
            f"MNIST could not be found or downloaded (tried: {tried}). Training on "
            "scikit-learn's bundled 8x8 digits instead, so this run works offline; its accuracy "
            "is not comparable with MNIST's. To get MNIST, put the four IDX files in a folder "
            f"and set JAXMLP_DATA_DIR (or --data-dir), {tfds_advice()}, or run once with "
            "network access (the files are cached in ~/.cache/jaxmlp)."
        )
        return load_dataset("digits"), note


class Shape(NamedTuple):
    """A data set's sizes as its loader will give them: examples, values per example after
    flattening, classes, and the dtype of the values."""

    num_train: int
    num_test: int
    features: int
    num_classes: int
    dtype: np.dtype


def expected_shape(name: str) -> Shape:
    """The shape `load_dataset(name)` gives for the published files (or the generator), known
    before anything is read, so that programs can compile while the data loads. A folder of the
    user's own IDX files may hold other sizes: compare with what was loaded."""
    if name in TOY_DATASETS:
        return Shape(TOY_TRAIN, TOY_TEST, 2, TOYS[name].classes, np.dtype(np.float32))
    if name == "digits":
        return Shape(DIGITS_TRAIN, DIGITS_TOTAL - DIGITS_TRAIN, 64, NUM_CLASSES, np.dtype(np.uint8))
    train, test = (_SPECS[name].content_bytes[f] for f in IDX_FILES[1::2])
    return Shape(train - 8, test - 8, 28 * 28, NUM_CLASSES, np.dtype(np.uint8))
