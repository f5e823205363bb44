"""Dropout: training only, inverted, drawn from each step's own key, its rate a traced value.

What is checked: a rate of 0 (no dropout code in the program, and rate 0 through the dropout
code) trains bitwise the parameters of a configuration without dropout; the share of zeroed
entries and the preserved mean (binomial bounds below); jit equals eager; a resumed run equals an
uninterrupted one bitwise; two rates of a sweep share one compiled program, each run trains as
the same configuration alone and is evaluated with every unit; bad rates are refused in one line.

Statistical bounds. A mask zeroes each of n entries independently with probability p, so the
number of zeros is Binomial(n, p): it is accepted within 4 standard deviations, sqrt(n p (1-p)),
of n p (a false alarm about once in 16,000 draws; the keys are fixed, so a passing test passes
every time). The mean of n dropped-out ones has standard deviation sqrt(p / ((1-p) n)); it is
accepted within 4 of them of 1.

Tolerances. jit and eager do the same float32 arithmetic in another fusion order: as in
test_train.py, within 1e-4 of each tensor's scale after a few steps. A sweep's vmapped runs
against the same epochs run alone: test_sweep.py's measured rounding, rtol 1e-5 on losses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import checkpoint, data, loop, sweep, train
from jaxmlp.config import Config, ConfigError, validate
from jaxmlp.losses import Batch
from jaxmlp.model import Dropout, dropout, forward, init_mlp
from jaxmlp.rundir import CHECKPOINT

SIGMAS = 4.0
SMALL = dict(dataset="mnist", hidden=(24,), batch_size=50, epochs=2, train_subset=200,
             optimizer="sgd", learning_rate=0.1, schedule="constant")


@pytest.fixture(scope="module")
def sample(mnist_sample_dir: Path) -> data.Dataset:
    return data.load_dataset("mnist", data_dir=mnist_sample_dir, source="local", progress=False)


@pytest.fixture(scope="module")
def base(mnist_sample_dir: Path) -> Config:
    return Config(data_dir=str(mnist_sample_dir), **SMALL)


@pytest.fixture(scope="module")
def dropped(base: Config) -> Config:
    """The dropout configuration most tests train: both kinds of dropout in the program."""
    return dataclasses.replace(base, dropout=0.5, input_dropout=0.2)


class Epochs(NamedTuple):
    """Seed 0 of `dropped`, ready to train epoch by epoch with one compiled epoch."""

    dev: loop.DeviceData
    hyper: loop.Hyper
    state: loop.TrainState
    data_key: jax.Array
    tx: Any
    epoch: Any  # the jitted `loop.make_epoch(dropped, tx)`

    def keys(self, n: int) -> list[jax.Array]:
        return [jax.random.fold_in(self.data_key, e) for e in range(n)]

    def train(self, epoch: Any = None, **rates: float) -> tuple[loop.TrainState, list]:
        """Two epochs from the initial state, with `rates` replacing the Hyper's rates."""
        hyper = self.hyper._replace(**{k: np.float32(v) for k, v in rates.items()})
        state, metrics = self.state, []
        for k in self.keys(2):
            state, m = (epoch or self.epoch)(state, self.dev, hyper, k)
            metrics.append(m)
        return state, metrics


