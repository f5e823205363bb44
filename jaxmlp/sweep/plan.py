"""The plan of a sweep: its runs (variant x seed), grouped by structure and data (one compiled
program each, shared by groups that differ only in their data; runs that differ only in their
loss or activation share one, which picks each run's), and each group cut into chunks of at
most `max_parallel` runs."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from jaxmlp import pick
from jaxmlp.config import Config
from jaxmlp.loop import dropout_layers
from jaxmlp.sweep.datasets import LOADED_FIELDS
from jaxmlp.sweep.spec import SweepSpec

# Settings that reach the program as traced values (see `loop.Hyper`); every other field of
# `Config` is structural. `input_scale` is a name, but it becomes a traced (scale, shift) pair;
# `init` is a name, but it becomes an index into a table of stds (`model.init_mlp`); the
# reductions are names, but each becomes a traced 0/1 (sum/mean) value. The dropout rates are
# traced, but whether each is above 0 is structural (`loop.dropout_layers`).
TRACED_FIELDS = ("seed", "learning_rate", "input_scale", "init", "init_scale", "dropout",
                 "input_dropout", "class_reduction", "example_reduction")
# The rate a structural key keeps for dropout that is on: any rate in (0, 1) builds the same
# program, the run's own rate arrives in its `Hyper`.
_DROPOUT_ON = 0.5


class Run(NamedTuple):
    """One run of the sweep: its index, its variant's index, its seed and its configuration."""

    index: int
    variant: int
    seed: int
    config: Config


def plan_runs(spec: SweepSpec) -> list[Run]:
    """Every (variant, seed) pair, variant-major: run i = variant i // S, seed i % S."""
    runs = []
    for v in range(len(spec.variants)):
        for s in spec.seeds:
            runs.append(Run(len(runs), v, s, spec.config(v, s)))
    return runs


def structural_key(config: Config) -> Config:
    """The configuration with its traced settings blanked: equal keys share one program."""
    inputs, hidden = dropout_layers(config)
    return dataclasses.replace(config, seed=0, learning_rate=1.0, input_scale="unit",
                               init="he", init_scale=1.0,
                               dropout=_DROPOUT_ON if hidden else 0.0,
                               input_dropout=_DROPOUT_ON if inputs else 0.0,
                               class_reduction="sum", example_reduction="mean")


# Settings runs may differ in and still share one program, which then computes every run's own
# choice, picked by its `Hyper` (`jaxmlp.pick`): the loss's output and error, the activation.
# Each option costs the program a few elementwise operations; a program of its own costs seconds
# of compiling. The targets stay structural: they set the number of outputs.
PICKED_FIELDS = pick.FIELDS
_BLANK = {name: Config.__dataclass_fields__[name].default for name in PICKED_FIELDS}


def shared_key(config: Config) -> Config:
    """`structural_key` with the picked settings left out (the loss only for one-hot targets):
    runs with equal shared keys train in one program (`group_key`)."""
    key = structural_key(config)
    fields = PICKED_FIELDS if config.targets == "onehot" else ("activation",)
    return dataclasses.replace(key, **{f: _BLANK[f] for f in fields})


def group_key(configs: Sequence[Config]) -> Config:
    """The structure of a group's program: its runs' `structural_key`, with the settings they
    differ in (`pick.options_of`, which the program picks per run) left out."""
    key, options = structural_key(configs[0]), pick.options_of(configs)
    if options is None:
        return key
    blank = ((("output", "error") if options.losses else ())
             + (("activation",) if options.activations else ()))
    return dataclasses.replace(key, **{f: _BLANK[f] for f in blank})


# Settings that only choose the data: which set, which of its examples, which pixel order. The
# program never reads them (it sees the data's shapes), so runs that differ only here train on
# different data (separate groups) with one compiled program (`program_key`).
DATA_FIELDS = (*LOADED_FIELDS, "train_subset", "pixel_permutation")
_NO_DATA = {name: Config.__dataclass_fields__[name].default for name in DATA_FIELDS}


def program_key(config: Config) -> Config:
    """`structural_key` with the data's settings blanked too: groups with equal keys (and data
    of equal shapes) share one compiled program."""
    return dataclasses.replace(structural_key(config), **_NO_DATA)


def data_choice(config: Config) -> tuple:
    """What selects a configuration's data (`DATA_FIELDS`): equal keys train on the same arrays."""
    return tuple(getattr(config, f) for f in DATA_FIELDS)


def group_runs(runs: Sequence[Run]) -> list[tuple[Config, list[int]]]:
    """Runs grouped by structure (data included), in order of first appearance: one call of a
    compiled program each; groups with equal `program_key`s share the program. Runs that differ
    only in their loss or activation are one group (`shared_key`), keyed by `group_key`; its
    program picks each run's (`group_options`)."""
    groups: dict[Config, list[Run]] = {}
    for r in runs:
        groups.setdefault(shared_key(r.config), []).append(r)
    return [(group_key([r.config for r in rs]), [r.index for r in rs])
            for rs in groups.values()]


def group_options(runs: Sequence[Run], ids: Sequence[int]) -> pick.Options | None:
    """What a group's program picks among (`pick.options_of` its runs `ids`)."""
    return pick.options_of([runs[i].config for i in ids])


class Chunk(NamedTuple):
    """Runs of one group trained by one call of its program (and saved as one file)."""

    group: int
    runs: tuple[int, ...]
    size: int  # the program's run-axis length: len(runs) plus padding

    @property
    def id(self) -> str:
        digest = hashlib.sha1(",".join(map(str, self.runs)).encode()).hexdigest()[:10]
        return f"g{self.group:03d}-r{self.runs[0]:05d}-{digest}"


def chunk_size(num_runs: int, max_parallel: int | None, num_devices: int) -> int:
    """Runs per program call: a multiple of the device count (every device gets the same
    share), all of the group's runs if `max_parallel` allows, else at most `max_parallel`.

    With `max_parallel` below the device count, each device still trains one run.
    """
    whole = -(-num_runs // num_devices) * num_devices  # every run, padded to a device multiple
    if max_parallel is None or whole <= max_parallel:
        return whole
    return max(num_devices, max_parallel // num_devices * num_devices)


def plan_chunks(
    groups: Sequence[tuple[Config, list[int]]], max_parallel: int | None, num_devices: int
) -> list[Chunk]:
    """Each group's runs, in order, cut into chunks of `chunk_size` runs (the last may be
    shorter; it is padded when trained)."""
    chunks = []
    for g, (_, runs) in enumerate(groups):
        size = chunk_size(len(runs), max_parallel, num_devices)
        for start in range(0, len(runs), size):
            chunks.append(Chunk(g, tuple(runs[start:start + size]), size))
    return chunks
