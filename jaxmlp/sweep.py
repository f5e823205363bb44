"""Sweeps: a grid of variants times seeds, trained as a few vmapped, sharded programs.

A question like "does dividing by the batch size matter?" deserves several seeds of several
variants, with statistics, not one run of each. This module makes that cheap:

- **One program per structure.** Settings split in two. *Traced* settings (the seed, the
  learning rate, the input scaling and the initialisation scale) enter the compiled program as
  values, so `jax.vmap` trains every combination of them at once. *Structural* settings (loss,
  output transform, reductions, architecture, optimizer, batch size, epochs, data) change the
  program itself and compile separately, once each. 2 structural variants x 4 learning rates x
  8 seeds is 2 programs, not 64.
- **Sharded.** The run axis is split over every device with `jax.sharding` (a `Mesh` with one
  axis, `runs`, and `jax.shard_map`), so several GPUs, or several hosts after
  `jax.distributed.initialize()`, share the runs with no change to the experiment. On a CPU the
  command line makes one JAX device per core (`compilation.split_cpu_into_devices`), so runs
  train side by side on every core.
- **Batched to fit.** Each device trains its runs `runs_per_batch` at a time: all of them
  vmapped on an accelerator; on a CPU as many as fit half the last-level cache, in a loop
  (`auto_runs_per_batch`). Vmapping every run on a CPU made each run slower than training it
  alone (benchmarks/README.md).
- **Chunked.** `max_parallel=K` trains at most K runs at a time; memory grows with K, not with
  the grid.
- **Resumable.** Each chunk's results are written atomically as it finishes; the same command
  with the same `--out` skips finished chunks.

Outputs in `out/`: `results.csv` (one row per run per epoch), `runs.csv` (one row per run),
`summary.csv` and `summary.md` (per variant: mean, std and 95% bootstrap CI over seeds),
`sweep.json` (spec, versions, devices, timings), `curves.png`, `final_accuracy.png`, and
`chunks/` (the raw per-chunk results that make resuming possible).

    python -m jaxmlp.sweep --spec spec.toml --out runs/my-sweep
    python -m jaxmlp.sweep --dataset mnist --hidden 64 --epochs 3 --optimizer sgd \\
        --grid learning_rate=0.01,0.1,1 --seeds 5 --out runs/lr
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
import typing
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import checkpoint, data, stats
from jaxmlp.config import Config, ConfigError, check_against_data, validate
from jaxmlp.losses import Batch
from jaxmlp.model import ACTIVATIONS, Params
from jaxmlp.train import (
    DeviceData,
    Hyper,
    device_data,
    hyper_from_config,
    init_state,
    load_data,
    make_optimizer,
    make_step,
    make_train,
    model_sizes,
    run_keys,
    scale_inputs,
    steps_per_epoch,
    versions,
)

# Settings that reach the program as traced values (see `train.Hyper`); every other field of
# `Config` is structural. `input_scale` is a name, but it becomes a traced (scale, shift) pair.
TRACED_FIELDS = ("seed", "learning_rate", "input_scale", "init_scale")

RESULT_FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
PROBES = ("dead_units", "blocked", "input_blind", "zero_outputs")
PROBE_EXAMPLES = 1000

SWEEP_JSON = "sweep.json"
CHUNKS = "chunks"
COMPILE_MODES = ("default", "fast")
# "fast": XLA's CPU backend at optimisation level 0 compiles 2-3x faster but the code it makes
# trains up to 4x slower (experiments/engine_check.py: 20 runs of a 784-128-10 MLP on 10,000
# images), so it only pays for tiny runs whose time is mostly compilation. Other platforms
# ignore it.
FAST_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


class SpecError(ValueError):
    """A sweep specification that cannot be run; the message says what and how to fix it."""


class SweepError(RuntimeError):
    """The output folder or a finished chunk does not fit this sweep."""


# --- 1. the specification -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point of the grid: a name and the settings it changes from the base configuration."""

    name: str
    overrides: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to train: every variant with every seed. Frozen, so it can be hashed and recorded.

    `test_subset` evaluates on the first N test examples only (cheaper per epoch); `probes`
    measures dead units and all-zero outputs at initialisation and at the end of each run.
    """

    base: Config
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    name: str = "sweep"
    target_accuracy: float = 0.9
    test_subset: int | None = None
    probes: bool = False
    note: str = ""

    def config(self, variant: int, seed: int | None = None) -> Config:
        c = dataclasses.replace(self.base, **dict(self.variants[variant].overrides))
        return c if seed is None else dataclasses.replace(c, seed=seed)

    def varied_fields(self) -> list[str]:
        """The fields that differ between variants, in the order the variants name them."""
        configs = [self.config(i) for i in range(len(self.variants))]
        names: list[str] = []
        for v in self.variants:
            for k, _ in v.overrides:
                if k not in names and len({getattr(c, k) for c in configs}) > 1:
                    names.append(k)
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "note": self.note,
            "base": self.base.to_dict(),
            "variants": [{"name": v.name, **dict(v.overrides)} for v in self.variants],
            "seeds": list(self.seeds),
            "target_accuracy": self.target_accuracy,
            "test_subset": self.test_subset,
            "probes": self.probes,
        }

    def fingerprint(self) -> str:
        """A hash of everything that decides what is trained (not the name, note or target):
        a sweep resumed in the same folder must train exactly the same runs."""
        trained = {
            "configs": [self.config(i).to_dict() for i in range(len(self.variants))],
            "names": [v.name for v in self.variants],
            "seeds": list(self.seeds),
            "test_subset": self.test_subset,
            "probes": self.probes,
        }
        text = json.dumps(trained, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_value(value: Any) -> str:
    """A setting as it appears in names and CSV cells: hidden (64, 32) -> 64x32, 0.1 -> 0.1."""
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _label(overrides: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in overrides) or "base"


_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


def _check_field(name: str, where: str) -> None:
    if name == "seed":
        raise SpecError(f"{where}: 'seed' is not a setting of a variant; list the seeds with "
                        "'seeds' (a count, or a list of integers)")
    if name not in _CONFIG_FIELDS:
        known = ", ".join(sorted(n for n in _CONFIG_FIELDS if n != "seed"))
        raise SpecError(f"{where}: unknown setting {name!r}; known settings: {known}")


def _normalise(name: str, value: Any) -> Any:
    """JSON/TOML gives lists where Config wants tuples (hidden)."""
    if name == "hidden" and isinstance(value, list):
        return tuple(value)
    return value


def make_spec(
    base: Config,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] = 5,
    variants: Sequence[Mapping[str, Any]] | None = None,
    **options: Any,
) -> SweepSpec:
    """The spec for every combination of `variants` (explicit lists of settings, each with an
    optional "name") and the `grid` axes (field -> values), each trained with every seed.

        make_spec(base, {"optimizer": ["sgd", "adam"], "learning_rate": [0.01, 0.1]}, seeds=5)

    `options` are SweepSpec's other fields (name, target_accuracy, test_subset, probes, note).
    Every configuration is validated here, so a bad grid fails before any work starts.
    """
    if not isinstance(base, Config):
        raise SpecError("base must be a jaxmlp Config")
    grid = dict(grid or {})
    for name, values in grid.items():
        _check_field(name, "grid")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise SpecError(f"grid: {name} must be a non-empty list of values, got {values!r}")
    explicit = list(variants) if variants is not None else [{}]
    if not explicit:
        raise SpecError("variants: the list is empty; give at least one variant or leave it out")

    axes = [[(k, _normalise(k, v)) for v in vals] for k, vals in grid.items()]
    built: list[Variant] = []
    for i, entry in enumerate(explicit):
        if not isinstance(entry, Mapping):
            raise SpecError(f"variants[{i}] must be a table of settings, got {entry!r}")
        entry = dict(entry)
        given_name = entry.pop("name", None)
        for k in entry:
            _check_field(k, f"variants[{i}]")
            if k in grid:
                raise SpecError(f"variants[{i}] sets {k}, which is also a grid axis; set it in "
                                "one place")
        fixed = [(k, _normalise(k, v)) for k, v in entry.items()]
        for combo in itertools.product(*axes):
            overrides = tuple(fixed) + tuple(combo)
            if given_name is not None:
                name = str(given_name) + (f" | {_label(combo)}" if combo else "")
            else:
                name = _label(overrides)
            built.append(Variant(name, overrides))

    seeds_t = _parse_seeds(seeds)
    try:
        spec = SweepSpec(base=base, variants=tuple(built), seeds=seeds_t, **options)
    except TypeError as e:
        raise SpecError(f"unknown sweep option: {e}") from None
    _check_options(spec)
    validate_spec(spec)
    return spec


def _parse_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, bool):
        raise SpecError(f"seeds must be a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds <= 0:
            raise SpecError(f"seeds must be a positive count, got {seeds}")
        return tuple(range(seeds))
    if isinstance(seeds, Sequence) and not isinstance(seeds, (str, bytes)) and seeds:
        out = []
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
                raise SpecError(f"seeds: {s!r} is not an integer in 0..2**32-1")
            out.append(s)
        if len(set(out)) != len(out):
            raise SpecError(f"seeds: {out} repeats a seed; each seed would train the same run")
        return tuple(out)
    raise SpecError(f"seeds must be a positive count or a non-empty list of integers, got "
                    f"{seeds!r}")


def _check_options(spec: SweepSpec) -> None:
    t = spec.target_accuracy
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
        raise SpecError(f"target_accuracy must be a fraction in (0, 1], e.g. 0.9; got {t!r}")
    ts = spec.test_subset
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0):
        raise SpecError(f"test_subset must be a positive whole number, got {ts!r}")
    if not isinstance(spec.probes, bool):
        raise SpecError(f"probes must be true or false, got {spec.probes!r}")


def validate_spec(spec: SweepSpec) -> list[Config]:
    """Every variant's configuration, validated; names and configurations must be unique."""
    configs = []
    seen: dict[Config, str] = {}
    names: set[str] = set()
    for i, v in enumerate(spec.variants):
        try:
            config = validate(spec.config(i))
        except (ConfigError, TypeError) as e:
            raise SpecError(f"variant {v.name!r}: {e}") from None
        if v.name in names:
            raise SpecError(f"two variants are named {v.name!r}; names must be unique")
        names.add(v.name)
        if config in seen:
            raise SpecError(f"variants {seen[config]!r} and {v.name!r} are the same "
                            "configuration; drop one")
        seen[config] = v.name
        configs.append(config)
    return configs


