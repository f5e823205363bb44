"""The sweep engine: same numbers as single runs, one program per structure, sharding,
chunking, resuming, outputs, and the command line.

Tolerances. A vmapped, sharded or chunked run does the same float32 arithmetic as a single run,
but XLA may order the additions of a batched matrix product differently, so results can differ
by a few units in the last place per step. Measured on this project's tiny test networks: at
most 1.2e-7 in any parameter and 2.4e-7 in any loss after 16 updates. The tests allow
PARAM_ATOL = LOSS_RTOL = 1e-5 (about 100x the measured rounding, still 1000x smaller than the
effect of changing a seed or a learning rate), and accuracies equal to within one example.
Cross-entropy on outputs that are not probabilities (sum-normalize, none: the clamped log of
o_y, which falls as the outputs shrink or grow, not as the network learns) is chaotic with tanh
units: under the suite's XLA flags such a run alone and in a sweep's program drifted 1.5e-3
apart in 16 updates (at lr 0.01, 15%) once a change elsewhere in the program moved XLA's fusion
order. For those runs the check is what comes before the drift: the probes at initialisation
(as tight as any), and the first epoch's losses within CHAOTIC_RTOL = 1e-2 (measured up to
6.5e-5 there; the grid's runs differ by at least 4e-2). Their relu twins, which do not drift,
check the same loss pick to LOSS_RTOL.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmlp import checkpoint, data, loop, probes, rundir, runner, stats, sweep
from jaxmlp.config import Config
from jaxmlp.losses import Batch
from jaxmlp.sweep import cli as sweep_cli
from jaxmlp.sweep import program as sweep_program
from jaxmlp.sweep import trajectories
from jaxmlp.sweep.tables import panels_by

REPO = Path(__file__).resolve().parent.parent
PARAM_ATOL = 1e-5
LOSS_RTOL = 1e-5
CHAOTIC_RTOL = 1e-2
TEST_SUBSET = 200
ACC_ATOL = 1.0 / TEST_SUBSET + 1e-6  # one test example


@pytest.fixture(scope="module")
def base(shared_data_dir: Path, mnist_dir: Path) -> Config:
    return Config(dataset="mnist", data_dir=str(shared_data_dir), hidden=(8,), epochs=2,
                  train_subset=256, batch_size=32, optimizer="sgd", learning_rate=0.1,
                  schedule="constant")


@pytest.fixture(scope="module")
def dataset(shared_data_dir: Path) -> data.Dataset:
    return data.load_dataset("mnist", data_dir=shared_data_dir, progress=False)


def small_spec(base: Config, **kw) -> sweep.SweepSpec:
    """2 losses (the error: one program, which picks each run's) x 2 learning rates x 3 seeds
    = 12 runs."""
    grid = kw.pop("grid", {"error": ["cross_entropy", "mse"], "learning_rate": [0.01, 0.1]})
    return sweep.make_spec(base, grid, seeds=kw.pop("seeds", 3), test_subset=TEST_SUBSET, **kw)


@pytest.fixture(scope="module")
def whole(base: Config, tmp_path_factory: pytest.TempPathFactory) -> sweep.SweepResult:
    """The reference sweep: unchunked, one device."""
    return sweep.run_sweep(small_spec(base), tmp_path_factory.mktemp("whole"), progress=False)


def _dev(dataset: data.Dataset, config: Config) -> loop.DeviceData:
    dev = loop.device_data(dataset, config)
    return dev._replace(x_test=dev.x_test[:TEST_SUBSET], y_test=dev.y_test[:TEST_SUBSET])


def assert_same_metrics(a: dict, b: dict, what: str, rtol: float = LOSS_RTOL) -> None:
    for k in ("train_loss", "test_loss"):
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, err_msg=f"{what}: {k}")
    for k in ("train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(a[k], b[k], atol=ACC_ATOL, rtol=0, err_msg=f"{what}: {k}")


def max_param_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# --- the same numbers as a run on its own ---------------------------------------------------------


def test_each_run_equals_make_train_alone(whole: sweep.SweepResult, dataset: data.Dataset
                                          ) -> None:
    """Run i of the vmapped sweep = `make_train(config)` jitted for that run alone, seed for
    seed. One jitted function per structure: the learning rate reaches it through `Hyper`, as
    `make_train` documents, so its 6 runs need not compile 6 times. The sweep trains both
    errors in one program that picks each run's (`losses.Pick`); alone, each run's program
    has its own error only."""
    dev = _dev(dataset, whole.spec.base)
    x_train = np.asarray(dev.x_train)
    alone_fns: dict = {}
    for run in whole.runs:
        key = sweep.structural_key(run.config)
        if key not in alone_fns:
            alone_fns[key] = jax.jit(loop.make_train(run.config))
        hyper = loop.hyper_from_config(run.config, x_train)
        state, m = alone_fns[key](jax.random.key(run.seed), dev, hyper)
        alone = {k: np.asarray(getattr(m, k)) for k in sweep.RESULT_FIELDS}
        assert_same_metrics(whole.results[run.index], alone, f"run {run.index}")
        if run.config.error == "mse" and run.config.learning_rate == 0.1:
            # Final parameters too, through the same vmapped program with parameters kept.
            group = [r.config for r in whole.runs if sweep.structural_key(r.config) == key]
            out = sweep.train_runs(group, dev, keep_params=True)
            i = group.index(run.config)
            mine = jax.tree.map(lambda a, i=i: a[i], out["params"])
            assert max_param_diff(mine, state.params) <= PARAM_ATOL
    # The runs really differ from one another (a sweep that trained one run 12 times would not).
    finals = {float(r["train_loss"][-1]) for r in whole.results}
    assert len(finals) == len(whole.runs)


def test_every_layout_of_runs_trains_the_same_runs(base: Config, dataset: data.Dataset) -> None:
    """All runs vmapped at once, two at a time in a loop, or one at a time (the CPU layouts of
    `auto_runs_per_batch`): each run ends with make_train's parameters. The layouts are really
    different programs: the loop keeps one batch of runs' working memory, not all of them."""
    dev = _dev(dataset, base)
    x = np.asarray(dev.x_train)
    configs = [dataclasses.replace(base, seed=s, learning_rate=lr)
               for s, lr in ((0, 0.1), (1, 0.05), (2, 0.1), (3, 0.2))]
    alone = jax.jit(loop.make_train(base))
    expected = [alone(jax.random.key(c.seed), dev, loop.hyper_from_config(c, x))[0].params
                for c in configs]
    mesh = sweep.run_mesh(jax.devices()[:1])
    temp = {}
    for batch in (None, 2, 1):
        out = sweep.train_runs(configs, dev, keep_params=True, runs_per_batch=batch)
        for i, params in enumerate(expected):
            mine = jax.tree.map(lambda a, i=i: a[i], out["params"])
            assert max_param_diff(mine, params) <= PARAM_ATOL, (batch, i)
        program = sweep.get_program(base, dev, 4, mesh, keep_params=True, runs_per_batch=batch)
        assert program.runs_per_batch == (batch or 4)
        temp[batch] = program.compiled.memory_analysis().temp_size_in_bytes
    assert temp[1] < temp[2] < temp[None], temp


def test_runs_per_batch_fits_the_cache_on_cpu_and_takes_all_elsewhere() -> None:
    reference = Config(hidden=(512, 512), batch_size=128, optimizer="momentum")
    small = Config(hidden=(64,), batch_size=32, optimizer="momentum")
    mib = 2**20
    # A reference run touches ~9.9 MB a step: one at a time in half of a 32 MiB cache.
    assert 9e6 < sweep.run_step_bytes([784, 512, 512, 10], "momentum", 128) < 11e6
    assert sweep.auto_runs_per_batch(reference, 784, 8, "cpu", cache_bytes=32 * mib) == 1
    assert sweep.auto_runs_per_batch(reference, 784, 8, "cpu", cache_bytes=256 * mib) == 8
    # A small run ~0.83 MB: 19 fit in 16 MiB, rounded down to a divisor of 32.
    assert sweep.auto_runs_per_batch(small, 784, 32, "cpu", cache_bytes=32 * mib) == 16
    assert sweep.auto_runs_per_batch(small, 784, 32, "cpu", cache_bytes=32 * mib,
                                     concurrent=2) == 8  # two devices share the cache
    assert sweep.auto_runs_per_batch(small, 784, 7, "cpu", cache_bytes=32 * mib) == 7
    assert sweep.auto_runs_per_batch(small, 784, 21, "cpu", cache_bytes=32 * mib) == 7
    adam = dataclasses.replace(small, optimizer="adam")  # two slots: fewer fit
    assert sweep.auto_runs_per_batch(adam, 784, 32, "cpu", cache_bytes=32 * mib) == 16
    assert sweep.auto_runs_per_batch(adam, 784, 32, "cpu", cache_bytes=16 * mib) == 8
    assert sweep.auto_runs_per_batch(reference, 784, 64, "gpu") == 64
    assert sweep.last_level_cache_bytes() >= 2**20


def test_an_impossible_runs_per_batch_is_refused_before_anything_is_written(
        base: Config, tmp_path: Path) -> None:
    with pytest.raises(sweep.SpecError, match="runs_per_batch must be at least 1, got 0"):
        sweep.run_sweep(small_spec(base), tmp_path / "o", runs_per_batch=0, progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_splits_the_cpu_into_devices_with_the_same_results(base: Config,
                                                                dataset: data.Dataset,
                                                                tmp_path: Path) -> None:
    """`python -m jaxmlp.sweep --cpu-devices 2` (a real process: the device count is fixed at
    start-up) trains on two CPU devices, each its own runs, with the results of one device."""
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmlp.sweep", "--out", str(out), "--no-progress", "--no-plots",
         "--dataset", "mnist", "--data-dir", base.data_dir, "--hidden", "8", "--epochs", "2",
         "--train-subset", "256", "--batch-size", "32", "--optimizer", "sgd",
         "--schedule", "constant", "--learning-rate", "0.1", "--seeds", "3",
         "--test-subset", str(TEST_SUBSET), "--cpu-devices", "2"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / sweep.SWEEP_JSON).read_text())
    assert len(record["devices"]) == 2 and record["device_kind"] == "cpu", record["devices"]
    program = record["programs"][0]
    assert program["runs_per_call"] == 4  # 3 runs padded to a multiple of 2 devices
    assert 1 <= program["runs_per_batch"] <= 2
    rows = list(csv.DictReader(open(out / "results.csv")))
    configs = [dataclasses.replace(base, seed=s, learning_rate=0.1) for s in range(3)]
    here = sweep.train_runs(configs, _dev(dataset, base))
    for s in range(3):
        mine = [r for r in rows if int(r["seed"]) == s]
        np.testing.assert_allclose([float(r["train_loss"]) for r in mine],
                                   here["train_loss"][s], rtol=LOSS_RTOL)
        np.testing.assert_allclose([float(r["test_accuracy"]) for r in mine],
                                   here["test_accuracy"][s], atol=ACC_ATOL, rtol=0)


