"""Cold compilation of the default run: where the seconds go, and what each way of cutting them
would change.

    python -m benchmarks.bench_cold              # 5 rounds, about 2 minutes
    python -m benchmarks.bench_cold --rounds 1   # one round, a quick look

Every measurement is a fresh process with the persistent compilation cache off, so every
program compiles from nothing, as on a new machine, after a jax upgrade or for a new network.
Each process builds the default configuration's programs (784-512-512-10, Adam, batch 128) the
way `python -m jaxmlp.train` does and reports, per phase, how many XLA programs it compiled and
the backend compile seconds JAX's own monitoring events give:

- `init`: the initial parameters and optimizer state (`loop.initial_state`, run eagerly: the
  weights come from two programs, `model.init_mlp`'s draw and scaling, and the rest, the key
  splits and the optimizer's zeros, are one small program per operation and shape);
- `epoch`: the jitted epoch (`loop.make_epoch`, a `lax.scan` over the steps);
- `evaluate`: the jitted test-set evaluation.

Variants, each against `trainer` (what the trainer does today) in the same round:

- `init-op-by-op`: the weights drawn layer by layer by `jax.nn.initializers`, op by op, as the
  trainer did before `init_mlp` compiled them as two programs (bitwise the same parameters);
- `init-jit-O0`: the whole initialisation as one jitted program, compiled at XLA's CPU
  optimisation level 0 (it runs once, so its speed does not matter);
- `rbg`: JAX's `rbg` PRNG instead of the default threefry (`jax_default_prng_impl`).

The last two change the numbers a seed gives, so each row says whether the parameters the variant
starts from are bitwise the trainer's. Rounds interleave the variants, so a burst of load from
elsewhere hits them alike; the table quotes medians and the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import jax
import numpy as np

from benchmarks import _common as common
from jaxmlp import compilation, loop, model
from jaxmlp.config import Config

VARIANTS = ("trainer", "init-op-by-op", "init-jit-O0", "rbg")
PHASES = ("init", "epoch", "evaluate")


def measure(variant: str, data_dir: str | None) -> dict[str, Any]:
    """One fresh process's figures for `variant` (run by `main` through `--child`)."""
    if variant == "rbg":  # before the first key is made
        jax.config.update("jax_default_prng_impl", "rbg")
    if variant == "init-op-by-op":  # init_mlp's path for PRNGs without bits by flat index
        model._bits_by_flat_index = lambda key: False
    compilation.tune_xla_cpu()
    compiles: list[float] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **_: compiles.append(secs)
        if name == "/jax/core/compile/backend_compile_duration" else None)
    config = Config(dataset="mnist")
    dataset = common.load_mnist(data_dir)
    dev = loop.device_data(dataset, config)
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    jax.block_until_ready(jax.jit(lambda x: x + 1)(1.0))  # the backend's one-time start-up
    marks = [len(compiles)]
    key = jax.random.key(config.seed)
    if variant == "init-jit-O0":
        init = jax.jit(lambda k, h: loop.initial_state(k, config, dev, h)[:2],
                       compiler_options={"xla_backend_optimization_level": 0})
        state, data_key = init(key, hyper)
        tx = loop.make_optimizer(config, loop.steps_per_epoch(config, dev.x_train.shape[0]))
    else:
        state, data_key, tx = loop.initial_state(key, config, dev, hyper)
    jax.block_until_ready(state)
    marks.append(len(compiles))
    epoch = jax.jit(loop.make_epoch(config, tx), donate_argnums=0).lower(
        state, dev, hyper, jax.random.fold_in(data_key, 0)).compile()
    marks.append(len(compiles))
    jax.jit(loop.make_evaluate(config)).lower(state.params, dev.x_test, dev.y_test,
                                              hyper).compile()
    marks.append(len(compiles))
    parts = _parts(config, dev, state, tx, compiles) if variant == "trainer" else {}
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state.params):
        digest.update(np.asarray(leaf).tobytes())
    hlo = epoch.as_text()
    return {
        "phases": {phase: {"programs": marks[i + 1] - marks[i],
                           "seconds": sum(compiles[marks[i]:marks[i + 1]])}
                   for i, phase in enumerate(PHASES)},
        "params_sha256": digest.hexdigest(),
        "epoch_hlo_chars": len(hlo),
        "epoch_fusions": hlo.count(" fusion("),
        "epoch_while_loops": hlo.count(" while("),
        "epoch_parts": parts,
    }