_SPEC_KEYS = ("name", "note", "base", "grid", "variants", "seeds", "target_accuracy",
              "test_subset", "probes", "max_parallel")


def spec_from_dict(d: Mapping[str, Any], where: str = "spec") -> tuple[SweepSpec, dict[str, Any]]:
    """A spec from a parsed TOML/JSON document; returns (spec, run options such as
    max_parallel). Every problem is a SpecError naming the key."""
    if not isinstance(d, Mapping):
        raise SpecError(f"{where}: the top level must be a table/object")
    unknown = sorted(set(d) - set(_SPEC_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown keys {', '.join(unknown)}; known keys: "
                        f"{', '.join(_SPEC_KEYS)}")
    base_d = d.get("base", {})
    if not isinstance(base_d, Mapping):
        raise SpecError(f"{where}: base must be a table of settings")
    for k in base_d:
        _check_field(k, f"{where}: base")
    try:
        base = Config.from_dict({k: _normalise(k, v) for k, v in base_d.items()})
    except (ConfigError, TypeError) as e:
        raise SpecError(f"{where}: base: {e}") from None
    grid = d.get("grid", {})
    if not isinstance(grid, Mapping):
        raise SpecError(f"{where}: grid must be a table of setting = [values]")
    options = {k: d[k] for k in ("name", "note", "target_accuracy", "test_subset", "probes")
               if k in d}
    for k in ("name", "note"):
        if k in options and not isinstance(options[k], str):
            raise SpecError(f"{where}: {k} must be a string")
    spec = make_spec(base, grid, d.get("seeds", 5), d.get("variants"), **options)
    run_options = {}
    if "max_parallel" in d:
        run_options["max_parallel"] = _max_parallel(d["max_parallel"])
    return spec, run_options


def read_spec_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed document of a TOML (.toml) or JSON (.json) spec file."""
    import tomllib

    path = Path(path)
    if path.suffix.lower() not in (".toml", ".json"):
        raise SpecError(f"spec {path}: use a .toml or .json file")
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"cannot read the spec {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"spec {path} is not valid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"spec {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"spec {path}: the top level must be an object")
    return doc


def load_spec(path: str | os.PathLike) -> tuple[SweepSpec, dict[str, Any]]:
    """Read a TOML or JSON spec file: (spec, run options such as max_parallel)."""
    return spec_from_dict(read_spec_file(path), where=str(path))


def _max_parallel(k: Any) -> int | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise SpecError(f"max_parallel must be a positive whole number, got {k!r}")
    return k


# --- 2. the plan: runs, programs, chunks ----------------------------------------------------------


class Run(NamedTuple):
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
    return dataclasses.replace(config, seed=0, learning_rate=1.0, input_scale="unit",
                               init_scale=1.0)


def group_runs(runs: Sequence[Run]) -> list[tuple[Config, list[int]]]:
    """Runs grouped by structure, in order of first appearance: one compiled program each."""
    groups: dict[Config, list[int]] = {}
    for r in runs:
        groups.setdefault(structural_key(r.config), []).append(r.index)
    return list(groups.items())


class Chunk(NamedTuple):
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
    chunks = []
    for g, (_, runs) in enumerate(groups):
        size = chunk_size(len(runs), max_parallel, num_devices)
        for start in range(0, len(runs), size):
            chunks.append(Chunk(g, tuple(runs[start:start + size]), size))
    return chunks


# --- 3. the program: many runs, one function ------------------------------------------------------


def initial_params(
    key: jax.Array, config: Config, dev: DeviceData, hyper: Hyper, num_classes: int = 10
) -> Params:
    """The parameters `make_train(config)(key, ...)` starts from (same key split, same init)."""
    n = dev.x_train.shape[0]
    tx = make_optimizer(config, steps_per_epoch(config, n))
    init_key, _ = run_keys(key)
    sizes = model_sizes(config, dev.x_train.shape[1], num_classes)
    return init_state(init_key, config, hyper, tx, sizes).params


def _max_slope(activation: str) -> float:
    """The largest derivative of the activation (relu/tanh 1, sigmoid 0.25, gelu ~1.13)."""
    with jax.ensure_compile_time_eval():  # a constant, even when called while tracing
        z = jnp.linspace(-10.0, 10.0, 20001)
        return float(jnp.max(jax.vmap(jax.grad(ACTIVATIONS[activation]))(z)))


def unit_probes(params: Params, x: jax.Array, activation: str) -> dict[str, jax.Array]:
    """How many units and examples have stopped passing signal, for inputs `x` (already scaled).

    - `dead_units`: fraction of hidden units whose activation slope is below 1% of its maximum
      on at least 99% of the examples: they pass (almost) no gradient, so they barely learn.
      For relu these are dead units (never active); for tanh or sigmoid, saturated ones.
    - `blocked`: fraction of (unit, example) pairs with such a slope: for tanh or sigmoid the
      share of saturated activations; for relu the share of inactive ones (about half is
      normal: relu is off for negative inputs by design).
    - `input_blind`: fraction of examples for which some hidden layer blocks every unit: the
      output then no longer depends on the input (for relu it is the last layer's biases).
    - `zero_outputs`: fraction of examples whose outputs are all below 1e-4 in magnitude:
      the "all my outputs are 0" symptom.
    """
    act = ACTIVATIONS[activation]
    slope_fn = jax.vmap(jax.grad(act))
    threshold = 0.01 * _max_slope(activation)
    h = x
    dead, pairs, units, blind = [], [], 0, jnp.zeros(x.shape[0], bool)
    for layer in params[:-1]:
        z = h @ layer["w"] + layer["b"]
        blocked = slope_fn(z.reshape(-1)).reshape(z.shape) < threshold
        dead.append(jnp.sum(jnp.mean(blocked, axis=0) >= 0.99))
        pairs.append(jnp.sum(blocked))
        units += z.shape[1]
        blind = blind | jnp.all(blocked, axis=1)
        h = act(z)
    logits = h @ params[-1]["w"] + params[-1]["b"]
    nan = jnp.float32(jnp.nan)  # no hidden layer: no units to be dead
    return {
        "dead_units": jnp.asarray(sum(dead) / units, jnp.float32) if units else nan,
        "blocked": jnp.asarray(sum(pairs) / (units * x.shape[0]), jnp.float32) if units else nan,
        "input_blind": jnp.mean(blind) if units else nan,
        "zero_outputs": jnp.mean(jnp.max(jnp.abs(logits), axis=1) < 1e-4),
    }


def make_program(
    config: Config,
    num_classes: int = 10,
    probes: bool = False,
    keep_params: bool = False,
    runs_per_batch: int | None = None,
) -> Callable[[jax.Array, DeviceData, Hyper], dict[str, jax.Array]]:
    """`train_runs(key_data, dev, hypers) -> per-run results`: `make_train(config)` over runs.

    `key_data` is (R, ...) raw PRNG key data (from `jax.random.key(seed)`, so run r uses exactly
    the key `python -m jaxmlp.train --seed s` does), `hypers` a Hyper of (R,) arrays; the data is
    shared by all runs. Every output has the run axis first; per-epoch metrics are (R, epochs).

    `runs_per_batch` B: the runs go through a loop B at a time, each batch of B vmapped
    (`jax.lax.map(..., batch_size=B)`); None vmaps all R at once. The results are the same
    either way (each run's arithmetic is unchanged); only speed and memory differ, see
    `auto_runs_per_batch`.
    """
    train = make_train(config, num_classes)

    def one(key_data: jax.Array, dev: DeviceData, hyper: Hyper) -> dict[str, jax.Array]:
        key = jax.random.wrap_key_data(key_data)
        state, m = train(key, dev, hyper)
        out = {name: getattr(m, name) for name in RESULT_FIELDS}
        out["first_bad_step"] = m.first_bad_step
        # Non-finite: a step's loss went NaN/inf, or the epoch's evaluation did.
        out["nonfinite"] = ((m.first_bad_step >= 0) | ~jnp.isfinite(m.train_loss)
                            | ~jnp.isfinite(m.test_loss))
        if probes:
            x = scale_inputs(dev.x_train[:PROBE_EXAMPLES], hyper)
            start = initial_params(key, config, dev, hyper, num_classes)
            for when, params in (("init", start), ("final", state.params)):
                for name, value in unit_probes(params, x, config.activation).items():
                    out[f"{name}_{when}"] = value
        if keep_params:
            out["params"] = state.params
        return out

    def train_runs(key_data: jax.Array, dev: DeviceData, hypers: Hyper) -> dict[str, jax.Array]:
        def unbatched(kh: tuple[jax.Array, Hyper]) -> dict[str, jax.Array]:
            return one(kh[0], dev, kh[1])

        if runs_per_batch == 1:
            # A plain loop, one run at a time. Not lax.map(batch_size=1), nor a vmap of a
            # single run: both still vmap (over a batch of one), and XLA:CPU then picks its
            # slower, batched kernels.
            return jax.lax.map(unbatched, (key_data, hypers))
        if runs_per_batch is None or runs_per_batch >= key_data.shape[0]:
            return jax.vmap(one, in_axes=(0, None, 0))(key_data, dev, hypers)
        return jax.lax.map(unbatched, (key_data, hypers), batch_size=runs_per_batch)

    return train_runs


# How many runs to vmap together. On a CPU, vmapping K runs turns every product into a batched
# one and multiplies the memory each step touches by K. Measured on a 2-core EPYC (32 MiB L3,
# benchmarks/README.md): a reference run (784-512-512-10) touches ~9 MiB a step, so 8 vmapped
# runs (75 MiB) stream every elementwise update from DRAM and cost 1.26x per run what one run
# alone costs, 32 cost 1.28x; one at a time in a loop inside the same program, 0.96x and 0.98x
# (and 0.91x, 0.92x with one device per core). Small runs (784-64-10, ~1 MiB) fit many at a
# time. So on CPU: as many runs as fit half the last-level cache (the other half is for the
# data streaming through). Accelerators want the opposite: one wide program, every run vmapped.
DEFAULT_CACHE_BYTES = 32 * 2**20


def last_level_cache_bytes() -> int:
    """The largest CPU cache (L3, or L2 where there is none) from Linux's sysfs; else 32 MiB."""
    best = 0
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for entry in base.glob("index*"):
            text = (entry / "size").read_text().strip()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return best or DEFAULT_CACHE_BYTES


def run_step_bytes(sizes: Sequence[int], optimizer: str, batch_size: int) -> int:
    """Bytes one run touches every step: parameters, gradients, optimizer slots (momentum: 1,
    adam: 2) and the batch's activations with their gradients, all float32."""
    params = sum(i * o + o for i, o in itertools.pairwise(sizes))
    slots = {"sgd": 0, "momentum": 1}.get(optimizer, 2)
    activations = 2 * batch_size * sum(sizes)
    return 4 * (params * (2 + slots) + activations)


def auto_runs_per_batch(
    config: Config, input_size: int, num_runs: int, platform: str, *, concurrent: int = 1,
    cache_bytes: int | None = None, num_classes: int = 10,
) -> int:
    """How many of a device's `num_runs` runs to vmap together (see `make_program`).

    CPU: as many as fit half the last-level cache, shared by `concurrent` devices training at
    the same time; at least 1, and a divisor of `num_runs` (lax.map would compile a remainder
    separately). Other platforms: all of them.
    """
    if platform != "cpu":
        return num_runs
    sizes = model_sizes(config, input_size, num_classes)
    budget = (cache_bytes or last_level_cache_bytes()) // 2 // max(1, concurrent)
    fit = max(1, min(num_runs, budget // run_step_bytes(sizes, config.optimizer,
                                                          config.batch_size)))
    return max(b for b in range(1, fit + 1) if num_runs % b == 0)


def run_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh, `runs`, over the given devices (default: every device of every host)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices, dtype=object), ("runs",))