def test_a_run_equals_the_command_line_run(whole: sweep.SweepResult, dataset: data.Dataset,
                                           tmp_path: Path) -> None:
    """The same configuration through `jaxmlp.runner.run` (what `python -m jaxmlp.train` runs):
    same per-epoch metrics, same final parameters."""
    run = next(r for r in whole.runs if r.config.learning_rate == 0.1 and r.seed == 2
               and r.config.error == "cross_entropy")
    config = dataclasses.replace(run.config, train_subset=256)
    # The CLI evaluates on the whole test set: compare against a sweep run that does too.
    spec = sweep.make_spec(config, seeds=[run.seed])
    mine = sweep.run_sweep(spec, tmp_path / "sweep", progress=False, plots=False).results[0]
    runner.run(config, tmp_path / "cli", progress=False, log=lambda s: None)
    lines = (tmp_path / "cli" / rundir.METRICS).read_text().splitlines()
    cli = {k: np.asarray([json.loads(s)[k] for s in lines]) for k in sweep.RESULT_FIELDS}
    for k in ("train_loss", "test_loss"):
        np.testing.assert_allclose(mine[k], cli[k], rtol=LOSS_RTOL, err_msg=k)
    for k in ("train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(mine[k], cli[k], atol=1e-4 + 1e-6, rtol=0, err_msg=k)
    dev = loop.device_data(dataset, config)
    out = sweep.train_runs([config], dev, keep_params=True)
    template = loop.initial_state(jax.random.key(0), config, dev, loop.hyper_from_config(
        config, np.asarray(dev.x_train)))[0]
    state, _ = checkpoint.load(tmp_path / "cli" / rundir.CHECKPOINT, template)
    params = jax.tree.map(lambda a: a[0], out["params"])
    assert max_param_diff(params, state.params) <= PARAM_ATOL


def test_divergence_is_caught_at_the_same_step_as_the_cli(base: Config, tmp_path: Path) -> None:
    # MSE on raw outputs of raw 0..255 pixels, summed over the batch, at lr 10: overflows within
    # the first epoch (at lr 1 the loss reaches 1e29 there, and overflows only in the second).
    bad = dataclasses.replace(base, input_scale="raw", example_reduction="sum", error="mse",
                              output="none", learning_rate=10.0)
    spec = sweep.make_spec(bad, seeds=[0], test_subset=TEST_SUBSET)
    result = sweep.run_sweep(spec, tmp_path / "s", progress=False, plots=False)
    res = result.results[0]
    assert res["nonfinite"][0] and res["first_bad_step"][0] >= 0
    with pytest.raises(runner.Diverged):
        runner.run(bad, tmp_path / "cli", progress=False, log=lambda s: None)
    bad_line = json.loads((tmp_path / "cli" / rundir.METRICS).read_text().splitlines()[-1])
    assert bad_line["epoch"] == 1
    assert bad_line["diverged_at_step"] == int(res["first_bad_step"][0]) + 1
    rows = list(csv.DictReader(open(tmp_path / "s" / "results.csv")))
    assert rows[0]["nonfinite"] == "1"
    assert rows[0]["first_bad_step"] == str(bad_line["diverged_at_step"])
    runs = list(csv.DictReader(open(tmp_path / "s" / "runs.csv")))
    assert runs[0]["diverged"] == "1" and runs[0]["diverged_epoch"] == "1"
    assert result.summary[0]["diverged_frac"] == 1.0


# --- one program per structure --------------------------------------------------------------------


def test_two_structures_times_lrs_times_seeds_compile_two_programs(
        base: Config, compiled: list[str], tmp_path: Path) -> None:
    """2 structural variants x 4 learning rates x 8 seeds = 64 runs: 2 XLA compilations of the
    training program, counted by JAX's own compilation events."""
    structure = dataclasses.replace(base, hidden=(7,))  # not compiled by any other test
    grid = {"optimizer": ["sgd", "momentum"], "learning_rate": [0.01, 0.03, 0.1, 0.3]}
    cache = sweep.ProgramCache()  # shared by both sweeps
    r = sweep.run_sweep(small_spec(structure, grid=grid, seeds=8), tmp_path / "a",
                        progress=False, plots=False, programs=cache)
    first = [n for n in compiled if n == "jit(train_runs)"]
    assert r.record["num_runs"] == 64 and r.record["num_groups"] == 2
    assert len(first) == 2
    assert r.record["programs_compiled"] == 2
    # Other learning rates and seeds of the same structures: nothing new to compile.
    grid["learning_rate"] = [0.2, 0.5, 1.0, 2.0]
    r2 = sweep.run_sweep(small_spec(structure, grid=grid, seeds=8), tmp_path / "b",
                         progress=False, plots=False, programs=cache)
    assert len([n for n in compiled if n == "jit(train_runs)"]) == 2
    assert r2.record["sessions"][-1]["programs_reused"] == 2


def test_sum_and_mean_share_one_program(base: Config, dataset: data.Dataset,
                                        compiled: list[str], tmp_path: Path) -> None:
    """Both reductions are traced 0/1 values (`loop.Hyper`): a grid over them is one group and
    one compiled program, and each run trains as its own configuration does alone (the sum
    over 32 examples at lr/32 stays on the mean's trajectory at lr only if the flag is read)."""
    structure = dataclasses.replace(base, hidden=(6,))  # not compiled by any other test
    grid = {"example_reduction": ["mean", "sum"], "class_reduction": ["sum", "mean"]}
    r = sweep.run_sweep(small_spec(structure, grid=grid, seeds=2), tmp_path, progress=False,
                        plots=False)
    assert r.record["num_groups"] == 1 and r.record["programs_compiled"] == 1
    assert len([n for n in compiled if n == "jit(train_runs)"]) == 1
    dev = _dev(dataset, structure)
    x = np.asarray(dev.x_train)
    alone = jax.jit(loop.make_train(structure))
    for run in r.runs:
        _, m = alone(jax.random.key(run.seed), dev, loop.hyper_from_config(run.config, x))
        assert_same_metrics(r.results[run.index],
                            {k: np.asarray(getattr(m, k)) for k in sweep.RESULT_FIELDS},
                            f"run {run.index}")
    finals = {float(res["train_loss"][-1]) for res in r.results}
    assert len(finals) == len(r.runs)  # four reductions x two seeds: all different


def test_losses_activations_and_inits_share_one_program(
        base: Config, dataset: data.Dataset, compiled: list[str], tmp_path: Path) -> None:
    """Every output x error x two activations: one group, one compiled program, which picks
    each run's loss and activation (`jaxmlp.pick`: a select under vmap); each run, probes
    included, trains as its own configuration does alone, in a program with its own loss and
    activation only (the plain path this one replaces). Then runs of one of those losses with
    two initialisations (an index into a table of stds): the stored program serves them,
    nothing compiles, and each trains as it does alone. Integer targets (one output) stay a
    structure of their own."""
    structure = dataclasses.replace(base, hidden=(5,))  # not compiled by any other test
    grid = {"output": ["softmax", "sum_normalize", "none"], "error": ["cross_entropy", "mse"],
            "activation": ["relu", "tanh"]}
    cache = sweep.ProgramCache()
    r = sweep.run_sweep(small_spec(structure, grid=grid, seeds=1, probes=True), tmp_path / "a",
                        progress=False, plots=False, programs=cache)
    assert r.record["num_groups"] == 1 and r.record["programs_compiled"] == 1
    assert len([n for n in compiled if n == "jit(train_runs)"]) == 1
    shown = r.record["programs"][0]["structure"]
    assert shown["losses"] == [[o, e] for o in grid["output"] for e in grid["error"]]
    assert shown["activations"] == grid["activation"] and "activation" not in shown
    dev = _dev(dataset, structure)
    x = np.asarray(dev.x_train)
    probe_keys = [f"{p}_{w}" for p in sweep.PROBES for w in ("init", "final")]

    def check_alone(result: sweep.SweepResult, run: sweep.Run) -> None:
        config = run.config
        alone = jax.jit(loop.make_train(config, probe=probes.make_probe(config)))
        _, m = alone(jax.random.key(run.seed), dev, loop.hyper_from_config(config, x))
        mine = {k: np.asarray(getattr(m, k)) for k in sweep.RESULT_FIELDS}
        ours = result.results[run.index]
        probe = sweep_program.probe_columns(m.probe)
        chaotic = (config.error == "cross_entropy" and config.output != "softmax"
                   and config.activation == "tanh")
        if chaotic:  # what comes before the drift (see the module's docstring)
            assert_same_metrics({k: ours[k][:1] for k in mine},
                                {k: v[:1] for k, v in mine.items()}, f"run {run.index}",
                                CHAOTIC_RTOL)
        else:
            assert_same_metrics(ours, mine, f"run {run.index}")
        for k in probe_keys if not chaotic else [k for k in probe_keys if k.endswith("_init")]:
            np.testing.assert_allclose(ours[k], probe[k], rtol=LOSS_RTOL, atol=1e-6,
                                       err_msg=f"run {run.index}: {k}")

    for run in r.runs:
        check_alone(r, run)
    finals = {float(res["train_loss"][-1]) for res in r.results}
    assert len(finals) == len(r.runs)  # twelve losses and activations: all different
    one = dataclasses.replace(structure, output="none", error="mse", activation="tanh")
    again = sweep.run_sweep(small_spec(one, grid={"init": ["he", "normal"]},
                                       seeds=list(range(6)), probes=True),
                            tmp_path / "b", progress=False, plots=False, programs=cache)
    assert again.record["programs_compiled"] == 0
    assert again.record["programs"][0]["reused_from_cache"] is True
    first = next(x for x in r.runs if (x.config.output, x.config.error, x.config.activation)
                 == ("none", "mse", "tanh"))
    same = next(x for x in again.runs if (x.config.init, x.config.seed) == ("he", 0))
    for k in (*sweep.RESULT_FIELDS, *probe_keys):  # the same program: the same numbers
        np.testing.assert_array_equal(again.results[same.index][k], r.results[first.index][k])
    check_alone(again, next(x for x in again.runs if x.config.init == "normal"))
    integer = dataclasses.replace(structure, targets="integer", output="none", error="mse")
    assert sweep.shared_key(integer) != sweep.shared_key(structure)


# --- sharding, chunking, resuming -----------------------------------------------------------------

SHARD_SCRIPT = """
import json, sys
import jax, numpy as np
from jaxmlp import sweep
from jaxmlp.config import Config
base = Config.from_dict(json.loads(sys.argv[1]))
spec = sweep.make_spec(base, {"learning_rate": [0.05, 0.1]}, seeds=3, test_subset=200)
four = sweep.run_sweep(spec, sys.argv[2] + "/four", progress=False, plots=False)
one = sweep.run_sweep(spec, sys.argv[2] + "/one", progress=False, plots=False,
                      devices=jax.devices()[:1])
diff = max(float(np.max(np.abs(np.asarray(a[k], float) - np.asarray(b[k], float))))
           for a, b in zip(four.results, one.results) for k in sweep.RESULT_FIELDS)
print(json.dumps({"devices": len(jax.devices()), "four": four.record["devices"],
                  "per_call": four.record["programs"][0]["runs_per_call"],
                  "one": one.record["devices"], "max_diff": diff,
                  "acc": [float(a["test_accuracy"][-1]) for a in four.results]}))
"""


def test_sharded_over_four_devices_equals_one_device(base: Config, tmp_path: Path) -> None:
    """4 simulated CPU devices (a subprocess, since the device count is fixed at start-up): 6
    runs padded to 8, 2 per device; same results as on one device within the tolerance."""
    # The suite's own XLA flags too (conftest.py): a tolerance, not bits, is checked here.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "PYTHONPATH": str(REPO)}
    cfg = base.to_dict()
    proc = subprocess.run([sys.executable, "-c", SHARD_SCRIPT, json.dumps(cfg), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and len(out["four"]) == 4 and len(out["one"]) == 1
    assert out["per_call"] == 8  # 6 runs padded to a multiple of 4 devices
    assert out["max_diff"] <= LOSS_RTOL * 10  # losses are ~2, accuracies exact: 1e-4 absolute
    assert len(set(out["acc"])) > 1


def test_chunked_equals_unchunked(base: Config, whole: sweep.SweepResult, tmp_path: Path
                                  ) -> None:
    # 12 runs of one program in chunks of at most 4: 4 + 4 + 4.
    chunked = sweep.run_sweep(small_spec(base), tmp_path, progress=False, max_parallel=4,
                              plots=False)
    assert chunked.record["num_chunks"] == 3
    assert all(p["runs_per_call"] == 4 for p in chunked.record["programs"])
    for a, b in zip(chunked.results, whole.results, strict=True):
        assert_same_metrics(a, b, "chunked")
    assert len(list((tmp_path / sweep.CHUNKS).glob("chunk-*.npz"))) == 3


def test_interrupted_sweep_resumes_without_retraining(base: Config, whole: sweep.SweepResult,
                                                      tmp_path: Path) -> None:
    spec = small_spec(base)  # chunks of 4 + 4 + 4, as in the chunked test
    first = sweep.run_sweep(spec, tmp_path, progress=False, max_parallel=4, max_chunks=2,
                            plots=False)
    assert not first.complete and len(first.trained_chunks) == 2
    assert not (tmp_path / "results.csv").exists()
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / sweep.CHUNKS).glob("*.npz")}
    assert len(files) == 2
    time.sleep(0.01)
    second = sweep.run_sweep(spec, tmp_path, progress=False, max_parallel=4, plots=False)
    assert second.complete
    assert set(second.trained_chunks).isdisjoint(first.trained_chunks)
    assert len(second.trained_chunks) == second.record["num_chunks"] - 2
    for name, mtime in files.items():  # finished chunks untouched
        assert (tmp_path / sweep.CHUNKS / name).stat().st_mtime_ns == mtime
    sessions = second.record["sessions"]
    assert [s["runs_trained"] for s in sessions] == [8, 4]
    for a, b in zip(second.results, whole.results, strict=True):
        assert_same_metrics(a, b, "resumed")
    # Once more: everything is on disk, nothing is trained, the outputs are rewritten.
    third = sweep.run_sweep(spec, tmp_path, progress=False, max_parallel=4, plots=False)
    assert third.complete and third.trained_chunks == []
    # sweep.json keeps each program's compile time from the session that compiled it.
    assert all(p["compile_seconds"] >= 0 for p in third.record["programs"])
    assert len(third.record["sessions"]) == 3


# `python -m jaxmlp.sweep ARGS` with Ctrl-C as a terminal delivers it. A process started with
# SIGINT ignored keeps it ignored (Python, like any Unix program, respects that), and a test
# worker can pass such a state on: in 4 of 5 full-suite runs the sweep started straight from
# the worker ran to completion through SIGINT, as it does when its parent ignores SIGINT.
AS_IN_A_TERMINAL = """
import runpy, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv[0] = "jaxmlp.sweep"
runpy.run_module("jaxmlp.sweep", run_name="__main__", alter_sys=True)
"""


def test_cli_interrupted_by_ctrl_c_continues(base: Config, tmp_path: Path) -> None:
    """A real interruption: SIGINT to `python -m jaxmlp.sweep` once a chunk is saved, then the
    same command again trains only what is missing."""
    out = tmp_path / "out"
    # 256 hidden units, 8 epochs: about 0.6 s a chunk here, so the 11 chunks after the first
    # last over 6 s, a window the signal hits even on a loaded machine.
    cmd = [sys.executable, "-c", AS_IN_A_TERMINAL, "--out", str(out), "--dataset", "mnist",
           "--data-dir", base.data_dir, "--hidden", "256", "--epochs", "8", "--train-subset",
           "2000", "--batch-size", "32", "--optimizer", "sgd", "--schedule", "constant",
           "--grid", "learning_rate=0.01,0.02,0.05,0.1", "--seeds", "3", "--max-parallel", "1",
           "--test-subset", "200", "--no-progress", "--no-plots"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / sweep.CHUNKS).glob("chunk-*.npz")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    done = len(list((out / sweep.CHUNKS).glob("chunk-*.npz")))
    ignored = [line for line in Path("/proc/thread-self/status").read_text().splitlines()
               if line.startswith(("SigIgn", "SigBlk"))] if sys.platform == "linux" else []
    assert proc.returncode == 130, (done, ignored, stdout[-800:], err)
    assert "interrupted" in err and "Traceback" not in err
    assert 1 <= done < 12, "the sweep finished before it could be interrupted"
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    record = json.loads((out / sweep.SWEEP_JSON).read_text())
    assert record["status"] == "complete"
    assert record["sessions"][-1]["runs_trained"] == 12 - done
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 12 * 8  # runs x epochs


# --- outputs --------------------------------------------------------------------------------------


def test_results_csv_has_exactly_the_promised_rows_and_columns(whole: sweep.SweepResult) -> None:
    out = whole.out
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames
    assert columns == ["run", "variant", "error", "learning_rate", "seed", "epoch",
                       "train_loss", "train_accuracy", "test_loss", "test_accuracy", "nonfinite",
                       "first_bad_step"]
    epochs = whole.spec.base.epochs
    assert len(rows) == 12 * epochs
    assert sorted((int(r["run"]), int(r["epoch"])) for r in rows) == [
        (i, e) for i in range(12) for e in range(1, epochs + 1)]
    for r in rows:
        run = whole.runs[int(r["run"])]
        assert int(r["seed"]) == run.seed
        assert r["error"] == run.config.error
        assert float(r["learning_rate"]) == run.config.learning_rate
        assert r["variant"] == whole.spec.variants[run.variant].name
        e = int(r["epoch"]) - 1
        # float32 written in its shortest form reads back exactly
        assert np.float32(r["test_accuracy"]) == whole.results[run.index]["test_accuracy"][e]
        assert r["nonfinite"] == "0" and r["first_bad_step"] == ""

    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert [s["variant"] for s in summary] == [v.name for v in whole.spec.variants]
    for s in summary:
        assert int(s["seeds"]) == 3
        accs = whole.final(s["variant"], "test_accuracy")
        assert float(s["test_acc_mean"]) == pytest.approx(accs.mean())
        assert float(s["test_acc_std"]) == pytest.approx(accs.std(ddof=1))
        assert float(s["test_acc_ci_lo"]) <= float(s["test_acc_mean"]) <= float(
            s["test_acc_ci_hi"])
        for k in ("train_loss_mean", "train_loss_ci_lo", "diverged_frac", "reached_frac"):
            float(s[k])
    assert len(list(csv.DictReader(open(out / "runs.csv")))) == 12
    md = (out / "summary.md").read_text()
    for v in whole.spec.variants:
        assert f"| {v.name} |" in md
    assert md.rstrip().splitlines()[-1].startswith("- ")  # ends with the findings
    record = json.loads((out / sweep.SWEEP_JSON).read_text())
    for key in ("spec", "versions", "devices", "wall_seconds", "compile_seconds",
                "train_seconds", "programs", "status"):
        assert key in record
    assert record["status"] == "complete" and record["versions"]["jax"] == jax.__version__
    for png in ("curves.png", "final_accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_different_sweep_in_the_same_folder_is_refused(base: Config,
                                                         whole: sweep.SweepResult) -> None:
    other = small_spec(base, seeds=2)
    with pytest.raises(sweep.SweepError, match="different sweep"):
        sweep.run_sweep(other, whole.out, progress=False)


# --- the command line -----------------------------------------------------------------------------


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = sweep_cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_runs_a_toml_spec(base: Config, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
name = "toml sweep"
seeds = [0, 1]
test_subset = {TEST_SUBSET}
max_parallel = 4
[base]
dataset = "mnist"
data_dir = "{base.data_dir}"
hidden = [8]
epochs = 1
train_subset = 256
batch_size = 32
optimizer = "sgd"
schedule = "constant"
[grid]
learning_rate = [0.05, 0.1]
""")
    code, out, err = _cli(["--spec", str(spec), "--out", str(tmp_path / "o"), "--no-progress",
                           "--grid", "hidden=[[8], [4]]", "--grid", "activation=relu,tanh"],
                          capsys)
    assert code == 0, err
    summary = list(csv.DictReader(open(tmp_path / "o" / "summary.csv")))
    assert len(summary) == 8 and summary[0]["activation"] == "relu"
    record = json.loads((tmp_path / "o" / sweep.SWEEP_JSON).read_text())
    # Two widths, two structures; the activations share each one's program.
    assert record["max_parallel"] == 4 and record["num_groups"] == 2
    assert "toml sweep" in out


@pytest.mark.parametrize("top, base_extra, tables, message", [
    ("", "", '[grid]\nlerning_rate = [0.1]', "unknown setting 'lerning_rate'"),
    ("", "", '[grid]\nactivation = ["relu", "swish"]', "--activation 'swish' is not known"),
    ("", "", '[grid]\nseed = [1, 2]', "'seed' is not a setting of a variant"),
    ("", "", '[grid]\nlearning_rate = 0.1', "must be a non-empty list"),
    ("seeds = 0", "", "", "seeds must be a positive count"),
    ("seeds = [1, 1]", "", "", "repeats a seed"),
    ('colour = "blue"', "", "", "unknown keys colour"),
    ("", "", '[grid\nlearning_rate = [0.1]', "not valid TOML"),
    ('variants = [{name = "a"}, {name = "b"}]', "", "", "same configuration"),
    ("", "batch_size = 100000", "", "larger than the training data"),
    ("", "hidden = [0]", "", "--hidden (every width) must be a positive whole number"),
    ("", "optimizer = 3", "", "--optimizer 3 is not known"),
])
def test_bad_specs_fail_with_one_clear_message(top: str, base_extra: str, tables: str,
                                               message: str, base: Config, tmp_path: Path,
                                               capsys) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(f'{top}\n[base]\ndataset = "mnist"\ndata_dir = "{base.data_dir}"\n'
                    f"train_subset = 256\n{base_extra}\n{tables}\n")
    code, _, err = _cli(["--spec", str(spec), "--out", str(tmp_path / "o"), "--no-progress"],
                        capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert not (tmp_path / "o" / "results.csv").exists()


def test_bad_flags_fail_with_one_clear_message(tmp_path: Path, capsys) -> None:
    for argv, message in (
        (["--grid", "learning_rate"], "write FIELD=VALUE1,VALUE2"),
        (["--grid", "hidden=64,big"], "not a list of widths"),
        (["--seed", "3"], "--seeds N or --seed-list"),
        (["--spec", str(tmp_path / "missing.toml")], "cannot read the spec"),
        (["--grid", "learning_rate=0.1,fast"], "is not a float"),
        (["--cpu-devices", "0"], "--cpu-devices must be at least 1"),
        (["--runs-per-batch", "0"], "--runs-per-batch must be at least 1"),
    ):
        code, _, err = _cli([*argv, "--out", str(tmp_path / "o")], capsys)
        assert code == 2 and err.startswith("error: ") and message in err, (argv, err)


def test_grid_axes_take_a_flag_s_spellings() -> None:
    """A grid axis is named as its flag is, or as its field: the same axis, the field's name."""
    for text in ("learning_rate=0.01,0.1", "learning-rate=0.01,0.1", "lr=0.01,0.1"):
        assert sweep_cli.parse_grid_flag(text) == ("learning_rate", [0.01, 0.1]), text
    with pytest.raises(sweep.SpecError, match="unknown setting 'rate'"):
        sweep_cli.parse_grid_flag("rate=0.1")


def test_bad_spec_through_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text('{"grid": {"optimizer": ["sgd", "rmsprop"]}}')
    proc = subprocess.run([sys.executable, "-m", "jaxmlp.sweep", "--spec", str(spec), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "rmsprop" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- pieces ---------------------------------------------------------------------------------------


def test_chunk_sizes_are_device_multiples_within_max_parallel() -> None:
    assert sweep.chunk_size(12, None, 1) == 12
    assert sweep.chunk_size(6, None, 4) == 8  # padded up: every device gets 2 runs
    assert sweep.chunk_size(12, 5, 1) == 5
    assert sweep.chunk_size(12, 6, 4) == 4  # at most 6: round down to a multiple of 4
    assert sweep.chunk_size(12, 2, 4) == 4  # below the device count: one run per device
    assert sweep.chunk_size(3, 7, 4) == 4
    groups = [(None, list(range(5))), (None, list(range(5, 12)))]
    chunks = sweep.plan_chunks(groups, 3, 1)
    assert [c.runs for c in chunks] == [(0, 1, 2), (3, 4), (5, 6, 7), (8, 9, 10), (11,)]
    assert {c.size for c in chunks} == {3}


def test_structural_key_ignores_exactly_the_traced_settings(base: Config) -> None:
    key = sweep.structural_key
    other = {"example_reduction": "sum" if base.example_reduction == "mean" else "mean",
             "class_reduction": "mean" if base.class_reduction == "sum" else "sum"}
    assert key(dataclasses.replace(base, learning_rate=0.5, seed=3, init_scale=2.0,
                                   input_scale="raw", **other)) == key(base)
    for field, value in (("optimizer", "adam"), ("hidden", (9,)), ("error", "mse"),
                         ("output", "none"), ("batch_size", 64), ("epochs", 3)):
        assert key(dataclasses.replace(base, **{field: value})) != key(base), field


def test_lockstep_comparison_follows_make_train(base: Config, dataset: data.Dataset) -> None:
    """compare_trajectories draws the batches as make_train does, and SGD sum-reduction at
    lr/B stays on the mean-reduction trajectory at lr."""
    dev = _dev(dataset, base)
    x = np.asarray(dev.x_train)
    a = base
    b = dataclasses.replace(base, example_reduction="sum", learning_rate=base.learning_rate / 24)
    out = sweep.compare_trajectories(a, b, [0, 1], dev, loop.hyper_from_config(a, x),
                                     loop.hyper_from_config(b, x))
    assert out["max_abs_diff"].shape == (2, base.epochs * 8)
    state, _ = jax.jit(loop.make_train(a))(jax.random.key(1), dev, loop.hyper_from_config(a, x))
    mine = jax.tree.map(lambda p: p[1], out["final_params_a"])
    assert max_param_diff(mine, state.params) <= PARAM_ATOL
    # lr/24 with sum over 32 examples is a different step from lr with the mean: they part.
    assert out["max_abs_diff"].max() > 1e-3
    c = dataclasses.replace(base, example_reduction="sum",
                            learning_rate=base.learning_rate / base.batch_size)
    compiled = trajectories._lockstep._cache_size()
    out = sweep.compare_trajectories(a, c, [0, 1], dev, loop.hyper_from_config(a, x),
                                     loop.hyper_from_config(c, x))
    assert out["max_abs_diff"].max() <= PARAM_ATOL
    # b and c differ in traced settings only (learning rate): one program serves both pairs.
    assert trajectories._lockstep._cache_size() == compiled


def test_unit_probes_on_constructed_networks() -> None:
    """The sweep's probe columns are `probes.probe_stats` fields (`dead_units` = `stuck_all`)."""
    import jax.numpy as jnp

    x = jnp.ones((4, 3))

    def probe(params: list, activation: str) -> probes.ProbeStats:
        batch = Batch(x, jnp.zeros(4, jnp.int32))
        return probes.probe_stats(params, batch, Config(hidden=(2,), activation=activation))

    dead = [{"w": -jnp.ones((3, 2)), "b": jnp.zeros(2)}, {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}]
    p = probe(dead, "relu")
    assert float(p.stuck_all) == 1.0 and float(p.input_blind) == 1.0
    assert float(p.zero_outputs) == 1.0 and float(p.blocked) == 1.0
    alive = [{"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}]
    p = probe(alive, "relu")
    assert float(p.stuck_all) == 0.0 and float(p.input_blind) == 0.0
    assert float(p.zero_outputs) == 0.0
    saturated = [{"w": 10 * jnp.ones((3, 2)), "b": jnp.zeros(2)},
                 {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}]
    p = probe(saturated, "tanh")
    assert float(p.stuck_all) == 1.0 and float(p.blocked) == 1.0


def test_bootstrap_interval() -> None:
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(stats.bootstrap_ci([0.3])))
    rng = np.random.default_rng(1)
    x = rng.normal(0.9, 0.01, size=40)
    lo, hi = stats.bootstrap_ci(x)
    assert lo < x.mean() < hi
    # About the normal-theory interval: mean +- 1.96 s / sqrt(n).
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    d = stats.describe([0.1, 0.2, np.nan])
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.15)


def test_many_variants_become_small_multiples() -> None:
    """16 variants (4 learning rates x 4 init scales) are 4 panels of 4 lines, grouped by one
    setting; 5 variants stay one panel; a grid whose every grouping leaves too many lines per
    panel (10 x 10) is not split by a setting that does not help."""
    grid = [(("learning_rate", lr), ("init_scale", s)) for lr in (0.01, 0.03, 0.1, 0.3)
            for s in (0.1, 0.5, 1.0, 2.0)]
    panels = panels_by(grid)
    assert panels is not None and len(set(panels)) == 4
    assert all(panels.count(p) == 4 for p in set(panels))
    assert panels_by(grid[:5]) is None
    wide = [(("learning_rate", a), ("init_scale", b)) for a in range(10) for b in range(10)]
    assert panels_by(wide) is None
