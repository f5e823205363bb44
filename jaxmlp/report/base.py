"""What every rule of the report shares: the thresholds, `Finding`, the `Context` a rule
reads, and the words several rules use.

Every judgement in the report is one of the thresholds named here; what the numbers being
judged mean is defined in `jaxmlp.probes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxmlp.config import TOY_DATASETS, Config
from jaxmlp.data.toy import TOYS
from jaxmlp.diagnostics import unpack_mask

# --- thresholds: every judgement in the report is one of these numbers ---------------------------

# Report a layer when at least this fraction of its units is dead / saturated.
DEAD_WARN = 0.5
SATURATED_WARN = 0.5
# Report when at least this fraction of examples gets all-zero outputs.
ZERO_OUTPUTS_WARN = 0.5
# Outputs "do not depend on the input" when their spread across examples is below this
# fraction of their overall spread (a healthy network: ~0.3 to 1).
CONSTANT_OUTPUTS = 1e-3
# Gradient norm of layer 1 relative to the last layer: below is vanishing, above is exploding.
VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
# |update| / |params| per step: above thrashes (the step rewrites a tenth of the weights), below
# the weights hardly move.
UPDATE_RATIO_HIGH = 0.1
UPDATE_RATIO_LOW = 1e-6
# "Collapsed": at least this share of the probe batch predicted as one class.
COLLAPSE_SHARE = 0.9
# "Not learning": accuracy within this margin of chance (1 / classes).
CHANCE_MARGIN = 0.05
# "The loss fell": relative fall of the training loss, from the initialisation (or the first
# epoch) to the last epoch.
LOSS_FELL = 0.2
# "Low accuracy": below this, even if above chance (a working MLP gets > 0.9 on MNIST,
# Fashion-MNIST and digits).
LOW_ACCURACY = 0.5
# "Overfitting": training accuracy this much above test accuracy.
OVERFIT_GAP = 0.1
# Learning rates that are large for each optimizer on unit-scaled inputs (a hint, not a rule).
LARGE_LR = {"sgd": 0.5, "momentum": 0.1, "adam": 1e-2}
# "Dead since epoch e": at least this share of the units dead at the end were dead at every
# evaluation from e on.
DEAD_SINCE_SHARE = 0.9
# "Exploded": a layer's parameter norm this many times its norm at initialisation, or the
# training loss this many times the loss at initialisation (float32 overflows at ~3e38; a run
# past these is on its way there, whether or not it reaches NaN).
EXPLODED_GROWTH = 1e3
EXPLODED_LOSS = 1e3
# Gradient norms above this in both layer 1 and the last layer are not "vanishing", whatever
# their ratio: they are huge (an exploding run), and the ratio of two huge numbers says nothing.
HUGE_GRADIENT = 1e6
# The initialisation schemes (he, glorot, lecun) scale the weights for inputs of about unit
# size, so that a layer's pre-activations start with a std of about 1. Layer 1's std at
# initialisation above this means its inputs (or its weights) are far too large.
LARGE_PRE_STD = 10.0
# "The gradients stopped": every layer's gradient norm below this fraction of its parameters'
# norm, from some epoch to the end: even a learning rate of 1 would move the weights by less
# than a millionth of their size. A network that learns has 1e-3 or more (the default run ends
# near 1e-2); the notes' own setup at lr 1 stopped at 2e-8 to 2e-7.
GRADIENT_STOPPED = 1e-6
# Outputs this large (the mean of the last layer's outputs, in magnitude) make --output
# sum_normalize's o_k / sum(o) insensitive to every weight: its gradient is divided by the sum.
HUGE_OUTPUTS = 1e3
# "A plateau at the uniform guess": the last epoch's median step loss within this fraction of
# what predicting 1/K for every class scores (`losses.uniform_guess_loss`).
PLATEAU_TOLERANCE = 0.02


@dataclass(frozen=True)
class Finding:
    code: str  # stable identifier, e.g. "dead_units", for tests and tools
    message: str  # what the numbers show
    advice: str  # what to try

    def __str__(self) -> str:
        return f"{self.message}; {self.advice}" if self.advice else self.message


@dataclass(frozen=True)
class Context:
    """What every rule reads."""

    config: Config
    rows: Sequence[dict[str, Any]]  # diagnostics.jsonl, epoch 0 first
    history: Sequence[dict[str, Any]]  # metrics.jsonl (finished epochs)
    num_classes: int
    # An --overfit report: its "accuracy" is on the N examples it fits, its rows the
    # initialisation and the end (the last steps' gradients).
    overfit: bool = False

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1]

    @property
    def num_layers(self) -> int:
        return len(self.last["layers"])


Rule = Callable[[Context, Sequence[Finding]], list[Finding]]


# --- words shared by several rules ---------------------------------------------------------------


def layer_values(row: dict[str, Any], key: str) -> list[float | None]:
    return [layer[key] for layer in row["layers"]]


def codes_of(found: Sequence[Finding]) -> set[str]:
    return {f.code for f in found}


def when(epoch: int, ctx: Context | None = None) -> str:
    """'at epoch 3,'; an --overfit report has one row after initialisation: 'at the end,'."""
    if epoch == 0:
        return "at initialisation,"
    return "at the end," if ctx is not None and ctx.overfit else f"at epoch {epoch},"


def lr_hint(config: Config) -> str:
    return (f"a smaller learning rate (now {config.learning_rate:g}; try "
            f"{config.learning_rate / 10:g})")


def inputs_scaled(config: Config) -> bool:
    """Whether --input-scale applies: the 2-D toy sets' points are used as they are."""
    return config.dataset not in TOY_DATASETS


