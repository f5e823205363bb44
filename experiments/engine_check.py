"""How exact and how fast is the sweep engine on this machine? The numbers behind the
"How far the sweep engine's numbers can be trusted" section of experiments/README.md.

1. Rounding: the largest difference between run i of a vmapped sweep and the same configuration
   jitted alone with `make_train` (same seed), in any parameter and any per-epoch loss.
2. Compilations: JAX's own compile events for 2 structures x 4 learning rates x 8 seeds.
3. `--compile fast` against XLA's default: compile and train seconds of 20 runs of a
   784-128-10 MLP (plain SGD and Adam) on 10,000 MNIST images, 2 epochs.

    python experiments/engine_check.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _common as C  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxmlp import loop, sweep  # noqa: E402
from jaxmlp.config import Config  # noqa: E402


def rounding(base: Config, datasets: sweep.DataCache) -> tuple[float, float, int]:
    configs = [dataclasses.replace(base, seed=s, learning_rate=lr)
               for lr in (0.01, 0.1) for s in (0, 1, 2)]
    dev, x_train = sweep.sweep_data(base, None, datasets)
    out = sweep.train_runs(configs, dev, keep_params=True)
    alone = jax.jit(loop.make_train(base))
    worst_param = worst_loss = 0.0
    for i, c in enumerate(configs):
        state, m = alone(jax.random.key(c.seed), dev, loop.hyper_from_config(c, x_train))
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(out["params"]),
                        strict=True):
            worst_param = max(worst_param, float(np.max(np.abs(np.asarray(a) - b[i]))))
        for k in ("train_loss", "test_loss"):
            worst_loss = max(worst_loss, float(np.max(np.abs(np.asarray(getattr(m, k))
                                                             - out[k][i]))))
    updates = base.epochs * (base.train_subset // base.batch_size)
    return worst_param, worst_loss, updates


def compilations(base: Config) -> int:
    names: list[str] = []

    def listen(event: str, duration: float, **kw: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        spec = sweep.make_spec(dataclasses.replace(base, hidden=(17,)),
                               {"optimizer": ["sgd", "momentum"],
                                "learning_rate": [0.01, 0.03, 0.1, 0.3]}, seeds=8,
                               test_subset=500)
        with tempfile.TemporaryDirectory() as d:
            sweep.run_sweep(spec, d, progress=False, plots=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return names.count("jit(train_runs)")


def compile_modes(base: Config, datasets: sweep.DataCache, repeats: int = 2
                  ) -> list[list[str]]:
    rows = []
    for opt in ("sgd", "adam"):
        config = dataclasses.replace(base, hidden=(128,), epochs=2, train_subset=10_000,
                                     batch_size=64, optimizer=opt, learning_rate=0.01)
        dev, x_train = sweep.sweep_data(config, None, datasets)
        mesh = sweep.run_mesh()
        placed = sweep.place_data(dev, mesh)
        hypers = [loop.hyper_from_config(config, x_train)] * 20
        for mode in ("default", "fast") * repeats:
            cache = sweep.ProgramCache()  # empty: measure a fresh compilation every time
            t0 = time.perf_counter()
            program = sweep.get_program(config, dev, 20, mesh, cache=cache, compile_mode=mode)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sweep.execute(program, list(range(20)), hypers, placed, mesh, 20)
            rows.append([opt, mode, f"{compile_s:.2f}", f"{time.perf_counter() - t0:.2f}"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/engine_check.py",
                                     description=C.summary(__doc__))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    base = Config(dataset="mnist", data_dir=args.data_dir, hidden=(32,), epochs=2,
                  train_subset=2000, batch_size=50, optimizer="sgd", schedule="constant",
                  learning_rate=0.1)
    datasets = sweep.DataCache()  # MNIST is read once for the measurements below
    param, loss, updates = rounding(base, datasets)
    print(f"1. vmapped run i vs make_train alone (784-32-10, SGD, {updates} updates, 6 runs): "
          f"largest difference {param:.2e} in any parameter, {loss:.2e} in any loss "
          f"(float32 resolution {np.finfo(np.float32).eps:.2e}).")
    print(f"2. 2 structures x 4 learning rates x 8 seeds = 64 runs: {compilations(base)} "
          "compilations of the training program.")
    print("3. 20 runs of a 784-128-10 MLP, 10,000 images, 2 epochs, one call each:\n")
    print("| optimizer | compile mode | compile s | train s |\n|---|---|---|---|")
    for row in compile_modes(base, datasets):
        print("| " + " | ".join(row) + " |")
    print(f"\nMachine: {len(jax.devices())} x {jax.devices()[0].device_kind}, jax "
          f"{jax.__version__}.")
    return 0


if __name__ == "__main__":
    C.entry(main)
