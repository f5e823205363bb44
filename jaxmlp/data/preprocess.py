"""Preprocessing, an explicit step after loading: flattening, input scaling and one-hot labels."""

from __future__ import annotations

import numpy as np

from jaxmlp.config import INPUT_SCALES

# The scaling names; one home for them, jaxmlp.config (this is the name data's callers know).
SCALINGS = INPUT_SCALES


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