@pytest.fixture(scope="module")
def epochs(dropped: Config, sample: data.Dataset) -> Epochs:
    dev = loop.device_data(sample, dropped)
    hyper = loop.hyper_from_config(dropped, np.asarray(dev.x_train))
    state, data_key, tx = loop.initial_state(jax.random.key(dropped.seed), dropped, dev, hyper)
    return Epochs(dev, hyper, state, data_key, tx, jax.jit(loop.make_epoch(dropped, tx)))


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _assert_bitwise(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _zeros_bound(n: int, p: float) -> float:
    return SIGMAS * float(np.sqrt(n * p * (1 - p)))


# --- rate 0: the parameters of a run without dropout -------------------------------------------


def test_no_dropout_program_draws_no_random_bits(base: Config, epochs: Epochs) -> None:
    """Rate 0 (the default) compiles no dropout code: the epoch has the one random draw it always
    had (the shuffle), and shares its program with every configuration that predates dropout."""

    def draws(config: Config) -> int:
        jaxpr = jax.make_jaxpr(loop.make_epoch(config, epochs.tx))(
            epochs.state, epochs.dev, epochs.hyper, jax.random.key(1))
        return str(jaxpr).count("random_bits")

    assert draws(base) == 1  # the epoch's shuffle
    assert draws(dataclasses.replace(base, dropout=0.3)) > 1
    assert draws(dataclasses.replace(base, input_dropout=0.3)) > 1
    key = sweep.structural_key
    assert key(dataclasses.replace(base, dropout=0.0)) == key(base)
    assert key(dataclasses.replace(base, dropout=0.2)) == key(dataclasses.replace(base,
                                                                                  dropout=0.5))
    assert key(dataclasses.replace(base, dropout=0.2)) != key(base)


@pytest.mark.xla_defaults
def test_rate_zero_through_the_dropout_code_is_bitwise_no_dropout(
        base: Config, epochs: Epochs) -> None:
    """The dropout program at a traced rate of 0 keeps every entry and divides by exactly 1:
    every parameter and loss is bitwise that of the program without dropout (the one every
    configuration without dropout compiles). A rate above 0 does change them."""
    plain, m_plain = epochs.train(jax.jit(loop.make_epoch(base, epochs.tx)))
    zero, m_zero = epochs.train(dropout=0.0, input_dropout=0.0)
    _assert_bitwise(plain, zero)
    _assert_bitwise(m_plain, m_zero)
    trained, _ = epochs.train()
    assert not np.array_equal(_leaves(trained.params)[0], _leaves(plain.params)[0])


# --- the masks --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_fraction_of_zeros_is_the_rate(rate: float) -> None:
    n = 200_000
    out = jax.jit(dropout)(jax.random.key(7), jnp.ones((n,)), jnp.float32(rate))
    zeros = int(jnp.sum(out == 0))
    assert abs(zeros - n * rate) <= _zeros_bound(n, rate), (zeros, n * rate)
    # Survivors are scaled by 1 / (1 - rate), exactly as float32 computes it.
    kept = np.asarray(out[out != 0])
    np.testing.assert_array_equal(kept, np.float32(1) / (np.float32(1) - np.float32(rate)))


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_inverted_scaling_preserves_the_mean(rate: float) -> None:
    n = 1_000_000
    out = dropout(jax.random.key(3), jnp.ones((n,)), rate)
    bound = SIGMAS * np.sqrt(rate / ((1 - rate) * n))
    assert abs(float(jnp.mean(out)) - 1.0) <= bound


def test_each_layer_and_each_step_gets_its_own_mask(sample: data.Dataset) -> None:
    """In the training forward pass: hidden units are zeroed at the rate (among those relu left
    on) and the rest scaled by 1/(1-p); inputs likewise with their own rate; other keys (another
    step: fold_in(epoch key, i)) draw other masks."""
    p, q = 0.4, 0.25
    epoch_key = jax.random.key(11)

    @jax.jit  # one program: op by op, each operation would compile on its own
    def layer_one(x: jax.Array) -> tuple[jax.Array, ...]:
        params = init_mlp(jax.random.key(0), [784, 256, 10])
        hidden = [forward(params, x, "relu",
                          Dropout(jax.random.fold_in(epoch_key, i), None, p)).post[0]
                  for i in range(2)]
        first = forward(params, x, "relu", Dropout(epoch_key, q, None)).post[0]
        pixels = dropout(jax.random.fold_in(epoch_key, 0), x, q)
        by_hand = jax.nn.relu(pixels @ params[0]["w"] + params[0]["b"])
        return forward(params, x, "relu").post[0], *hidden, first, pixels, by_hand

    x = jnp.asarray(data.flatten(sample.x_train[:500]), jnp.float32) / 255
    plain, *acts, first, pixels, by_hand = map(np.asarray, layer_one(x))
    on = plain > 0
    for a in acts:
        dropped = on & (a == 0)
        assert abs(dropped.sum() - on.sum() * p) <= _zeros_bound(on.sum(), p)
        np.testing.assert_allclose(a[on & ~dropped], plain[on & ~dropped] / (1 - p), rtol=1e-6)
    assert not np.array_equal(acts[0] == 0, acts[1] == 0)
    # Input dropout: a share of the (nonzero) pixels is dropped before the first layer, with
    # the key fold_in(step key, 0).
    np.testing.assert_allclose(first, by_hand, rtol=1e-5, atol=1e-5)
    nonzero = np.asarray(x) > 0
    lost = nonzero & (pixels == 0)
    assert abs(lost.sum() - nonzero.sum() * q) <= _zeros_bound(nonzero.sum(), q)


# --- jit, resume ------------------------------------------------------------------------------


def test_dropout_epoch_jit_equals_eager(dropped: Config, epochs: Epochs) -> None:
    """The jitted epoch (one XLA program: shuffle, then a scan of steps) against the same epoch
    written out in Python, step by step, each step run eagerly (op by op) with the key the
    epoch derives for it, fold_in(epoch key, i): the same masks, so the same training."""
    dev, hyper = epochs.dev, epochs.hyper
    key = epochs.keys(1)[0]
    s_jit, m_jit = epochs.epoch(epochs.state, dev, hyper, key)
    step = loop.make_step(dropped, epochs.tx)
    s_eager, losses = epochs.state, []
    for i, idx in enumerate(loop.epoch_order(key, dev.x_train.shape[0], dropped.batch_size)):
        batch = Batch(loop.scale_inputs(dev.x_train[idx], hyper), dev.y_train[idx])
        s_eager, out = step(s_eager, batch, hyper, i, jax.random.fold_in(key, i))
        losses.append(float(out.loss))
    assert len(losses) == 4
    for a, b in zip(_leaves(s_jit.params), _leaves(s_eager.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.max(np.abs(b))))
    np.testing.assert_allclose(m_jit.step_loss, losses, rtol=1e-4)
    # Without the step's own key there are no masks to draw: said, not silently skipped.
    with pytest.raises(ConfigError, match="own key"):
        step(epochs.state, batch, hyper, 0)


def test_resume_reaches_the_same_parameters(epochs: Epochs, tmp_path: Path) -> None:
    """Three epochs straight, against one epoch, a checkpoint written and read back into fresh
    parameters (as `--resume` does), then the other two: bitwise the same. Each step's masks
    come from its epoch's number and its own, never from how many steps ran before."""
    keys = epochs.keys(3)
    args = (epochs.dev, epochs.hyper)
    full = epochs.state
    for k in keys:
        full, _ = epochs.epoch(full, *args, k)
    cut, _ = epochs.epoch(epochs.state, *args, keys[0])
    checkpoint.save(tmp_path / CHECKPOINT, cut, {"epoch": 1})
    resumed, meta = checkpoint.load(tmp_path / CHECKPOINT, epochs.state)
    assert meta["epoch"] == 1
    for k in keys[meta["epoch"]:]:
        resumed, _ = epochs.epoch(resumed, *args, k)
    _assert_bitwise(full, resumed)


# --- sweeps: the rate is traced ---------------------------------------------------------------


def test_a_sweep_over_two_rates_compiles_one_program(dropped: Config, epochs: Epochs,
                                                     compiled: list[str], tmp_path: Path
                                                     ) -> None:
    """Rates 0.2 and 0.6 train as one compiled program (counted by JAX's compilation events);
    each run trains as its configuration alone (its rate reached its masks), and its test
    metrics are those of the whole network, no unit dropped (`loop.make_evaluate`)."""
    spec = sweep.make_spec(dropped, {"dropout": [0.2, 0.6]}, seeds=1)
    # XLA's fast CPU compilation: a third of the compile time; rounding only differs.
    result = sweep.run_sweep(spec, tmp_path, progress=False, plots=False,
                             compile_mode="fast")
    assert result.record["num_groups"] == 1
    assert len([n for n in compiled if n == "jit(train_runs)"]) == 1
    evaluate = jax.jit(loop.make_evaluate(dropped))
    dev = epochs.dev
    for r in result.runs:
        got = result.results[r.index]
        state, metrics = epochs.train(dropout=r.config.dropout)
        np.testing.assert_allclose(got["train_loss"], [m.train_loss for m in metrics], rtol=1e-5)
        test_loss, _ = evaluate(state.params, dev.x_test, dev.y_test, epochs.hyper)
        np.testing.assert_allclose(got["test_loss"][-1], test_loss, rtol=1e-5)
        # The same parameters with a dropout mask on the test images score visibly otherwise.
        x = loop.scale_inputs(dev.x_test, epochs.hyper)
        drop = Dropout(jax.random.key(0), None, np.float32(r.config.dropout))
        logits = forward(state.params, x, dropped.activation, drop).logits
        masked = jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(len(x)), dev.y_test])
        assert abs(float(masked) / float(test_loss) - 1) > 1e-3
    losses = {float(r["train_loss"][-1]) for r in result.results}
    assert len(losses) == 2  # the rates really differ