def cannot_separate(ctx: Context) -> str | None:
    """Why a network with no hidden layer cannot fit this data set, when it cannot: in words,
    with the fix."""
    toy = TOYS.get(ctx.config.dataset or "")
    if ctx.config.hidden or toy is None or toy.linear:
        return None
    return (f"with no hidden layer the network draws straight lines between the classes, and "
            f"{ctx.config.dataset}'s classes ({toy.layout}) cannot be cut apart by straight lines:"
            f" the network lacks the capacity, whatever the learning rate; add hidden layers "
            f"(--hidden 16 16)")


def step_causes(config: Config) -> list[str]:
    """What in the configuration makes the steps large, in words."""
    causes = []
    if config.input_scale == "raw" and inputs_scaled(config):
        causes.append("the inputs are raw 0..255 (the first layer's gradient is ~255x larger)")
    if config.learning_rate >= LARGE_LR.get(config.optimizer, math.inf):
        causes.append(f"lr={config.learning_rate:g} is large for {config.optimizer}")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        causes.append(f"--example-reduction sum makes the gradient {config.batch_size}x (the "
                      f"batch size) larger than the mean would, and {config.optimizer}'s step "
                      f"with it")
    return causes


def step_fixes(config: Config) -> list[str]:
    """The flags that make the steps smaller, one per cause `step_causes` can name."""
    fixes = []
    if config.input_scale == "raw" and inputs_scaled(config):
        fixes.append("--input-scale unit")
    if config.example_reduction == "sum" and config.optimizer != "adam":
        fixes.append("--example-reduction mean")
    fixes.append(lr_hint(config))
    return fixes


def dead_since(rows: Sequence[dict[str, Any]], layer: int) -> int | None:
    """The earliest epoch since which most (`DEAD_SINCE_SHARE`) of the units dead at the end
    have been dead at every evaluation."""
    width = rows[-1]["layers"][layer]["shape"][1]
    masks = [unpack_mask(r["dead_units"][layer], width) for r in rows
             if r.get("dead_units") is not None]
    if not masks or not masks[-1].any():
        return None
    final = masks[-1]
    alive_since = np.ones_like(final)
    since = None
    for idx in range(len(masks) - 1, -1, -1):
        alive_since &= masks[idx]
        if alive_since[final].mean() >= DEAD_SINCE_SHARE:
            since = rows[idx]["epoch"]
    return since
