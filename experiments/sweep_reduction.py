"""Does dividing by the batch size matter? Reductions, input scaling and the loss, with controls.

Main grid, all at one learning rate with plain SGD: reduction over examples {mean, sum} x
reduction over classes {mean, sum} x inputs {0..1, raw 0..255} x loss {MSE on softmax
probabilities, cross-entropy}. Then the controls that explain what the mean does:

1. SGD: summing over a batch of B examples multiplies the gradient by B, so sum-reduction at
   lr/B should follow mean-reduction at lr exactly, up to float rounding. Measured by training
   both in lockstep on the same batches and taking the largest parameter difference after every
   update. The same for classes: class-mean at lr*K against class-sum at lr (K = 10 classes).
2. Adam divides each update by a running estimate of the gradient's scale, so the B-fold factor
   should barely matter: the same lockstep measurement, and final accuracy over seeds.
3. Raw 0..255 inputs: which learning rate, if any, recovers the accuracy of scaled inputs.

    python experiments/sweep_reduction.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence

import _common as C
import numpy as np

from jaxmlp import data, stats, sweep
from jaxmlp.config import Config
from jaxmlp.loop import hyper_from_config

NAME = "sweep_reduction"
EPS32 = float(np.finfo(np.float32).eps)


@dataclasses.dataclass(frozen=True)
class Budget(C.SweepBudget):
    raw_lr_points: int  # learning rates tried for raw inputs, log-spaced from lr down to lr/1e6


BUDGETS = {
    "default": Budget(seeds=5, train_subset=20_000, test_subset=None, hidden=(64,), epochs=3,
                      batch_size=64, raw_lr_points=13),
    "quick": Budget(seeds=3, train_subset=2_000, test_subset=2_000, hidden=(32,), epochs=2,
                    batch_size=64, raw_lr_points=5),
    "smoke": Budget(seeds=2, train_subset=640, test_subset=500, hidden=(16,), epochs=1,
                    batch_size=64, raw_lr_points=3),
}

LR_SGD = 0.1
LR_ADAM = 1e-3
NUM_CLASSES = data.NUM_CLASSES  # MNIST's

LOSSES = {"CE": "cross_entropy", "MSE": "mse"}
INPUTS = {"0..1": "unit", "0..255": "raw"}


def name_of(loss: str, examples: str, classes: str, inputs: str) -> str:
    return f"{loss}, examples {examples}, classes {classes}, inputs {inputs}"


def main_spec(base: Config, b: Budget) -> sweep.SweepSpec:
    variants = []
    for loss, ex, cl, inp in itertools.product(LOSSES, ("mean", "sum"), ("sum", "mean"), INPUTS):
        variants.append({"name": name_of(loss, ex, cl, inp), "error": LOSSES[loss],
                         "example_reduction": ex, "class_reduction": cl,
                         "input_scale": INPUTS[inp]})
    return sweep.make_spec(
        base, seeds=b.seeds, variants=variants, name="Reductions x inputs x loss (SGD)",
        test_subset=b.test_subset, target_accuracy=0.9, probes=True,
        note=(f"Plain SGD at learning rate {LR_SGD} (constant), batch {b.batch_size}, softmax "
              f"outputs, a {'-'.join(map(str, (784, *b.hidden, 10)))} relu MLP, He init, "
              f"trained on the first {b.train_subset:,} MNIST training images for {b.epochs} "
              "epochs (a subset and a small network keep the whole experiment within its time "
              "budget on a 2-core CPU). Controls in controls/."),
    )


def raw_lrs(b: Budget) -> list[float]:
    """Log-spaced from LR_SGD down to LR_SGD/1e6, plus LR_SGD/255 and LR_SGD/255^2: scaling
    inputs by c scales the first layer's gradient by c and its pre-activations' step by c^2."""
    grid = list(np.logspace(0, -6, b.raw_lr_points) * LR_SGD)
    return sorted({float(f"{x:.3g}") for x in grid} | {LR_SGD / 255, LR_SGD / 255**2},
                  reverse=True)


def lockstep(a: Config, b_: Config, seeds: Sequence[int], test_subset: int | None,
             datasets: sweep.DataCache) -> dict[str, float]:
    """Largest parameter difference between two configurations trained side by side."""
    dev, x_train = sweep.sweep_data(a, test_subset, datasets)
    out = sweep.compare_trajectories(a, b_, seeds, dev, hyper_from_config(a, x_train),
                                     hyper_from_config(b_, x_train))
    diff, size = out["max_abs_diff"], out["max_abs_param"]
    return {
        "max_diff": float(np.max(diff)),
        "max_param": float(np.max(size)),
        "rel": float(np.max(diff) / np.max(size)),
        "updates": int(diff.shape[1]),
        "seeds": int(diff.shape[0]),
        "nonfinite": bool(not np.all(np.isfinite(diff))),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    base = C.mnist(args.data_dir, hidden=b.hidden, train_subset=b.train_subset, epochs=b.epochs,
                   batch_size=b.batch_size, optimizer="sgd", learning_rate=LR_SGD,
                   schedule="constant", output="softmax")
    # Every sweep here trains `seeds` runs per call, so a structure shared between the main grid
    # and a control compiles once.
    par = args.max_parallel or b.seeds
    main = C.run(main_spec(base, b), args.out, args, max_parallel=par)
    ctl = args.out / "controls"
    seeds = list(range(b.seeds))

    # 1. SGD: sum at lr/B follows mean at lr; class-mean at lr*K follows class-sum at lr.
    ce = dataclasses.replace(base, error="cross_entropy", class_reduction="sum")
    mean_lr = dataclasses.replace(ce, example_reduction="mean")
    sum_lr_b = dataclasses.replace(ce, example_reduction="sum",
                                   learning_rate=LR_SGD / b.batch_size)
    cmean_lr_k = dataclasses.replace(mean_lr, class_reduction="mean",
                                     learning_rate=LR_SGD * NUM_CLASSES)
    sgd_spec = sweep.make_spec(ce, seeds=b.seeds, test_subset=b.test_subset, variants=[
        {"name": f"SGD examples mean, lr {LR_SGD:g}", "example_reduction": "mean"},
        {"name": f"SGD examples sum, lr {LR_SGD:g}/{b.batch_size}", "example_reduction": "sum",
         "learning_rate": LR_SGD / b.batch_size},
        {"name": f"SGD classes mean, lr {LR_SGD:g}*{NUM_CLASSES}", "class_reduction": "mean",
         "learning_rate": LR_SGD * NUM_CLASSES},
    ], name="Control 1: SGD, rescaled learning rates", probes=True)
    sgd = C.run(sgd_spec, ctl / "sgd_rescaled", args, max_parallel=par)
    step_ex = lockstep(mean_lr, sum_lr_b, seeds, b.test_subset, args.datasets)
    step_cl = lockstep(mean_lr, cmean_lr_k, seeds, b.test_subset, args.datasets)

    # 2. Adam: sum vs mean at the same learning rate.
    adam_base = dataclasses.replace(ce, optimizer="adam", learning_rate=LR_ADAM)
    adam_spec = sweep.make_spec(adam_base, {"example_reduction": ["mean", "sum"]}, seeds=b.seeds,
                                test_subset=b.test_subset, probes=True,
                                name=f"Control 2: Adam at lr {LR_ADAM:g}, mean vs sum")
    adam = C.run(adam_spec, ctl / "adam", args, max_parallel=par)
    step_adam = lockstep(dataclasses.replace(adam_base, example_reduction="mean"),
                         dataclasses.replace(adam_base, example_reduction="sum"),
                         seeds, b.test_subset, args.datasets)

    # 3. Raw inputs: a learning-rate grid (one program: lr and input scale are traced).
    lrs = raw_lrs(b)
    raw_spec = sweep.make_spec(
        dataclasses.replace(mean_lr, input_scale="raw"), seeds=b.seeds, test_subset=b.test_subset,
        variants=[{"name": f"inputs 0..1, lr {LR_SGD:g}", "input_scale": "unit",
                   "learning_rate": LR_SGD}]
        + [{"name": f"inputs 0..255, lr {lr:.3g}", "learning_rate": lr} for lr in lrs],
        name="Control 3: raw inputs, which learning rate?", probes=True)
    raw = C.run(raw_spec, ctl / "raw_lr", args, max_parallel=par)

    findings = main_findings(main, b) + control_findings(
        sgd, adam, raw, step_ex, step_cl, step_adam, lrs, b)
    sections = [
        ("Controls", control_table(sgd, adam, raw, step_ex, step_cl, step_adam, b)),
        C.budget_section(args, b, started,
                         f"Learning rates: SGD {LR_SGD:g}, Adam {LR_ADAM:g}."),
    ]
    C.finish(main, findings, sections, mode=args.mode)
    return 0


def main_findings(r: sweep.SweepResult, b: Budget) -> list[str]:
    base = r.row(name_of("CE", "mean", "sum", "0..1"))
    out = [f"Baseline (cross-entropy, mean over examples, sum over classes, inputs 0..1, SGD lr "
           f"{LR_SGD:g}): {C.acc(base)} final test accuracy, {C.diverged(base)} runs diverged."]
    changes = [
        (name_of("CE", "sum", "sum", "0..1"),
         f"Summing instead of averaging over the batch (a {b.batch_size}x larger gradient)"),
        (name_of("CE", "mean", "mean", "0..1"),
         f"Averaging instead of summing over the {NUM_CLASSES} classes (a {NUM_CLASSES}x smaller "
         "gradient)"),
        (name_of("CE", "mean", "sum", "0..255"), "Raw 0..255 inputs instead of 0..1"),
        (name_of("MSE", "mean", "sum", "0..1"), "MSE on softmax probabilities instead of "
         "cross-entropy"),
    ]
    for name, what in changes:
        row = r.row(name)
        out.append(f"{what} changed it to {C.acc(row)} ({C.diverged(row)} diverged; "
                   f"{stats.pct(row['dead_units_final_mean'], 0)} of hidden units dead at the "
                   f"end, against {stats.pct(base['dead_units_final_mean'], 0)}).")
    good = [s for s in r.summary if s["test_acc_mean"] >= 0.9]
    bad = [s for s in r.summary if s["diverged_frac"] > 0]
    chance = [s for s in r.summary if s["test_acc_mean"] < 0.2]
    best = max(r.summary, key=lambda s: s["test_acc_mean"])
    out.append(f"Of the {len(r.summary)} combinations at this one learning rate, {len(good)} "
               f"reached 90% mean test accuracy, {len(chance)} ended below 20% (chance is ~10%), "
               f"and {len(bad)} had at least one run go NaN/inf; the best was {best['variant']} "
               f"at {C.acc(best)}.")
    if chance:
        dead = [s for s in chance if s["dead_units_final_mean"] >= 0.5]
        out.append(f"Failure was mostly silent: of the {len(chance)} combinations stuck near "
                   f"chance, {len(chance) - sum(s['diverged_frac'] > 0 for s in chance)} never "
                   f"produced a NaN, and {len(dead)} ended with at least half of their hidden "
                   "units dead (relu units off for at least 99% of 1,000 training images, so "
                   "they get almost no gradient).")
    return out


def _verdict(step: dict[str, float]) -> str:
    if step["nonfinite"]:
        return "the comparison itself went non-finite"
    where = f"over {step['updates']} updates x {step['seeds']} seeds"
    if step["max_diff"] == 0.0:
        return f"the parameters stayed bit-identical {where}"
    # One update's rounding is about float32's resolution; many updates compound it.
    how = ("i.e. rounding" if step["rel"] <= 10 * EPS32 else
           f"rounding compounded over the {step['updates']} updates (each update rounds the "
           "two products differently, and the differences add up)")
    return (f"the largest parameter difference {where} was {step['max_diff']:.2e}, "
            f"{step['rel']:.1e} of the largest parameter ({step['max_param']:.2f}; float32 "
            f"resolution is {EPS32:.1e}), {how}")


def _max_gap(res: sweep.SweepResult, a: str, b: str) -> float:
    """Largest difference in final test accuracy between two variants, seed by seed."""
    return float(np.max(np.abs(res.final(a, "test_accuracy") - res.final(b, "test_accuracy"))))


def control_findings(sgd: sweep.SweepResult, adam: sweep.SweepResult, raw: sweep.SweepResult,
                     step_ex: dict, step_cl: dict, step_adam: dict, lrs: list[float],
                     b: Budget) -> list[str]:
    mean_row, sum_row, cls_row = sgd.summary
    gap_ex = _max_gap(sgd, sum_row["variant"], mean_row["variant"])
    gap_cl = _max_gap(sgd, cls_row["variant"], mean_row["variant"])
    exact = ""
    if step_ex["max_diff"] == 0.0 and b.batch_size & (b.batch_size - 1) == 0:
        exact = (f" ({b.batch_size} is a power of two, so dividing by it is exact in binary "
                 "floating point)")
    out = [
        f"SGD with sum over examples at lr {LR_SGD:g}/{b.batch_size} followed mean at lr "
        f"{LR_SGD:g}: {_verdict(step_ex)}{exact}; final test accuracies of the same seed "
        f"differed by at most {gap_ex * 100:.2f} points.",
        f"Likewise mean over classes at lr {LR_SGD:g}*{NUM_CLASSES} followed sum over classes at "
        f"lr {LR_SGD:g}: {_verdict(step_cl)}; accuracies differed by at most {gap_cl * 100:.2f} "
        "points. Taking the mean is taking the sum with the learning rate divided by the count.",
    ]
    m, s = adam.summary
    sgd_worst = max(step_ex["max_diff"], step_cl["max_diff"])
    same = C.overlap(m, s)
    out.append(
        f"Adam at lr {LR_ADAM:g} {'barely cares' if same else 'does care'}: sum over examples "
        f"gave {C.acc(s)} against {C.acc(m)} for mean ({'overlapping' if same else 'separate'} "
        f"intervals; at most {_max_gap(adam, s['variant'], m['variant']) * 100:.2f} points apart "
        "seed by seed).")
    out.append(
        f"Yet Adam's parameters did not stay together: in lockstep, sum and mean drifted apart by "
        f"up to {step_adam['max_diff']:.2e} ({step_adam['rel']:.1e} of the largest parameter), "
        f"against {sgd_worst:.1e} for SGD's rescaled pairs. Adam divides each step by the "
        f"gradient's running scale, so the {b.batch_size}x factor reaches it only through its "
        "epsilon (1e-8), which matters for parameters whose gradients are tiny: different "
        "trajectories, equally good results.")
    scaled = raw.summary[0]
    raws = raw.summary[1:]
    best = max(raws, key=lambda s: np.nan_to_num(s["test_acc_mean"], nan=-1))
    best_lr = lrs[raws.index(best)]
    same_lr = raws[lrs.index(LR_SGD)] if LR_SGD in lrs else None
    recovered = C.overlap(best, scaled)
    verdict = ("its interval overlaps the scaled one's, so it recovers the scaled result"
               if recovered else
               f"{(scaled['test_acc_mean'] - best['test_acc_mean']) * 100:.2f} points short "
               "with separate intervals, so no learning rate in the grid recovers it")
    sent = (f"With raw 0..255 inputs, the best of {len(lrs)} learning rates "
            f"({lrs[-1]:.2g}..{lrs[0]:.2g}) was {best_lr:.3g}, reaching {C.acc(best)} against "
            f"{C.acc(scaled)} with scaled inputs at lr {LR_SGD:g}: {verdict}")
    if same_lr is not None:
        sent += (f"; at the scaled inputs' lr {LR_SGD:g} raw inputs reached "
                 f"{stats.pct(same_lr['test_acc_mean'])} ({C.diverged(same_lr)} diverged, "
                 f"{stats.pct(same_lr['dead_units_final_mean'], 0)} of hidden units dead)")
    out.append(sent + ".")
    tiny = raws[-1]
    out.append(
        f"Raw inputs start from a much worse place: at the smallest rate, {lrs[-1]:.2g}, where "
        f"the weights barely move, the final train loss was {stats.fmt(tiny['train_loss_mean'], 1)}"
        f" (a uniform guess scores ln 10 = 2.30; scaled inputs at lr {LR_SGD:g}: "
        f"{stats.fmt(scaled['train_loss_mean'], 2)}), because 255x larger inputs make every "
        "initial activation and logit ~255x larger, which a learning rate cannot undo.")
    return out


def control_table(sgd: sweep.SweepResult, adam: sweep.SweepResult, raw: sweep.SweepResult,
                  step_ex: dict, step_cl: dict, step_adam: dict, b: Budget) -> str:
    rows = []
    for res in (sgd, adam, raw):
        for s in res.summary:
            rows.append([res.spec.name, s["variant"], C.acc(s),
                         stats.fmt(s["train_loss_mean"]), C.diverged(s)])
    t1 = C.table(["sweep", "variant", "final test accuracy", "final train loss", "diverged"],
                 rows)
    lock = [
        [f"SGD sum lr/{b.batch_size} vs mean lr", f"{step_ex['max_diff']:.3e}",
         f"{step_ex['rel']:.2e}", step_ex["updates"]],
        [f"SGD class-mean lr*{NUM_CLASSES} vs class-sum lr", f"{step_cl['max_diff']:.3e}",
         f"{step_cl['rel']:.2e}", step_cl["updates"]],
        ["Adam sum vs mean, same lr", f"{step_adam['max_diff']:.3e}",
         f"{step_adam['rel']:.2e}", step_adam["updates"]],
    ]
    t2 = C.table(["lockstep pair (same init, same batches)", "largest parameter difference",
                  "relative to the largest parameter", "updates"], lock)
    return (f"Each control is a sweep of its own under controls/ (full outputs there).\n\n{t1}"
            f"\n\nLockstep: both runs start from the same parameters and see the same batches; "
            f"the difference is measured after every update.\n\n{t2}")


if __name__ == "__main__":
    C.entry(main)
