"""Where is the learning rate too small, right, too large? A log-spaced grid for SGD and Adam.

The learning rate is traced, so each optimizer's whole grid (every rate x every seed) trains as
one compiled program: two programs in all.

    python experiments/sweep_lr.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import _common as C
import numpy as np

from jaxmlp import stats, sweep
from jaxmlp.plots import sweep as plots_sweep

NAME = "sweep_lr"
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Budget(C.SweepBudget):
    decades: tuple[float, float]  # learning rates from 10**lo to 10**hi
    per_decade: int


BUDGETS = {
    "default": Budget(seeds=5, train_subset=20_000, test_subset=None, hidden=(128,), epochs=3,
                      batch_size=64, decades=(-5, 1), per_decade=2),
    "quick": Budget(seeds=3, train_subset=2_000, test_subset=2_000, hidden=(32,), epochs=2,
                    batch_size=64, decades=(-5, 1), per_decade=1),
    "smoke": Budget(seeds=2, train_subset=640, test_subset=500, hidden=(16,), epochs=1,
                    batch_size=64, decades=(-4, 1), per_decade=1),
}

SLOW_GAP = 0.05  # "slow": finite, but more than 5 points below the best accuracy


def learning_rates(b: Budget) -> list[float]:
    lo, hi = b.decades
    n = round((hi - lo) * b.per_decade) + 1
    return [float(f"{x:.3g}") for x in np.logspace(lo, hi, n)]


def label(opt: str, lr: float) -> str:
    return f"{opt} lr {lr:g}"


def classify(rows: list[dict], lrs: list[float]) -> dict[str, list[int]]:
    """Indices of the rates that diverge (any run NaN/inf), collapse (finite but below 20%),
    are slow (finite, more than SLOW_GAP below the best) or are within the best's interval."""
    best = max(range(len(rows)), key=lambda i: np.nan_to_num(rows[i]["test_acc_mean"], nan=-1))
    out: dict[str, list[int]] = {"diverged": [], "collapsed": [], "slow": [], "good": [],
                                 "best": [best]}
    for i, r in enumerate(rows):
        if r["diverged_frac"] > 0:
            out["diverged"].append(i)
        elif r["test_acc_mean"] < 0.2:
            out["collapsed"].append(i)
        elif C.overlap(r, rows[best]) or i == best:
            out["good"].append(i)
        elif r["test_acc_mean"] < rows[best]["test_acc_mean"] - SLOW_GAP and i < best:
            out["slow"].append(i)
    return out


