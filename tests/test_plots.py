"""Pictures that read: every kind drawn at its largest size has no two text boxes overlapping,
nothing outside the figure and no legend over data; line labels are placed apart; a loss at or
below 0 stays on its axis; numbers in titles carry the digits that tell them apart; the
gradient picture's "at the end" is the last steps; `python -m jaxmlp.plots` finds its data."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _experiments import load
from _pictures import drawn_texts, layout_problems

from jaxmlp import data, losses
from jaxmlp.config import Config, dataset_defaults
from jaxmlp.loop import hyper_from_config
from jaxmlp.model import init_mlp
from jaxmlp.plots import layout, plane
from jaxmlp.plots import run as run_plots
from jaxmlp.plots import sweep as sweep_plots
from jaxmlp.sweep.tables import panels_by

# --- what the experiments and runs draw, at their largest -------------------------------------

RNG = np.random.default_rng(0)


def _curves(n: int, seeds: int = 5, epochs: int = 3, low: float = 0.1) -> list[np.ndarray]:
    """`n` (seeds, epochs) arrays of positive values that fall with the epochs."""
    return [np.abs(RNG.normal(1.0, 0.3, (seeds, epochs))) * np.geomspace(2, low, epochs)
            for _ in range(n)]


def _accuracies(n: int, seeds: int = 5, epochs: int = 3) -> list[np.ndarray]:
    return [np.clip(RNG.normal(0.85, 0.05, (seeds, epochs)), 0, 1) for _ in range(n)]


def lr_grid() -> tuple[list[str], list[str]]:
    """sweep_lr's default grid: 2 optimizers x 13 learning rates, names and panel labels."""
    lrs = [float(f"{x:.3g}") for x in np.logspace(-5, 1, 13)]
    names = [f"{o} lr {lr:g}" for o in ("sgd", "adam") for lr in lrs]
    overrides = [(("optimizer", o), ("learning_rate", lr)) for o in ("sgd", "adam") for lr in lrs]
    return names, panels_by(overrides)


def reduction_grid() -> list[str]:
    """sweep_reduction's main grid: 16 variants in one panel, the longest names."""
    return [f"{loss}, examples {e}, classes {c}, inputs {i}" for loss in ("CE", "MSE")
            for e in ("mean", "sum") for c in ("sum", "mean") for i in ("0..1", "0..255")]


def curves_lr() -> Any:
    names, panels = lr_grid()
    return sweep_plots.curves_figure(names, _curves(26), _accuracies(26),
                                     "Learning-rate sweep: SGD and Adam", panels)


def curves_reduction() -> Any:
    names = reduction_grid()
    loss = _curves(16)
    loss[5] = -loss[5] * 10  # raw outputs under -log: the loss goes negative
    return sweep_plots.curves_figure(names, loss, _accuracies(16),
                                     "Reductions x inputs x loss (SGD)")


def final_lr() -> Any:
    names, _ = lr_grid()
    return sweep_plots.final_figure(names, [a[:, -1] for a in _accuracies(26)],
                                    "Learning-rate sweep: SGD and Adam")


def metric_many() -> Any:
    series = {f"{a}, {i}": [RNG.uniform(0, 1, 5) for _ in range(4)]
              for a in ("relu", "tanh") for i in ("he", "glorot", "lecun", "normal")}
    return sweep_plots.metric_figure(
        [0.01, 0.1, 1.0, 10.0], series, xlabel="init scale (normal: the std itself)",
        ylabel="dead/saturated units after training (mean, 95% CI)",
        title="Initialisation scale and scheme")


def metric_few() -> Any:
    series = {net: [RNG.integers(5, 500, 5).astype(float) for _ in range(3)]
              for net in ("784-16-10", "784-128-10", "784-512-512-10")}
    return sweep_plots.metric_figure(
        [10, 100, 1000], series, xlabel="training images",
        ylabel="updates to 100% training accuracy", title="Updates to memorise the training set",
        logy=True, center="median")


