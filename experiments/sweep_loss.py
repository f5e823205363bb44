"""How should outputs become probabilities, and what should they be compared with?

Outputs {softmax, sum-normalize (each output divided by their sum), none} x error {MSE,
cross-entropy} against one-hot targets, plus the label regressed as a single number (integer
targets, MSE on the raw output) to show why one-hot targets are used. For each: final accuracy,
speed of learning, and how often it fails (NaN/inf, all-zero outputs, dead units).

    python experiments/sweep_loss.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import _common as C
import numpy as np

from jaxmlp import stats, sweep
from jaxmlp.losses import EPS

NAME = "sweep_loss"
TARGET = 0.9


Budget = C.SweepBudget


BUDGETS = {
    "default": Budget(seeds=8, train_subset=20_000, test_subset=None, hidden=(64,), epochs=5,
                      batch_size=64),
    "quick": Budget(seeds=3, train_subset=2_000, test_subset=2_000, hidden=(32,), epochs=2,
                    batch_size=64),
    "smoke": Budget(seeds=2, train_subset=640, test_subset=500, hidden=(16,), epochs=1,
                    batch_size=64),
}

LR = 1e-3  # Adam: a setting that works for the standard loss, shared by every variant
OUTPUTS = {"softmax": "softmax", "sum-normalize": "sum_normalize", "none": "none"}
ERRORS = {"CE": "cross_entropy", "MSE": "mse"}
INTEGER = "integer label, MSE on one output"
STANDARD = "softmax + CE"


def name_of(output: str, error: str) -> str:
    return f"{output} + {error}"


def variants() -> list[dict]:
    out = [{"name": name_of(o, e), "output": OUTPUTS[o], "error": ERRORS[e]}
           for o, e in itertools.product(OUTPUTS, ERRORS)]
    out.append({"name": INTEGER, "targets": "integer", "output": "none", "error": "mse"})
    return out


def clamped_runs(result: sweep.SweepResult, name: str) -> int:
    """Runs whose final loss sits on the log clamp: -log(EPS) = 16.12 means the true class got
    a probability <= 0 for (almost) every example: a number to diagnose, not a NaN."""
    loss = result.final(name, "train_loss")
    return int(np.sum(np.isfinite(loss) & (loss >= 0.9 * -np.log(EPS))))


def findings(r: sweep.SweepResult, b: Budget) -> list[str]:
    rows = r.summary
    std = r.row(STANDARD)
    out = []
    order = sorted(rows, key=lambda s: -np.nan_to_num(s["test_acc_mean"], nan=-1))
    tied = [s["variant"] for s in order if C.overlap(s, order[0])]
    out.append(f"Highest final test accuracy: {order[0]['variant']} at {C.acc(order[0])}; "
               f"within its interval: {', '.join(tied)}.")

    def speed(row: dict) -> str:
        first = r.curves(row["variant"], "test_accuracy")[:, 0]
        to = (f"reached {stats.pct(TARGET, 0)} after {row['epochs_to_target_mean']:.1f} epochs "
              f"on average ({round(row['reached_frac'] * row['seeds'])}/{row['seeds']} seeds)"
              if row["reached_frac"] > 0 else
              f"never reached {stats.pct(TARGET, 0)} in {b.epochs} epochs")
        return f"{stats.pct(float(np.mean(first)))} after epoch 1, {to}"

    mse = r.row(name_of("softmax", "MSE"))
    first_ce = r.curves(STANDARD, "test_accuracy")[:, 0]
    first_mse = r.curves(mse["variant"], "test_accuracy")[:, 0]
    lo_ce, _ = stats.bootstrap_ci(first_ce)
    _, hi_mse = stats.bootstrap_ci(first_mse)
    if lo_ce > hi_mse:
        why = (": cross-entropy learned faster (MSE on probabilities has a weak gradient where "
               "the softmax is confidently wrong and flat; cross-entropy's is strong there)")
    else:
        why = ": after one epoch their intervals overlap, no clear difference in speed"
    out.append(f"Speed: softmax + CE had {speed(std)}; softmax + MSE had {speed(mse)}{why}.")
    for o in ("sum-normalize", "none"):
        for e in ERRORS:
            row = r.row(name_of(o, e))
            accs = r.final(row["variant"], "test_accuracy")
            notes = [f"seeds ranged {stats.pct(accs.min())}..{stats.pct(accs.max())}"]
            if row["diverged_frac"] > 0:
                notes.append(f"{C.diverged(row)} runs went NaN/inf")
            clamp = clamped_runs(r, row["variant"])
            if e == "CE" and clamp:
                notes.append(f"{clamp} ended with the loss on the log clamp (-log 1e-7 = 16.1: "
                             "the true class's 'probability' was <= 0)")
            if row["train_loss_mean"] < 0:
                notes.append(f"the loss went negative (mean {row['train_loss_mean']:.2f}): raw "
                             "outputs above 1 are not probabilities, and -log rewards making "
                             "them ever larger")
            if row["test_acc_mean"] < 0.1:
                notes.append("below the 10% of guessing" + (
                    ": dividing by a negative sum reverses which output is largest"
                    if o == "sum-normalize" else ""))
            if row["zero_outputs_final_mean"] > 0:
                notes.append(f"all-zero outputs on {stats.pct(row['zero_outputs_final_mean'], 1)}"
                             " of the probe images at the end")
            if row["dead_units_final_mean"] >= 0.1:
                notes.append(f"{stats.pct(row['dead_units_final_mean'], 0)} of hidden units "
                             f"dead at the end (softmax + CE: "
                             f"{stats.pct(std['dead_units_final_mean'], 0)})")
            out.append(f"{row['variant']}: {C.acc(row)}; {'; '.join(notes)}.")
    integer = r.row(INTEGER)
    if integer["test_acc_mean"] < std["test_acc_mean"] and not C.overlap(integer, std):
        out.append(f"Regressing the label as one number ({INTEGER}) reached only "
                   f"{C.acc(integer)}, against {C.acc(std)} with one-hot targets: one output must "
                   "put a 4 between 3 and 5 and is rounded to a class, so mistaking a 3 for an 8 "
                   "costs more than for a 4, an order the digits' shapes do not have.")
    else:
        out.append(f"Regressing the label as one number ({INTEGER}) reached {C.acc(integer)}, "
                   f"against {C.acc(std)} with one-hot targets.")
    failing = [s for s in rows if s["diverged_frac"] > 0]
    poor = [s for s in rows if s["test_acc_mean"] < 0.5 and s["diverged_frac"] == 0]
    out.append(f"{len(failing)} of the {len(rows)} variants had runs that went NaN/inf"
               + (f" ({', '.join(s['variant'] + ' ' + C.diverged(s) for s in failing)})"
                  if failing else "")
               + f"; {len(poor)} failed quietly, finite but below 50% test accuracy"
               + (f" ({', '.join(s['variant'] for s in poor)})" if poor else "") + ".")
    return out


def spec_of(b: Budget, data_dir: str | None) -> sweep.SweepSpec:
    """The sweep: every variant of `variants()`, `b.seeds` seeds each."""
    base = C.mnist(data_dir, hidden=b.hidden, train_subset=b.train_subset, epochs=b.epochs,
                   batch_size=b.batch_size, optimizer="adam", learning_rate=LR,
                   schedule="constant")
    return sweep.make_spec(
        base, seeds=b.seeds, variants=variants(), name="Outputs x error x targets",
        test_subset=b.test_subset, probes=True, target_accuracy=TARGET,
        note=(f"Adam at lr {LR:g} (constant), batch {b.batch_size}, class sum, mean over "
              f"examples, a {'-'.join(map(str, (784, *b.hidden)))}-10 relu MLP (-1 for the "
              f"integer target), {b.epochs} epochs on the first {b.train_subset:,} MNIST "
              "training images (a subset keeps the experiment within its time budget on a 2-core "
              "CPU). The six one-hot losses train in one program, which picks each run's; the "
              "integer target (one output) compiles its own."))


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    result = C.run(spec_of(b, args.data_dir), args.out, args)
    C.finish(result, findings(result, b), [C.budget_section(args, b, started)],
             mode=args.mode)
    return 0


if __name__ == "__main__":
    C.entry(main)
