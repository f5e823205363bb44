"""One epoch of the reference workload: jaxmlp against PyTorch and hand-written NumPy.

    python -m benchmarks.bench_epoch                # the README table (about a minute)
    python -m benchmarks.bench_epoch --smoke        # a few seconds: does everything still run?

Reference workload: 784-512-512-10, ReLU, softmax cross-entropy (mean over the batch), SGD with
momentum 0.9 at learning rate 0.1, batch 128, float32, one epoch = 468 full batches of MNIST.

Fair by construction: all three start from the same He-normal weights (drawn once with NumPy),
train on exactly the same batches (`jaxmlp.loop.epoch_order`, the shuffle jaxmlp itself uses)
and are timed over the same epochs, interleaved (jaxmlp, torch, numpy, jaxmlp, ...) so a burst
of load from elsewhere hits all of them alike; each epoch also records how many cores other
processes used while it ran (`_common.LoadMeter`), and medians leave out disturbed epochs.
Each epoch is timed from the first step to the last parameter update being complete;
evaluation is outside the clock. The first epoch of each
is a warm-up (JAX compiles ahead of time; PyTorch and NumPy allocate and warm their caches) and
is left out of the medians.

The ceiling: a jitted float32 2048^3 matrix product measured in the same process. The epoch's
FLOPs are counted from the layer sizes (`_common.mlp_train_flops`), so "fraction of ceiling" is
the share of this machine's matmul throughput that the whole training step achieves.

PyTorch is an optional benchmark dependency (never a dependency of jaxmlp): without it its
column is skipped with a note. Not a test: it prints figures and always exits 0 (except on a
broken setup, or when --check-accuracy finds a contender that did not learn).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import _common as common

SIZES = (784, 512, 512, 10)
BATCH = 128
LR = 0.1
MOMENTUM = 0.9


# --- the shared starting point -----------------------------------------------------------------


def he_init(sizes: tuple[int, ...], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal weights (std sqrt(2/fan_in)) and zero biases, float32: jaxmlp's `init="he"`."""
    rng = np.random.default_rng(seed)
    return [
        (
            (rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32),
            np.zeros(o, np.float32),
        )
        for i, o in itertools.pairwise(sizes)
    ]


@dataclass
class Contender:
    name: str
    run_epoch: Callable[[int], None]  # trains one epoch (on order[e]) and waits for it to finish
    test_accuracy: Callable[[], float]
    seconds: list[float] = field(default_factory=list)
    loads: list[float | None] = field(default_factory=list)
    setup_seconds: float = 0.0  # compilation for jaxmlp, nothing much for the others
    note: str = ""


# --- jaxmlp -------------------------------------------------------------------------------------