def _global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host copy that every process holds (works on one host or many)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _to_host(tree: Any) -> Any:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def compiler_options(mode: str, mesh: Mesh) -> dict[str, Any] | None:
    if mode not in COMPILE_MODES:
        raise SpecError(f"compile mode {mode!r} is not known; choose one of "
                        f"{', '.join(COMPILE_MODES)}")
    cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
    return dict(FAST_CPU_OPTIONS) if mode == "fast" and cpu else None


class Program(NamedTuple):
    compiled: Any  # jax.stages.Compiled
    seconds: float
    reused: bool
    runs_per_batch: int  # on each device, runs trained side by side (vmapped) at a time


# Compiled programs live for the process: an experiment that runs several sweeps with the same
# structures (main grid, then controls) compiles each structure once.
_PROGRAMS: dict[tuple, Any] = {}


def get_program(
    config: Config,
    dev: DeviceData,
    size: int,
    mesh: Mesh,
    *,
    num_classes: int = 10,
    probes: bool = False,
    keep_params: bool = False,
    compile_mode: str = "default",
    runs_per_batch: int | None = None,
) -> Program:
    """The compiled program for `size` runs of `config`'s structure, from the cache if it is
    there. `dev` only lends its shapes and dtypes.

    Each device of `mesh` trains its share of the runs (`jax.shard_map`: no communication
    between runs), `runs_per_batch` at a time (default: `auto_runs_per_batch`).
    """
    options = compiler_options(compile_mode, mesh)
    ndev = mesh.devices.size
    local = size // ndev
    if runs_per_batch is None:
        platform = mesh.devices.flat[0].platform
        # Devices of one host run concurrently and share its cache.
        concurrent = ndev // max(1, jax.process_count())
        runs_per_batch = auto_runs_per_batch(
            config, dev.x_train.shape[1], local, platform, concurrent=concurrent,
            num_classes=num_classes)
    batch = min(max(1, runs_per_batch), local)
    key_shape = jax.random.key_data(jax.random.key(0)).shape
    dev_shapes = tuple((x.shape, str(x.dtype)) for x in dev)
    cache_key = (structural_key(config), num_classes, probes, keep_params, size, batch,
                 key_shape, dev_shapes, tuple(d.id for d in mesh.devices.flat),
                 tuple(sorted((options or {}).items())))
    if cache_key in _PROGRAMS:
        return Program(_PROGRAMS[cache_key], 0.0, True, batch)
    runs = NamedSharding(mesh, P("runs"))
    replicated = NamedSharding(mesh, P())
    per_device = jax.shard_map(
        make_program(structural_key(config), num_classes, probes, keep_params, batch),
        mesh=mesh, in_specs=(P("runs"), P(), P("runs")), out_specs=P("runs"),
        # Runs never communicate, so there is nothing for the replication check to prove, and
        # it cannot see through train._affine's custom gradient (whose bias gradient it would
        # call "replicated" while the primal is per device).
        check_vma=False)
    fn = jax.jit(per_device, in_shardings=(runs, replicated, runs), out_shardings=runs)
    key_spec = jax.ShapeDtypeStruct((size, *key_shape), jnp.uint32, sharding=runs)
    dev_spec = DeviceData(*(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
                            for x in dev))
    hyper_spec = Hyper(*(jax.ShapeDtypeStruct((size,), jnp.float32, sharding=runs)
                         for _ in Hyper._fields))
    t0 = time.perf_counter()
    compiled = fn.lower(key_spec, dev_spec, hyper_spec).compile(compiler_options=options)
    seconds = time.perf_counter() - t0
    _PROGRAMS[cache_key] = compiled
    return Program(compiled, seconds, False, batch)


