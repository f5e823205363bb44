"""scikit-learn's bundled 8x8 digits as a Dataset: small, always available, for offline runs."""

from __future__ import annotations

import numpy as np

from jaxmlp.data.dataset import Dataset
from jaxmlp.data.errors import DataError

DIGITS_TOTAL = 1797  # scikit-learn's bundled 8x8 digits
DIGITS_TRAIN = 1437  # 80 %, leaving 360 for test


def _load_digits(source: str) -> Dataset:
    """scikit-learn's 8x8 digits, rescaled to 0..255, with a fixed seeded train/test split."""
    if source not in ("auto", "local"):
        raise DataError(f"digits ships with scikit-learn: use source 'auto', not {source!r}.")
    try:  # imported here: sklearn.datasets takes about a second to import, digits is rare
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError("digits needs scikit-learn: pip install scikit-learn") from error
    digits = load_digits()
    # Pixel values are counts 0..16; round(v * 255 / 16) spreads them over the uint8 range.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:DIGITS_TRAIN], order[DIGITS_TRAIN:]
    source = (
        "scikit-learn's bundled digits (8x8, values 0..16 rescaled to 0..255; "
        f"split by numpy default_rng(0) permutation: {len(train)} train / {len(test)} test)"
    )
    return Dataset("digits", images[train], labels[train], images[test], labels[test], source)
