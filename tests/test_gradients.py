"""Is backprop right? `jax.grad(loss_fn)` against finite differences and a hand-written NumPy
backpropagation, for every loss variant, in float64 (`jaxmlp.gradcheck`, `jaxmlp.numpy_mlp`).

Tolerances, and why:

- finite differences: relative error <= gradcheck.TOLERANCE = 1e-6. In float64 the 5-point
  central difference is limited by cancellation, eps * |L| / (h |dL/dv|) ~ 1e-10, and by its
  O(h^4) truncation (the closest of three steps is used, see FD_STEPS); measured worst case over
  all variants ~1e-8. A wrong gradient is off by 1e-4 (the deliberately subtle `scale` bug) to
  O(1). 1e-6 separates the two with two orders of magnitude on each side.
- NumPy backprop: relative error <= 1e-10. Both compute the same sums in float64 and differ
  only in the order of additions (~1e-16 per operation); sum_normalize divides by a sum of
  outputs, which amplifies that to a measured ~4e-14. 1e-10 leaves 2000x headroom.
- float64 is switched on only inside gradcheck's functions (`jax.enable_x64` as a context);
  the last test checks that it does not leak into the rest of the session.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import gradcheck, numpy_mlp
from jaxmlp.config import ACTIVATIONS, Config
from jaxmlp.gradcheck import cli as gradcheck_cli
from jaxmlp.losses import Batch, loss_fn

NUMPY_TOLERANCE = 1e-10
VARIANTS = gradcheck.loss_variants()
IDS = [gradcheck.variant_name(c).replace(" ", "-") for c in VARIANTS]


@pytest.fixture(scope="module")
def toy() -> gradcheck.Problem:
    return gradcheck.toy_problem()


@pytest.fixture(scope="module")
def mnist_small(mnist_dir) -> gradcheck.Problem:
    from jaxmlp import data

    ds = data.load_dataset("mnist", data_dir=mnist_dir, progress=False)
    # 32 images and a 784-16-8-K ReLU net: every pixel column of W1 that is 0 in all 32 images
    # has an exactly-zero gradient, which must come out as 0 from all three methods too.
    return gradcheck.mnist_problem(ds.x_train, ds.y_train, n=32)._replace(hidden=(16, 8))


def assert_check_passes(check: gradcheck.VariantCheck) -> None:
    for layer in check.layers:
        assert layer.grad_norm > 0, f"layer {layer.layer}: zero gradient checks nothing"
        assert layer.fd_error <= gradcheck.TOLERANCE, (
            f"{gradcheck.variant_name(check.config)} layer {layer.layer}: finite differences "
            f"disagree, relative error {layer.fd_error:.2e}")
        assert layer.numpy_error <= NUMPY_TOLERANCE, (
            f"{gradcheck.variant_name(check.config)} layer {layer.layer}: NumPy backprop "
            f"disagrees, relative error {layer.numpy_error:.2e}")
    assert check.ok


def test_every_loss_variant_is_covered() -> None:
    # 3 outputs x 2 errors x 2 class reductions x 2 example reductions, and integer targets
    # with both example (and, trivially for one output, class) reductions.
    assert len(VARIANTS) == 24 + 4
    assert len({gradcheck.variant_name(c) for c in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_toy_gradients_match_finite_differences_and_numpy(config: Config,
                                                          toy: gradcheck.Problem) -> None:
    assert_check_passes(gradcheck.check_variant(toy, config))


# On MNIST, every output x error combination and integer targets, with the reductions varied
# along: a reduction only scales the gradient by a constant (1, 1/K, 1/B), which the toy test
# above checks in every combination. `python -m jaxmlp.gradcheck` runs all 28 on MNIST too.
MNIST_VARIANTS = [c for i, c in enumerate(VARIANTS[:24]) if i % 4 == (i // 4) % 4] + VARIANTS[24:26]


def test_mnist_variants_cover_every_output_error_and_reduction() -> None:
    pairs = {(c.output, c.error, c.targets) for c in MNIST_VARIANTS}
    assert len(pairs) == 3 * 2 + 1
    assert {(c.class_reduction, c.example_reduction) for c in MNIST_VARIANTS} == {
        (a, b) for a in ("sum", "mean") for b in ("sum", "mean")}


@pytest.mark.parametrize("config", MNIST_VARIANTS,
                         ids=[gradcheck.variant_name(c).replace(" ", "-") for c in MNIST_VARIANTS])
def test_mnist_gradients_match_finite_differences_and_numpy(
        config: Config, mnist_small: gradcheck.Problem) -> None:
    assert_check_passes(gradcheck.check_variant(mnist_small, config))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_backpropagates_correctly(activation: str,
                                                   toy: gradcheck.Problem) -> None:
    assert_check_passes(gradcheck.check_variant(toy._replace(activation=activation), Config()))


@pytest.mark.parametrize("config", VARIANTS[::5] + VARIANTS[-1:], ids=IDS[::5] + IDS[-1:])
def test_numpy_forward_equals_loss_fn(config: Config, toy: gradcheck.Problem) -> None:
    """The hand-written loss is the same function as losses.loss_fn (float64, rel 1e-12: one
    forward pass, so only rounding separates them)."""
    with jax.enable_x64(True):
        params = gradcheck.init_params(toy, config)
        cfg = config.__class__(**{**config.to_dict(), "activation": toy.activation})
        want = float(loss_fn(params, Batch(jnp.asarray(toy.x), jnp.asarray(toy.y)), cfg)[0])
    np_params = [{k: np.asarray(v) for k, v in p.items()} for p in params]
    got = numpy_mlp.loss(np_params, toy.x, toy.y, cfg)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", gradcheck.WRONG_KINDS)
def test_a_wrong_gradient_is_caught(kind: str, toy: gradcheck.Problem) -> None:
    """Prove the check can fail: each deliberately wrong gradient is flagged by both references,
    by a wide margin (the subtle `scale` bug is 1e-4 off, 100x the tolerance)."""
    check = gradcheck.check_variant(toy, Config(), gradcheck.wrong_grad(kind))
    assert not check.ok
    worst_fd = max(c.fd_error for c in check.layers)
    worst_np = max(c.numpy_error for c in check.layers)
    assert worst_fd > 50 * gradcheck.TOLERANCE
    assert worst_np > 50 * gradcheck.TOLERANCE


def test_gradcheck_command_fails_loudly_on_a_wrong_gradient(capsys) -> None:
    assert gradcheck_cli.main(["--quick", "--wrong", "activation"]) == 1
    captured = capsys.readouterr()
    assert "GRADIENT CHECK FAILED" in captured.err
    assert "FAIL" in captured.out


def test_gradcheck_command_passes_and_prints_tables(capsys) -> None:
    assert gradcheck_cli.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "gradient check passed" in out
    rows = [line for line in out.splitlines()
            if line.endswith("| ok") and not line.startswith("variant")]
    assert len(rows) == 1
    assert out.count(" ok\n") >= 1 + len(ACTIVATIONS)
    assert "after -lr*g" in out and "after +lr*g" in out


def test_step_sizes_fall_then_overshoot_and_ascent_rises(toy: gradcheck.Problem) -> None:
    loss, gnorm, rows = gradcheck.step_sizes(toy, Config())
    assert gnorm > 0
    small = rows[0]
    # First-order Taylor: L(p - lr g) = L - lr |g|^2 + O(lr^2). At lr = 1e-3 the second-order
    # term is ~lr * curvature ~ 1e-3 of the first: the fall matches the prediction within 1%.
    assert small.descent < 0 < small.ascent
    assert small.descent / small.predicted == pytest.approx(1.0, abs=1e-2)
    best = min(rows, key=lambda r: r.descent)
    assert best.lr > small.lr, "a larger step should fall further at first"
    assert rows[-1].descent > 0, "lr=100 should overshoot past the starting loss"
    assert all(r.ascent > 0 for r in rows), "a step along the gradient must raise the loss"
    text = " ".join(gradcheck.describe_steps(loss, rows))
    assert "overshoots" in text


def test_float64_does_not_leak(toy: gradcheck.Problem) -> None:
    gradcheck.check_variant(toy, Config())
    assert jnp.zeros(1).dtype == jnp.float32
