"""Each experiment script runs end to end on a tiny budget and writes every promised output.

The scripts run in this process (`--smoke`, a hidden budget smaller than `--quick`) so that
JAX starts once; `--quick` itself is timed in experiments/README.md. What is checked: the sweep
outputs, the experiment's own extras, and that summary.md ends with findings generated from the
sweeps' numbers: rewritten with other numbers, every finding changes with them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _experiments import assert_findings_follow_numbers, findings, load, run

from jaxmlp.plots import sweep as plots_sweep

SWEEP_OUTPUTS = ("results.csv", "runs.csv", "summary.csv", "summary.md", "sweep.json",
                 "curves.png", "final_accuracy.png", "report.html")


def check_sweep(out: Path) -> dict:
    for name in SWEEP_OUTPUTS:
        assert (out / name).is_file(), f"{out / name} missing"
    for png in out.glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "complete"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len({r["run"] for r in rows}) == record["num_runs"]
    return record


@pytest.fixture(scope="module")
def data_dir(shared_data_dir: Path, mnist_dir: Path) -> Path:
    return shared_data_dir


def test_sweep_reduction(data_dir: Path, tmp_path: Path) -> None:
    run("sweep_reduction", tmp_path, data_dir)
    record = check_sweep(tmp_path)
    # The reductions and the inputs' scaling are traced values, the two errors picked per run:
    # one program.
    assert record["num_variants"] == 16 and record["num_groups"] == 1
    assert record["programs_compiled"] == 1
    page = (tmp_path / "report.html").read_text()
    for control in ("sgd_rescaled", "adam", "raw_lr"):
        check_sweep(tmp_path / "controls" / control)
        assert f'href="controls/{control}/report.html"' in page  # the page links to each
    text = " ".join(findings(tmp_path))
    assert "lr 0.1/64 followed mean" in text
    assert "Adam" in text and "raw 0..255" in text
    # The lockstep control measured SGD sum at lr/B against mean at lr: bit-identical (B = 64).
    assert "stayed bit-identical" in text
    # The lockstep comparisons are measured outside the sweeps, so their findings stand.
    assert_findings_follow_numbers("sweep_reduction", tmp_path, data_dir, (
        "SGD with sum over examples at lr", "Likewise mean over classes", "Yet Adam's"))


def test_sweep_loss(data_dir: Path, tmp_path: Path) -> None:
    module = run("sweep_loss", tmp_path, data_dir)
    record = check_sweep(tmp_path)
    # The six one-hot losses share a program that picks each run's; the integer target (one
    # output) has its own.
    assert record["num_variants"] == 7 and record["num_groups"] == 2
    text = " ".join(findings(tmp_path))
    assert module.INTEGER in text and "sum-normalize + CE" in text
    assert_findings_follow_numbers("sweep_loss", tmp_path, data_dir)


def test_sweep_lr(data_dir: Path, tmp_path: Path) -> None:
    module = run("sweep_lr", tmp_path, data_dir)
    record = check_sweep(tmp_path)
    assert record["num_groups"] == 2  # one per optimizer: the learning rate is traced
    assert (tmp_path / "lr_vs_accuracy.png").is_file()
    lrs = module.learning_rates(module.BUDGETS["smoke"])
    assert record["num_variants"] == 2 * len(lrs)
    text = " ".join(findings(tmp_path))
    assert "SGD: best at lr" in text and "ADAM: best at lr" in text
    # The page shows the experiment's own picture and its findings, as summary.md ends them.
    page = (tmp_path / "report.html").read_text()
    assert 'src="lr_vs_accuracy.png"' in page and "SGD: best at lr" in page

    # Rerunning the same command reuses every run: nothing is trained twice.
    run("sweep_lr", tmp_path, data_dir)
    again = json.loads((tmp_path / "sweep.json").read_text())
    assert len(again["sessions"]) == 2 and again["sessions"][-1]["runs_trained"] == 0
    assert again["fingerprint"] == record["fingerprint"]
    # The experiment's own log counts what each invocation trained (its summary quotes it), and
    # how long it spent compiling (every thread's: at most twice its wall time on 2 threads).
    invocations = json.loads((tmp_path / "experiment.json").read_text())["invocations"]
    assert [i["runs_trained"] for i in invocations] == [record["num_runs"], 0]
    assert all(0 <= i["compile_seconds"] <= 2 * i["wall_seconds"] for i in invocations)
    assert_findings_follow_numbers("sweep_lr", tmp_path, data_dir)


def test_overfit_small(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []  # the picture's figure, caught on its way to the file
    draw = plots_sweep.metric_figure
    monkeypatch.setattr(plots_sweep, "metric_figure",
                        lambda *a, **kw: drawn.append(draw(*a, **kw)) or drawn[-1])
    run("overfit_small", tmp_path, data_dir)
    check_sweep(tmp_path)
    assert (tmp_path / "updates_to_100.png").is_file()
    text = (tmp_path / "summary.md").read_text()
    assert "ms per update" in text
    # updates_to_100.png plots what the table quotes: the median updates of each network.
    table = text.split("| images |", 1)[1].split("\n\n", 1)[0]
    header, *rows = [[c.strip() for c in line.strip("|").split("|")]
                     for line in ("| images |" + table).splitlines() if line.startswith("| ")]
    median = header.index("updates (median)")
    assert "median" in drawn[0].get_suptitle()
    plotted = {line.get_label(): list(line.get_ydata()) for line in drawn[0].axes[0].lines
               if not line.get_label().startswith("_")}
    for row in rows:
        size = sorted({int(r[0]) for r in rows}).index(int(row[0]))
        value = plotted[row[1]][size]
        quoted = row[median]
        assert (f"{value:.0f}" == quoted if quoted[0].isdigit() else np.isnan(value)), row
    assert any("To 100% training accuracy on 10 images" in f for f in findings(tmp_path))
    assert_findings_follow_numbers("overfit_small", tmp_path, data_dir)


def test_sweep_init(data_dir: Path, tmp_path: Path) -> None:
    run("sweep_init", tmp_path, data_dir)
    record = check_sweep(tmp_path)
    # 4 schemes x 2 activations x 4 scales: the scheme and scale are traced, the activation
    # picked per run: one program.
    assert record["num_groups"] == 1
    for png in ("dead_units.png", "zero_outputs.png", "init_accuracy.png"):
        assert (tmp_path / png).is_file()
    summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert "dead_units_final_mean" in summary[0] and "zero_outputs_init_mean" in summary[0]
    assert_findings_follow_numbers("sweep_init", tmp_path, data_dir)


@pytest.mark.parametrize("name", ["sweep_reduction", "sweep_loss", "sweep_lr", "overfit_small",
                                  "sweep_init"])
def test_quick_and_default_budgets_are_real(name: str) -> None:
    """--quick is a smaller budget of the same experiment; the default one has >= 5 seeds."""
    module = load(name)
    assert set(module.BUDGETS) == {"default", "quick", "smoke"}
    assert module.BUDGETS["default"].seeds >= 5
    assert module.BUDGETS["quick"] != module.BUDGETS["default"]
    args = module.C.parse_args(name, "", ["--quick"])
    assert args.mode == "quick" and args.out == Path("runs") / f"{name}-quick"
