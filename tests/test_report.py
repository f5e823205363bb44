"""The report's rules on runs built directly as diagnostics rows: each finding appears where the
numbers say so, with the words a learner needs, and the rules that would misread the same
numbers stand down."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import data, probes, report
from jaxmlp.config import Config
from jaxmlp.losses import Batch
from jaxmlp.model import init_mlp


def layer(**values) -> dict:
    base = {"layer": 1, "shape": [784, 16], "grad_norm": 1.0, "grad_norm_max": 1.0,
            "update_ratio": 1e-3, "param_norm": 10.0, "param_max": 0.5, "pre_std": 0.5,
            "act_mean": 0.1, "act_std": 0.3, "dead": 0.0, "saturated": None}
    return {**base, **values}


def row(epoch: int, layers: list[dict], **values) -> dict:
    base = {"epoch": epoch, "steps": 4 if epoch else 0, "layers": layers, "zero_outputs": 0.0,
            "output_variation": 0.5, "zero_predictions": 0.0, "negative_predictions": 0.0,
            "top_class": 1, "top_class_share": 0.2, "probe_loss": 2.3, "probe_accuracy": 0.1,
            "first_nonfinite": None, "dead_units": None, "step_grad_norm": []}
    return {**base, **values}


def codes(findings) -> set[str]:
    return {f.code for f in findings}


RAW_SGD = Config(input_scale="raw", optimizer="sgd", learning_rate=0.01, schedule="constant",
                 hidden=(16,))


def test_a_run_that_explodes_without_nan_is_called_exploded() -> None:
    """The AVX2 case of `--input-scale raw --optimizer sgd --learning-rate 0.01`: no NaN, but
    weights beyond float32's range (their norm is inf, so the update ratio came out 0) and
    gradient norms of 5.7e18 vs 4.7e23. Before: "hardly move; try a larger learning rate" and
    "vanishing". Now: the explosion, by how much and since when, and neither of those."""
    rows = [row(0, [layer(), layer(layer=2, shape=[16, 10], param_norm=5.0)]),
            row(1, [layer(param_norm=None, param_max=4.3e35, update_ratio=0.0,
                          grad_norm=5.7e18),
                    layer(layer=2, shape=[16, 10], param_norm=4e35, update_ratio=0.0,
                          grad_norm=4.7e23)], top_class_share=1.0, probe_loss=1e34)]
    history = [{"epoch": 1, "train_loss": 1.4e34, "train_accuracy": 0.11, "test_accuracy": 0.1135,
                "step_loss": [2.3, 40.0, 5e3, 1e20, 1.4e34]}]
    findings = report.diagnose(RAW_SGD, rows, history)
    found = codes(findings)
    assert "exploded" in found
    assert not found & {"vanishing_gradients", "tiny_updates"}
    text = str(next(f for f in findings if f.code == "exploded"))
    assert "beyond float32's range by epoch 1" in text
    assert "the training loss rose from 2.3 to 1.4e+34, above 1000x its start from step 3" in text
    assert "--input-scale unit" in text
    assert "larger learning rate" not in report.format_report(findings, rows)
    # The same numbers without the explosion (a healthy second epoch): no such finding.
    calm = [rows[0], row(1, [layer(), layer(layer=2, shape=[16, 10], param_norm=5.2)])]
    assert "exploded" not in codes(report.diagnose(RAW_SGD, calm, [dict(history[0],
                                                  train_loss=0.5, step_loss=[2.3, 1.0, 0.5],
                                                  test_accuracy=0.9, train_accuracy=0.9)]))


def test_vanishing_still_reported_when_the_norms_are_small() -> None:
    """The stand-down is for huge norms only: a tiny layer-1 gradient is still vanishing."""
    rows = [row(0, [layer(grad_norm=1e-7), layer(layer=2, shape=[16, 10], grad_norm=1e-2)])]
    assert "vanishing_gradients" in codes(report.diagnose(Config(hidden=(16,)), rows))


def test_raw_inputs_at_initialisation_are_called_too_large(mnist_dir) -> None:
    """Layer 1's pre-activations measured on real pixels: He-initialised weights on raw 0..255
    give a std ~255 times that of /255 inputs, and the report says so (with adam too, which
    trains anyway and so hides it)."""
    ds = data.load_dataset("mnist", data_dir=mnist_dir, progress=False)
    pixels = data.flatten(ds.x_train[:256]).astype(np.float32)
    params = init_mlp(jax.random.key(0), [784, 16, 10])
    stats = jax.jit(probes.probe_stats, static_argnums=2)
    y = jnp.asarray(ds.y_train[:256])
    raw = stats(params, Batch(jnp.asarray(pixels), y), Config(hidden=(16,), input_scale="raw"))
    unit = stats(params, Batch(jnp.asarray(pixels / 255), y), Config(hidden=(16,)))
    assert float(unit.pre_std[0]) < 2 < report.LARGE_PRE_STD < float(raw.pre_std[0])
    np.testing.assert_allclose(float(raw.pre_std[0]), 255 * float(unit.pre_std[0]), rtol=1e-4)

    adam_raw = Config(hidden=(16,), input_scale="raw")
    found = report.diagnose(adam_raw, [row(0, [layer(pre_std=float(raw.pre_std[0])), layer(
        layer=2, shape=[16, 10])])])
    large = next(f for f in found if f.code == "large_inputs")
    assert "raw 0..255 pixels" in large.message and "--input-scale unit" in large.advice
    assert "adam" in large.advice
    healthy = [row(0, [layer(pre_std=float(unit.pre_std[0])), layer(layer=2, shape=[16, 10])])]
    assert "large_inputs" not in codes(report.diagnose(Config(hidden=(16,)), healthy))


def test_parameter_norms_do_not_overflow_for_finite_weights() -> None:
    """Entries of 3e37: their squares overflow float32, their norm (1.2e38) does not."""
    big = [{"w": jnp.full((4, 4), 3e37, jnp.float32), "b": jnp.zeros(4)},
           {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}]
    batch = Batch(jnp.ones((8, 4)) * 1e-38, jnp.zeros(8, jnp.int32))
    stats = probes.probe_stats(big, batch, Config(hidden=(4,)), num_classes=2)
    np.testing.assert_allclose(float(stats.param_norm[0]), 1.2e38, rtol=1e-5)
    assert float(stats.param_max[0]) == np.float32(3e37)
