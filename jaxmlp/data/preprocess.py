"""Preprocessing, an explicit step after loading: flattening, a fixed pixel permutation, input
scaling and one-hot labels."""

from __future__ import annotations

import numpy as np

from jaxmlp.config import INPUT_SCALES

# The scaling names; one home for them, jaxmlp.config (this is the name data's callers know).
SCALINGS = INPUT_SCALES


def flatten(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H*W); a view, not a copy, when the array is contiguous."""
    return images.reshape(len(images), -1)


def pixel_permutation(seed: int, num_pixels: int) -> np.ndarray:
    """The fixed random order of `num_pixels` pixels that seed `seed` stands for (NumPy's PCG64:
    the same on every machine and NumPy version that keeps its stream)."""
    return np.random.default_rng(seed).permutation(num_pixels)


def permute_pixels(flat: np.ndarray, seed: int | None) -> np.ndarray:
    """(N, P) flattened images with their P pixels put in `pixel_permutation(seed, P)`'s order,
    the same order for every image; `seed` None: `flat` itself, untouched."""
    if seed is None:
        return flat
    return flat[:, pixel_permutation(seed, flat.shape[1])]


def input_affine(scaling: str, x_train: np.ndarray) -> tuple[float, float]:
    """(scale, shift) such that the model's input is `raw_uint8 * scale + shift`.

    "unit": x/255 in [0, 1]; "raw": unchanged; "standardize": zero mean and unit standard
    deviation over the training set, one scalar for all pixels (so it never leaks test data).

    Inputs that are not uint8 pixels (the toy sets' float coordinates) have no 255 to divide
    by: "unit" leaves them as they are, like "raw" (`skipped_steps` says so), and
    "standardize" uses their own mean and standard deviation.
    """
    if scaling in SCALINGS and x_train.dtype != np.uint8:
        return _feature_affine(scaling, x_train)
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


def _feature_affine(scaling: str, x_train: np.ndarray) -> tuple[float, float]:
    """`input_affine` for inputs that are numbers already: only "standardize" changes them."""
    if scaling != "standardize":
        return (1.0, 0.0)
    mean, std = _pixel_mean_std(x_train)
    if std == 0.0:
        raise ValueError("cannot standardize: every training input has the same value")
    return (1.0 / std, -mean / std)


def skipped_steps(points: bool, flatten: bool, input_scale: str, shape: tuple[int, ...]
                  ) -> list[str]:
    """The preprocessing a configuration asks for that does not apply to its data, in words
    (recorded with the run): for points (N, D), flattening and the /255 of "unit"."""
    if not points:
        return []
    skipped = [f"flatten: the examples are already vectors of {shape[-1]} numbers"
               if flatten else "no-flatten: nothing to flatten, the examples are vectors"]
    if input_scale == "unit":
        skipped.append("input_scale unit: /255 is for 0..255 pixels; these coordinates are "
                       "used as they are (as with raw)")
    return skipped


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