def key_data(seeds: Sequence[int]) -> np.ndarray:
    """Raw key data of `jax.random.key(seed)` for each seed: the CLI's exact keys."""
    return np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])


def stack_hypers(hypers: Sequence[Hyper]) -> Hyper:
    return Hyper(*(np.asarray([getattr(h, f) for h in hypers], np.float32)
                   for f in Hyper._fields))


def place_data(dev: DeviceData, mesh: Mesh) -> DeviceData:
    """The data set, replicated on every device of the mesh (each device trains its own runs
    over all of it)."""
    replicated = NamedSharding(mesh, P())
    return DeviceData(*(_global_array(np.asarray(x), replicated) for x in dev))


def execute(
    program: Program, seeds: Sequence[int], hypers: Sequence[Hyper], dev: DeviceData, mesh: Mesh,
    size: int,
) -> dict[str, Any]:
    """Train len(seeds) runs (padded to `size` by repeating the last run) on `dev` (from
    `place_data`) and return their results on the host, padding removed."""
    n = len(seeds)
    if not 0 < n <= size:
        raise ValueError(f"{n} runs do not fit a program for {size}")
    pad = size - n
    seeds = list(seeds) + [seeds[-1]] * pad
    hypers = list(hypers) + [hypers[-1]] * pad
    runs = NamedSharding(mesh, P("runs"))
    kd = _global_array(key_data(seeds), runs)
    hy = Hyper(*(_global_array(a, runs) for a in stack_hypers(hypers)))
    out = _to_host(program.compiled(kd, dev, hy))
    return jax.tree.map(lambda a: np.asarray(a)[:n], out)


def train_runs(
    configs: Sequence[Config],
    dev: DeviceData,
    x_train: np.ndarray | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
    num_classes: int = 10,
    probes: bool = False,
    keep_params: bool = False,
    compile_mode: str = "default",
    runs_per_batch: int | None = None,
) -> dict[str, Any]:
    """Train configurations of one structure (each with its own seed, learning rate, input
    scaling, init scale) as one sharded program, all at once. For tests and custom experiments;
    `run_sweep` is the same path with chunks, files and statistics around it."""
    keys = {structural_key(c) for c in configs}
    if len(keys) != 1:
        raise SpecError("train_runs needs configurations that differ only in traced settings "
                        f"({', '.join(TRACED_FIELDS)})")
    mesh = run_mesh(devices)
    size = chunk_size(len(configs), None, mesh.devices.size)
    program = get_program(configs[0], dev, size, mesh, num_classes=num_classes, probes=probes,
                          keep_params=keep_params, compile_mode=compile_mode,
                          runs_per_batch=runs_per_batch)
    x_train = np.asarray(dev.x_train) if x_train is None else x_train
    hypers = [hyper_from_config(c, x_train) for c in configs]
    return execute(program, [c.seed for c in configs], hypers, place_data(dev, mesh), mesh, size)


# --- 4. data --------------------------------------------------------------------------------------


_DATASETS: dict[tuple, tuple[data.Dataset, str | None]] = {}


def _dataset(config: Config) -> tuple[data.Dataset, str | None]:
    key = (config.dataset, config.data_dir, config.source)
    if key not in _DATASETS:
        _DATASETS[key] = load_data(config, progress=False)
    return _DATASETS[key]


def sweep_data(config: Config, test_subset: int | None) -> tuple[DeviceData, np.ndarray]:
    """The device data for a configuration (and the host copy of its training pixels)."""
    dataset, _ = _dataset(config)
    dev = device_data(dataset, config)
    if test_subset is not None:
        dev = dev._replace(x_test=dev.x_test[:test_subset], y_test=dev.y_test[:test_subset])
    return dev, np.asarray(dev.x_train)


# --- 5. running a sweep ---------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """Everything a sweep produced, in memory: per-run arrays, per-variant summary, record."""

    spec: SweepSpec
    out: Path
    runs: list[Run]
    results: list[dict[str, Any]]  # per run: metric name -> (epochs,) array or probe scalar
    summary: list[dict[str, Any]]  # per variant, as in summary.csv
    record: dict[str, Any]  # sweep.json
    complete: bool
    trained_chunks: list[str]  # chunk ids trained by this call (the rest were already on disk)

    def variant(self, name: str) -> int:
        for i, v in enumerate(self.spec.variants):
            if v.name == name:
                return i
        raise KeyError(f"no variant named {name!r}")

    def curves(self, name: str, metric: str) -> np.ndarray:
        """(seeds, epochs) array of a per-epoch metric for the named variant."""
        v = self.variant(name)
        return np.stack([self.results[r.index][metric] for r in self.runs if r.variant == v])

    def final(self, name: str, metric: str) -> np.ndarray:
        """Per seed, the metric's last epoch (or a probe's value) for the named variant."""
        v = self.variant(name)
        vals = [self.results[r.index][metric] for r in self.runs if r.variant == v]
        return np.asarray([np.asarray(x).reshape(-1)[-1] for x in vals], dtype=np.float64)

    def row(self, name: str) -> dict[str, Any]:
        return self.summary[self.variant(name)]


def _atomic_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    checkpoint.atomic_write(path, lambda f: np.savez(f, **arrays))


def _flatten_result(out: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in out.items() if k != "params"}


def _read_chunks(folder: Path, fingerprint: str, num_runs: int) -> dict[int, dict[str, Any]]:
    """Per-run results from every readable chunk file; unreadable ones are retrained."""
    done: dict[int, dict[str, Any]] = {}
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("chunk-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            print(f"warning: {path} is unreadable; its runs will be trained again",
                  file=sys.stderr)
            continue
        if str(arrays.pop("fingerprint", "")) != fingerprint:
            raise SweepError(f"{path} belongs to a different sweep; use another --out")
        ids = arrays.pop("run_ids")
        arrays.pop("seconds", None)
        for j, r in enumerate(ids):
            if not 0 <= int(r) < num_runs:
                raise SweepError(f"{path} names run {int(r)}, which this sweep does not have")
            done[int(r)] = {k: v[j] for k, v in arrays.items()}
    return done


