"""The configuration of one training run: a frozen dataclass, validated before any work starts.

One flat dataclass rather than a tree of them, so that a sweep can say
`dataclasses.replace(config, learning_rate=0.1)` and the command line maps one flag to one field.
Each field's `help` metadata is the text `python -m jaxmlp.train --help` shows for it, followed
by its default (`default_words` metadata where the value alone would not say it, e.g. None);
`aliases` metadata gives a flag its other spellings (`--lr`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

# The names each choice accepts. Kept here, next to the fields, so that validation, the command
# line and the docs all read the same lists. The toy sets (jaxmlp.data.toy) are points in the
# plane, generated from --data-seed.
TOY_DATASETS = ("spirals", "moons", "circles", "xor", "blobs")
DATASETS = ("mnist", "fashion_mnist", "digits", *TOY_DATASETS)
SOURCES = ("auto", "local", "tfds", "download")
INPUT_SCALES = ("unit", "raw", "standardize")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
INITS = ("he", "glorot", "lecun", "normal")
OUTPUTS = ("softmax", "sum_normalize", "none")
ERRORS = ("cross_entropy", "mse")
REDUCTIONS = ("sum", "mean")
TARGETS = ("onehot", "integer")
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


class ConfigError(ValueError):
    """An impossible or unknown setting. The message names the setting and how to fix it."""


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, **kw})


@dataclass(frozen=True)
class Config:
    # --- data -------------------------------------------------------------------------------
    dataset: str | None = _f(
        None,
        "data set to train on. Left unset, jaxmlp uses MNIST and, if MNIST cannot be found or "
        "downloaded, falls back to scikit-learn's bundled 8x8 digits (recorded in config.json). "
        "Named explicitly, a data set that cannot be had is an error. The 2-D toy sets train "
        "with their own defaults for the settings not given (a small network, more epochs; "
        "printed at the start).",
        DATASETS,
        default_words="mnist, falling back to digits",
    )
    data_dir: str | None = _f(
        None,
        "folder with the four IDX files, or a parent holding mnist/ and fashion-mnist/",
        default_words="$JAXMLP_DATA_DIR, then the user cache, /usr/share/datasets, tfds, download",
    )
    source: str = _f(
        "auto",
        "where to look for the data: auto (every place, in order), local (folders only), "
        "tfds (tensorflow-datasets only), download (the public mirrors, into the cache)",
        SOURCES,
    )
    train_subset: int | None = _f(
        None, "train on the first N training examples only", default_words="all of them"
    )
    data_seed: int = _f(
        0, "seed the toy data sets' points are generated from (spirals, moons, circles, xor, "
        "blobs); MNIST, Fashion-MNIST and digits do not use it"
    )
    flatten: bool = _f(
        True,
        "flatten each HxW image into one vector of H*W pixels. An MLP's first layer gives each "
        "input its own weight, so it needs vectors; --no-flatten is refused with an explanation",
    )
    input_scale: str = _f(
        "unit",
        "how pixels are scaled: unit (divide by 255, to 0..1), raw (0..255 as they are), "
        "standardize (subtract the training set's mean, divide by its std)",
        INPUT_SCALES,
    )
    pixel_permutation: int | None = _f(
        None,
        "shuffle the pixels of every image, training and test alike, with one fixed random "
        "permutation drawn from this seed: the 2-D layout is gone, the information is not (an "
        "MLP, which sees a vector, learns it as well; see experiments/sweep_pixels.py)",
        default_words="none: pixels in their places",
    )
    # --- model ------------------------------------------------------------------------------
    hidden: tuple[int, ...] = _f(
        (512, 512), "hidden layer widths, e.g. --hidden 512 512 (none at all: --hidden); the "
        "network, its optimizer state and a batch's activations must fit the device's memory "
        "(checked before training)"
    )
    activation: str = _f("relu", "hidden-layer nonlinearity", ACTIVATIONS)
    init: str = _f(
        "he",
        "weight initialisation: he (std sqrt(2/fan_in), for relu), glorot (sqrt(2/(fan_in+"
        "fan_out))), lecun (sqrt(1/fan_in)), normal (std = --init-scale, the naive choice)",
        INITS,
    )
    init_scale: float = _f(
        1.0, "multiplies the scheme's std; for --init normal it IS the std (e.g. 0.01)"
    )
    dropout: float = _f(
        0.0,
        "while training, zero each hidden activation with this probability and scale the rest "
        "by 1/(1-p) (inverted dropout, a fresh mask every step); evaluation uses every unit. "
        "0: no dropout",
    )
    input_dropout: float = _f(
        0.0, "the same for the input pixels (e.g. 0.2, as in Srivastava et al. 2014); 0: none"
    )
    # --- loss -------------------------------------------------------------------------------
    output: str = _f(
        "softmax",
        "how outputs become predictions: softmax (exp, then normalise), sum_normalize (each "
        "output divided by the sum of outputs: breaks on negative or all-zero outputs), none "
        "(raw outputs)",
        OUTPUTS,
    )
    error: str = _f(
        "cross_entropy",
        "error against the targets: cross_entropy (-log of the true class's probability) or "
        "mse (squared difference to the one-hot target)",
        ERRORS,
    )
    class_reduction: str = _f(
        "sum", "how an example's per-class errors are combined: sum or mean", REDUCTIONS
    )
    example_reduction: str = _f(
        "mean", "how a batch's per-example losses are combined: sum or mean", REDUCTIONS
    )
    targets: str = _f(
        "onehot",
        "onehot (one output per class) or integer (a single output regressed onto the label "
        "0..9 with mse and --output none: shows why one-hot targets are used)",
        TARGETS,
    )
    # --- optimisation -----------------------------------------------------------------------
    optimizer: str = _f("adam", "optax optimizer", OPTIMIZERS)
    learning_rate: float = _f(
        1e-3, "peak learning rate (a positive finite number)", aliases=("--lr",)
    )
    momentum: float = _f(0.9, "momentum coefficient for --optimizer momentum")
    weight_decay: float = _f(
        0.0, "decoupled weight decay: each step also moves every weight by -lr x this x the "
        "weight, outside the gradient, so momentum and Adam's scaling never see it (AdamW for "
        "adam, SGDW for sgd and momentum)"
    )
    schedule: str = _f(
        "warmup_cosine",
        "learning-rate schedule: constant, cosine (decay to 0 over the run), warmup_cosine "
        "(linear warmup over --warmup-epochs, then cosine)",
        SCHEDULES,
    )
    warmup_epochs: float = _f(0.5, "warmup length for --schedule warmup_cosine, in epochs")
    batch_size: int = _f(128, "examples per minibatch (the last partial batch is dropped)")
    epochs: int = _f(4, "passes over the training set")
    seed: int = _f(0, "seed of the PRNG key for initialisation and shuffling")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


# The settings a data set trains with unless they are given: Config's defaults are MNIST's
# (60,000 images of 784 pixels), far too large a network and far too few steps for 1,000 points
# in the plane. Chosen so that each reaches its accuracy in seconds (docs/toy-problems.md).
_TOY = MappingProxyType({"hidden": (16, 16), "batch_size": 32, "learning_rate": 0.01,
                         "epochs": 20})
DATASET_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "spirals": MappingProxyType({**_TOY, "epochs": 50}),  # three arms: more steps
    "moons": _TOY,
    "circles": _TOY,
    "xor": _TOY,
    "blobs": _TOY,
})


def dataset_defaults(config: Config, given: Collection[str] | None = None,
                     leave: Collection[str] = ()) -> tuple[Config, dict[str, Any]]:
    """`config` with its data set's own defaults (`DATASET_DEFAULTS`) for the settings not
    given, and the settings so set. `given`: the fields set explicitly (the command line's
    `cli.flags_given`); None counts every field still at Config's default as not given.
    `leave`: fields not to set either (those a caller sets itself, e.g. --overfit's batch).

    The one place such defaults are applied: a run records the result in config.json, so a
    resumed or redrawn run reads the values, not this table."""
    table = DATASET_DEFAULTS.get(config.dataset or "", {})
    unset = {f.name for f in dataclasses.fields(config)
             if (f.name not in given if given is not None
                 else getattr(config, f.name) == f.default)}
    applied = {name: value for name, value in table.items()
               if name in unset and name not in leave}
    return dataclasses.replace(config, **applied), applied


# The precision every numeric setting is used in: the programs compute in float32 (the `Hyper`
# values, the optimizer's coefficients).
PROGRAM_DTYPE = np.float32


def as_used(value: float) -> float:
    """`value` as the program sees it, in `PROGRAM_DTYPE` (overflow is inf, not a warning)."""
    with np.errstate(over="ignore"):
        return float(PROGRAM_DTYPE(value))


# jax keys are 32-bit by default: a larger seed gives the key of a smaller one (2**32 that of 0,
# -1 that of 2**32-1), and past 2**63 it does not convert at all. Sweeps take the same range.
SEED_MAX = 2**32 - 1


def flag_name(name: str) -> str:
    """A field's flag as it is typed: learning_rate -> --learning-rate."""
    return "--" + name.replace("_", "-")


def _choice(config: Config, name: str) -> None:
    value = getattr(config, name)
    choices = next(f for f in dataclasses.fields(config) if f.name == name).metadata["choices"]
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"{flag_name(name)} {value!r} is not known; {hint}choose one of: "
                          f"{', '.join(choices)}")


