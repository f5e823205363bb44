"""The classic MNIST MLP results of the literature, reproduced: each paper's network with its
training recipe as far as jaxmlp has it, and the same network with today's defaults.

Rows: LeCun et al. 1998 (Proc. IEEE, the table of Fig. 9): 784-300-10, 784-1000-10 and
784-300-100-10 trained on a mean squared error, 4.7%, 4.5% and 3.05% test error; Simard, Steinkraus
& Platt 2003: 784-800-10 with cross-entropy and no distortions, 1.6%; Srivastava et al. 2014
(JMLR, Table 2): a ReLU 784-1024-1024-1024-10 with dropout, 1.25%. Each network is trained twice:
with the paper's recipe (its loss, its kind of units, plain or momentum SGD at a constant rate)
and with jaxmlp's defaults (Adam, warmup and cosine decay, relu, softmax cross-entropy), so the
table separates what the architecture gives from what the training recipe gives.

The only setting chosen is each paper recipe's SGD learning rate, and it is chosen on a
validation split carved from the training set (the last --validation N of MNIST's 60,000 training
images, never trained on), never on the test set: the test set is only reported. Every run trains
on the first `train_subset` training images, which never overlap the validation split. The
validation sweep is written beside the output folder (OUT-validation). The recipes' other
details (standardized inputs, the squared error of softmax outputs for LeCun's rows, each row's
learning rates to choose from) were fixed in short pilot runs scored on the validation split too.

    python experiments/paper_table.py [--quick] [--out DIR] [--data-dir DIR] [--validation N]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

from jaxmlp import cli, data, stats, sweep
from jaxmlp.config import Config, ConfigError
from jaxmlp.report.base import CHANCE_MARGIN

NAME = "paper_table"
MNIST_TRAIN = 60_000


@dataclasses.dataclass(frozen=True)
class Budget:
    seeds: int
    epochs: int
    batch_size: int
    train_subset: int  # the first N training images: every run's training set
    validation: int  # the last N training images: where the learning rate is chosen
    test_subset: int | None
    rates: int  # learning rates tried per paper recipe (the middle ones of the row's list)
    rows: tuple[str, ...] | None = None  # None: every row


BUDGETS = {
    "default": Budget(seeds=4, epochs=10, batch_size=128, train_subset=50_000,
                      validation=10_000, test_subset=None, rates=4),
    "quick": Budget(seeds=2, epochs=1, batch_size=128, train_subset=2_000, validation=1_000,
                    test_subset=1_000, rates=2),
    "smoke": Budget(seeds=2, epochs=1, batch_size=100, train_subset=500, validation=500,
                    test_subset=500, rates=2, rows=("Srivastava 3x1024",)),
}

# jaxmlp's defaults, as `Config` has them (what "today's defaults" means below).
TODAY = Config()
TODAY_WORDS = (f"{TODAY.optimizer.capitalize()} at lr {TODAY.learning_rate:g}, "
               f"{TODAY.schedule.replace('_', ' + ')} schedule, {TODAY.activation}, "
               f"{TODAY.init} init, softmax cross-entropy")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str  # the variant's name, and the row's in the table
    paper: str
    network: str  # as the paper names it
    paper_error: float  # test error in %, as published
    hidden: tuple[int, ...]
    recipe: Mapping[str, Any]  # the paper's training, as far as jaxmlp has it
    recipe_words: str
    lrs: tuple[float, ...]  # SGD learning rates the validation split chooses from
    missing: str  # what of the paper's recipe is not reproduced here
    differs: str  # where the recipe here departs from the paper's (named when a row is met)
    dropout: float = 0.0
    input_dropout: float = 0.0

    @property
    def sizes(self) -> str:
        return "-".join(map(str, (784, *self.hidden, 10)))

    @property
    def dropout_words(self) -> str:
        """'' without dropout, else 'dropout 0.2 on the inputs, 0.5 on the hidden units'."""
        if not (self.dropout or self.input_dropout):
            return ""
        return f"dropout {self.input_dropout:g} on the inputs, {self.dropout:g} on the hidden units"


# LeCun et al.'s inputs were normalised to about zero mean and unit variance and their output
# units were squashing units trained on a squared error: standardized inputs and the squared
# error of softmax outputs are jaxmlp's nearest settings.
_MSE = dict(activation="tanh", init="lecun", input_scale="standardize", output="softmax",
            error="mse", optimizer="sgd", schedule="constant")
_MSE_WORDS = "tanh, standardized inputs, squared error of the softmax outputs, plain SGD"
_LECUN_MISSING = ("on-line updates (one example at a time), squashing output units and the "
                  "paper's length of training")
_LECUN_LRS = (0.1, 0.3, 1.0, 3.0)
_LECUN_DIFFERS = ("softmax outputs under the squared error where the paper had squashing output "
                  "units, and minibatches of 128 where it updated after every example")
ROWS = (
    Row("LeCun 300", "LeCun et al. 1998", "2-layer NN, 300 hidden units, mean square error",
        4.7, (300,), _MSE, _MSE_WORDS, _LECUN_LRS, _LECUN_MISSING, _LECUN_DIFFERS),
    Row("LeCun 1000", "LeCun et al. 1998", "2-layer NN, 1000 hidden units, mean square error",
        4.5, (1000,), _MSE, _MSE_WORDS, _LECUN_LRS, _LECUN_MISSING, _LECUN_DIFFERS),
    Row("LeCun 300-100", "LeCun et al. 1998",
        "3-layer NN, 300+100 hidden units, mean square error", 3.05, (300, 100), _MSE,
        _MSE_WORDS, _LECUN_LRS, _LECUN_MISSING, _LECUN_DIFFERS),
    Row("Simard 800", "Simard, Steinkraus & Platt 2003",
        "2-layer MLP, 800 hidden units, cross-entropy, no distortions", 1.6, (800,),
        dict(activation="sigmoid", init="lecun", input_scale="standardize", optimizer="sgd",
             schedule="constant"),
        "sigmoid, standardized inputs, softmax cross-entropy, plain SGD", (0.1, 0.3, 1.0, 3.0),
        "on-line updates and the paper's longer training schedule",
        "minibatches of 128 at a constant learning rate"),
    Row("Srivastava 3x1024", "Srivastava et al. 2014",
        "dropout NN, ReLU, 3 layers of 1024 units", 1.25, (1024, 1024, 1024),
        dict(activation="relu", init="he", optimizer="momentum", momentum=0.9,
             schedule="constant"),
        "relu, softmax cross-entropy, SGD with momentum 0.9, dropout 0.2 on the inputs and 0.5 "
        "on the hidden units", (0.03, 0.1),
        "far longer training (dropout nets learn slowly) with the paper's momentum and "
        "learning-rate schedules", "a constant learning rate and momentum",
        dropout=0.5, input_dropout=0.2),
)


def rows_of(b: Budget) -> list[Row]:
    return [r for r in ROWS if b.rows is None or r.name in b.rows]


def rates_of(row: Row, b: Budget) -> tuple[float, ...]:
    """The middle `b.rates` learning rates of the row's list."""
    k = min(b.rates, len(row.lrs))
    start = (len(row.lrs) - k) // 2
    return row.lrs[start:start + k]