def _prepare_out(out: Path, spec: SweepSpec) -> dict[str, Any] | None:
    """Create `out`, or check that it holds this same sweep. Returns the old record, if any."""
    record_path = out / SWEEP_JSON
    if record_path.exists():
        try:
            old = json.loads(record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SweepError(f"--out {out}: {SWEEP_JSON} is corrupt ({e}); choose another --out "
                             "or delete the folder") from None
        if old.get("fingerprint") != spec.fingerprint():
            raise SweepError(
                f"--out {out} holds a different sweep ({old.get('spec', {}).get('name')!r}, "
                f"fingerprint {old.get('fingerprint')}; this one is {spec.fingerprint()}): its "
                "variants, seeds or settings differ. Choose another --out, or delete the folder "
                "to start over."
            )
        return old
    if out.exists() and any(p for p in out.iterdir() if p.name != CHUNKS):
        raise SweepError(f"--out {out} exists and is not a sweep folder (no {SWEEP_JSON}); "
                         "choose another --out")
    return None


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    max_parallel: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    compile_mode: str = "default",
    max_chunks: int | None = None,
    plots: bool = True,
    log: Callable[[str], None] = print,
    runs_per_batch: int | None = None,
) -> SweepResult:
    """Train every run of `spec` (skipping chunks already in `out/chunks`) and write the outputs.

    `devices` default to every device (on one host: no more than a chunk has runs);
    `runs_per_batch` to `auto_runs_per_batch`'s choice.

    `max_chunks` stops after training that many chunks in this call, as an interruption would
    (the result then has `complete=False` and no tables are written).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    max_parallel = _max_parallel(max_parallel)
    configs = validate_spec(spec)
    _check_options(spec)
    out = Path(out)
    writer = jax.process_index() == 0

    runs = plan_runs(spec)
    groups = group_runs(runs)
    if devices is None and jax.process_count() == 1:
        # No more devices than a chunk has runs: an idle device would train padding.
        widest = max(len(ids) for _, ids in groups)
        devices = jax.devices()[:max(1, min(widest, max_parallel or widest))]
    # Everything that can fail on bad settings happens before any training.
    mesh = run_mesh(devices)
    options = compiler_options(compile_mode, mesh)
    if runs_per_batch is not None and runs_per_batch < 1:
        raise SpecError(f"runs_per_batch must be at least 1, got {runs_per_batch}")
    for config in configs:
        dataset, _ = _dataset(config)
        check_against_data(config, len(dataset.y_train))
        if spec.test_subset is not None and spec.test_subset > len(dataset.y_test):
            raise SpecError(f"test_subset {spec.test_subset} is larger than the test set "
                            f"({len(dataset.y_test)} examples)")
    old = _prepare_out(out, spec)
    chunk_dir = out / CHUNKS
    if writer:
        chunk_dir.mkdir(parents=True, exist_ok=True)

    chunks = plan_chunks(groups, max_parallel, mesh.devices.size)
    done = _read_chunks(chunk_dir, spec.fingerprint(), len(runs))
    pending = [c for c in chunks if not all(r in done for r in c.runs)]
    if done:
        log(f"resuming {out}: {len(done)} of {len(runs)} runs already trained; "
            f"{len(pending)} of {len(chunks)} chunks to go")

    record = _record(spec, runs, groups, chunks, mesh, max_parallel, options, old)
    if writer:
        checkpoint.atomic_write_text(out / SWEEP_JSON, json.dumps(record, indent=2) + "\n")

    # Data and hyperparameters per group; programs compile in a background thread, one
    # group ahead of training, so compiling the next structure overlaps training this one.
    group_data: dict[int, tuple[DeviceData, np.ndarray]] = {}
    placed: dict[tuple, tuple[DeviceData, np.ndarray]] = {}  # one copy per distinct data set
    for c in pending:
        config = groups[c.group][0]
        key = (config.dataset, config.data_dir, config.source, config.train_subset)
        if key not in placed:
            dev, x_train = sweep_data(config, spec.test_subset)
            placed[key] = (place_data(dev, mesh), x_train)
        group_data[c.group] = placed[key]
    num_classes = {g: _dataset(groups[g][0])[0].num_classes for g in group_data}
    compile_info: dict[int, dict[str, Any]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="compile")
    futures = {}
    for c in pending:
        if c.group not in futures:
            futures[c.group] = pool.submit(
                get_program, groups[c.group][0], group_data[c.group][0], c.size, mesh,
                num_classes=num_classes[c.group], probes=spec.probes, compile_mode=compile_mode,
                runs_per_batch=runs_per_batch)

    trained: list[str] = []
    train_seconds: dict[int, float] = {}
    bar = tqdm(total=len(runs), initial=len(done), unit="run", desc=spec.name,
               disable=not progress, leave=True)
    try:
        for c in pending:
            if max_chunks is not None and len(trained) >= max_chunks:
                break
            bar.set_postfix_str(f"program {c.group + 1}/{len(groups)}"
                                + ("" if futures[c.group].done() else " (compiling)"))
            program = futures[c.group].result()
            compile_info.setdefault(c.group, {"compile_seconds": program.seconds,
                                              "reused": program.reused,
                                              "runs_per_batch": program.runs_per_batch})
            dev, x_train = group_data[c.group]
            chunk_runs = [runs[i] for i in c.runs]
            hypers = [hyper_from_config(r.config, x_train) for r in chunk_runs]
            t0 = time.perf_counter()
            result = execute(program, [r.seed for r in chunk_runs], hypers, dev, mesh, c.size)
            seconds = time.perf_counter() - t0
            train_seconds[c.group] = train_seconds.get(c.group, 0.0) + seconds
            arrays = _flatten_result(result)
            if writer:
                _atomic_npz(chunk_dir / f"chunk-{c.id}.npz", {
                    **arrays,
                    "run_ids": np.asarray(c.runs, np.int64),
                    "fingerprint": np.asarray(spec.fingerprint()),
                    "seconds": np.asarray(seconds),
                })
            for j, r in enumerate(c.runs):
                done[r] = {k: v[j] for k, v in arrays.items()}
            trained.append(c.id)
            bar.update(len(c.runs))
            acc = float(np.mean(arrays["test_accuracy"][:, -1]))
            bar.set_postfix_str(f"program {c.group + 1}/{len(groups)}, last chunk test acc "
                                f"{acc:.3f}")
    except BaseException:
        # Interrupted (Ctrl-C) or failed: the finished chunks are on disk; log the session too.
        _end_session(record, started, t_start, pending, trained, compile_info, train_seconds,
                     "interrupted")
        if writer:
            checkpoint.atomic_write_text(out / SWEEP_JSON, json.dumps(record, indent=2) + "\n")
        raise
    finally:
        bar.close()
        pool.shutdown(wait=False, cancel_futures=True)

    complete = all(r.index in done for r in runs)
    _end_session(record, started, t_start, pending, trained, compile_info, train_seconds,
                 "complete" if complete else "incomplete")

    results: list[dict[str, Any]] = [done.get(r.index, {}) for r in runs]
    summary: list[dict[str, Any]] = []
    if complete:
        summary = summarize(spec, runs, results)
        if writer:
            write_outputs(out, spec, runs, results, summary, record, plots=plots)
    if writer:
        checkpoint.atomic_write_text(out / SWEEP_JSON, json.dumps(record, indent=2) + "\n")
    return SweepResult(spec, out, runs, results, summary, record, complete, trained)


def _end_session(
    record: dict[str, Any],
    started: str,
    t_start: float,
    pending: Sequence[Chunk],
    trained: Sequence[str],
    compile_info: Mapping[int, Mapping[str, Any]],
    train_seconds: Mapping[int, float],
    status: str,
) -> None:
    """Add this call's timings to the record (sessions accumulate over resumes)."""
    session = {
        "started": started,
        "status": status,
        "wall_seconds": time.perf_counter() - t_start,
        "chunks_trained": len(trained),
        "runs_trained": sum(len(c.runs) for c in pending if c.id in trained),
        "programs_compiled": sum(1 for i in compile_info.values() if not i["reused"]),
        "programs_reused": sum(1 for i in compile_info.values() if i["reused"]),
        "compile_seconds": sum(i["compile_seconds"] for i in compile_info.values()),
        "train_seconds": sum(train_seconds.values()),
    }
    for g, info in compile_info.items():
        program = record["programs"][g]
        if not info["reused"]:
            program["compile_seconds"] = round(info["compile_seconds"], 3)
        else:  # compiled earlier in this process (another sweep): it cost this sweep nothing
            program.setdefault("compile_seconds", 0.0)
        program["reused_from_cache"] = info["reused"]
        program["runs_per_batch"] = info["runs_per_batch"]
        program["train_seconds"] = round(program.get("train_seconds", 0.0)
                                         + train_seconds.get(g, 0.0), 3)
    record["sessions"].append(session)
    record["status"] = status
    _totals(record)