def _parts(config: Config, dev: loop.DeviceData, state: loop.TrainState,
           tx: Any, compiles: list[float]) -> dict[str, float]:
    """Backend seconds of two pieces of the epoch program, each compiled alone: the shuffle
    (`loop.epoch_order`, threefry bits sorted twice by `jax.random.permutation`) and one step."""
    batch = loop.Batch(dev.x_train[: config.batch_size].astype(np.float32),
                       dev.y_train[: config.batch_size])
    pieces = {
        "shuffle": (lambda k: loop.epoch_order(k, dev.x_train.shape[0], config.batch_size),
                    (jax.random.key(0),)),
        "one step": (lambda s, b: loop.make_step(config, tx)(s, b, 0), (state, batch)),
    }
    seconds = {}
    for name, (fn, args) in pieces.items():
        mark = len(compiles)
        jax.jit(fn).lower(*args).compile()
        seconds[name] = sum(compiles[mark:])
    return seconds


def _child(variant: str, data_dir: str | None) -> dict[str, Any]:
    env = {**os.environ, "JAXMLP_NO_COMPILE_CACHE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CACHE_HOME"] = tmp  # no persistent cache of any kind from earlier runs
        args = [sys.executable, "-m", "benchmarks.bench_cold", "--child", variant]
        if data_dir:
            args += ["--data-dir", data_dir]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=common.REPO)
    if proc.returncode:
        raise SystemExit(f"the {variant} measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.data_dir)))
        return 0
    common.log(f"machine: {common.describe(common.machine())}; jax {jax.__version__}")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for variant in VARIANTS:
            common.wait_quiet()
            runs[variant].append(_child(variant, args.data_dir))
        common.log(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{v} {sum(p['seconds'] for p in runs[v][-1]['phases'].values()):.2f} s"
            for v in VARIANTS))
    total = {v: [sum(p["seconds"] for p in m["phases"].values()) for m in runs[v]]
             for v in VARIANTS}
    base = runs["trainer"][0]
    common.log("\n| variant | init: programs, s | epoch: programs, s | evaluate: programs, s "
               "| total s | / trainer (paired) | epoch HLO chars, fusions, while loops "
               "| same initial parameters |")
    common.log("|---|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        cells = [f"{runs[v][0]['phases'][p]['programs']}, "
                 f"{common.median([m['phases'][p]['seconds'] for m in runs[v]]):.2f}"
                 for p in PHASES]
        ratio = common.median([a / b for a, b in zip(total[v], total["trainer"], strict=True)])
        m = runs[v][0]
        same = "yes (bitwise)" if m["params_sha256"] == base["params_sha256"] else "no"
        common.log(f"| {v} | " + " | ".join(cells) + f" | {common.median(total[v]):.2f} | "
                   f"{ratio:.2f} | {m['epoch_hlo_chars']:,}, {m['epoch_fusions']}, "
                   f"{m['epoch_while_loops']} | {same} |")
    parts = {name: common.median([m["epoch_parts"][name] for m in runs["trainer"]])
             for name in runs["trainer"][0]["epoch_parts"]}
    epoch = common.median([m["phases"]["epoch"]["seconds"] for m in runs["trainer"]])
    common.log(f"\nthe trainer's epoch programs, {epoch:.2f} s; compiled alone (medians): "
               + ", ".join(f"{name} {secs:.2f} s" for name, secs in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
