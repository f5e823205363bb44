"""The Dataset container, and the checks every loader applies to arrays before building one."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxmlp.data.errors import DataError

NUM_CLASSES = 10


# eq=False: comparing arrays with == is elementwise, so generated __eq__ would be meaningless.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split: images uint8 (N, H, W) in 0..255, or points float32 (N, D) (the
    toy data sets, `points` True); labels int32 (N,) in 0..num_classes-1."""

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    source: str  # where the data came from, in words; recorded with every run
    # True: the published files (content hash); False: IDX files of unknown content, the user's
    # own; None: not checked (tensorflow-datasets' shuffled copy, scikit-learn's digits).
    verified: bool | None = None
    num_classes: int = dataclasses.field(default=NUM_CLASSES, repr=False)  # the toy sets: 2, 3

    @property
    def points(self) -> bool:
        """True when each example is already a vector of numbers (N, D), not an image: there
        is nothing to flatten and no 0..255 to scale."""
        return self.x_train.ndim == 2

    @property
    def image_shape(self) -> tuple[int, int]:
        if self.points:
            raise DataError(f"{self.name} holds {self.x_train.shape[1]}-D points, not images")
        height, width = self.x_train.shape[1:]
        return (int(height), int(width))


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
    verified: bool | None = None,
) -> Dataset:
    """Build a Dataset after checking the train and test images have the same size."""
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{where}: train images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; the files come from different data sets."
        )
    return Dataset(name, x_train, y_train, x_test, y_test, source, verified)