def jaxmlp_contender(ds: Any, init: list, keys: list, subset: int) -> Contender:
    import jax
    import jax.numpy as jnp

    from jaxmlp import loop
    from jaxmlp.config import Config

    config = Config(
        dataset="mnist", hidden=SIZES[1:-1], optimizer="momentum", learning_rate=LR,
        momentum=MOMENTUM, schedule="constant", batch_size=BATCH, epochs=1, train_subset=subset,
    )
    dev = loop.device_data(ds, config)
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    state, _, tx = loop.initial_state(jax.random.key(0), config, dev, hyper)
    params = [{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in init]
    state = state._replace(params=params)

    t0 = time.perf_counter()
    # Exactly what `python -m jaxmlp.train` runs: the jitted, state-donating epoch.
    epoch = jax.jit(loop.make_epoch(config, tx), donate_argnums=0)
    epoch = epoch.lower(state, dev, hyper, keys[0]).compile()
    evaluate = jax.jit(loop.make_evaluate(config)).lower(
        state.params, dev.x_test, dev.y_test, hyper).compile()
    compile_seconds = time.perf_counter() - t0
    box = {"state": state}

    def run_epoch(e: int) -> None:
        box["state"], metrics = epoch(box["state"], dev, hyper, keys[e])
        jax.block_until_ready((box["state"], metrics))

    def accuracy() -> float:
        return float(evaluate(box["state"].params, dev.x_test, dev.y_test, hyper)[1])

    return Contender("jaxmlp", run_epoch, accuracy, setup_seconds=compile_seconds)


# --- PyTorch ------------------------------------------------------------------------------------


def torch_contender(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, init: list, orders: list[np.ndarray]) -> Contender:
    """A straightforward PyTorch loop: nn.Sequential, CrossEntropyLoss, optim.SGD."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    layers: list[torch.nn.Module] = []
    for k, (w, b) in enumerate(init):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))  # torch stores (out, in)
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if k < len(init) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(x_train)
    y = torch.from_numpy(y_train.astype(np.int64))
    torch_orders = [torch.from_numpy(o.astype(np.int64)) for o in orders]

    def run_epoch(e: int) -> None:
        model.train()
        for idx in torch_orders[e]:
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()

    def accuracy() -> float:
        with torch.no_grad():
            pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
        return float(np.mean(pred == y_test))

    return Contender(f"torch {torch.__version__}", run_epoch, accuracy)


# --- NumPy --------------------------------------------------------------------------------------


def numpy_contender(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, init: list, orders: list[np.ndarray]) -> Contender:
    """Forward and backward by hand in float32 NumPy (its BLAS does the matrix products)."""
    ws = [w.copy() for w, _ in init]
    bs = [b.copy() for _, b in init]
    mw = [np.zeros_like(w) for w in ws]
    mb = [np.zeros_like(b) for b in bs]
    y_all = y_train.astype(np.int64)
    rows = np.arange(BATCH)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        hs = [x]
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            hs.append(np.maximum(hs[-1] @ w + b, 0.0))
        o = hs[-1] @ ws[-1] + bs[-1]
        o -= o.max(axis=1, keepdims=True)
        p = np.exp(o)
        p /= p.sum(axis=1, keepdims=True)
        p[rows, y] -= 1.0
        d = p / np.float32(len(y))  # dL/do of the batch-mean cross-entropy
        for k in range(len(ws) - 1, -1, -1):
            gw = hs[k].T @ d
            gb = d.sum(axis=0)
            if k > 0:
                d = (d @ ws[k].T) * (hs[k] > 0)
            # optax.sgd / torch.optim.SGD momentum: m = 0.9 m + g; w -= lr m
            mw[k] *= MOMENTUM
            mw[k] += gw
            ws[k] -= LR * mw[k]
            mb[k] *= MOMENTUM
            mb[k] += gb
            bs[k] -= LR * mb[k]

    def run_epoch(e: int) -> None:
        for idx in orders[e]:
            step(x_train[idx], y_all[idx])

    def accuracy() -> float:
        h = x_test
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        return float(np.mean((h @ ws[-1] + bs[-1]).argmax(1) == y_test))

    return Contender(f"numpy {np.__version__}", run_epoch, accuracy)


# --- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_epoch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6,
                        help="timed epochs per contender, after one warm-up epoch (default 6)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budget (2,048 examples, 2 epochs): checks it runs, in seconds")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--no-numpy", action="store_true", help="skip the NumPy contender")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--quiet-threshold", type=float, default=0.3,
                        help="before each timed epoch wait (up to --max-wait s) until other "
                             "processes use fewer cores than this (default 0.3)")
    parser.add_argument("--max-wait", type=float, default=20.0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--check-accuracy", action="store_true",
                        help="exit 1 if the contenders' test accuracies differ by over 1 point")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    # The XLA:CPU options `python -m jaxmlp.train` runs with; before JAX initialises. The
    # persistent compilation cache stays off: compile times here are cold ones.
    from jaxmlp import compilation

    xla_flags = compilation.tune_xla_cpu() or ["(none added)"]
    subset = 2048 if args.smoke else None
    epochs = 1 if args.smoke else args.epochs
    quiet = 10.0 if args.smoke else args.quiet_threshold  # the smoke run never waits
    info = common.machine()
    common.log(f"machine: {common.describe(info)}")
    common.log(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')} (added by jaxmlp: "
               f"{' '.join(xla_flags)})")

    import jax

    from jaxmlp import data, loop

    ds = common.load_mnist(args.data_dir)
    n = len(ds.y_train) if subset is None else subset
    x_train = data.flatten(ds.x_train[:n]).astype(np.float32) / np.float32(255)
    y_train = ds.y_train[:n]
    x_test = data.flatten(ds.x_test).astype(np.float32) / np.float32(255)
    init = he_init(SIZES, seed=0)
    # jaxmlp draws epoch e's batches from fold_in(data key, e); the others get the same indices.
    _, data_key = loop.run_keys(jax.random.key(0))
    keys = [jax.random.fold_in(data_key, e) for e in range(epochs + 1)]
    orders = [np.asarray(loop.epoch_order(k, n, BATCH)) for k in keys]
    steps = orders[0].shape[0]

    contenders = [jaxmlp_contender(ds, init, keys, n)]
    skipped: list[str] = []
    if args.no_torch:
        skipped.append("torch: skipped (--no-torch)")
    else:
        try:
            contenders.append(torch_contender(x_train, y_train, x_test, ds.y_test, init, orders))
        except ImportError:
            skipped.append("torch: not installed, column skipped (pip install torch to add it;"
                           " it is a benchmark-only dependency)")
    if not args.no_numpy:
        contenders.append(numpy_contender(x_train, y_train, x_test, ds.y_test, init, orders))

    gflops_before = common.matmul_gflops()
    for e in range(epochs + 1):  # epoch 0 is the warm-up
        # Rotate who goes first, so none is always timed right after another's warm caches.
        for c in contenders[e % len(contenders):] + contenders[: e % len(contenders)]:
            if e > 0:
                common.wait_quiet(quiet, args.max_wait)
            with common.LoadMeter() as meter:
                seconds, _ = common.timed(lambda c=c, e=e: c.run_epoch(e))
            if e > 0:
                c.seconds.append(seconds)
                c.loads.append(meter.cores)
    gflops = max(gflops_before, common.matmul_gflops())

    flops = common.mlp_train_flops(SIZES, BATCH) * steps
    jx = contenders[0]
    # Medians over the epochs during which other processes used under 0.3 cores (when at least
    # 3 were that quiet; else over all of them, flagged).
    kept = {c.name: common.quiet_subset(c.seconds, c.loads) for c in contenders}
    medians = {name: common.median(times) for name, (times, _) in kept.items()}
    jx_median = medians[jx.name]
    results: dict[str, Any] = {
        "machine": info, "command": " ".join(["python -m benchmarks.bench_epoch", *sys.argv[1:]]),
        "workload": {"sizes": SIZES, "batch": BATCH, "steps": steps, "examples": n,
                     "epoch_gflop": flops / 1e9},
        "matmul_gflops": gflops, "contenders": {}, "skipped": skipped,
    }
    common.log(f"\nworkload: {'-'.join(map(str, SIZES))}, batch {BATCH}, {steps} steps/epoch, "
               f"{flops / 1e9:.1f} GFLOP/epoch of matrix products; {epochs} timed epochs each "
               f"after a warm-up, median over those with other processes' load < 0.3 cores")
    common.log(f"matmul ceiling: {gflops:.0f} GFLOP/s (jitted 2048^3 float32, this process) -> "
               f"arithmetic floor {flops / gflops / 1e9:.3f} s/epoch")
    header = (f"{'':24s} {'s/epoch':>8s} {'min':>7s} {'vs jaxmlp':>9s} {'GFLOP/s':>8s} "
              f"{'ceiling':>8s} {'test acc':>8s}  {'kept'}  other load during each epoch "
              f"(cores)")
    common.log(header)
    accuracies = {}
    for c in contenders:
        med = medians[c.name]
        times, filtered = kept[c.name]
        acc = c.test_accuracy()
        accuracies[c.name] = acc
        loads = [f"{v:.1f}" if v is not None else "?" for v in c.loads]
        used = f"{len(times)}/{len(c.seconds)}" + ("" if filtered else " LOADED")
        common.log(f"{c.name:24s} {med:8.3f} {min(c.seconds):7.3f} {med / jx_median:8.3f}x "
                   f"{flops / med / 1e9:8.0f} {flops / med / 1e9 / gflops:8.0%} {acc:8.2%}  "
                   f"{used:>4s}  {' '.join(loads)}")
        results["contenders"][c.name] = {
            "median_seconds": med, "seconds": c.seconds, "other_load": c.loads,
            "quiet_epochs": len(times) if filtered else None,
            "test_accuracy": acc, "ceiling_fraction": flops / med / gflops / 1e9,
        }
    for note in skipped:
        common.log(f"  {note}")
    common.log(f"jaxmlp compile: {jx.setup_seconds:.2f} s (not in the epoch times)")
    for c in contenders[1:]:
        ratio = jx_median / medians[c.name]
        # Paired: jaxmlp's epoch over the other's epoch of the same round (they ran back to
        # back), median over the rounds where both were undisturbed. Steadier than the ratio of
        # medians when the machine's speed drifts during the run.
        pairs = [a / b for a, b, la, lb in zip(jx.seconds, c.seconds, jx.loads, c.loads,
                                               strict=True)
                 if (la is None or la < 0.3) and (lb is None or lb < 0.3)]
        paired = common.median(pairs) if pairs else float("nan")
        common.log(f"jaxmlp / {c.name.split()[0]}: {ratio:.3f}x the time per epoch (ratio of "
                   f"medians); paired by round: {paired:.3f}x (median of {len(pairs)})")
        results["contenders"][c.name]["jaxmlp_ratio"] = ratio
        results["contenders"][c.name]["jaxmlp_ratio_paired"] = paired
    spread = max(accuracies.values()) - min(accuracies.values())
    same = spread <= 0.01
    common.log(f"test accuracy after {epochs + 1} epochs: spread {spread:.2%} between "
               f"contenders ({'consistent' if same else 'INCONSISTENT: a loop is broken'})")
    results["accuracy_spread"] = spread
    common.log(f"(benchmark wall time {time.perf_counter() - t_start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if args.check_accuracy and not same else 0


if __name__ == "__main__":
    sys.exit(main())
