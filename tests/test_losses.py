"""The loss pieces: their formulas on hand-computable inputs, and jit == eager for every variant.

Tolerance for jit vs eager: XLA may fuse operations and contract a*b+c into one FMA under jit,
which changes the last bits of float32 results. float32 has a 2^-24 ~ 6e-8 unit roundoff, and the
reductions here add at most a few hundred terms, so differences stay within a few hundred ulps:
rtol 1e-5 is tight enough to catch any real difference (a wrong formula changes the first
digits) and loose enough for rounding. Where the two paths are bitwise equal, the tests say so.

Gradients are sums over the batch in which terms of opposite sign cancel (sum_normalize divides
by sums near zero, which makes this worse), so a single element can lose relative precision
while the tensor as a whole does not: gradients are compared element-wise with rtol 1e-5 plus an
absolute slack of 1e-5 times the tensor's largest magnitude.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp.config import ERRORS, OUTPUTS, REDUCTIONS, Config
from jaxmlp.losses import (
    EPS,
    Batch,
    Reductions,
    loss_fn,
    num_outputs,
    per_example_loss,
    predict_labels,
    predictions,
    sum_normalize,
    uniform_guess_loss,
)
from jaxmlp.model import init_mlp, mlp_apply

RTOL = 1e-5
ATOL = 1e-7

ONEHOT_VARIANTS = [
    Config(output=o, error=e, class_reduction=c, example_reduction=x)
    for o, e, c, x in itertools.product(OUTPUTS, ERRORS, REDUCTIONS, REDUCTIONS)
]
INTEGER_VARIANTS = [
    Config(targets="integer", output="none", error="mse", example_reduction=x) for x in REDUCTIONS
]
VARIANTS = ONEHOT_VARIANTS + INTEGER_VARIANTS


def assert_close_scaled(actual: jax.Array, desired: jax.Array, rtol: float = RTOL) -> None:
    """allclose with an absolute slack relative to the tensor's scale (see module docstring)."""
    scale = float(np.max(np.abs(np.asarray(desired)))) or 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


def variant_id(c: Config) -> str:
    return f"{c.targets}-{c.output}-{c.error}-cls_{c.class_reduction}-ex_{c.example_reduction}"


@pytest.fixture(scope="module")
def small_batch(mnist_dir) -> Batch:
    """64 real MNIST images, scaled to 0..1, with their labels."""
    from jaxmlp import data

    ds = data.load_dataset("mnist", data_dir=mnist_dir, source="local", progress=False)
    x = data.flatten(ds.x_train[:64]).astype(np.float32) / 255.0
    return Batch(jnp.asarray(x), jnp.asarray(ds.y_train[:64], jnp.int32))


def tiny_params(config: Config, key: int = 0) -> list:
    return init_mlp(jax.random.key(key), [784, 16, num_outputs(config, 10)], "he")


# --- the formulas on small inputs ----------------------------------------------------------------


def test_softmax_cross_entropy_matches_formula() -> None:
    logits = jnp.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, 2])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(1, keepdims=True)
    expected = -np.log(p[[0, 1], [0, 2]])
    cfg = Config()
    np.testing.assert_allclose(per_example_loss(logits, labels, cfg), expected, rtol=1e-6)
    cfg_mean = dataclasses.replace(cfg, class_reduction="mean")
    np.testing.assert_allclose(per_example_loss(logits, labels, cfg_mean), expected / 3, rtol=1e-6)


def test_softmax_cross_entropy_is_stable_for_huge_logits() -> None:
    # exp(1000) overflows float32; computing from logits must not.
    logits = jnp.array([[1000.0, 0.0, -1000.0]])
    loss = per_example_loss(logits, jnp.array([1]), Config())
    np.testing.assert_allclose(loss, [1000.0], rtol=1e-6)


def test_mse_on_softmax_matches_the_notes_example() -> None:
    # The learner's example: predicted [0.1, 0.2, 0.7, 0...], true class 3.
    probs = np.array([[0.1, 0.2, 0.7] + [0.0] * 7])
    sq = np.array([0.1**2, 0.2**2, 0.7**2, 1.0] + [0.0] * 6)
    cfg = Config(output="none", error="mse", class_reduction="sum")
    got = per_example_loss(jnp.asarray(probs, jnp.float32), jnp.array([3]), cfg)
    np.testing.assert_allclose(got, [sq.sum()], rtol=1e-6)
    cfg_mean = dataclasses.replace(cfg, class_reduction="mean")
    got = per_example_loss(jnp.asarray(probs, jnp.float32), jnp.array([3]), cfg_mean)
    np.testing.assert_allclose(got, [sq.mean()], rtol=1e-6)


def test_example_reduction_sum_is_batch_size_times_mean(small_batch: Batch) -> None:
    cfg = Config()
    params = tiny_params(cfg)
    mean = loss_fn(params, small_batch, cfg)[0]
    total = loss_fn(params, small_batch, dataclasses.replace(cfg, example_reduction="sum"))[0]
    np.testing.assert_allclose(total, 64 * mean, rtol=1e-5)