def _rows(layers: int = 7, epochs: int = 3, steps: int = 469, every: int = 4,
          blowup: bool = True) -> list[dict]:
    """Diagnostics rows as jaxmlp.diagnostics writes them (the fields the picture reads)."""
    shapes = [[784, 64]] + [[64, 64]] * (layers - 2) + [[64, 10]]
    rows = [{"epoch": 0, "steps": 0, "norm_every": None, "step_grad_norm": [],
             "first_nonfinite": None,
             "layers": [{"shape": s, "grad_norm": 10.0 ** -i} for i, s in enumerate(shapes)]}]
    for e in range(1, epochs + 1):
        measured = RNG.lognormal(0, 1, (steps // every, layers)) * 10.0 ** -np.arange(layers)
        rows.append({"epoch": e, "steps": steps, "norm_every": every,
                     "step_grad_norm": measured.tolist(), "first_nonfinite": None,
                     "layers": [{"shape": s, "grad_norm": float(measured[:, i].mean())}
                                for i, s in enumerate(shapes)]})
    if blowup:
        rows[-1]["first_nonfinite"] = {"quantity": "gradient", "layer": 1, "step": 200}
    return rows


VERDICT = ("at initialisation, the gradient norm of layer 1 was 2e-10 of layer 7's (7.1e-11 vs "
           "3.7e-01): vanishing gradients; each layer's backward pass multiplies the gradient")


def _history(epochs: int = 50, steps: int = 60) -> list[dict]:
    out = []
    for e in range(1, epochs + 1):
        step_loss = list(np.geomspace(2.0, 0.05, epochs * steps)[(e - 1) * steps:e * steps]
                         - 0.5 * (e > epochs // 2))  # crosses 0: raw outputs under -log
        out.append({"epoch": e, "train_loss": float(np.mean(step_loss)), "test_loss": 0.3,
                    "train_accuracy": 0.5 + e / (2 * epochs), "test_accuracy": 0.9,
                    "step_loss": step_loss})
    return out


@pytest.fixture(scope="module")
def spirals() -> tuple[Config, Any, Any, data.Dataset]:
    """The plane pictures' inputs: spirals (3 classes) with its own defaults and a network of
    32 first-layer units, at its initial parameters."""
    dataset = data.load_dataset("spirals")
    config, _ = dataset_defaults(Config(dataset="spirals", hidden=(32, 16)))
    params = init_mlp(jax.random.key(0), [2, *config.hidden, dataset.num_classes])
    return config, params, hyper_from_config(config, dataset.x_train), dataset


def _plane(kind: str) -> Callable[[tuple], Any]:
    def draw(s: tuple) -> Any:
        config, params, hyper, dataset = s
        if kind == "boundary":
            y_pred = plane.predict_points(config, params, hyper, dataset.x_test)
            return plane.decision_boundary_figure(config, params, hyper, dataset, y_pred)
        if kind in ("epochs", "two epochs"):
            epochs = config.epochs if kind == "epochs" else 1
            snapshots = dict.fromkeys(plane.strip_epochs(epochs), params)
            return plane.boundary_epochs_figure(config, snapshots, hyper, dataset)
        units = 32 if kind == "units" else 3  # the most drawn, and a narrow figure
        return plane.first_layer_units_figure(config, params, hyper, dataset, units)[0]
    return draw


def _misclassified(mnist_sample_dir: Any) -> Any:
    ds = data.load_dataset("mnist", data_dir=mnist_sample_dir, progress=False)
    wrong = (np.asarray(ds.y_test) + 1) % 10
    return run_plots.misclassified_figure(np.asarray(ds.x_test), ds.y_test, wrong)[0]


def _permuted_digits(mnist_sample_dir: Any) -> Any:
    ds = data.load_dataset("mnist", data_dir=mnist_sample_dir, progress=False)
    pixels = load("sweep_pixels")
    shown = pixels.SHOWN
    return pixels.picture_figure(ds.x_test[:shown], ds.y_test[:shown], 1)


def curves_rescaled() -> Any:
    """sweep_reduction's sgd_rescaled control: class-mean and class-sum on one stated scale."""
    configs = [Config(), Config(example_reduction="sum"), Config(class_reduction="mean")]
    _, label = sweep_plots.loss_on_one_scale(configs, [10] * 3)
    return sweep_plots.curves_figure(
        ["SGD examples mean, lr 0.1", "SGD examples sum, lr 0.1/64", "SGD classes mean, lr 0.1*10"],
        _curves(3), _accuracies(3), "Control 1: SGD, rescaled learning rates", None, label)


PICTURES: dict[str, Callable[..., Any]] = {
    "sweep curves, 13 panels": lambda **_: curves_lr(),
    "sweep curves, 16 lines and a negative loss": lambda **_: curves_reduction(),
    "sweep curves, losses on one stated scale": lambda **_: curves_rescaled(),
    "sweep final accuracy, 26 variants": lambda **_: final_lr(),
    "metric vs setting, 8 panels": lambda **_: metric_many(),
    "metric vs setting, one panel, median": lambda **_: metric_few(),
    "learning curves, 50 epochs": lambda **_: run_plots.learning_curves_figure(_history()),
    "gradient norms, 7 layers, report's finding": lambda **_: run_plots.gradient_norms_figure(
        _rows(), VERDICT),
    "gradient norms, 7 layers, ratio at the end": lambda **_: run_plots.gradient_norms_figure(
        _rows(blowup=False)),
    "confusion matrix, 10 classes": lambda **_: run_plots.confusion_figure(
        RNG.integers(0, 10, 10_000), RNG.integers(0, 10, 10_000)),
    "misclassified, 36 images": lambda mnist_sample_dir, **_: _misclassified(mnist_sample_dir),
    "overfit curves": lambda **_: run_plots.overfit_figure(
        list(np.geomspace(10, 1e-4, 1000) - 1e-3), list(np.linspace(0.1, 1, 1000)),
        "--overfit 1000 (mnist): reached 100% after 1000 steps; " * 3),
    "decision boundary, 3 classes": lambda spirals, **_: _plane("boundary")(spirals),
    "decision boundary epochs, 6 panels": lambda spirals, **_: _plane("epochs")(spirals),
    "decision boundary epochs, 2 panels": lambda spirals, **_: _plane("two epochs")(spirals),
    "first-layer units, 32": lambda spirals, **_: _plane("units")(spirals),
    "first-layer units, 3": lambda spirals, **_: _plane("few units")(spirals),
    "sweep_pixels: permuted digits": lambda mnist_sample_dir, **_: _permuted_digits(
        mnist_sample_dir),
}


@pytest.mark.parametrize("kind", list(PICTURES))
def test_every_picture_reads(kind: str, spirals: tuple, mnist_sample_dir: Any) -> None:
    """No two drawn text boxes overlap, none leaves the figure, no legend lies over data, and
    drawing warns of nothing (matplotlib's "Tight layout not applied" among others)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = PICTURES[kind](spirals=spirals, mnist_sample_dir=mnist_sample_dir)
        problems = layout_problems(fig)
    assert problems == [], kind
    if kind.startswith("sweep"):
        width = fig.get_figwidth() * sweep_plots.DPI
        assert width <= sweep_plots.MAX_WIDTH_PX, (kind, width)
