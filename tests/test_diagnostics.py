"""Diagnostics: each classic failure is constructed, and must be reported as what it is.

Every check here can fail: each failure mode has a healthy counterpart that must NOT be
reported, and numbers are compared with the thresholds named in `jaxmlp.report` and the
definitions in `jaxmlp.probes`. Runs are tiny (512 MNIST examples, 32-unit layers, 1-3 epochs)
to keep the file fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import (
    checkpoint,
    data,
    diagnostics,
    loop,
    overfit,
    probes,
    report,
    rundir,
    runner,
    train,
)
from jaxmlp.config import Config
from jaxmlp.losses import Batch
from jaxmlp.model import init_mlp
from jaxmlp.plots import cli as plots_cli
from jaxmlp.plots import run as plots


def state_template(config: Config) -> loop.TrainState:
    """A state of `config`'s shapes on 784-pixel inputs: `checkpoint.load` takes only its
    structure from it."""
    dev = loop.DeviceData(np.zeros((512, 784), np.uint8), np.zeros(512, np.int32),
                          np.zeros((1, 784), np.uint8), np.zeros(1, np.int32))
    hyper = loop.hyper_from_config(config, dev.x_train)
    return loop.initial_state(jax.random.key(0), config, dev, hyper)[0]

SMALL = Config(dataset="mnist", hidden=(32, 32), batch_size=64, epochs=2, train_subset=512,
               learning_rate=1e-2, warmup_epochs=0.5)


def small(mnist_dir: Path, **changes) -> Config:
    return dataclasses.replace(SMALL, data_dir=str(mnist_dir), **changes)


def codes(findings) -> set[str]:
    return {f.code for f in findings}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> data.Dataset:
    return data.load_dataset("mnist", data_dir=mnist_dir, progress=False)


@pytest.fixture(scope="module")
def probe(mnist: data.Dataset) -> Batch:
    x = data.flatten(mnist.x_train[:256]).astype(np.float32) / 255.0
    return Batch(jnp.asarray(x), jnp.asarray(mnist.y_train[:256]))


@pytest.fixture(scope="module")
def paired_runs(tmp_path_factory, mnist_dir) -> dict[str, Path]:
    """The same small run without and with --diagnose --plots."""
    root = tmp_path_factory.mktemp("paired")
    out = {"plain": root / "plain", "diagnosed": root / "diagnosed"}
    logs: list[str] = []
    runner.run(small(mnist_dir), out["plain"], progress=False, log=logs.append)
    summary = runner.run(small(mnist_dir), out["diagnosed"], progress=False, log=logs.append,
                        diagnose=True, plots=True)
    assert "diagnosis" in summary and summary["plots"]
    return out


# --- the pure pieces ------------------------------------------------------------------------------


def test_summarize_step_names_the_first_nonfinite_value() -> None:
    ok = [{"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}]
    acts = [jnp.ones((4, 3)), jnp.ones((4, 2))]
    order = probes.nonfinite_order(2)

    def first(grads, updates, activations, loss, measure=True):
        values = loop.StepValues(grads, updates, activations, jnp.asarray(loss), jnp.int32(0))
        code = int(probes.summarize_step(values, measure).nonfinite)
        return None if code < 0 else order[code]

    bad_grad = [ok[0], {"w": ok[1]["w"].at[0, 0].set(jnp.nan), "b": ok[1]["b"]}]
    assert first(ok, ok, acts, 1.0) is None
    assert first(bad_grad, ok, acts, 1.0) == ("gradient", 2)
    assert first(ok, bad_grad, acts, 1.0) == ("update", 2)
    assert first(ok, ok, acts, math.inf) == ("loss", 0)
    # The forward pass comes first: an overflow in layer 1's outputs is named, not its effects
    # (in a real forward pass it makes the outputs non-finite too, which triggers the search).
    overflow = [acts[0].at[1, 1].set(jnp.inf), acts[1].at[1].set(jnp.nan)]
    assert first(bad_grad, bad_grad, overflow, math.nan) == ("activation", 1)
    assert first(ok, ok, [acts[0], acts[1].at[0, 0].set(jnp.inf)], math.inf) == ("activation", 2)
    # Norms are skipped on unmeasured steps, so their gradients are not judged there.
    assert first(bad_grad, ok, acts, 1.0, measure=False) is None


def test_constructed_dead_relu_network_is_reported_dead(probe: Batch) -> None:
    """A large negative first-layer bias: every layer-1 unit outputs 0 for every image, so
    layer 2 sees only zeros (its units sit at z = 0: dead too) and the outputs are all 0."""
    config = Config(hidden=(32, 32))
    params = init_mlp(jax.random.key(0), [784, 32, 32, 10])
    shapes = [(784, 32), (32, 32), (32, 10)]
    stats = jax.jit(probes.probe_stats, static_argnums=2)
    healthy = stats(params, probe, config)
    dead_params = [{"w": params[0]["w"], "b": jnp.full(32, -100.0)}, *params[1:]]
    dead = stats(dead_params, probe, config)

    assert float(healthy.stuck[0]) < report.DEAD_WARN
    assert float(healthy.zero_outputs) == 0.0
    assert np.asarray(dead.stuck).tolist() == [1.0, 1.0]
    assert float(dead.zero_outputs) == 1.0

    rows = [diagnostics.make_row(0, config, shapes, dead, grad_norm=[0.0, 0.0, 1.0])]
    findings = report.diagnose(config, rows)
    assert {"dead_units", "zero_outputs"} <= codes(findings)
    text = report.format_report(findings, rows)
    assert "100% of layer-1 units are dead" in text and "since initialisation" in text
    healthy_rows = [diagnostics.make_row(0, config, shapes, healthy, grad_norm=[1.0, 1.0, 1.0])]
    assert not codes(report.diagnose(config, healthy_rows)) & {"dead_units", "zero_outputs"}


def test_saturated_tanh_units_are_reported(mnist: data.Dataset) -> None:
    """tanh fed raw 0..255 pixels through N(0, 1) weights: |z| ~ 1000, flat everywhere."""
    x = jnp.asarray(data.flatten(mnist.x_train[:256]).astype(np.float32))
    batch = Batch(x, jnp.asarray(mnist.y_train[:256]))
    config = Config(hidden=(32,), activation="tanh", init="normal", input_scale="raw")
    params = init_mlp(jax.random.key(0), [784, 32, 10], "normal", 1.0)
    probe_stats = jax.jit(probes.probe_stats, static_argnums=2)
    stats = probe_stats(params, batch, config)
    assert float(stats.stuck[0]) > 0.9
    rows = [diagnostics.make_row(0, config, [(784, 32), (32, 10)], stats, grad_norm=[1.0, 1.0])]
    assert "saturated_units" in codes(report.diagnose(config, rows))
    unit = dataclasses.replace(config, input_scale="unit", init="glorot")
    calm = probe_stats(init_mlp(jax.random.key(0), [784, 32, 10], "glorot"),
                       Batch(x / 255.0, batch.y), unit)
    assert float(calm.stuck[0]) < report.SATURATED_WARN


def test_report_flags_large_updates_and_collapse() -> None:
    config = Config(hidden=(4,), optimizer="sgd", learning_rate=5.0)
    layer = {"shape": [784, 4], "grad_norm": 1.0, "grad_norm_max": 1.0, "param_norm": 1.0,
             "act_mean": 0.0, "act_std": 1.0, "dead": 0.0, "saturated": None}
    row = {"epoch": 1, "steps": 4, "layers": [dict(layer, layer=1, update_ratio=0.5),
                                              dict(layer, layer=2, update_ratio=0.01)],
           "zero_outputs": 0.0, "negative_predictions": 0.0, "top_class": 3,
           "top_class_share": 0.97, "probe_loss": 2.0, "first_nonfinite": None,
           "dead_units": None, "step_grad_norm": []}
    history = [{"epoch": 1, "train_loss": 3.0, "train_accuracy": 0.1, "test_accuracy": 0.1},
               {"epoch": 2, "train_loss": 1.5, "train_accuracy": 0.1, "test_accuracy": 0.11}]
    findings = report.diagnose(config, [row], history)
    assert {"large_updates", "collapsed"} <= codes(findings)
    collapsed = next(f for f in findings if f.code == "collapsed")
    assert ("loss fell from 3 to 1.5 (a network that ignores its input scores 2.3) while test "
            "accuracy stayed at 11%") in collapsed.message
    calm = dict(row, top_class_share=0.2, layers=[dict(layer, layer=1, update_ratio=1e-3)] * 2)
    good = [dict(h, test_accuracy=0.9, train_accuracy=0.9) for h in history]
    assert report.diagnose(config, [calm], good) == []
    # Above chance but poor, with a loss that does not reward the right class.
    poor = [dict(h, test_accuracy=0.3) for h in history]
    normalized = dataclasses.replace(config, output="sum_normalize")
    low = {f.code: f for f in report.diagnose(normalized, [calm], poor)}
    assert set(low) == {"low_accuracy"} and "--output softmax" in low["low_accuracy"].advice
    fair = [dict(h, test_accuracy=0.6, train_accuracy=0.6) for h in history]
    assert report.diagnose(normalized, [calm], fair) == []
    # A loss that fell at chance with dead units beside it: sum_normalize's own failure is
    # named first (the dead units follow from it), any other loss sends to the units first.
    dead = dict(row, layers=[dict(layer, layer=1, dead=0.6, update_ratio=1e-3)] * 2)
    stuck = {f.code: f for f in report.diagnose(normalized, [dead], history)}
    assert "dead_units" in stuck
    assert stuck["collapsed"].advice.startswith("the loss being minimised (--output "
                                                "sum_normalize")
    plain = {f.code: f for f in report.diagnose(config, [dead], history)}
    assert plain["collapsed"].advice.startswith("fix the problems above first")


# --- whole runs -----------------------------------------------------------------------------------


@pytest.mark.xla_defaults
def test_diagnose_leaves_trained_params_identical(paired_runs, mnist_dir) -> None:
    template = None
    trees = {}
    for name, out in paired_runs.items():
        config = small(mnist_dir)
        if template is None:
            # Any state of the right shape: checkpoint.load only takes structure from it.
            template = state_template(config)
        trees[name], meta = checkpoint.load(out / rundir.CHECKPOINT, template)
        assert meta["epoch"] == 2
    plain = jax.tree.leaves(trees["plain"])
    diagnosed = jax.tree.leaves(trees["diagnosed"])
    assert len(plain) == len(diagnosed)
    for a, b in zip(plain, diagnosed, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: the same update, only observed
    metrics = [read_jsonl(out / rundir.METRICS) for out in paired_runs.values()]
    assert [m["train_loss"] for m in metrics[0]] == [m["train_loss"] for m in metrics[1]]


def test_diagnostics_jsonl_rows(paired_runs) -> None:
    rows = read_jsonl(paired_runs["diagnosed"] / rundir.DIAGNOSTICS)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    steps = 512 // 64
    for r in rows:
        assert [layer["shape"] for layer in r["layers"]] == [[784, 32], [32, 32], [32, 10]]
        assert r["first_nonfinite"] is None
        for layer in r["layers"]:
            assert layer["grad_norm"] > 0 and layer["param_norm"] > 0
            assert layer["act_std"] > 0
    for r in rows[1:]:
        assert r["steps"] == steps
        assert len(r["step_grad_norm"]) == -(-steps // probes.NORM_EVERY)
        assert all(0 < layer["update_ratio"] < 1 for layer in r["layers"])
        # The epoch mean lies within the measured steps' range.
        per_step = np.asarray(r["step_grad_norm"])
        means = [layer["grad_norm"] for layer in r["layers"]]
        assert np.all(per_step.min(0) <= means) and np.all(means <= per_step.max(0))
    # Epoch 0 (initialisation) takes its gradient from the first step, made at the initial
    # parameters.
    assert [la["grad_norm"] for la in rows[0]["layers"]] == rows[1]["step_grad_norm"][0]
    assert all(la["update_ratio"] is None for la in rows[0]["layers"])
    # A healthy run gets a clean bill, and says so with numbers.
    summary = json.loads((paired_runs["diagnosed"] / rundir.SUMMARY).read_text())
    assert summary["diagnosis"] == []


def test_plots_are_written_and_consistent(paired_runs, mnist) -> None:
    out = paired_runs["diagnosed"]
    for name in (plots.LEARNING_CURVES, plots.GRADIENT_NORMS, plots.CONFUSION,
                 plots.MISCLASSIFIED):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    assert not (paired_runs["plain"] / plots.CONFUSION).exists()
    # `python -m jaxmlp.plots RUN_DIR` redraws them from the folder alone.
    (out / plots.CONFUSION).unlink()
    assert plots_cli.main([str(out)]) == 0
    assert (out / plots.CONFUSION).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = plots.confusion_counts(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_deep_sigmoid_with_tiny_init_reports_vanishing_gradients(tmp_path, mnist_dir) -> None:
    config = small(mnist_dir, activation="sigmoid", hidden=(32,) * 6, init="normal",
                   init_scale=0.01, epochs=1, warmup_epochs=0.0)
    logs: list[str] = []
    summary = runner.run(config, tmp_path / "sig", progress=False, log=logs.append,
                        diagnose=True)
    found = {f["code"]: f for f in summary["diagnosis"]}
    assert "vanishing_gradients" in found, summary["diagnosis"]
    assert "sigmoid" in found["vanishing_gradients"]["message"]
    rows = rundir.RunDir(tmp_path / "sig").diagnostics()
    g = [layer["grad_norm"] for layer in rows[-1]["layers"]]
    assert g[0] / g[-1] < report.VANISHING_RATIO
    assert any("vanishing gradients" in line for line in logs)


def test_diverging_run_names_the_step_and_exits_nonzero(tmp_path, mnist_dir, capsys) -> None:
    """Raw 0..255 inputs and lr=100 with a squared error on raw outputs: each step overshoots
    further (the gradient grows with the error), so the loss leaves float32's range within a few
    steps, whatever the batches (at lr 1 it reaches 1e25 and may or may not overflow: a knife's
    edge). (With softmax cross-entropy the same mistake kills the ReLUs instead: see the
    dead-unit test.)"""
    out = tmp_path / "boom"
    argv = ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--train-subset", "512",
            "--hidden", "32", "--batch-size", "64", "--epochs", "2", "--input-scale", "raw",
            "--optimizer", "sgd", "--learning-rate", "100", "--schedule", "constant",
            "--error", "mse", "--output", "none", "--no-progress", "--diagnose", "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "epoch 1, step" in err and "Traceback" not in err
    assert "Diagnostics: the first non-finite value was" in err
    bad = read_jsonl(out / rundir.METRICS)[-1]
    rows = rundir.RunDir(out).diagnostics()
    first = rows[-1]["first_nonfinite"]
    assert first is not None and first["step"] <= bad["diverged_at_step"]
    assert f"step {bad['diverged_at_step']} of" in err
    assert not (out / rundir.CHECKPOINT).exists()


def test_divergence_keeps_the_previous_checkpoint_intact(tmp_path, mnist_dir, capsys) -> None:
    """Epoch 1 trains normally; then the run is resumed with raw 0..255 inputs, for which its
    learning rate is far too large (the first layer's input and gradient grow 255x). Both parts
    record diagnostics, so this also checks that a resumed run continues diagnostics.jsonl."""
    out = tmp_path / "run"
    config = small(mnist_dir, optimizer="sgd", learning_rate=0.05, schedule="constant",
                   epochs=3, error="mse", output="none")
    runner.run(config, out, progress=False, log=lambda s: None, max_epochs=1, diagnose=True)
    saved = (out / rundir.CHECKPOINT).read_bytes()
    assert [r["epoch"] for r in rundir.RunDir(out).diagnostics()] == [0, 1]
    record = json.loads((out / rundir.CONFIG_JSON).read_text())
    record["config"]["input_scale"] = "raw"
    (out / rundir.CONFIG_JSON).write_text(json.dumps(record))

    with pytest.raises(SystemExit) as exc:
        train.main(["--resume", str(out), "--no-progress", "--diagnose"])
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "at epoch 2, step" in err and "last good checkpoint (epoch 1)" in err
    rows = rundir.RunDir(out).diagnostics()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[1]["first_nonfinite"] is None and rows[2]["first_nonfinite"] is not None
    assert (out / rundir.CHECKPOINT).read_bytes() == saved
    template = state_template(config)
    state, meta = checkpoint.load(out / rundir.CHECKPOINT, template)
    assert meta == {"epoch": 1}
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


@pytest.mark.xla_defaults
def test_make_train_with_statistics_and_probes_equals_make_train(mnist) -> None:
    config = Config(hidden=(16,), batch_size=16, epochs=2, optimizer="momentum",
                    learning_rate=0.05, schedule="constant")
    dev = loop.DeviceData(jnp.asarray(data.flatten(mnist.x_train[:64])),
                           jnp.asarray(mnist.y_train[:64]),
                           jnp.asarray(data.flatten(mnist.x_test[:128])),
                           jnp.asarray(mnist.y_test[:128]))
    hyper = loop.hyper_from_config(config, np.asarray(dev.x_train))
    key = jax.random.key(3)
    state, metrics = jax.jit(loop.make_train(config))(key, dev, hyper)
    state_d, metrics_d = jax.jit(loop.make_train(
        config, step_stats=probes.step_statistics(), probe=probes.make_probe(config)))(
            key, dev, hyper)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_d), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(metrics.test_accuracy, metrics_d.test_accuracy)
    rows = diagnostics.rows_from_train(config, [784, 16, 10], metrics_d.probe,
                                       metrics_d.step_stats)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # The rows carry the run's own probes (what the report reads), epoch by epoch.
    assert [r["probe_loss"] for r in rows] == pytest.approx(
        np.asarray(metrics_d.probe.loss).tolist(), rel=1e-6)


def test_overfit_memorises_a_few_examples(tmp_path, mnist_dir, capsys) -> None:
    base = ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--hidden", "32",
            "--no-progress"]
    assert train.main([*base, "--overfit", "32", "--out", str(tmp_path / "of")]) == 0
    out = capsys.readouterr().out
    assert "100% training accuracy on 32 mnist examples after" in out
    record = json.loads((tmp_path / "of" / "overfit.json").read_text())
    assert record["reached"] and 0 < record["steps"] < overfit.OVERFIT_MAX_STEPS
    assert record["accuracy"][record["steps"]] == 1.0
    assert max(record["accuracy"][: record["steps"]]) < 1.0
    # A learning rate far too small cannot get there: reported, exit status 1.
    assert train.main([*base, "--overfit", "32", "--optimizer", "sgd", "--learning-rate",
                       "1e-7", "--overfit-steps", "20"]) == 1
    assert "did NOT reach 100%" in capsys.readouterr().out


@pytest.mark.xla_defaults
def test_overfit_diagnoses_why_memorising_failed(tmp_path, mnist_sample_dir, capsys) -> None:
    # Six sigmoid layers with weights of std 0.01: the first layer's gradient vanishes, so 20
    # examples are not memorised; --diagnose must say why, --plots draw it, the training itself
    # unchanged by either.
    base = ["--dataset", "mnist", "--data-dir", str(mnist_sample_dir), "--hidden", *["16"] * 5,
            "--activation", "sigmoid", "--init", "normal", "--init-scale", "0.01",
            "--optimizer", "sgd", "--learning-rate", "0.01", "--overfit", "20",
            "--overfit-steps", "200", "--no-progress"]
    out = tmp_path / "of"
    assert train.main([*base, "--out", str(tmp_path / "plain")]) == 1
    plain_line = capsys.readouterr().out
    assert "add --diagnose to see what stops it" in plain_line
    assert train.main([*base, "--plots", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "vanishing gradients" in printed and "the report above says what stopped it" in printed
    record = json.loads((out / "overfit.json").read_text())
    plain = json.loads((tmp_path / "plain" / "overfit.json").read_text())
    assert record["loss"] == plain["loss"]  # the statistics leave the steps bitwise the same
    assert [r["epoch"] for r in record["diagnostics"]] == [0, 1]
    assert "vanishing_gradients" in {f["code"] for f in record["diagnosis"]}
    pictures = [plots.OVERFIT_CURVES, plots.GRADIENT_NORMS]
    assert all((out / name).stat().st_size > 10_000 for name in pictures)
    for name in pictures:
        (out / name).unlink()
    assert plots_cli.main([str(out)]) == 0  # `python -m jaxmlp.plots` reads the folder too
    assert all((out / name).stat().st_size > 10_000 for name in pictures)


@pytest.mark.parametrize(("flags", "message"), [
    (["--epochs", "3"], "(use --overfit-steps to limit it): drop --epochs"),
    (["--batch-size", "8"], "memorised: drop --batch-size"),
    (["--schedule", "cosine"], "constant learning rate: drop --schedule cosine"),
    (["--overfit", "1001"], "--overfit 1001 is more than the 1000 training examples of mnist: "
                            "use --overfit 1000 or fewer"),
])
def test_overfit_refuses_what_it_cannot_honour(flags, message, mnist_sample_dir, capsys) -> None:
    argv = ["--dataset", "mnist", "--data-dir", str(mnist_sample_dir), "--overfit", "10", *flags]
    with pytest.raises(SystemExit) as exit_:
        train.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1
