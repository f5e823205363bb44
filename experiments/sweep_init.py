"""Initialisation: does the scale of the first weights decide whether units die or outputs vanish?

Schemes {he, glorot, lecun, normal} x scale {0.01, 0.1, 1, 10} x activation {relu, tanh} on a
three-hidden-layer MLP, probed at initialisation and after the first 100 updates:

- dead or saturated units: hidden units whose slope is below 1% of its maximum on at least 99% of
  1,000 training images (relu: never active; tanh: stuck at +-1), so they get almost no gradient;
- all-zero outputs: images whose ten outputs are all below 1e-4 in size, the "all my outputs are
  0" symptom;
- input-blind images: images for which some hidden layer blocks every unit, so the output does
  not depend on the image at all.

For he, glorot and lecun the scale multiplies the scheme's standard deviation; for `normal` it
IS the standard deviation (normal with scale 1 is the naive `randn` initialisation). The scheme
and the scale are traced and the activation is picked per run (`jaxmlp.pick`), so the whole
grid, every seed included, is one program.

    python experiments/sweep_init.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence

import _common as C
import numpy as np

from jaxmlp import stats, sweep
from jaxmlp.plots import sweep as plots_sweep

NAME = "sweep_init"
LR = 1e-3
INITS = ("he", "glorot", "lecun", "normal")
ACTIVATIONS = ("relu", "tanh")


@dataclasses.dataclass(frozen=True)
class Budget:
    seeds: int
    hidden: tuple[int, ...]
    scales: tuple[float, ...]
    updates: int
    batch_size: int
    test_subset: int


BUDGETS = {
    "default": Budget(seeds=5, hidden=(256, 256, 256), scales=(0.01, 0.1, 1.0, 10.0),
                      updates=100, batch_size=64, test_subset=2000),
    "quick": Budget(seeds=3, hidden=(64, 64, 64), scales=(0.01, 1.0, 10.0), updates=50,
                    batch_size=64, test_subset=1000),
    "smoke": Budget(seeds=2, hidden=(16, 16, 16), scales=(0.01, 1.0), updates=10,
                    batch_size=64, test_subset=200),
}


def name_of(init: str, scale: float, act: str) -> str:
    return f"{act}, {init} x {scale:g}" if init != "normal" else f"{act}, normal std {scale:g}"


def findings(r: sweep.SweepResult, b: Budget) -> list[str]:
    out = []
    rows = {(i, s, a): r.row(name_of(i, s, a))
            for i, s, a in itertools.product(INITS, b.scales, ACTIVATIONS)}

    def probe(row: dict, p: str) -> str:
        return (f"{stats.pct(row[f'{p}_init_mean'], 0)} at init -> "
                f"{stats.pct(row[f'{p}_final_mean'], 0)} after {b.updates} updates")

    for act, scheme in (("relu", "he"), ("tanh", "glorot")):
        if 1.0 in b.scales:
            row = rows[(scheme, 1.0, act)]
            out.append(f"The textbook pairing {act} + {scheme} x 1: {C.acc(row)} test accuracy "
                       f"after {b.updates} updates; dead/saturated units {probe(row, 'dead_units')}"
                       f"; all-zero outputs {probe(row, 'zero_outputs')}.")
    small = min(b.scales)
    zero = [(k, v) for k, v in rows.items() if k[1] == small]
    z_init = np.mean([v["zero_outputs_init_mean"] for _, v in zero])
    z_final = np.mean([v["zero_outputs_final_mean"] for _, v in zero])
    acc_small = np.mean([v["test_acc_mean"] for _, v in zero])
    out.append(f"At scale {small:g} (every scheme, both activations) the outputs were all-zero "
               f"for {stats.pct(z_init, 0)} of images on average at initialisation and "
               f"{stats.pct(z_final, 0)} after {b.updates} updates, with mean test accuracy "
               f"{stats.pct(acc_small)}"
               + (f": each of the {len(b.hidden) + 1} layers multiplies the signal by about the "
                  "scale again." if z_init >= 0.5 else "."))
    big = max(b.scales)
    ref = 1.0 if 1.0 in b.scales else min(b.scales)
    schemes = [i for i in INITS if i != "normal"]
    dead_small = np.mean([rows[(i, small, "relu")]["dead_units_final_mean"] for i in schemes])
    dead_ref = np.mean([rows[(i, ref, "relu")]["dead_units_final_mean"] for i in schemes])
    dead_init = np.mean([rows[(i, s, "relu")]["dead_units_init_mean"]
                         for i in schemes for s in b.scales])
    out.append(f"With relu, dead units at initialisation did not depend on the scale "
               f"({stats.pct(dead_init, 1)} on average), but the first {b.updates} updates "
               f"killed {stats.pct(dead_small, 0)} of units at scale {small:g} against "
               f"{stats.pct(dead_ref, 0)} at scale {ref:g} (he/glorot/lecun), likely because "
               "Adam's steps are about lr in size whatever the weights' size: next to tiny "
               "weights, one step of a bias can switch a unit off for every image."
               if dead_small > dead_ref else
               f"With relu, the first {b.updates} updates left {stats.pct(dead_small, 0)} of "
               f"units dead at scale {small:g} against {stats.pct(dead_ref, 0)} at scale "
               f"{ref:g} (he/glorot/lecun).")
    for act in ACTIVATIONS:
        sat = [rows[(i, big, act)] for i in INITS]
        norm = [rows[(i, ref, act)] for i in INITS if i != "normal"]

        def mean(rs: list, key: str) -> float:
            return float(np.nanmean([v[key] for v in rs]))

        div = sum(round(v["diverged_frac"] * v["seeds"]) for v in sat)
        loss_big = np.nanmean([np.nanmean(r.final(name_of(i, big, act), "train_loss"))
                               for i in INITS])
        loss_ref = np.nanmean([np.nanmean(r.final(name_of(i, ref, act), "train_loss"))
                               for i in INITS if i != "normal"])
        b0, b1 = mean(sat, "blocked_init_mean"), mean(norm, "blocked_init_mean")
        if act == "tanh":
            what = (f"{stats.pct(b0, 0)} of tanh activations start saturated (slope under 1% "
                    f"of its maximum) against {stats.pct(b1, 0)} at scale {ref:g}, "
                    f"{stats.pct(mean(sat, 'blocked_final_mean'), 0)} after {b.updates} updates")
        else:
            same = abs(b0 - b1) < 0.02
            what = (f"{stats.pct(b0, 0)} of relu activations start inactive against "
                    f"{stats.pct(b1, 0)} at scale {ref:g}"
                    + (" (relu's on/off pattern does not depend on the weights' scale)" if same
                       else ""))
        out.append(f"At scale {big:g} with {act} (mean over schemes): {what}; the mean training "
                   f"loss over the first {b.updates} updates was {loss_big:.3g} against "
                   f"{loss_ref:.3g} at scale {ref:g} (he/glorot/lecun); {div} of "
                   f"{len(sat) * b.seeds} runs went NaN/inf; test accuracy averaged "
                   f"{stats.pct(mean(sat, 'test_acc_mean'))}.")
    if 1.0 in b.scales:
        for act in ACTIVATIONS:
            row = rows[("normal", 1.0, act)]
            loss = float(np.nanmean(r.final(name_of("normal", 1.0, act), "train_loss")))
            kind = "saturated" if act == "tanh" else "inactive"
            out.append(f"The naive normal(0, 1) initialisation with {act}: {C.acc(row)}; "
                       f"{kind} activations {probe(row, 'blocked')}; mean training loss over "
                       f"the first {b.updates} updates {loss:.3g}.")
    for act in ACTIVATIONS:
        mine = {k: v for k, v in rows.items() if k[2] == act}
        (i, s, _), best = max(mine.items(), key=lambda kv: kv[1]["test_acc_mean"])
        tied = [name_of(*k) for k, v in mine.items() if C.overlap(v, best)]
        out.append(f"Best with {act} after {b.updates} updates: {name_of(i, s, act)} at "
                   f"{C.acc(best)}; {len(tied)} of {len(mine)} settings are within its interval.")
    blind = [(k, v) for k, v in rows.items() if v["input_blind_final_mean"] >= 0.5]
    out.append(f"{len(blind)} of {len(rows)} settings ended with at least half of the images "
               "input-blind (some layer entirely blocked, so the prediction ignores the image)"
               + (": " + ", ".join(name_of(*k) for k, _ in blind) if blind else "") + ".")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    train_subset = b.updates * b.batch_size  # one epoch = the first `updates` updates
    base = C.mnist(args.data_dir, hidden=b.hidden, train_subset=train_subset, epochs=1,
                   batch_size=b.batch_size, optimizer="adam", learning_rate=LR,
                   schedule="constant")
    variants = [{"name": name_of(i, s, a), "init": i, "init_scale": s, "activation": a}
                for a, i, s in itertools.product(ACTIVATIONS, INITS, b.scales)]
    spec = sweep.make_spec(
        base, seeds=b.seeds, variants=variants, test_subset=b.test_subset, probes=True,
        target_accuracy=0.8, name="Initialisation scale and scheme",
        note=(f"A {'-'.join(map(str, (784, *b.hidden, 10)))} MLP, Adam at lr {LR:g} (constant), "
              f"batch {b.batch_size}, softmax cross-entropy, trained for its first {b.updates} "
              f"updates (one pass over {train_subset:,} MNIST training images); test accuracy on "
              f"the first {b.test_subset} test images. Probes on the first 1,000 training "
              "images."))
    result = C.run(spec, args.out, args)

    for metric, what, fname in (("dead_units_final", "dead/saturated units after training",
                                 "dead_units.png"),
                                ("zero_outputs_init", "all-zero outputs at initialisation",
                                 "zero_outputs.png"),
                                ("test_accuracy", "test accuracy", "init_accuracy.png")):
        series = {f"{a}, {i}": [result.final(name_of(i, s, a), metric) for s in b.scales]
                  for a in ACTIVATIONS for i in INITS}
        if args.writer:
            plots_sweep.plot_metric_vs(args.out / fname, list(b.scales), series,
                                       xlabel="init scale (normal: the std itself)",
                                       ylabel=what, title=spec.name)
    C.finish(result, findings(result, b), [
        ("Plots", "dead_units.png, zero_outputs.png, init_accuracy.png: each metric against the "
         "init scale, one line per activation and scheme (more than four: a panel each)."),
        C.budget_section(args, b, started),
    ], mode=args.mode)
    return 0


if __name__ == "__main__":
    C.entry(main)
