"""Two-dimensional toy data sets: points in the plane in 2 or 3 classes, made from a data seed.

Small enough to see: the network's decision boundary can be drawn over the whole input space,
and each first-layer unit is one line across it. Moons, circles and blobs come from
scikit-learn's generators (tested, and what a reader may already know); scikit-learn has no
spirals or xor, so those are a few lines of numpy here.

Every set has `TOY_TRAIN` training and `TOY_TEST` test points, drawn together from one seeded
generator (the same seed gives the same arrays) and split in the order drawn: every generator
here shuffles, so the first points are as random a sample as any. Coordinates are float32 and
of order 1 (within about [-2.5, 2.5]), so they reach the network as they are: there are no
0..255 pixels to scale and no images to flatten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxmlp.config import TOY_DATASETS
from jaxmlp.data.dataset import Dataset
from jaxmlp.data.errors import DataError

TOY_TRAIN = 1000
TOY_TEST = 500

Points = tuple[np.ndarray, np.ndarray]  # x (n, 2) float64, labels (n,) integers


def spirals(n: int, seed: int, noise: float = 0.05, arms: int = 3, turns: float = 1.0
            ) -> Points:
    """`arms` spiral arms winding `turns` times out from the origin to radius 1, one class per
    arm, each point jittered by Gaussian noise of std `noise` (in units of the radius)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, arms, n)
    # sqrt: as many points per unit of area near the rim as near the centre, instead of
    # crowding at the centre, where the arms meet and no classifier could tell them apart.
    t = np.sqrt(rng.uniform(0.0, 1.0, n))
    angle = 2 * np.pi * (turns * t + labels / arms)
    x = t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return x + noise * rng.normal(size=(n, 2)), labels


def xor(n: int, seed: int, noise: float = 0.03) -> Points:
    """Points uniform in [-1, 1]^2, class 1 where the two coordinates have the same sign (the
    first and third quadrants), then jittered by Gaussian noise of std `noise`: no single
    line separates the classes, two hidden units can."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (n, 2))
    labels = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x + noise * rng.normal(size=(n, 2)), labels


def _sklearn_datasets() -> Any:
    try:  # imported here: sklearn.datasets takes about a second to import
        import sklearn.datasets
    except ImportError as error:
        raise DataError("moons, circles and blobs need scikit-learn: pip install "
                        "scikit-learn") from error
    return sklearn.datasets


def moons(n: int, seed: int, noise: float = 0.1) -> Points:
    """scikit-learn's two interleaving half circles."""
    return _sklearn_datasets().make_moons(n_samples=n, noise=noise, shuffle=True, random_state=seed)


def circles(n: int, seed: int, noise: float = 0.08, factor: float = 0.5) -> Points:
    """scikit-learn's two concentric circles (radius 1 and `factor`): class 1 is the inner."""
    return _sklearn_datasets().make_circles(n_samples=n, noise=noise, factor=factor,
                                            shuffle=True, random_state=seed)


# Fixed centres, a triangle around the origin: scikit-learn's default draws them at random in
# [-10, 10]^2, so some seeds would pile two blobs on top of each other.
_BLOB_CENTRES = ((-1.0, -0.6), (1.0, -0.6), (0.0, 1.1))


def blobs(n: int, seed: int, std: float = 0.4) -> Points:
    """scikit-learn's Gaussian blobs: three clusters of std `std` around fixed centres."""
    return _sklearn_datasets().make_blobs(n_samples=n, centers=np.asarray(_BLOB_CENTRES),
                                          cluster_std=std, shuffle=True, random_state=seed)


@dataclasses.dataclass(frozen=True)
class Toy:
    make: Callable[[int, int], Points]
    classes: int
    words: str  # what the points are, for the data set's source line
    layout: str  # where the classes lie, in a learner's words
    linear: bool  # whether straight lines (a network with no hidden layer) can separate them


TOYS = {
    "spirals": Toy(spirals, 3, "3 spiral arms, 1 turn each, noise std 0.05 (numpy)",
                   "three interleaved spiral arms", False),
    "moons": Toy(moons, 2, "scikit-learn make_moons, noise 0.1",
                 "two interleaving half circles", False),
    "circles": Toy(circles, 2, "scikit-learn make_circles, noise 0.08, factor 0.5",
                   "a ring around a disc", False),
    "xor": Toy(xor, 2, "uniform in [-1, 1]^2, class = same sign, noise std 0.03 (numpy)",
               "opposite quadrants, as in xor", False),
    "blobs": Toy(blobs, 3, "scikit-learn make_blobs, 3 fixed centres, std 0.4",
                 "three separate clusters", True),
}
assert tuple(TOYS) == TOY_DATASETS, "config.TOY_DATASETS and the generators here must agree"


def toy_points(name: str, n: int, seed: int) -> Points:
    """`n` points of toy data set `name` from `seed`, as float32 (n, 2) and int32 labels."""
    x, y = TOYS[name].make(n, seed)
    return np.asarray(x, np.float32), np.asarray(y, np.int32)


def load_toy(name: str, seed: int = 0, source: str = "auto") -> Dataset:
    """Toy data set `name` generated from `seed`: TOY_TRAIN train and TOY_TEST test points."""
    if source not in ("auto", "local"):
        raise DataError(f"{name} is generated on the spot, not found: use source 'auto', not "
                        f"{source!r}.")
    x, y = toy_points(name, TOY_TRAIN + TOY_TEST, seed)
    toy = TOYS[name]
    words = (f"generated: {toy.words}; data seed {seed}; {TOY_TRAIN} train / {TOY_TEST} test "
             f"points in the plane, {toy.classes} classes")
    return Dataset(name, x[:TOY_TRAIN], y[:TOY_TRAIN], x[TOY_TRAIN:], y[TOY_TRAIN:], words,
                   num_classes=toy.classes)
