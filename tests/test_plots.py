"""Pictures that read: every kind drawn at its largest size has no two text boxes overlapping,
nothing outside the figure and no legend over data; line labels are placed apart; a loss at or
below 0 stays on its axis; numbers in titles carry the digits that tell them apart; the
gradient picture's "at the end" is the last steps; `python -m jaxmlp.plots` finds its data."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _experiments import load
from _http import closed_port_url
from _pictures import drawn_texts, layout_problems

from jaxmlp import data, losses, runner
from jaxmlp.config import Config, dataset_defaults
from jaxmlp.data import lookup
from jaxmlp.loop import hyper_from_config
from jaxmlp.model import init_mlp
from jaxmlp.plots import cli as plots_cli
from jaxmlp.plots import layout, plane
from jaxmlp.plots import run as run_plots
from jaxmlp.plots import sweep as sweep_plots
from jaxmlp.plots.backend import figure, pyplot
from jaxmlp.sweep.tables import panels_by, panels_in_order


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    """Figures built here are measured, not saved (saving closes them): close them after each
    test, or matplotlib warns of many open figures (an error where warnings are errors)."""
    yield
    pyplot().close("all")


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


def raw_lr_grid() -> tuple[list[str], list[Any]]:
    """sweep_reduction's raw-input control: scaled inputs at lr 0.1, then raw inputs at 15
    learning rates (0.1/255 and 0.1/255**2 among them), names and overrides."""
    lrs = [0.1, 0.0316, 0.01, 0.00316, 0.001, 0.1 / 255, 0.000316, 0.0001, 3.16e-05, 1e-05,
           3.16e-06, 0.1 / 255**2, 1e-06, 3.16e-07, 1e-07]
    names = ["inputs 0..1, lr 0.1"] + [f"inputs 0..255, lr {lr:.3g}" for lr in lrs]
    overrides = [(("learning_rate", 0.1),)] + [
        (("input_scale", "raw"), ("learning_rate", lr)) for lr in lrs]
    return names, overrides


def curves_raw_lr() -> Any:
    names, overrides = raw_lr_grid()
    return sweep_plots.curves_figure(names, _curves(16, low=100.0), _accuracies(16),
                                     "Control 3: raw inputs, which learning rate?",
                                     panels_by(overrides))


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
    "sweep curves, 16 learning rates in 3 panels": lambda **_: curves_raw_lr(),
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


# --- the placement arithmetic ---------------------------------------------------------------


def test_spread_keeps_labels_apart_in_order_and_in_bounds() -> None:
    targets = [5.0, 5.2, 5.1, 30.0, 4.9, 100.0]
    ys = layout.spread(targets, gap=3.0, low=0.0, high=40.0)
    order = np.argsort(targets, kind="stable")
    placed = np.asarray(ys)[order]
    assert np.all(np.diff(placed) >= 3.0 - 1e-9)  # float rounding of the sums only
    assert placed[0] >= 0.0 and placed[-1] <= 40.0
    # Labels already far enough apart stay where they are.
    assert layout.spread([1.0, 10.0, 20.0], 3.0, 0.0, 40.0) == [1.0, 10.0, 20.0]
    # Three labels that want one height share it out evenly around it (least squares).
    assert layout.spread([10.0, 10.0, 10.0], 2.0, 0.0, 40.0) == pytest.approx([8, 10, 12])
    # No room: None, so the caller falls back to a legend.
    assert layout.spread([1.0] * 5, 3.0, 0.0, 11.0) is None


def test_spread_is_the_least_squares_placement() -> None:
    """Against every placement on a fine grid: none that keeps the gaps is nearer the targets."""
    targets, gap = [2.0, 2.5, 6.0], 2.0
    best = np.sum((np.asarray(layout.spread(targets, gap, 0.0, 8.0)) - targets) ** 2)
    grid = np.arange(0.0, 8.01, 0.25)
    for a in grid:
        for b in grid[grid >= a + gap]:
            for c in grid[grid >= b + gap]:
                assert np.sum((np.asarray([a, b, c]) - targets) ** 2) >= best - 1e-9


def test_numbers_carry_the_digits_that_tell_them_apart() -> None:
    assert layout.distinct_numbers([0.1, 0.1 / 255, 0.1 / 255**2]) == ["0.1", "0.00039",
                                                                        "1.5e-06"]
    assert layout.distinct_numbers([0.000392157, 0.000390625]) == ["0.000392", "0.000391"]
    assert layout.distinct_numbers([1.0, 1.0, 2.0]) == ["1", "1", "2"]


def test_panel_titles_round_numbers_to_what_tells_them_apart() -> None:
    """Five init scales at four learning rates (0.1/255 was titled
    learning_rate=0.000392157): a panel per learning rate, five lines each."""
    lrs = [0.1, 0.01, 0.1 / 255, 0.1 / 255**2]
    overrides = [(("init_scale", i), ("learning_rate", lr)) for i in (0.25, 0.5, 1.0, 2.0, 4.0)
                 for lr in lrs]
    titles = panels_by(overrides)
    assert titles is not None and len(set(titles)) == 4
    assert "learning_rate=0.00039" in titles and "learning_rate=1.5e-06" in titles
    assert all(len(t) <= len("learning_rate=1.5e-06") for t in titles), titles


def test_a_sweep_of_one_setting_shares_panels_in_order() -> None:
    """sweep_reduction's raw-input control (16 variants, 15 learning rates) was 15 panels of
    one line each: now 3 panels of 6, 5 and 5 consecutive variants, each titled by the
    learning rates it holds, first to last, rounded to the digits that tell them apart.
    sweep_lr's grid (2 optimizers x 13 rates, two lines a panel) keeps a panel per rate."""
    _, overrides = raw_lr_grid()
    titles = panels_by(overrides)
    assert titles is not None
    groups = list(dict.fromkeys(titles))
    assert groups == ["learning_rate 0.1 … 0.001", "learning_rate 0.00039 … 1e-05",
                      "learning_rate 3.2e-06 … 1e-07"]
    assert [titles.count(g) for g in groups] == [6, 5, 5]
    assert titles == sorted(titles, key=groups.index)  # consecutive variants
    _, lr_titles = lr_grid()
    assert lr_titles is not None and len(set(lr_titles)) == 13
    # Panels whose titles would read the same stay apart.
    same = panels_in_order([(("learning_rate", 0.1),)] * 14)
    assert list(dict.fromkeys(same)) == ["learning_rate=0.1", "learning_rate=0.1 (2/3)",
                                         "learning_rate=0.1 (3/3)"]


