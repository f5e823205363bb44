"""The benchmarks still run: each one's `--smoke` budget, in a real process, read back from the
JSON it writes. Their figures are never checked (speed is measured, not tested; benchmarks/);
what is checked is that every contender and layout ran, and that they computed the same thing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(module: str, args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", module, "--smoke", "--json", str(out), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_epoch_smoke_runs_jaxmlp_and_numpy_on_the_same_batches(mnist_dir: Path,
                                                                       tmp_path: Path) -> None:
    result = _run("benchmarks.bench_epoch", ["--no-torch", "--data-dir", str(mnist_dir)],
                  tmp_path)
    names = list(result["contenders"])
    assert names[0] == "jaxmlp" and any(n.startswith("numpy") for n in names)
    assert result["skipped"] == ["torch: skipped (--no-torch)"]
    # Same initial weights, same batches, same arithmetic in float32, but not the same kernels
    # (XLA vs OpenBLAS, and each picks others on AVX2 and AVX-512): rounding differs, and 32
    # steps amplify it. Measured: 0 test examples of 10,000 apart on a 2-core AMD EPYC (AVX2),
    # 6 on a 2-core Xeon with AVX-512. 1e-3 (10 examples) allows that; the benchmark itself
    # calls a loop broken at 1e-2 (100 examples).
    assert result["accuracy_spread"] < 1e-3
    assert result["matmul_gflops"] > 0


def test_bench_sweep_smoke_runs_every_layout_with_the_same_results(mnist_dir: Path,
                                                                     tmp_path: Path) -> None:
    result = _run("benchmarks.bench_sweep", ["--data-dir", str(mnist_dir)], tmp_path)
    rows = {(r["k"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {(1, "single"), (8, "vmap"), (8, "map"), (8, "sweep")}
    assert rows[(8, "vmap")]["batch"] == 8
    for r in rows.values():
        assert r["median_seconds"] > 0 and r["alone_median_seconds"] > 0
        assert r["paired_ratio_median"] > 0
    # Eight runs in any layout: the same mean accuracy (layouts change kernels, not results;
    # 1e-3 is ten test examples, far above float32 rounding and far below a changed seed).
    accuracies = [rows[(8, m)]["mean_test_accuracy"] for m in ("vmap", "map", "sweep")]
    assert max(accuracies) - min(accuracies) < 1e-3


def test_bench_cold_smoke_reads_a_run_and_tables_the_experiments(shared_data_dir: Path,
                                                                  tmp_path: Path) -> None:
    """A tiny default run in a fresh process: its start-up line is read (the first step cannot
    come before the data is loaded). The experiments' rows come from their experiment.json,
    which test_experiments.py checks; here the table that quotes them."""
    result = _run("benchmarks.bench_cold", ["--data-dir", str(shared_data_dir)], tmp_path)
    (run,) = result["train"]
    assert run["first"] >= run["data"] > 0 and run["compile"] > 0 and run["accuracy"] > 0.1
    from benchmarks.bench_cold import table

    text = table([run], {"sweep_lr": [{"wall": 40.0, "compile": 10.0}]}, "default")
    assert "| `sweep_lr.py` | 40.0 s | 10.0 s | 25% |" in text


def test_bench_cold_pairs_two_checkouts_round_by_round() -> None:
    """Beside another checkout (`--vs`) the table adds its medians and the median of the
    ratios taken round by round, which differs from the ratio of the medians."""
    from benchmarks.bench_cold import table

    keys = ("import", "data", "compile", "first", "train", "wall")
    a = [dict.fromkeys(keys, v) for v in (1.0, 2.0, 9.0)]
    b = [dict.fromkeys(keys, v) for v in (2.0, 1.0, 3.0)]  # ratios 0.5, 2, 3: median 2
    exps = {"sweep_lr": [{"wall": 30.0, "compile": 6.0}]}
    old = {"sweep_lr": [{"wall": 60.0, "compile": 30.0}]}
    text = table(a, exps, "default", b, old)
    assert "| paired ratio, median | | | | 2.00 | 2.00 | 2.00 |" in text
    assert "| `sweep_lr.py` | 30.0 s | 6.0 s | 20% | 60.0 s | 30.0 s | 50% | 0.50 |" in text


def test_gpu_check_smoke_runs_every_step(mnist_dir: Path, tmp_path: Path) -> None:
    """The accelerator script's every step runs (here on the CPU, at smoke sizes), writes its
    JSON and table, and the sweep trains the runs the sequential loop trains."""
    out = tmp_path / "gc"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--out",
                           str(out), "--data-dir", str(mnist_dir)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    steps = result["steps"]
    assert list(steps) == ["environment", "reference_epoch", "default_train",
                           "sweep_vs_sequential", "small_sweep"]
    assert all("error" not in s for s in steps.values())
    epochs = steps["reference_epoch"]["result"]
    assert set(epochs) == {"float32", "tf32", "bfloat16"}
    assert all(e["median_epoch_seconds"] > 0 for e in epochs.values())
    train = steps["default_train"]["result"]
    assert train["cold"]["epochs_done"] == train["warm"]["epochs_done"] == 1
    # The warm run reuses the cold run's compiled programs from the persistent cache.
    assert train["warm"]["test_accuracy"] == train["cold"]["test_accuracy"]
    pair = steps["sweep_vs_sequential"]["result"]
    assert pair["runs"] == 4 and pair["speedup"] > 0
    # Same runs either way (1e-3 = 10 of the 10,000 test images, far above float32 rounding
    # between the two programs' kernels, far below a different seed's spread).
    assert pair["max_accuracy_difference"] < 1e-3
    assert steps["small_sweep"]["result"]["runs"] == 8
    table = (out / "gpu_check.md").read_text()
    assert "reference epoch, float32 matmuls" in table and "sequential / sweep" in table


def test_bench_lab_smoke_times_a_live_run_and_its_command(tmp_path: Path) -> None:
    """A live run on moons and the command its config.json records: both timed, epoch by
    epoch (the first left out)."""
    result = _run("benchmarks.bench_lab", [], tmp_path)
    assert result["settings"] == {"dataset": "moons", "epochs": "3"}
    assert len(result["epochs_timed"]["lab"]) == len(result["epochs_timed"]["command"]) == 2
    assert result["ratio"] > 0


def test_bench_programs_smoke_compiles_a_sweep_program_and_reads_xla_log(
        tmp_path: Path) -> None:
    """One sweep program compiled in a fresh process: its kernels counted from the optimised
    program and, with `--kernels`, its slowest kernels read from XLA:CPU's compile log."""
    result = _run("benchmarks.bench_programs", ["--kernels", "2"], tmp_path)
    ((name, (m,)),) = result["programs"].items()
    assert name == "sweep_loss: integer label, MSE on one output"
    assert m["kernels"] > 10 and m["seconds"] > 0
    assert len(m["slowest"]) == 2 and all(s.endswith(" ms") for s in m["slowest"])


def test_bench_programs_pairs_two_checkouts_round_by_round() -> None:
    from benchmarks.bench_programs import table

    ours = {"p": [{"seconds": s, "kernels": 90} for s in (1.0, 2.0, 9.0)]}
    theirs = {"p": [{"seconds": s, "kernels": 90} for s in (2.0, 1.0, 3.0)]}
    assert "| p | 90 | 2.00 s | 2.00 s | 2.00 |" in table(["p"], ours, theirs)
