"""How long should it take to overfit a small data set? Updates and seconds to 100% training
accuracy on 10, 100 and 1,000 MNIST images, for a few network sizes.

Memorising a handful of examples is the standard first check of a training loop: a correct loop
with a big enough network gets every training example right quickly. This measures "quickly".

- Updates: full-batch for 10 and 100 images (one update per epoch, so the count is exact), batches
  of 100 for 1,000 images (10 updates per epoch: the count is the updates done before the first
  pass in which every batch was classified correctly, so its resolution is one epoch).
- Seconds: updates x the measured compute time of one update of a single run (a jitted scan of
  updates on this machine, no evaluation, no Python in the loop), so they answer "how long would
  one run take", not "how long did the vmapped sweep take".

    python experiments/overfit_small.py [--quick] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import stats, sweep
from jaxmlp.config import Config
from jaxmlp.loop import hyper_from_config, initial_state, make_step, scale_inputs
from jaxmlp.losses import Batch
from jaxmlp.plots import sweep as plots_sweep

NAME = "overfit_small"
LR = 1e-3


@dataclasses.dataclass(frozen=True)
class Budget:
    seeds: int
    sizes: tuple[int, ...]  # training examples
    hidden: tuple[tuple[int, ...], ...]
    max_updates: tuple[int, ...]  # per size
    test_subset: int
    timing_updates: int


BUDGETS = {
    "default": Budget(seeds=5, sizes=(10, 100, 1000), hidden=((16,), (128,), (512, 512)),
                      max_updates=(150, 200, 600), test_subset=1000, timing_updates=50),
    "quick": Budget(seeds=3, sizes=(10, 100), hidden=((16,), (128,)),
                    max_updates=(60, 100), test_subset=500, timing_updates=20),
    "smoke": Budget(seeds=2, sizes=(10, 100), hidden=((16,),),
                    max_updates=(20, 20), test_subset=200, timing_updates=5),
}


def batch_size(n: int) -> int:
    return min(n, 100)


def net(hidden: tuple[int, ...]) -> str:
    return "-".join(map(str, (784, *hidden, 10)))


def name_of(n: int, hidden: tuple[int, ...]) -> str:
    return f"{n} images, {net(hidden)}"


def updates_to_100(train_accuracy: np.ndarray, updates_per_epoch: int) -> float:
    """Updates before the first epoch whose pass classified every training example right."""
    hits = np.flatnonzero(np.asarray(train_accuracy) >= 1.0)
    return float(hits[0] * updates_per_epoch) if hits.size else np.nan


def seconds_per_update(config: Config, test_subset: int, updates: int,
                       datasets: sweep.DataCache) -> float:
    """Compute time of one update of one run: a jitted scan of `updates` steps, timed after a
    warm-up call (median of 3)."""
    dev, x_train = sweep.sweep_data(config, test_subset, datasets)
    hyper = hyper_from_config(config, x_train)
    n = dev.x_train.shape[0]
    state, _, tx = initial_state(jax.random.key(0), config, dev, hyper)
    step = make_step(config, tx)
    b = config.batch_size
    index = (jnp.arange(updates)[:, None] * b + jnp.arange(b)[None, :]) % n

    @jax.jit
    def many(state, dev):
        def body(state, idx):
            batch = Batch(scale_inputs(dev.x_train[idx], hyper), dev.y_train[idx])
            state, _ = step(state, batch, hyper)
            return state, None

        return jax.lax.scan(body, state, index)[0]

    jax.block_until_ready(many(state, dev))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(many(state, dev))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / updates


def spec_of(b: Budget, data_dir: str | None) -> sweep.SweepSpec:
    """The sweep: a variant per (data size, network), `b.seeds` seeds each."""
    base = C.mnist(data_dir, optimizer="adam", learning_rate=LR, schedule="constant")
    variants = []
    for n, max_updates in zip(b.sizes, b.max_updates, strict=True):
        epochs = max_updates // (n // batch_size(n))
        variants += [{"name": name_of(n, hidden), "train_subset": n,
                      "batch_size": batch_size(n), "epochs": epochs, "hidden": hidden}
                     for hidden in b.hidden]
    return sweep.make_spec(
        base, seeds=b.seeds, variants=variants, test_subset=b.test_subset, target_accuracy=0.5,
        name="Overfitting a small training set",
        note=(f"Adam at lr {LR:g} (constant), relu MLPs with He init, softmax cross-entropy, on "
              f"the first N MNIST training images; test accuracy on the first {b.test_subset} "
              "test images (only a side note here: the question is memorisation)."))


def main(argv: Sequence[str] | None = None) -> int:
    args = C.parse_args(NAME, C.summary(__doc__), argv)
    b = BUDGETS[args.mode]
    started = time.perf_counter()
    spec = spec_of(b, args.data_dir)
    configs = {v.name: spec.config(i) for i, v in enumerate(spec.variants)}
    result = C.run(spec, args.out, args)

    rows, per = [], {}
    for name, config in configs.items():
        upe = config.train_subset // config.batch_size
        acc = result.curves(name, "train_accuracy")
        updates = np.asarray([updates_to_100(a, upe) for a in acc])
        spu = seconds_per_update(config, b.test_subset, b.timing_updates, args.datasets)
        per[name] = (config, updates, spu)
        reached = np.isfinite(updates)
        test = result.final(name, "test_accuracy")
        med = float(np.median(updates[reached])) if reached.any() else np.nan
        rows.append([config.train_subset, net(config.hidden),
                     f"{int(reached.sum())}/{len(updates)}",
                     f"{med:.0f}" if reached.any() else f"> {upe * config.epochs}",
                     (f"{np.min(updates[reached]):.0f}..{np.max(updates[reached]):.0f}"
                      if reached.any() else "n/a"),
                     f"{spu * 1e3:.2f}",
                     f"{med * spu:.3f}" if reached.any() else "n/a",
                     stats.pct(float(np.mean(test)))])
    table = C.table(["images", "network", "reached 100%", "updates (median)", "updates (range)",
                     "ms per update", "seconds (median)", "test accuracy at the end"], rows)

    series = {net(h): [per[name_of(n, h)][1] for n in b.sizes] for h in b.hidden}
    if args.writer:
        # The median and range of the seeds that got there: what the table and findings quote.
        plots_sweep.plot_metric_vs(
            args.out / "updates_to_100.png", list(b.sizes), series, xlabel="training images",
            ylabel="updates to 100% training accuracy (seeds that reached it)",
            title="Updates to memorise the training set", logx=True, logy=True,
            center="median")

    C.finish(result, findings(per, b, result), [
        ("Updates and seconds to 100% training accuracy", table + "\n\nPlot: "
         "updates_to_100.png. Seconds = median updates x ms per update of one run."),
        C.budget_section(args, b, started),
    ], mode=args.mode)
    return 0


def _secs(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def findings(per: dict, b: Budget, result: sweep.SweepResult) -> list[str]:
    out = []
    for n, cap in zip(b.sizes, b.max_updates, strict=True):
        parts = []
        for h in b.hidden:
            _, updates, spu = per[name_of(n, h)]
            ok = np.isfinite(updates)
            if ok.all():
                med = float(np.median(updates))
                parts.append(f"{net(h)} in {med:.0f} updates ({_secs(med * spu)})")
            else:
                parts.append(f"{net(h)} reached it in only {int(ok.sum())}/{len(ok)} seeds "
                             f"within {cap} updates")
        out.append(f"To 100% training accuracy on {n} images (median over seeds; seconds for "
                   f"one run on this machine): {'; '.join(parts)}.")
    biggest, smallest = b.hidden[-1], b.hidden[0]
    for n in b.sizes[::-1]:
        _, big_u, big_s = per[name_of(n, biggest)]
        _, small_u, small_s = per[name_of(n, smallest)]
        if np.isfinite(big_u).all() and np.isfinite(small_u).all() and biggest != smallest:
            out.append(
                f"On {n} images the {net(biggest)} network needed {np.median(big_u):.0f} updates "
                f"against {np.median(small_u):.0f} for {net(smallest)}, at "
                f"{big_s / small_s:.1f}x the cost per update ({big_s * 1e3:.2f} vs "
                f"{small_s * 1e3:.2f} ms): "
                + ("the bigger network memorises in fewer updates."
                   if np.median(big_u) < np.median(small_u) else
                   "the bigger network does not memorise in fewer updates."))
            break
    for h in b.hidden[-1:]:
        accs = [(n, float(np.mean(result.final(name_of(n, h), "test_accuracy"))))
                for n in b.sizes]
        out.append(f"Memorising is not learning: with {net(h)}, test accuracy at the end was "
                   + ", ".join(f"{stats.pct(a)} after {n} images" for n, a in accs)
                   + f" (first {b.test_subset} test images).")
    return out


if __name__ == "__main__":
    C.entry(main)