# --- what the pictures say ------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["raw_lr", "reduction"])
def test_labels_placed_after_the_layout_alone_draw_the_same_pixels(
        grid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`place_labels` runs the figure's layout engine alone where it drew the whole figure
    (`draw_without_rendering`) to learn where each axes is: the saved pixels must be the
    same, byte for byte, on the 3-panel and the 16-line pictures."""
    names, overrides = raw_lr_grid() if grid == "raw_lr" else (reduction_grid(), None)
    loss, acc = _curves(len(names)), _accuracies(len(names))  # the same data for both
    panels = panels_by(overrides) if overrides else None

    def pixels() -> np.ndarray:
        fig = sweep_plots.curves_figure(names, loss, acc, grid, panels)
        fig.canvas.draw()
        out = np.asarray(fig.canvas.buffer_rgba()).copy()
        pyplot().close(fig)
        return out

    fast = pixels()
    monkeypatch.setattr(layout, "_lay_out", lambda fig: fig.draw_without_rendering())
    plain = pixels()
    assert fast.shape == plain.shape and np.array_equal(fast, plain)


def test_a_loss_at_or_below_zero_stays_on_its_axis() -> None:
    """`--output none` with cross-entropy: the loss goes negative and fell off the log axis."""
    loss = _curves(3)
    loss[1] = -np.abs(loss[1]) * 20
    fig = sweep_plots.curves_figure(["softmax + CE", "none + CE", "sum-normalize + CE"], loss,
                                    _accuracies(3), "Outputs x error x targets")
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog" and "symlog" in fig.get_suptitle()
    low, high = ax.get_ylim()
    for line in ax.lines:
        y = np.asarray(line.get_ydata(), float)
        assert np.all((y[np.isfinite(y)] >= low) & (y[np.isfinite(y)] <= high))
    drawn = {s for s, _ in drawn_texts(fig)}
    assert "none + CE" in drawn  # its name is drawn too
    assert len({a.get_xlim() for a in fig.axes}) == 1  # the panels share their epochs
    # A loss that stays above 0 keeps its log axis.
    assert layout.loss_scale([2.3, 0.1, 0.05])[0] == "log"
    assert layout.loss_scale([2.3, -0.5])[0] == "symlog"


def test_losses_of_class_mean_and_class_sum_runs_on_one_scale() -> None:
    """The same parameters give a class-mean loss K times below the class-sum loss; the factor
    the picture applies puts them level, as the label says."""
    configs = [Config(class_reduction="sum"), Config(class_reduction="mean"),
               Config(class_reduction="mean", error="mse")]
    factors, label = sweep_plots.loss_on_one_scale(configs, [10, 10, 10])
    logits = jax.random.normal(jax.random.key(1), (64, 10))
    labels = jax.random.randint(jax.random.key(2), (64,), 0, 10)
    summed = float(jnp.mean(losses.per_example_loss(logits, labels, configs[0])))
    averaged = float(jnp.mean(losses.per_example_loss(logits, labels, configs[1])))
    assert averaged * factors[1] == pytest.approx(summed, rel=1e-6)  # float32 sums
    assert factors[0] == 1.0 and "summed over classes" in label and "x10" in label
    same = [Config(), Config(example_reduction="sum")]
    assert sweep_plots.loss_on_one_scale(same, [10, 10]) == ([1.0, 1.0],
                                                              sweep_plots.LOSS_LABEL)


def test_the_gradient_title_ratio_is_taken_at_the_end() -> None:
    """`--overfit 5` at lr 1: a huge first step, then layer 1's norm ~1e-6 of the last's. The
    ratio "at the end" is the last steps', not a mean the first step dominates."""
    steps = 500
    norms = np.tile([1e-11, 1e-8, 1e-5], (steps, 1))
    norms[0] = [5758.0, 4464.0, 4421.0]
    rows = [{"epoch": 0, "steps": 0, "norm_every": None, "step_grad_norm": [],
             "layers": [{"shape": [784, 512], "grad_norm": 5758.0}, {"shape": [512, 512]},
                        {"shape": [512, 10], "grad_norm": 4421.0}]},
            {"epoch": 1, "steps": 4 * steps, "norm_every": 4, "step_grad_norm": norms.tolist(),
             "layers": [{"shape": [784, 512], "grad_norm": float(norms[:, 0].mean())},
                        {"shape": [512, 512]},
                        {"shape": [512, 10], "grad_norm": float(norms[:, 2].mean())}]}]
    ratio, span = run_plots.end_ratio(rows)
    assert ratio == pytest.approx(1e-6)
    assert span == f"the last {run_plots.END_STEPS} measured steps, 1961-1997"
    assert rows[1]["layers"][0]["grad_norm"] / rows[1]["layers"][2]["grad_norm"] > 1  # the mean
    fig = run_plots.gradient_norms_figure(rows)
    assert "1e-06x" in fig.axes[0].get_title() and "1961-1997" in fig.axes[0].get_title()


def test_the_strip_of_epochs_says_which_colour_is_which_class(spirals: tuple) -> None:
    fig = _plane("epochs")(spirals)
    names = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert names == {f"class {k} points" for k in range(3)} | {f"predicted {k}" for k in range(3)}


def test_small_multiples_name_their_axes_once() -> None:
    """sweep_init's dead_units.png printed its y label once per row, over itself."""
    fig = metric_many()
    texts = [s for s, _ in drawn_texts(fig)]
    assert texts.count("dead/saturated units after training (mean, 95% CI)") == 1
    assert texts.count("init scale (normal: the std itself)") == 1


# --- python -m jaxmlp.plots RUN_DIR: the data set from the folder ----------------------------


@pytest.fixture()
def nowhere_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No place but a named folder holds MNIST: no JAXMLP_DATA_DIR, an empty cache, no system
    copy, no tensorflow-datasets copy, and a mirror that refuses at once."""
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXMLP_MIRRORS", closed_port_url())
    monkeypatch.setattr(lookup, "SYSTEM_DATA_DIR", tmp_path / "system")


def test_plots_take_the_data_from_the_run_folder(
        tmp_path: Path, mnist_sample_dir: Path, monkeypatch: pytest.MonkeyPatch,
        nowhere_else: None, capsys: pytest.CaptureFixture) -> None:
    """A run that found MNIST through JAXMLP_DATA_DIR is redrawn without it (config.json says
    where the files were); when they have moved, one line says so and --data-dir points at
    them."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(mnist_sample_dir, first)
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(first))
    out = tmp_path / "run"
    runner.run(Config(dataset="mnist", hidden=(8,), epochs=1, batch_size=100), out,
               progress=False, log=lambda s: None, plots=True)
    monkeypatch.delenv("JAXMLP_DATA_DIR")
    (out / run_plots.CONFUSION).unlink()
    assert plots_cli.main([str(out)]) == 0
    assert (out / run_plots.CONFUSION).read_bytes()[:4] == b"\x89PNG"

    first.rename(moved)
    with pytest.raises(SystemExit) as stop:
        plots_cli.main([str(out)])
    assert stop.value.code != 0
    said = capsys.readouterr().err
    assert "Could not find the mnist data set" in said and "Pass --data-dir DIR" in said
    assert "Traceback" not in said
    assert plots_cli.main([str(out), "--data-dir", str(moved)]) == 0


def test_labels_that_do_not_fit_become_a_legend_outside() -> None:
    fig = figure(4, 1.6)
    ax = fig.add_subplot()
    ends = []
    for k in range(12):
        line = ax.plot([1, 2], [0.5, 0.5 + 0.01 * k])[0]
        ends.append((f"variant {k}", line.get_color(), 2.0, 0.5 + 0.01 * k))
    crowded = layout.label_ends(ax, ends)
    assert layout.place_labels(fig, [(ax, crowded)]) == [ax]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [e[0] for e in ends]
    assert not ax.texts  # the labels made way for it
    # Two labels fit: placed, no legend.
    fig = figure(4, 1.6)
    ax = fig.add_subplot()
    ax.plot([1, 2], [0.5, 0.5])
    roomy = layout.label_ends(ax, [("a", "C0", 2.0, 0.5), ("b", "C1", 2.0, 0.5)])
    assert layout.place_labels(fig, [(ax, roomy)]) == [] and ax.get_legend() is None
    assert layout_problems(fig) == []