@pytest.mark.parametrize("config", VARIANTS, ids=variant_id)
def test_traced_reductions_are_the_named_ones(config: Config, small_batch: Batch) -> None:
    """Sweeps and runs hand the reductions in as traced 0/1 values (one program for sum and
    mean); they must compute the named reductions' loss and gradient. Within float32 rounding
    (RTOL): a mean may be the sum times 1/n in one and the sum over n in the other."""
    params = tiny_params(config)
    grad = jax.value_and_grad(loss_fn, has_aux=True)
    (want, want_aux), want_grad = grad(params, small_batch, config)
    flags = Reductions(jnp.float32(config.class_reduction == "mean"),
                       jnp.float32(config.example_reduction == "mean"))
    traced = jax.jit(lambda p, r: grad(p, small_batch, config, reductions=r))
    (got, got_aux), got_grad = traced(params, flags)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_aux.per_example, want_aux.per_example, rtol=RTOL, atol=ATOL)
    jax.tree.map(assert_close_scaled, got_grad, want_grad)
    # The other reduction over examples changes the loss by the batch size: the flag is read.
    other = Reductions(flags.classes, 1 - flags.examples)
    (moved, _), _ = traced(params, other)
    ratio = 64.0 if config.example_reduction == "mean" else 1 / 64
    np.testing.assert_allclose(moved, want * ratio, rtol=1e-5)


@pytest.mark.parametrize("config", VARIANTS, ids=variant_id)
def test_uniform_guess_loss_is_the_loss_of_predicting_one_over_k(config: Config) -> None:
    """The loss of a network that predicts 1/K for every class, by hand: MSE sums
    (1 - 1/K)^2 + (K - 1)/K^2 = (K - 1)/K over classes, cross-entropy -log(1/K) = log K, each
    divided by K for a class mean; integer targets predict the middle label, whose squared
    error averages (K^2 - 1)/12 over the labels 0..K-1. Computed in float32 through the loss
    itself (a softmax, squares, sums): rel 1e-5, a few dozen float32 ulps."""
    k = 10
    if config.targets == "integer":
        want = (k * k - 1) / 12
    else:
        want = (k - 1) / k if config.error == "mse" else np.log(k)
        want = want / k if config.class_reduction == "mean" else want
    assert uniform_guess_loss(config, k) == pytest.approx(want, rel=1e-5)


def test_the_notes_plateau_is_the_uniform_guess() -> None:
    """The notes' loss (each output over the total, MSE, /num_classes) plateaued at 0.09: the
    loss of predicting 0.1 for each of 10 classes."""
    notes = Config(output="sum_normalize", error="mse", class_reduction="mean")
    assert uniform_guess_loss(notes, 10) == pytest.approx(0.09, rel=1e-5)


def test_sum_normalize_is_each_output_over_the_total() -> None:
    out = jnp.array([[1.0, 3.0], [2.0, -1.0]])
    np.testing.assert_allclose(sum_normalize(out), [[0.25, 0.75], [2.0, -1.0]], rtol=1e-6)


def test_sum_normalize_failure_is_a_finite_diagnosable_number() -> None:
    # All-zero outputs (the notes: "all of the outputs are 0") would give 0/0 = NaN unguarded.
    zeros = jnp.zeros((1, 10))
    p = sum_normalize(zeros)
    assert np.all(np.isfinite(p))
    cfg = Config(output="sum_normalize", error="cross_entropy")
    loss = per_example_loss(zeros, jnp.array([3]), cfg)
    # p_y = 0 is clamped to EPS, so the loss reads exactly -log(EPS) = 16.12, not NaN.
    np.testing.assert_allclose(loss, [-np.log(EPS)], rtol=1e-6)
    grads = jax.grad(lambda z: per_example_loss(z, jnp.array([3]), cfg).sum())(zeros)
    assert np.all(np.isfinite(grads))


def test_predictions_argmax_follows_trained_predictions() -> None:
    # With a negative sum, sum_normalize reverses the order: the predicted class follows p.
    out = jnp.array([[-1.0, -3.0]])
    cfg = Config(output="sum_normalize")
    np.testing.assert_allclose(predictions(out, "sum_normalize"), [[0.25, 0.75]])
    assert int(predict_labels(out, cfg)[0]) == 1
    assert int(predict_labels(out, Config())[0]) == 0


def test_integer_targets_round_the_single_output() -> None:
    out = jnp.array([[2.6], [-0.7], [8.49]])
    cfg = Config(targets="integer", output="none", error="mse")
    np.testing.assert_array_equal(predict_labels(out, cfg), [3, 0, 8])
    np.testing.assert_allclose(per_example_loss(out, jnp.array([3, 0, 8]), cfg),
                               [0.16, 0.49, 0.2401], rtol=1e-5)


# --- jit == eager, for every variant ------------------------------------------------------------


@pytest.mark.parametrize("config", VARIANTS, ids=variant_id)
def test_loss_and_grad_jit_equals_eager(config: Config, small_batch: Batch) -> None:
    params = tiny_params(config)
    value_and_grad = jax.value_and_grad(lambda p, b, c: loss_fn(p, b, c)[0])
    loss_jit, grad_jit = jax.jit(value_and_grad, static_argnums=2)(params, small_batch, config)
    with jax.disable_jit():
        loss_eager, grad_eager = value_and_grad(params, small_batch, config)
    assert np.isfinite(loss_jit)
    np.testing.assert_allclose(loss_jit, loss_eager, rtol=RTOL, atol=ATOL)
    jax.tree.map(assert_close_scaled, grad_jit, grad_eager)
    # The gradient is not trivially zero (a test that could not fail would be useless).
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grad_jit))


@pytest.mark.xla_defaults  # a claim about two programs' bits: checked at the user's flags
def test_forward_pass_jit_is_bitwise_equal_to_eager(small_batch: Batch) -> None:
    # A plain matmul-bias-relu chain has nothing for XLA to re-associate: bitwise equal here.
    params = tiny_params(Config())
    jitted = jax.jit(mlp_apply, static_argnums=2)(params, small_batch.x, "relu")
    with jax.disable_jit():
        eager = mlp_apply(params, small_batch.x, "relu")
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))