def positive_int(value: Any, name: str, error: type[ValueError] = ConfigError) -> None:
    """Refuse anything but a positive whole number (True is not one), with one message naming
    `name` (a flag, or a spec's key) raised as `error`: the one home of this check."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise error(f"{name} must be a positive whole number, got {value!r}")


def _number(value: Any, flag: str, what: str, ok: Callable[[float], bool]) -> None:
    """Refuse anything but a finite number for which `ok` holds, as typed and as the program
    uses it: NaN and inf are floats too, the command line passes text on as text
    (cli.number_or_text), and a value can pass in float64 yet break the check in float32
    (`--dropout 0.999999999` is 1.0 there)."""
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and ok(value)):
        raise ConfigError(f"{flag} must be {what}, got {value!r}")
    used = as_used(value)
    if not (math.isfinite(used) and ok(used)):
        raise ConfigError(f"{flag} {value!r} is {used!r} in {PROGRAM_DTYPE.__name__}, the "
                          f"precision training computes in: it must be {what} there too")


def _check_numbers(config: Config) -> None:
    """Every numeric field, one message per problem, naming the flag and what it takes."""
    for width in config.hidden:
        positive_int(width, "--hidden (every width)")
    positive_int(config.batch_size, "--batch-size")
    positive_int(config.epochs, "--epochs")
    if config.train_subset is not None:
        positive_int(config.train_subset, "--train-subset")
    _number(config.learning_rate, "--learning-rate", "a positive finite number, e.g. 0.001",
            lambda v: v > 0)
    _number(config.init_scale, "--init-scale", "a positive finite number, e.g. 1.0",
            lambda v: v > 0)
    _number(config.momentum, "--momentum",
            "a finite number from 0 to below 1 (a decay factor, e.g. 0.9)",
            lambda v: 0 <= v < 1)
    _number(config.weight_decay, "--weight-decay", "a finite number >= 0 (0: no decay)",
            lambda v: v >= 0)
    _number(config.warmup_epochs, "--warmup-epochs", "a finite number >= 0 (0: no warmup)",
            lambda v: v >= 0)
    for rate, flag in ((config.dropout, "--dropout"), (config.input_dropout, "--input-dropout")):
        _number(rate, flag, "a probability from 0 to below 1 (0: none; 1 would drop everything)",
                lambda v: 0 <= v < 1)
    if config.pixel_permutation is not None:
        p = config.pixel_permutation
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= SEED_MAX:
            raise ConfigError(f"--pixel-permutation must be a whole number (a seed) from 0 to "
                              f"{SEED_MAX}, got {p!r}")
    for seed, flag in ((config.seed, "--seed"), (config.data_seed, "--data-seed")):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise ConfigError(f"{flag} must be a whole number from 0 to {SEED_MAX}, got "
                              f"{seed!r}")


def _integer_targets_needs(config: Config) -> list[str]:
    """The flags `--targets integer` still needs: its single raw output only makes sense
    with a squared error."""
    if config.targets != "integer":
        return []
    return [f for f, ok in (("--error mse", config.error == "mse"),
                            ("--output none", config.output == "none")) if not ok]


def validate(config: Config) -> Config:
    """Refuse impossible settings before any work starts. Returns the config unchanged."""
    if config.dataset is not None:
        _choice(config, "dataset")
    for name in ("source", "input_scale", "activation", "init", "output", "error",
                 "class_reduction", "example_reduction", "targets", "optimizer", "schedule"):
        _choice(config, name)
    _check_numbers(config)
    if config.schedule == "warmup_cosine" and config.warmup_epochs >= config.epochs:
        raise ConfigError(
            f"--warmup-epochs {config.warmup_epochs} leaves no epochs after the warmup "
            f"(--epochs {config.epochs}); use fewer warmup epochs or more epochs"
        )
    # The toy sets' points are vectors already: with nothing to flatten, --no-flatten is moot.
    if not config.flatten and config.dataset not in TOY_DATASETS:
        raise ConfigError(
            "--no-flatten: an MLP's first layer is a matrix with one row per input value, so each "
            "28x28 image must be flattened into a vector of 784 pixels first. Without flattening "
            "the layer would be applied to each row of 28 pixels separately, as if every row were "
            "its own example. Drop --no-flatten (a convolutional network is what keeps 2-D shape)."
        )
    if config.dropout > 0 and not config.hidden:
        raise ConfigError(f"--dropout {config.dropout:g} drops hidden units and --hidden gives "
                          "none: add hidden layers, or use --input-dropout for the inputs")
    # Said, not silently set: validate cannot tell a default --error from a typed one, and a
    # sweep's integer variant would quietly differ from its base in two more settings.
    missing = _integer_targets_needs(config)
    if missing:
        raise ConfigError(
            "--targets integer predicts the label as one number, a raw output scored by its "
            f"squared error: add {' '.join(missing)} (softmax or cross-entropy over a single "
            "output is meaningless)"
        )
    return config


def check_against_data(config: Config, num_train: int) -> None:
    """The checks that need the data set's size, still before any training work."""
    n = num_train if config.train_subset is None else min(num_train, config.train_subset)
    if config.train_subset is not None and config.train_subset > num_train:
        raise ConfigError(
            f"--train-subset {config.train_subset} is larger than the training set "
            f"({num_train} examples)"
        )
    if config.batch_size > n:
        subset = f", --train-subset {n}" if n < num_train else ""
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the training data ({n} examples"
            f"{subset}): no full batch can be formed. Use --batch-size {min(n, 128)} or fewer."
        )