def _record(
    spec: SweepSpec,
    runs: Sequence[Run],
    groups: Sequence[tuple[Config, list[int]]],
    chunks: Sequence[Chunk],
    mesh: Mesh,
    max_parallel: int | None,
    options: dict[str, Any] | None,
    old: dict[str, Any] | None,
) -> dict[str, Any]:
    """sweep.json: what was asked, on what, and how long it took (sessions accumulate)."""
    datasets = {}
    for config, _ in groups:
        ds, note = _dataset(config)
        datasets[ds.name] = {"source": ds.source, "num_train_available": len(ds.y_train),
                             "num_test_available": len(ds.y_test), "fallback": note}
    by_group = {}
    for c in chunks:
        by_group.setdefault(c.group, []).append(c)
    programs = []
    old_programs = (old or {}).get("programs", [])
    for g, (key, run_ids) in enumerate(groups):
        structure = {k: v for k, v in key.to_dict().items() if k not in TRACED_FIELDS}
        variants = sorted({runs[i].variant for i in run_ids})
        program = {
            "program": g,
            "structure": structure,
            "variants": [spec.variants[v].name for v in variants],
            "runs": len(run_ids),
            "runs_per_call": by_group[g][0].size,
            "chunks": len(by_group[g]),
        }
        same = json.loads(json.dumps(structure))  # as sweep.json stores it (tuples as lists)
        if g < len(old_programs) and old_programs[g].get("structure") == same:
            # Timings of earlier sessions (a resumed sweep adds to them).
            for k in ("compile_seconds", "reused_from_cache", "train_seconds"):
                if k in old_programs[g]:
                    program[k] = old_programs[g][k]
        programs.append(program)
    return {
        "fingerprint": spec.fingerprint(),
        "spec": spec.to_dict(),
        "num_variants": len(spec.variants),
        "num_seeds": len(spec.seeds),
        "num_runs": len(runs),
        "num_programs": len(groups),
        "num_chunks": len(chunks),
        "traced_settings": list(TRACED_FIELDS),
        "max_parallel": max_parallel,
        "compiler_options": options or {},
        "datasets": datasets,
        "programs": programs,
        "versions": versions(),
        "devices": [str(d) for d in mesh.devices.flat],
        "device_kind": mesh.devices.flat[0].device_kind,
        "process_count": jax.process_count(),
        "command": sys.argv,
        "sessions": list(old.get("sessions", [])) if old else [],
        "status": "running",
    }


def _totals(record: dict[str, Any]) -> None:
    s = record["sessions"]
    record["wall_seconds"] = round(sum(x["wall_seconds"] for x in s), 3)
    record["compile_seconds"] = round(sum(x["compile_seconds"] for x in s), 3)
    record["train_seconds"] = round(sum(x["train_seconds"] for x in s), 3)
    record["programs_compiled"] = sum(x["programs_compiled"] for x in s)


# --- 6. tables, statistics, plots -----------------------------------------------------------------


def results_columns(spec: SweepSpec) -> list[str]:
    """results.csv's columns: run, variant, the settings that vary, seed, epoch, metrics."""
    return ["run", "variant", *spec.varied_fields(), "seed", "epoch", *RESULT_FIELDS,
            "nonfinite", "first_bad_step"]


def _cell(x: Any) -> Any:
    """A CSV cell: floats in their shortest exact form (float32 as float32), nan/inf spelled
    out, booleans as 0/1, tuples as 64x64, None as empty."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_, int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            return "nan" if math.isnan(float(x)) else ("inf" if x > 0 else "-inf")
        return str(x) if isinstance(x, np.floating) else repr(x)
    if isinstance(x, tuple):
        return format_value(x)
    return x


def results_rows(spec: SweepSpec, runs: Sequence[Run], results: Sequence[Mapping[str, Any]]
                 ) -> list[dict[str, Any]]:
    varied = spec.varied_fields()
    rows = []
    for r in runs:
        res = results[r.index]
        settings = {k: format_value(getattr(r.config, k)) for k in varied}
        for e in range(len(res["train_loss"])):
            bad = int(res["first_bad_step"][e])
            rows.append({
                "run": r.index,
                "variant": spec.variants[r.variant].name,
                **settings,
                "seed": r.seed,
                "epoch": e + 1,
                **{k: _cell(res[k][e]) for k in RESULT_FIELDS},
                "nonfinite": int(bool(res["nonfinite"][e])),
                # 1-based step within the epoch, as `python -m jaxmlp.train` reports it.
                "first_bad_step": bad + 1 if bad >= 0 else "",
            })
    return rows


def run_summary(spec: SweepSpec, run: Run, res: Mapping[str, Any]) -> dict[str, Any]:
    """One row of runs.csv: a run's final metrics, divergence and probes."""
    nonfinite = np.asarray(res["nonfinite"], bool)
    diverged = bool(nonfinite.any())
    row: dict[str, Any] = {
        "run": run.index,
        "variant": spec.variants[run.variant].name,
        **{k: format_value(getattr(run.config, k)) for k in spec.varied_fields()},
        "seed": run.seed,
        **{f"final_{k}": res[k][-1] for k in RESULT_FIELDS},
        "diverged": int(diverged),
        "diverged_epoch": "",
        "diverged_update": "",
        "epochs_to_target": stats.epochs_to_target(res["test_accuracy"], spec.target_accuracy),
    }
    if diverged:
        e = int(np.flatnonzero(nonfinite)[0])
        row["diverged_epoch"] = e + 1
        step = int(res["first_bad_step"][e])
        if step >= 0:  # the update count from the start of training, 1-based
            n = _dataset(run.config)[0].y_train.shape[0]
            n = n if run.config.train_subset is None else min(n, run.config.train_subset)
            row["diverged_update"] = e * steps_per_epoch(run.config, n) + step + 1
    if spec.probes:
        for p in PROBES:
            for when in ("init", "final"):
                row[f"{p}_{when}"] = float(res[f"{p}_{when}"])
    return row


def summarize(spec: SweepSpec, runs: Sequence[Run], results: Sequence[Mapping[str, Any]]
              ) -> list[dict[str, Any]]:
    """Per variant: seeds, divergence, final test accuracy and train loss (mean, std, 95% CI),
    epochs to the target accuracy, and the probes' means."""
    varied = spec.varied_fields()
    rows = []
    for v, variant in enumerate(spec.variants):
        mine = [r for r in runs if r.variant == v]
        per_run = [run_summary(spec, r, results[r.index]) for r in mine]
        acc = stats.describe([p["final_test_accuracy"] for p in per_run])
        loss = stats.describe([p["final_train_loss"] for p in per_run])
        reached = [p["epochs_to_target"] for p in per_run if p["epochs_to_target"] is not None]
        config = spec.config(v)
        row: dict[str, Any] = {
            "variant": variant.name,
            **{k: format_value(getattr(config, k)) for k in varied},
            "seeds": len(mine),
            "diverged_frac": float(np.mean([p["diverged"] for p in per_run])),
            **{f"test_acc_{k}": acc[k] for k in ("mean", "std", "ci_lo", "ci_hi")},
            "train_loss_n": loss["n"],
            **{f"train_loss_{k}": loss[k] for k in ("mean", "std", "ci_lo", "ci_hi")},
            "target_accuracy": spec.target_accuracy,
            "reached_frac": len(reached) / len(mine),
            "epochs_to_target_mean": float(np.mean(reached)) if reached else math.nan,
        }
        if spec.probes:
            for p in PROBES:
                for when in ("init", "final"):
                    vals = np.asarray([q[f"{p}_{when}"] for q in per_run], float)
                    row[f"{p}_{when}_mean"] = (float(np.nanmean(vals))
                                               if np.isfinite(vals).any() else math.nan)
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(row.get(k)) for k in columns})
    checkpoint.atomic_write_text(path, buf.getvalue())