def paper_name(row: Row) -> str:
    return f"{row.name} (paper recipe)"


def today_name(row: Row) -> str:
    return f"{row.name} (today's defaults)"


def paper_settings(row: Row, lr: float) -> dict[str, Any]:
    return {"hidden": row.hidden, **row.recipe, "learning_rate": lr, "dropout": row.dropout,
            "input_dropout": row.input_dropout}


def today_settings(row: Row) -> dict[str, Any]:
    return {"hidden": row.hidden, "dropout": row.dropout, "input_dropout": row.input_dropout}


# --- the validation split -------------------------------------------------------------------------


def carve_validation(dataset: data.Dataset, n: int) -> data.Dataset:
    """`dataset` with its last `n` training images as the evaluation set and the rest as the
    training set: the test set is not in it at all."""
    if not 0 < n < len(dataset.y_train):
        raise ConfigError(f"--validation must be from 1 to {len(dataset.y_train) - 1} "
                          f"(the training images of {dataset.name}), got {n}")
    return dataclasses.replace(
        dataset, x_train=dataset.x_train[:-n], y_train=dataset.y_train[:-n],
        x_test=dataset.x_train[-n:], y_test=dataset.y_train[-n:],
        source=f"{dataset.source}; validation split: its last {n:,} training images")


class ValidationSplit(sweep.DataCache):
    """The data sets of `inner` (read once, shared with the rest of the experiment), each
    with its validation split in place of its test set (`carve_validation`)."""

    def __init__(self, inner: sweep.DataCache, n: int) -> None:
        super().__init__()
        self.inner, self.n = inner, n
        self._split: dict[tuple, tuple[data.Dataset, str | None]] = {}

    def dataset(self, config: Config) -> tuple[data.Dataset, str | None]:
        key = (config.dataset, config.data_dir, config.source)
        if key not in self._split:
            dataset, note = self.inner.dataset(config)
            self._split[key] = (carve_validation(dataset, self.n), note)
        return self._split[key]