def findings(result: sweep.SweepResult, lrs: list[float], b: Budget) -> list[str]:
    out = []
    best_lr = {}
    for opt in OPTIMIZERS:
        rows = [result.row(label(opt, lr)) for lr in lrs]
        k = classify(rows, lrs)
        best = rows[k["best"][0]]
        best_lr[opt] = lrs[k["best"][0]]
        good = [lrs[i] for i in k["good"]]
        sent = (f"{opt.upper()}: best at lr {best_lr[opt]:g} with {C.acc(best)} after "
                f"{b.epochs} epochs")
        if len(good) > 1:
            sent += (f"; the rates whose interval overlaps the best's span {min(good):g}.."
                     f"{max(good):g} ({np.log10(max(good) / min(good)):.1f} decades)")
        else:
            sent += "; no other rate's interval overlaps the best's"
        out.append(sent + ".")
        if k["slow"]:
            i = max(k["slow"])
            r = rows[i]
            out.append(
                f"{opt.upper()} is slow below that: at lr {lrs[i]:g} and under, test accuracy "
                f"stays more than {SLOW_GAP * 100:.0f} points below the best ({C.acc(r)} at "
                f"{lrs[i]:g}; final train loss {stats.fmt(r['train_loss_mean'])} vs "
                f"{stats.fmt(best['train_loss_mean'])}).")
        low = [i for i in k["collapsed"] if i < k["best"][0]]
        if low:
            out.append(f"{opt.upper()} at lr {lrs[max(low)]:g} and under barely moves from "
                       f"chance in {b.epochs} epochs ({stats.pct(rows[max(low)]['test_acc_mean'])}"
                       ").")
        high_div = [i for i in k["diverged"] if i > k["best"][0]]
        high_col = [i for i in k["collapsed"] if i > k["best"][0]]
        if high_div:
            i = min(high_div)
            out.append(
                f"{opt.upper()} diverges from lr {lrs[i]:g} up: {C.diverged(rows[i])} runs at "
                f"{lrs[i]:g} went NaN/inf, and {len(high_div)} of the {len(lrs) - i} rates from "
                "there had diverged runs.")
        worse = [i for i in range(k["best"][0] + 1, len(lrs))
                 if i not in k["good"] and i not in high_div and i not in high_col]
        if worse:
            i = min(worse)
            out.append(f"{opt.upper()} above the best range loses accuracy before it fails: "
                       f"{C.acc(rows[i])} at lr {lrs[i]:g}.")
        if high_col:
            i = min(high_col)
            dead = rows[i]["dead_units_final_mean"]
            out.append(
                f"{opt.upper()} collapses without NaN from lr {lrs[i]:g}: {C.acc(rows[i])}, "
                f"with {stats.pct(dead, 0)} of hidden units dead at the end"
                + (" (too large a step pushed relu units where they never fire again, instead "
                   "of overflowing)." if dead >= 0.5 else "."))
        if not high_div and not high_col:
            out.append(f"{opt.upper()} neither diverged nor collapsed up to lr {lrs[-1]:g}.")
    ratio = best_lr["sgd"] / best_lr["adam"]
    out.append(f"SGD's best learning rate is {ratio:g}x Adam's ({best_lr['sgd']:g} vs "
               f"{best_lr['adam']:g}): Adam's step is about lr per parameter whatever the "
               "gradient's size, plain SGD's is lr times the gradient.")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    lrs = learning_rates(b)
    base = C.mnist(args.data_dir, hidden=b.hidden, train_subset=b.train_subset, epochs=b.epochs,
                   batch_size=b.batch_size, schedule="constant")
    variants = [{"name": label(opt, lr), "optimizer": opt, "learning_rate": lr}
                for opt in OPTIMIZERS for lr in lrs]
    spec = sweep.make_spec(
        base, seeds=b.seeds, variants=variants, name="Learning-rate sweep: SGD and Adam",
        test_subset=b.test_subset, probes=True,
        note=(f"Plain SGD and Adam at {len(lrs)} log-spaced learning rates each "
              f"({lrs[0]:g}..{lrs[-1]:g}), constant schedule, batch {b.batch_size}, a "
              f"{'-'.join(map(str, (784, *b.hidden, 10)))} relu MLP, softmax cross-entropy, "
              f"{b.epochs} epochs on the first {b.train_subset:,} MNIST training images (a "
              "subset keeps the experiment within its time budget on a 2-core CPU)."))
    result = C.run(spec, args.out, args)

    series = {opt.upper(): [result.final(label(opt, lr), "test_accuracy") for lr in lrs]
              for opt in OPTIMIZERS}
    if args.writer:
        plots_sweep.plot_metric_vs(
            args.out / "lr_vs_accuracy.png", lrs, series, xlabel="learning rate (log scale)",
            ylabel="final test accuracy", title=spec.name)
    table = C.table(
        ["learning rate", *[f"{o.upper()} test accuracy" for o in OPTIMIZERS],
         *[f"{o.upper()} diverged" for o in OPTIMIZERS]],
        [[f"{lr:g}", *[stats.pct(result.row(label(o, lr))["test_acc_mean"]) for o in OPTIMIZERS],
          *[C.diverged(result.row(label(o, lr))) for o in OPTIMIZERS]] for lr in lrs])
    C.finish(result, findings(result, lrs, b), [
        ("Learning rate by optimizer", table + "\n\nPlot: lr_vs_accuracy.png."),
        C.budget_section(args, b, started),
    ], mode=args.mode)
    return 0


if __name__ == "__main__":
    C.entry(main)