def summary_markdown(spec: SweepSpec, summary: Sequence[Mapping[str, Any]],
                     record: Mapping[str, Any], findings: Sequence[str],
                     sections: Sequence[tuple[str, str]] = ()) -> str:
    """summary.md: settings, the per-variant table, extra sections, then the findings last."""
    varied = set(spec.varied_fields())
    fixed = {k: v for k, v in spec.config(0).to_dict().items()
             if k not in varied and k not in ("seed", "data_dir")}
    datasets = ", ".join(f"{n} ({d['source']})" for n, d in record["datasets"].items())
    target = stats.pct(spec.target_accuracy, 0)
    lines = [f"# {spec.name}", ""]
    if spec.note:
        lines += [spec.note, ""]
    lines += [
        f"- {len(spec.variants)} variants x {len(spec.seeds)} seeds "
        f"({', '.join(map(str, spec.seeds))}) = {record['num_runs']} runs, "
        f"{record['num_programs']} compiled programs",
        f"- data: {datasets}" + (f"; test set: first {spec.test_subset} examples"
                                 if spec.test_subset else ""),
        "- fixed settings: " + ", ".join(f"{k}={format_value(_tuple(v))}"
                                         for k, v in fixed.items()),
        f"- devices: {len(record['devices'])} x {record['device_kind']}; wall "
        f"{record['wall_seconds']:.1f} s (compile {record['compile_seconds']:.1f} s, train "
        f"{record['train_seconds']:.1f} s); jax {record['versions']['jax']}",
        "",
        "Final values are from the last epoch, over seeds: mean ± std [95% bootstrap CI of the "
        "mean]. Train loss is the mean per-example loss whatever the reduction, over runs that "
        f"stayed finite (n). 'to {target}': mean epochs to reach {target} test accuracy, over "
        "the seeds that reached it (how many in brackets). 'diverged': runs whose loss became "
        "NaN/inf.",
        "",
        f"| variant | final test accuracy | final train loss (n) | to {target} | diverged |",
        "|---|---|---|---|---|",
    ]
    for row in summary:
        acc = (f"{stats.pct(row['test_acc_mean'])} ± {stats.pct(row['test_acc_std'])} "
               f"{stats.fmt_ci(row['test_acc_ci_lo'], row['test_acc_ci_hi'], 100, 2)}")
        loss = (f"{stats.fmt(row['train_loss_mean'])} ± {stats.fmt(row['train_loss_std'])} "
                f"{stats.fmt_ci(row['train_loss_ci_lo'], row['train_loss_ci_hi'])} "
                f"({row['train_loss_n']})")
        reached = round(row["reached_frac"] * row["seeds"])
        to_target = (f"{row['epochs_to_target_mean']:.1f} ({reached}/{row['seeds']})"
                     if reached else f"never (0/{row['seeds']})")
        diverged = f"{round(row['diverged_frac'] * row['seeds'])}/{row['seeds']}"
        lines.append(f"| {row['variant']} | {acc} | {loss} | {to_target} | {diverged} |")
    lines.append("")
    if spec.probes:
        lines += ["Unit probes on the first 1,000 training examples, mean over seeds, at "
                  "initialisation -> after training (see `jaxmlp.sweep.unit_probes`):", "",
                  "| variant | dead/saturated units | blocked unit-image pairs | input-blind "
                  "images | all-zero outputs |",
                  "|---|---|---|---|---|"]
        for row in summary:
            cells = [f"{stats.pct(row[f'{p}_init_mean'], 1)} -> "
                     f"{stats.pct(row[f'{p}_final_mean'], 1)}" for p in PROBES]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, body in sections:
        lines += [f"## {title}", "", body.rstrip(), ""]
    lines += ["## Findings", "", "Generated from the results above by the code that ran the "
              "sweep; rerunning regenerates them.", ""]
    lines += [f"- {f}" for f in findings]
    return "\n".join(lines) + "\n"


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def generic_findings(spec: SweepSpec, summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """Findings any sweep can state: best and worst variant, separation, divergence."""
    if not summary:
        return []
    order = sorted(summary, key=lambda r: -np.nan_to_num(r["test_acc_mean"], nan=-1.0))
    best, worst = order[0], order[-1]

    def acc(r: Mapping[str, Any]) -> str:
        return (f"{stats.pct(r['test_acc_mean'])} "
                f"(95% CI {stats.fmt_ci(r['test_acc_ci_lo'], r['test_acc_ci_hi'], 100, 2)})")

    out = [f"Highest mean final test accuracy: {best['variant']} at {acc(best)} over "
           f"{best['seeds']} seeds."]
    if len(order) > 1:
        out.append(f"Lowest: {worst['variant']} at {acc(worst)}.")
        second = order[1]
        a = {k: best[f"test_acc_{k}"] for k in ("ci_lo", "ci_hi")}
        b = {k: second[f"test_acc_{k}"] for k in ("ci_lo", "ci_hi")}
        if stats.intervals_overlap(a, b):
            out.append(f"The runner-up, {second['variant']} at {acc(second)}, overlaps the best "
                       "one's interval: these seeds do not separate them.")
        else:
            out.append(f"The runner-up, {second['variant']} at {acc(second)}, lies outside the "
                       "best one's interval.")
    diverged = [r for r in summary if r["diverged_frac"] > 0]
    if diverged:
        listed = ", ".join(f"{r['variant']} ({round(r['diverged_frac'] * r['seeds'])}/"
                           f"{r['seeds']})" for r in diverged)
        out.append(f"{len(diverged)} of {len(summary)} variants had runs whose loss became "
                   f"NaN/inf: {listed}.")
    else:
        out.append(f"No run of the {len(summary)} variants diverged (every loss stayed finite).")
    return out


def write_outputs(
    out: Path,
    spec: SweepSpec,
    runs: Sequence[Run],
    results: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any],
    *,
    plots: bool = True,
) -> None:
    """results.csv, runs.csv, summary.csv, summary.md (with generic findings) and the plots."""
    from jaxmlp import plots_sweep

    _write_csv(out / "results.csv", results_rows(spec, runs, results), results_columns(spec))
    run_rows = [run_summary(spec, r, results[r.index]) for r in runs]
    _write_csv(out / "runs.csv", run_rows, list(run_rows[0]))
    _write_csv(out / "summary.csv", summary, list(summary[0]))
    text = summary_markdown(spec, summary, record, generic_findings(spec, summary))
    checkpoint.atomic_write_text(out / "summary.md", text)
    if plots:
        names = [v.name for v in spec.variants]
        by_variant = [[r for r in runs if r.variant == v] for v in range(len(names))]

        def stack(metric: str) -> list[np.ndarray]:
            return [np.stack([results[r.index][metric] for r in rs]) for rs in by_variant]

        finals = [np.asarray([results[r.index]["test_accuracy"][-1] for r in rs])
                  for rs in by_variant]
        plots_sweep.plot_curves(out / "curves.png", names, stack("train_loss"),
                                stack("test_accuracy"), spec.name)
        plots_sweep.plot_final(out / "final_accuracy.png", names, finals, spec.name)


def write_findings(result: SweepResult, findings: Sequence[str],
                   sections: Sequence[tuple[str, str]] = ()) -> None:
    """Rewrite summary.md with an experiment's own findings (and extra sections) at the end."""
    text = summary_markdown(result.spec, result.summary, result.record, findings, sections)
    checkpoint.atomic_write_text(result.out / "summary.md", text)


# --- 7. parameter trajectories side by side -------------------------------------------------------


def compare_trajectories(
    config_a: Config,
    config_b: Config,
    seeds: Sequence[int],
    dev: DeviceData,
    hyper_a: Hyper,
    hyper_b: Hyper,
    num_classes: int = 10,
) -> dict[str, np.ndarray]:
    """Train two configurations in lockstep on the same batches, from the same initial
    parameters, and measure after every update how far apart their parameters are.

    Returns per seed (rows) and update (columns): `max_abs_diff` (largest |a - b| over every
    parameter), `max_abs_param` (largest |a|, for scale), and `final_params_a`. The batches are
    drawn exactly as `train.make_epoch` draws them, so run a follows `make_train(config_a)`.
    """
    for field in ("batch_size", "epochs", "hidden", "init", "activation", "train_subset"):
        if getattr(config_a, field) != getattr(config_b, field):
            raise ValueError(f"compare_trajectories needs the same {field} in both configs")
    n = dev.x_train.shape[0]
    num_steps = steps_per_epoch(config_a, n)
    batch_size = config_a.batch_size
    tx_a = make_optimizer(config_a, num_steps)
    tx_b = make_optimizer(config_b, num_steps)
    step_a, step_b = make_step(config_a, tx_a), make_step(config_b, tx_b)
    sizes = model_sizes(config_a, dev.x_train.shape[1], num_classes)

    def one(kd: jax.Array) -> tuple[jax.Array, jax.Array, Params]:
        init_key, data_key = run_keys(jax.random.wrap_key_data(kd))
        state_a = init_state(init_key, config_a, hyper_a, tx_a, sizes)
        state_b = init_state(init_key, config_b, hyper_b, tx_b, sizes)

        def epoch(carry: tuple, e: jax.Array) -> tuple:
            order = jax.random.permutation(jax.random.fold_in(data_key, e), n)
            order = order[: num_steps * batch_size].reshape(num_steps, batch_size)

            def body(carry: tuple, idx: jax.Array) -> tuple:
                sa, sb = carry
                x, y = dev.x_train[idx], dev.y_train[idx]
                sa, _ = step_a(sa, Batch(scale_inputs(x, hyper_a), y))
                sb, _ = step_b(sb, Batch(scale_inputs(x, hyper_b), y))
                diffs = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), sa.params, sb.params)
                sizes_ = jax.tree.map(lambda a: jnp.max(jnp.abs(a)), sa.params)
                return (sa, sb), (jnp.max(jnp.stack(jax.tree.leaves(diffs))),
                                  jnp.max(jnp.stack(jax.tree.leaves(sizes_))))

            return jax.lax.scan(body, carry, order)

        (sa, _), (diff, size) = jax.lax.scan(epoch, (state_a, state_b),
                                             jnp.arange(config_a.epochs))
        return diff.reshape(-1), size.reshape(-1), sa.params

    fn = jax.jit(jax.vmap(one))
    diff, size, params = jax.device_get(fn(jnp.asarray(key_data(seeds))))
    return {"max_abs_diff": np.asarray(diff), "max_abs_param": np.asarray(size),
            "final_params_a": params}


