"""Data sets: finding, reading, checking and downloading MNIST-style data.

Everything returns plain NumPy arrays: images uint8 with shape (N, H, W) and values 0..255,
labels int32 with shape (N,) and values 0..9; the toy sets, points float32 (N, 2) with labels
0..num_classes-1. Preprocessing (scaling, flattening, one-hot) is a
separate, explicit step (`preprocess`), so the raw data is always what was on disk.

`load_dataset("mnist")` (and "fashion_mnist") reads a named folder when there is one: the
`data_dir` argument, else the `JAXMLP_DATA_DIR` environment variable, a folder with the four IDX
files or a parent folder holding `mnist/` or `fashion-mnist/`. A named folder is the user saying
where the data is, so it is the only place looked: missing, incomplete or broken is a DataError
naming it. With no folder named, it looks in these places, in order, and takes the first that
has the data:

1. the user cache, `cache_dir()/mnist` (where downloads go);
2. Debian's `/usr/share/datasets/<name>` (the `dataset-fashion-mnist` package installs there);
3. tensorflow-datasets, if it is installed and has a prepared copy (honours `TFDS_DATA_DIR`);
4. a download from public mirrors into the user cache, verified by SHA-256.

A place that does not have the data is skipped, and the reason is remembered: if every place
fails, `DatasetNotFound` lists them all. A place that has the files but whose files are broken
is an error straight away: quietly using some other copy would hide the damage.

IDX files are hashed as they are read: the published files are recorded as verified, another
known data set's files (Fashion-MNIST asked for as MNIST) are a DataError, and files of unknown
content are accepted as the user's own data and recorded as unverified.

"digits" is scikit-learn's bundled 8x8 set: small, always available, good for offline smoke runs.

"spirals", "moons", "circles", "xor" and "blobs" (`toy`) are points in the plane in 2 or 3
classes, generated from a data seed: toy problems whose decision boundary can be drawn.

The modules, each importing only those above it: `errors`; `idx` (the IDX reader); `specs` (the
known data sets); `cache` (the user cache folder); `dataset` (the Dataset and its checks);
`download`; `tfds`; `digits`; `toy`; `preprocess`; `lookup` (`load_dataset`, and `load_data`:
the data set a `Config` asks for). This package re-exports their public API (`__all__`); every
other name, module constants such as `lookup.SYSTEM_DATA_DIR` and `download.DOWNLOAD_TIMEOUT_S`
included, is read where it is defined: to change one, set it there.
"""

from __future__ import annotations

from jaxmlp.config import DATASETS, SOURCES, TOY_DATASETS
from jaxmlp.data.cache import cache_dir
from jaxmlp.data.dataset import NUM_CLASSES, Dataset
from jaxmlp.data.errors import DataError, DatasetNotFound
from jaxmlp.data.idx import read_idx
from jaxmlp.data.lookup import Shape, expected_shape, load_data, load_dataset
from jaxmlp.data.preprocess import flatten, input_affine, one_hot, skipped_steps
from jaxmlp.data.toy import load_toy, toy_points

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "SOURCES",
    "TOY_DATASETS",
    "DataError",
    "Dataset",
    "DatasetNotFound",
    "Shape",
    "cache_dir",
    "expected_shape",
    "flatten",
    "input_affine",
    "load_data",
    "load_dataset",
    "load_toy",
    "one_hot",
    "read_idx",
    "skipped_steps",
    "toy_points",
]