def choose_rates(result: sweep.SweepResult, rows: Sequence[Row], b: Budget
                 ) -> dict[str, tuple[float, float]]:
    """Per row, (learning rate, validation accuracy) of the best finite rate."""
    chosen = {}
    for row in rows:
        scores = []
        for lr in rates_of(row, b):
            acc = float(np.mean(result.final(f"{row.name} lr {lr:g}", "test_accuracy")))
            scores.append((acc if math.isfinite(acc) else -1.0, lr))
        acc, lr = max(scores)
        chosen[row.name] = (lr, acc)
    return chosen


# --- the table and the sentences ----------------------------------------------------------------


def error(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """(mean, CI low, CI high) test error in % from a summary row's accuracy."""
    return (100 * (1 - row["test_acc_mean"]), 100 * (1 - row["test_acc_ci_hi"]),
            100 * (1 - row["test_acc_ci_lo"]))


def fmt_error(row: Mapping[str, Any]) -> str:
    mean, lo, hi = error(row)
    ci = "n/a" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"
    return f"{mean:.2f}% (95% CI {ci})"


def seconds_per_run(result: sweep.SweepResult, name: str) -> float:
    """Training seconds of one run of the variant, on one device (its program's training time
    times the devices that shared it, over its runs)."""
    devices = max(1, len(result.record["devices"]))
    for p in result.record["programs"]:
        if name in p["variants"]:
            return p.get("train_seconds", math.nan) * devices / p["runs"]
    return math.nan


def epochs(b: Budget) -> str:
    return f"{b.epochs} epoch" + ("s" if b.epochs != 1 else "")


def verdict(mean: float, paper: float) -> str:
    gap = mean - paper
    if gap <= 0:
        return f"met, {-gap:.2f} points below the paper's {paper:g}%"
    return f"not met, {gap:.2f} points above the paper's {paper:g}%"


def stuck_seeds(result: sweep.SweepResult, name: str, lr: float) -> list[str]:
    """A sentence on the seeds that ended near chance (the report's threshold) without a
    NaN: one such seed is enough to swing a 4-seed mean by 20 points."""
    acc = np.asarray(result.final(name, "test_accuracy"), dtype=float)
    chance = 1.0 / data.NUM_CLASSES + CHANCE_MARGIN
    stuck = np.flatnonzero(np.isfinite(acc) & (acc <= chance))
    if not len(stuck):
        return []
    rest = np.delete(acc, stuck)
    rest_words = (f"; the other {len(rest)} reached {stats.pct(float(np.min(rest)))} to "
                  f"{stats.pct(float(np.max(rest)))}" if len(rest) else "")
    return [f"{len(stuck)} of {len(acc)} seeds of that recipe stayed near chance "
            f"({', '.join(stats.pct(float(acc[i])) for i in stuck)}) without a NaN{rest_words}: "
            f"lr {lr:g}, chosen on one validation seed, is at the edge of what this network "
            "trains stably with, and the interval says so."]


def row_findings(result: sweep.SweepResult, row: Row, paper_row: Mapping[str, Any],
                 today_row: Mapping[str, Any], lr: float, val_acc: float,
                 b: Budget) -> list[str]:
    mean, lo, hi = error(paper_row)
    sent = (f"{row.paper}, {row.sizes} ({row.network}): the paper reports {row.paper_error:g}% "
            f"test error; its recipe here ({row.recipe_words}, lr {lr:g} chosen on the "
            f"validation split at {100 * val_acc:.2f}% accuracy, {epochs(b)}) gives "
            f"{fmt_error(paper_row)} over {paper_row['seeds']} seeds: "
            f"{verdict(mean, row.paper_error)}")
    if mean > row.paper_error:
        inside = lo <= row.paper_error <= hi
        sent += (" (the paper's figure is inside the interval)" if inside else
                 f". Missing from this reproduction: {row.missing}, rather than a setting "
                 "tuned on the test set")
    else:
        sent += f" (the recipe here departs from the paper's in {row.differs})"
    out = [sent + ".", *stuck_seeds(result, paper_name(row), lr)]
    t_mean, _, _ = error(today_row)
    diff = mean - t_mean
    sep = ("the intervals do not overlap" if not C.overlap(paper_row, today_row)
           else "the intervals overlap: no difference the seeds can resolve")
    kept = f" ({row.dropout_words})" if row.dropout_words else ""
    out.append(f"The same {row.sizes} network{kept} with today's defaults: "
               f"{fmt_error(today_row)}, "
               f"{verdict(t_mean, row.paper_error)}; {abs(diff):.2f} points "
               f"{'lower' if diff > 0 else 'higher'} than the paper's recipe here ({sep}).")
    return out


def findings(result: sweep.SweepResult, rows: Sequence[Row],
             chosen: Mapping[str, tuple[float, float]], b: Budget) -> list[str]:
    out = []
    met_paper = met_today = better = 0
    for row in rows:
        p, t = result.row(paper_name(row)), result.row(today_name(row))
        out += row_findings(result, row, p, t, *chosen[row.name], b)
        met_paper += error(p)[0] <= row.paper_error
        met_today += error(t)[0] <= row.paper_error
        better += error(t)[0] < error(p)[0]
    n = len(rows)
    out.append(f"Over the {n} rows: the paper recipes met {met_paper} of {n} published figures "
               f"and today's defaults met {met_today} of {n}, in {epochs(b)} on "
               f"{b.train_subset:,} training images; today's defaults had the lower error in "
               f"{better} of {n} rows (same network, only the training recipe changed).")
    out.append(f"Each paper recipe's learning rate was chosen on the validation split (the last "
               f"{b.validation:,} training images, not trained on) from "
               f"{b.rates} rates; nothing was chosen on the test set, which is only reported.")
    return out


def table(result: sweep.SweepResult, rows: Sequence[Row],
          chosen: Mapping[str, tuple[float, float]], b: Budget) -> str:
    lines = []
    for row in rows:
        for name, recipe in ((paper_name(row), f"paper's: {row.recipe_words}, lr "
                              f"{chosen[row.name][0]:g}"),
                             (today_name(row), f"today's defaults ({TODAY_WORDS})"
                              + (f", {row.dropout_words}" if row.dropout_words else ""))):
            s = result.row(name)
            lines.append([f"{row.paper}: {row.sizes}", f"{row.paper_error:g}%", recipe,
                          fmt_error(s), f"{seconds_per_run(result, name):.1f}",
                          verdict(error(s)[0], row.paper_error)])
    return C.table(["network", "paper's test error", "recipe", "jaxmlp test error (mean, 95% CI)",
                    "s per run", "verdict"], lines)


def validation_table(result: sweep.SweepResult, rows: Sequence[Row], b: Budget) -> str:
    lines = [[row.name, f"{lr:g}",
              stats.pct(float(np.mean(result.final(f"{row.name} lr {lr:g}", "test_accuracy"))))]
             for row in rows for lr in rates_of(row, b)]
    return C.table(["paper recipe", "learning rate", "validation accuracy"], lines)


def validation_folder(out: Path) -> Path:
    """Where the validation sweep goes: beside the experiment's folder (a sweep folder holds
    one sweep), e.g. runs/paper_table-validation."""
    return out.with_name(f"{out.name}-validation")


# --- the command ------------------------------------------------------------------------------


def split_argv(argv: Sequence[str] | None) -> tuple[int | None, list[str] | None]:
    """(--validation N or None, the other arguments) of the command line."""
    parser = cli.ArgumentParser(prog=f"python experiments/{NAME}.py", add_help=False)
    parser.add_argument("--validation", type=int, default=None)
    known, rest = parser.parse_known_args(argv)
    return known.validation, rest


def main(argv: Sequence[str] | None = None) -> int:
    validation, rest = split_argv(argv)
    args = C.parse_args(NAME, C.summary(__doc__) + " --validation N: hold out the last N "
                        "training images for choosing the learning rates (default: the "
                        "budget's, 10,000).", rest)
    b = BUDGETS[args.mode]
    if validation is not None:
        b = dataclasses.replace(b, validation=validation)
    if b.validation <= 0 or b.train_subset + b.validation > MNIST_TRAIN:
        raise ConfigError(f"--validation {b.validation}: the validation split and the "
                          f"{b.train_subset:,} training images must fit in MNIST's "
                          f"{MNIST_TRAIN:,} without overlapping; use 1 to "
                          f"{MNIST_TRAIN - b.train_subset}")
    started = time.perf_counter()
    rows = rows_of(b)
    base = C.mnist(args.data_dir, train_subset=b.train_subset, epochs=b.epochs,
                   batch_size=b.batch_size)
    recipe_note = (f"{epochs(b)} of batches of {b.batch_size} on the first "
                   f"{b.train_subset:,} MNIST training images")

    # 1. Each paper recipe's learning rate, chosen on the validation split.
    val_spec = sweep.make_spec(
        base, seeds=[1000], name="Paper recipes: learning rates on the validation split",
        variants=[{"name": f"{row.name} lr {lr:g}", **paper_settings(row, lr)}
                  for row in rows for lr in rates_of(row, b)],
        note=(f"Each paper recipe at {b.rates} learning rates, one seed, {recipe_note}; "
              f"'test' accuracy here is the accuracy on the validation split (the last "
              f"{b.validation:,} training images), not on MNIST's test set."))
    val_args = dataclasses.replace(args, datasets=ValidationSplit(args.datasets, b.validation))
    validated = C.run(val_spec, validation_folder(args.out), val_args)
    chosen = choose_rates(validated, rows, b)

    # 2. Every row, paper recipe and today's defaults, on the test set.
    variants = []
    for row in rows:
        variants.append({"name": paper_name(row), **paper_settings(row, chosen[row.name][0])})
        variants.append({"name": today_name(row), **today_settings(row)})
    spec = sweep.make_spec(
        base, seeds=b.seeds, variants=variants, test_subset=b.test_subset,
        name="The classic MNIST MLP results, reproduced",
        note=(f"Each paper's network with its recipe (the learning rate chosen on the "
              f"validation split) and with today's defaults ({TODAY_WORDS}), {recipe_note}, "
              f"{b.seeds} seeds each."))
    result = C.run(spec, args.out, args)

    sections = [
        ("The paper table", table(result, rows, chosen, b)
         + f"\n\nEpochs: {b.epochs} here for every row (the budget's); the papers' own numbers "
         "of passes are not in the cited tables and are not matched here. 's per run': "
         "training seconds of one run on one device."),
        ("Learning rates chosen on the validation split", validation_table(validated, rows, b)
         + f"\n\nThe validation sweep's own outputs: {validation_folder(args.out).name}/ "
         "beside this folder."),
        C.budget_section(args, b, started),
    ]
    C.finish(result, findings(result, rows, chosen, b), sections, mode=args.mode)
    return 0


if __name__ == "__main__":
    C.entry(main)