# --- 8. the command line --------------------------------------------------------------------------


def _convert(name: str, text: str) -> Any:
    """One grid value from the command line, converted to the field's type."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    if name == "hidden":
        if text.lower() in ("", "none"):
            return ()
        try:
            return tuple(int(w) for w in text.lower().split("x"))
        except ValueError:
            raise SpecError(f"--grid hidden: {text!r} is not a list of widths like 64 or "
                            "128x64") from None
    if base is bool:
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise SpecError(f"--grid {name}: {text!r} is not true or false")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise SpecError(f"--grid {name}: {text!r} is not a {base.__name__}") from None
    return text


def parse_grid_flag(text: str) -> tuple[str, list[Any]]:
    """`--grid learning_rate=0.01,0.1` -> ("learning_rate", [0.01, 0.1]); a JSON list after
    the = sign is taken as it is (`--grid 'hidden=[[64],[128,128]]'`)."""
    if "=" not in text:
        raise SpecError(f"--grid {text!r}: write FIELD=VALUE1,VALUE2,... (e.g. "
                        "learning_rate=0.01,0.1)")
    name, values = text.split("=", 1)
    name = name.strip().replace("-", "_")
    _check_field(name, "--grid")
    if values.strip().startswith("["):
        try:
            parsed = json.loads(values)
        except json.JSONDecodeError as e:
            raise SpecError(f"--grid {name}: {values!r} is not a JSON list ({e})") from None
        if not isinstance(parsed, list) or not parsed:
            raise SpecError(f"--grid {name}: give a non-empty list")
        return name, [_normalise(name, v) for v in parsed]
    items = [v.strip() for v in values.split(",")]
    if not items or (any(v == "" for v in items) and name != "hidden"):
        raise SpecError(f"--grid {name}: empty value in {values!r}")
    return name, [_convert(name, v) for v in items]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from jaxmlp import cli, compilation

    parser = argparse.ArgumentParser(
        prog="python -m jaxmlp.sweep",
        description="Train a grid of variants x seeds as a few vmapped programs, with statistics "
        "and plots. The base configuration comes from --spec and/or the configuration flags "
        "(flags given explicitly override the spec); the grid from the spec's [grid] table "
        "and/or --grid.",
    )
    g = parser.add_argument_group("sweep")
    g.add_argument("--spec", metavar="FILE", help="a TOML or JSON sweep spec (keys: name, note, "
                   "base, grid, variants, seeds, target_accuracy, test_subset, probes, "
                   "max_parallel)")
    g.add_argument("--out", required=True, help="output folder; the same folder again resumes")
    g.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a grid axis (repeat for more axes); replaces the spec's axis of that "
                   "name. Widths: --grid hidden=64,128x128")
    g.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train seeds 0..N-1 of every variant (default: the spec's, else 5)")
    g.add_argument("--seed-list", type=int, nargs="+", default=None, metavar="S",
                   help="train exactly these seeds")
    g.add_argument("--name", default=None, help="the sweep's title in summary.md")
    g.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy that counts as reached (default 0.9)")
    g.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on the first N test examples only")
    g.add_argument("--probes", action=argparse.BooleanOptionalAction, default=None,
                   help="measure dead units and all-zero outputs at init and at the end")
    g.add_argument("--max-parallel", type=int, default=None, metavar="K",
                   help="train at most K runs at a time (memory grows with K)")
    g.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="on a CPU, split it into N JAX devices that train runs side by side "
                   "(default: one per core)")
    g.add_argument("--runs-per-batch", type=int, default=None, metavar="B",
                   help="on each device, train B runs side by side (vmapped) at a time, in a "
                   "loop (default: on CPU as many as fit half the last-level cache; elsewhere "
                   "all)")
    g.add_argument("--compile", choices=COMPILE_MODES, default="default",
                   help="default: XLA's usual optimisation; fast: on CPU, compile 2-3x faster "
                   "but train up to 4x slower (only worth it for tiny sweeps)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar")
    g.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the PNG plots")
    cli.add_dataclass_flags(parser, Config, "base configuration")
    args = parser.parse_args(argv)
    # Before JAX starts: the XLA:CPU options `python -m jaxmlp.train` uses, and one CPU device
    # per core so that runs train side by side (benchmarks/README.md).
    compilation.tune_xla_cpu()
    for flag, value in (("--cpu-devices", args.cpu_devices),
                        ("--runs-per-batch", args.runs_per_batch)):
        if value is not None and value < 1:
            cli.fail(f"{flag} must be at least 1, got {value}")
    compilation.split_cpu_into_devices(args.cpu_devices)
    # Re-running a sweep (or one with the same structures) then loads its programs from disk.
    compilation.enable_compilation_cache()

    try:
        given = cli.flags_given(parser, argv)
        if "seed" in given:
            raise SpecError("--seed sets one run's seed; a sweep takes --seeds N or --seed-list")
        doc = dict(read_spec_file(args.spec)) if args.spec else {}
        if args.spec:
            base = dict(doc.get("base", {})) if isinstance(doc.get("base", {}), dict) else {}
            base.update({f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                         if f.name in given})
        else:  # no spec: the configuration flags, defaults included, are the base
            base = cli.dataclass_from_args(Config, args).to_dict()
        base.pop("seed", None)
        doc["base"] = base
        grid = dict(doc.get("grid", {})) if isinstance(doc.get("grid", {}), dict) else {}
        for flag in args.grid:
            name, values = parse_grid_flag(flag)
            grid[name] = values
        doc["grid"] = grid
        if args.seeds is not None:
            doc["seeds"] = args.seeds
        if args.seed_list is not None:
            doc["seeds"] = args.seed_list
        for k in ("name", "target_accuracy", "test_subset", "probes", "max_parallel"):
            if getattr(args, k) is not None:
                doc[k] = getattr(args, k)
        spec, run_options = spec_from_dict(doc, where=args.spec or "command line")
        result = run_sweep(spec, args.out, max_parallel=run_options.get("max_parallel"),
                           progress=args.progress, compile_mode=args.compile, plots=args.plots,
                           runs_per_batch=args.runs_per_batch)
    except (SpecError, SweepError, ConfigError, data.DataError, checkpoint.CheckpointError) as e:
        cli.fail(str(e))
    except KeyboardInterrupt:
        cli.fail(f"interrupted; finished chunks are saved in {args.out}/{CHUNKS}: run the same "
                 "command again to continue", code=130)
    rec = result.record
    print(f"{spec.name}: {rec['num_runs']} runs ({len(spec.variants)} variants x "
          f"{len(spec.seeds)} seeds) in {rec['num_programs']} programs; wall "
          f"{rec['wall_seconds']:.1f} s (compile {rec['compile_seconds']:.1f} s, train "
          f"{rec['train_seconds']:.1f} s)")
    for line in generic_findings(spec, result.summary):
        print(f"- {line}")
    print(f"outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