# --- refused settings -------------------------------------------------------------------------


@pytest.mark.parametrize("flag,value", [("dropout", 1.0), ("dropout", -0.1),
                                        ("input_dropout", float("nan")), ("dropout", "x")])
def test_bad_rates_are_refused(flag: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"--{flag.replace('_', '-')} must be a probability"):
        validate(Config(**{flag: value}))


def test_dropout_without_hidden_layers_is_refused() -> None:
    with pytest.raises(ConfigError, match="--hidden gives none"):
        validate(Config(hidden=(), dropout=0.5))
    validate(Config(hidden=(), input_dropout=0.5))  # the inputs can still be dropped


def test_command_line_errors_are_one_line(capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAXMLP_NO_COMPILE_CACHE", "1")  # main would switch it on for the process
    with pytest.raises(SystemExit) as e:
        train.main(["--dropout", "1", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--dropout must be a probability" in err and "\n" not in err


def test_overfit_with_dropout_is_one_line(mnist_sample_dir: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """--overfit steps without a key, so it cannot draw masks: said, not silently ignored."""
    with pytest.raises(SystemExit) as e:
        train.main(["--overfit", "10", "--dropout", "0.5", "--dataset", "mnist", "--data-dir",
                    str(mnist_sample_dir), "--hidden", "8", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "drop the dropout settings" in err and "\n" not in err
