"""Why flatten, and what does an MLP do with the 2-D layout? The same MLP on MNIST as it is and
with its pixels shuffled by one fixed random permutation.

Every image, training and test alike, has its 784 pixels put in one fixed random order
(`--pixel-permutation SEED`; several permutation seeds). A person can no longer read the digits,
but no information is lost: the permutation is the same for every image. If the MLP's accuracy
does not change, the network never used the 2-D layout: flattening the image lost nothing for
it, and it also did not exploit that neighbouring pixels belong together, which is what a
convolution's small filters are built on.

    python experiments/sweep_pixels.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

from jaxmlp import data, stats, sweep
from jaxmlp.data.preprocess import permute_pixels
from jaxmlp.plots.backend import figure, save
from jaxmlp.plots.layout import wrap

NAME = "sweep_pixels"
IN_PLACE = "pixels in place"
PICTURE = "permuted_digits.png"
SHOWN = 6  # test images in the picture


@dataclasses.dataclass(frozen=True)
class Budget:
    seeds: int
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    train_subset: int | None
    test_subset: int | None
    permutations: tuple[int, ...]  # the permutation seeds


BUDGETS = {
    "default": Budget(seeds=10, hidden=(512, 512), epochs=4, batch_size=128, train_subset=None,
                      test_subset=None, permutations=(1, 2, 3)),
    "quick": Budget(seeds=3, hidden=(128,), epochs=2, batch_size=128, train_subset=5_000,
                    test_subset=2_000, permutations=(1, 2)),
    "smoke": Budget(seeds=2, hidden=(16,), epochs=1, batch_size=100, train_subset=500,
                    test_subset=500, permutations=(1,)),
}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("s" if n != 1 else "")


def permuted(seed: int) -> str:
    return f"permutation {seed}"


def neighbour_correlation(images: np.ndarray) -> float:
    """Correlation of each pixel with its right-hand neighbour over (N, 28, 28) images: how
    much the 2-D layout tells about a pixel (high for handwriting, about 0 after shuffling)."""
    x = images.astype(np.float64)
    return float(np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1])


def unflat(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return flat.reshape(len(flat), *shape)


def paired(plain: np.ndarray, other: np.ndarray) -> tuple[float, float, float]:
    """Mean of the per-seed differences other - plain and its 95% bootstrap interval
    (`stats.bootstrap_ci`). Seed s of every variant trains on the same batches from the same
    initial numbers (only which pixel each first-layer row meets differs), so the comparison is
    paired by seed, with as many samples as seeds."""
    d = np.asarray(other) - np.asarray(plain)
    lo, hi = stats.bootstrap_ci(d)
    return float(d.mean()), lo, hi


def verdict(mean: float, lo: float, hi: float, n_test: int) -> str:
    """What a paired difference (permuted - in place) of accuracies on `n_test` test images
    says, in words."""
    span = f"{100 * mean:+.2f} points (95% CI [{100 * lo:+.2f}, {100 * hi:+.2f}])"
    if lo <= 0 <= hi:
        return f"{span}: no difference the seeds can resolve"
    images = f"{abs(mean) * n_test:.0f} of {n_test:,} test images"
    if lo > 0:
        return f"{span}: the permuted runs scored higher, by {images}: not a loss"
    return f"{span}: the permuted runs scored lower, by {images}"


def picture_figure(images: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """The figure of `picture` (see there), not yet saved."""
    shape = images.shape[1:]
    shuffled = unflat(permute_pixels(data.flatten(images), seed), shape)
    fig = figure(1.6 * len(images), 4.1)
    axes = fig.subplots(2, len(images), squeeze=False)
    for j in range(len(images)):
        for i, (img, what) in enumerate(((images[j], "as it is"), (shuffled[j], "permuted"))):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{labels[j]}, {what}", fontsize=8)
    fig.suptitle(wrap(f"MNIST test images before and after pixel permutation {seed}: the same "
                      "pixels, the same permutation for every image", fig.get_figwidth(), 9),
                 fontsize=9)
    return fig


def picture(path: Path, images: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """The first test images as they are (top) and with permutation `seed` (bottom)."""
    save(picture_figure(images, labels, seed), path, dpi=110)


def findings(result: sweep.SweepResult, b: Budget, corr: tuple[float, float], pixels: int,
             n_test: int) -> list[str]:
    """The sentences of summary.md; `corr`: neighbour correlation before and after the first
    permutation; `pixels`: pixels per image; `n_test`: test images each run was scored on."""
    plain = result.final(IN_PLACE, "test_accuracy")
    base = result.row(IN_PLACE)
    out = [f"Pixels in place: {C.acc(base)} test accuracy over {len(plain)} seeds "
           f"({'-'.join(map(str, (784, *b.hidden, 10)))} relu MLP, "
           f"{plural(b.epochs, 'epoch')})."]
    shuffled = []
    for seed in b.permutations:
        acc = result.final(permuted(seed), "test_accuracy")
        shuffled.append(acc)
        out.append(f"Permutation {seed}: {C.acc(result.row(permuted(seed)))}; paired by seed "
                   f"against pixels in place: {verdict(*paired(plain, acc), n_test)}.")
    mean, lo, hi = paired(plain, np.mean(shuffled, axis=0))
    lost = hi < 0
    out.append(
        f"{'All ' if len(b.permutations) > 1 else ''}"
        f"{plural(len(b.permutations), 'permutation')} averaged per seed, against pixels in "
        f"place: {verdict(mean, lo, hi, n_test)}. "
        + ("Permuting the pixels cost the MLP accuracy: something in this training depends on "
           "the pixel order." if lost else
           f"Permuting the pixels cost the MLP no accuracy these seeds can detect (at worst "
           f"{100 * min(lo, 0):.2f} points, the interval's low end): it learns shuffled digits "
           "as well as real ones, so it never used the 2-D layout; flattening lost nothing for "
           "it, and it did not exploit neighbouring pixels either."))
    out.append(
        f"The picture ({PICTURE}) shows why a person disagrees: a pixel's correlation with its "
        f"right-hand neighbour is {corr[0]:.2f} in the real test images and {corr[1]:.2f} after "
        f"permutation {b.permutations[0]}; the layout that makes a digit readable is gone, the "
        "information is not.")
    out.append(
        f"Why equal is expected: for an MLP, permuting the {pixels} pixels is the same as "
        f"permuting the {pixels} rows of its first weight matrix, and those rows are drawn "
        "independently from one distribution, so a permuted run is an ordinary run with "
        "another draw of the initial weights; what the seeds measure is that nothing else in "
        "the training depends on the order.")
    out.append(
        f"What this does not show: all {len(result.runs)} runs here are MLPs; nothing trains a "
        "convolutional network. That a convolution, whose filters read small neighbourhoods of "
        "pixels, would lose its advantage on permuted pixels is the usual expectation, not a "
        "measurement of this experiment.")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    base = C.mnist(args.data_dir, hidden=b.hidden, epochs=b.epochs, batch_size=b.batch_size,
                   train_subset=b.train_subset)
    variants = [{"name": IN_PLACE}] + [{"name": permuted(s), "pixel_permutation": s}
                                       for s in b.permutations]
    sizes = "-".join(map(str, (784, *b.hidden, 10)))
    spec = sweep.make_spec(
        base, seeds=b.seeds, variants=variants, test_subset=b.test_subset,
        name="Why flatten: an MLP on permuted pixels",
        note=(f"The same {sizes} relu MLP (jaxmlp's defaults otherwise: Adam, warmup + cosine, "
              f"softmax cross-entropy), {b.epochs} epochs, on MNIST as it is and with "
              f"{len(b.permutations)} fixed random pixel permutations "
              f"(seeds {', '.join(map(str, b.permutations))}), applied to the training and the "
              "test images alike. Each permutation is its own data, so its own group of runs; "
              "all of them share one compiled program."))
    result = C.run(spec, args.out, args)

    dataset, _ = args.datasets.dataset(base)
    shown = dataset.x_test[:SHOWN]
    picture(args.out / PICTURE, shown, dataset.y_test[:SHOWN], b.permutations[0])
    test = dataset.x_test[: b.test_subset]
    shape = test.shape[1:]
    corr = (neighbour_correlation(test),
            neighbour_correlation(unflat(permute_pixels(data.flatten(test),
                                                        b.permutations[0]), shape)))
    rows = [[v["name"], C.acc(result.row(v["name"])), stats.fmt(
        result.row(v["name"])["train_loss_mean"])] for v in variants]
    table = C.table(["pixels", "test accuracy (mean, 95% CI)", "final train loss"], rows)
    C.finish(result, findings(result, b, corr, int(np.prod(shape)), len(test)), [
        ("Accuracy with and without the permutation", table + f"\n\nPicture: {PICTURE}."),
        C.budget_section(args, b, started),
    ], mode=args.mode)
    return 0


if __name__ == "__main__":
    C.entry(main)
