"""The program of a sweep: every run of one structure trained by one compiled, sharded function.

`make_program` is `loop.make_train` over a run axis; `auto_runs_per_batch` decides how many runs
a device trains side by side; `get_program` compiles it for a mesh of devices (through a
`ProgramCache`); `execute` feeds it seeds and hyperparameters; `train_runs` does all three.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import pick
from jaxmlp.config import Config
from jaxmlp.loop import DeviceData, Hyper, hyper_from_config, make_train, model_sizes
from jaxmlp.probes import ProbeStats, make_probe
from jaxmlp.sizes import run_bytes as run_step_bytes  # what a run touches every step
from jaxmlp.sweep.plan import TRACED_FIELDS, chunk_size, group_key, program_key, shared_key
from jaxmlp.sweep.spec import SpecError

RESULT_FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# The probe columns (each twice: `<name>_init` and `<name>_final`) and the `probes.ProbeStats`
# field each one is.
PROBE_FIELDS = {"dead_units": "stuck_all", "blocked": "blocked", "input_blind": "input_blind",
                "zero_outputs": "zero_outputs"}
PROBES = tuple(PROBE_FIELDS)

COMPILE_MODES = ("default", "fast")
# "fast": XLA's CPU backend at optimisation level 0 compiles 2-3x faster but the code it makes
# trains up to 4x slower (experiments/engine_check.py: 20 runs of a 784-128-10 MLP on 10,000
# images), so it only pays for tiny runs whose time is mostly compilation. Other platforms
# ignore it.
FAST_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def probe_columns(probe: ProbeStats) -> dict[str, jax.Array]:
    """A run's probe columns from `RunMetrics.probe` (leading axis epochs + 1): each probe at
    initialisation (`<name>_init`, index 0) and after the last epoch (`<name>_final`, index -1).

    `loop.make_train`'s `probe` measures them on the first `probes.PROBE_EXAMPLES` (1,000)
    training examples; `jaxmlp.probes` defines them, the same definitions `--diagnose` reports:

    - `dead_units` (`ProbeStats.stuck_all`): fraction of hidden units whose activation slope is
      below 1% of its maximum on at least 99% of the examples: they pass (almost) no gradient,
      so they barely learn. For relu these are dead units (never active); for tanh or sigmoid,
      saturated ones.
    - `blocked`: fraction of (unit, example) pairs with such a slope: for tanh or sigmoid the
      share of saturated activations; for relu the share of inactive ones (about half is
      normal: relu is off for negative inputs by design).
    - `input_blind`: fraction of examples for which some hidden layer blocks every unit: the
      output then no longer depends on the input (for relu it is the last layer's biases).
    - `zero_outputs`: fraction of examples whose outputs are all below 1e-4 in magnitude:
      the "all my outputs are 0" symptom.
    """
    return {f"{name}_{when}": getattr(probe, field)[at]
            for when, at in (("init", 0), ("final", -1)) for name, field in PROBE_FIELDS.items()}


def make_program(
    config: Config,
    num_classes: int = 10,
    probes: bool = False,
    keep_params: bool = False,
    runs_per_batch: int | None = None,
    picks: pick.Options | None = None,
) -> Callable[[jax.Array, DeviceData, Hyper], dict[str, jax.Array]]:
    """`train_runs(key_data, dev, hypers) -> per-run results`: `make_train(config)` over runs.

    `key_data` is (R, ...) raw PRNG key data (from `jax.random.key(seed)`, so run r uses exactly
    the key `python -m jaxmlp.train --seed s` does), `hypers` a Hyper of (R,) arrays; the data is
    shared by all runs. Every output has the run axis first; per-epoch metrics are (R, epochs).

    `runs_per_batch` B: the runs go through a loop B at a time, each batch of B vmapped
    (`jax.lax.map(..., batch_size=B)`); None vmaps all R at once. The results are the same
    either way (each run's arithmetic is unchanged); only speed and memory differ, see
    `auto_runs_per_batch`.

    `probes`: each run also reports the four probes of `probe_columns`, at initialisation and
    after the last epoch. `picks`: the runs' losses and activations, when they differ
    (`jaxmlp.pick`): each run's `Hyper` picks its own.
    """
    probe = make_probe(config, num_classes, picks) if probes else None
    train = make_train(config, num_classes, probe=probe, picks=picks)

    def one(key_data: jax.Array, dev: DeviceData, hyper: Hyper) -> dict[str, jax.Array]:
        key = jax.random.wrap_key_data(key_data)
        state, m = train(key, dev, hyper)
        out = {name: getattr(m, name) for name in RESULT_FIELDS}
        out["first_bad_step"] = m.first_bad_step
        # Non-finite: a step's loss went NaN/inf, or the epoch's evaluation did.
        out["nonfinite"] = ((m.first_bad_step >= 0) | ~jnp.isfinite(m.train_loss)
                            | ~jnp.isfinite(m.test_loss))
        if probes:
            out.update(probe_columns(m.probe))
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


# How many runs to vmap together. On a CPU, K vmapped runs touch K times the memory each step:
# past the cache every update streams from DRAM, so runs go as many at a time as fit half the
# last-level cache (the other half is for the data streaming through); benchmarks/README.md,
# "Many runs at once", measures it. Accelerators want one wide program, every run vmapped.
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
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def compiler_options(mode: str, mesh: Mesh) -> dict[str, Any] | None:
    """XLA options of a compile mode on `mesh` (None: XLA's defaults)."""
    if mode not in COMPILE_MODES:
        raise SpecError(f"compile mode {mode!r} is not known; choose one of "
                        f"{', '.join(COMPILE_MODES)}")
    cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
    return dict(FAST_CPU_OPTIONS) if mode == "fast" and cpu else None


class Program(NamedTuple):
    """A compiled program, how long it took to compile, and whether it came from the cache."""

    compiled: Any  # jax.stages.Compiled
    seconds: float
    reused: bool
    runs_per_batch: int  # on each device, runs trained side by side (vmapped) at a time


class ProgramCache:
    """Compiled programs, by everything that decides their code (structure, run count, runs per
    batch, data shapes, devices, compiler options; see `get_program`): not by which data, so
    groups that differ only in it (`plan.DATA_FIELDS`: another data set of the same shapes,
    another pixel order) share a program.

    An object, not a process-wide table: hand the same cache to several sweeps
    (`run_sweep(..., programs=cache)`) and an experiment that runs several sweeps with the same
    structures (main grid, then controls) compiles each structure once. A sweep given none
    compiles into a fresh cache of its own.
    """

    def __init__(self) -> None:
        self._compiled: dict[tuple, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._compiled

    def __len__(self) -> int:
        return len(self._compiled)

    def get(self, key: tuple) -> Any:
        """The compiled program stored under `key` (a KeyError if there is none)."""
        return self._compiled[key]

    def serving(self, key: tuple) -> tuple | None:
        """The key of a stored program that trains what `key` (structure, picks, the rest of
        `get_program`'s key) asks for: `key` itself, or one of the same shared structure that
        picks among every choice `key`'s runs make (each run's `Hyper` picks its own, so it
        trains them too). None: nothing stored serves it."""
        if key in self._compiled:
            return key
        shared = shared_key(key[0])
        return next((k for k in self._compiled
                     if k[1] and k[2:] == key[2:] and shared_key(k[0]) == shared
                     and pick.serves(k[1], k[0], key[1], key[0])), None)

    def put(self, key: tuple, compiled: Any) -> None:
        self._compiled[key] = compiled

    def clear(self) -> None:
        """Forget every program (the next `get_program` of each compiles again)."""
        self._compiled.clear()


def _runs_per_batch(config: Config, dev: DeviceData, mesh: Mesh, local: int, num_classes: int,
                    runs_per_batch: int | None) -> int:
    """Runs each device trains side by side: `runs_per_batch`, else `auto_runs_per_batch`'s
    choice for `local` runs a device."""
    if runs_per_batch is None:
        platform = mesh.devices.flat[0].platform
        # Devices of one host run concurrently and share its cache.
        concurrent = mesh.devices.size // max(1, jax.process_count())
        runs_per_batch = auto_runs_per_batch(
            config, dev.x_train.shape[1], local, platform, concurrent=concurrent,
            num_classes=num_classes)
    return min(max(1, runs_per_batch), local)


def _compile(config: Config, dev: DeviceData, size: int, mesh: Mesh, num_classes: int,
             probes: bool, keep_params: bool, batch: int, options: dict[str, Any] | None,
             picks: pick.Options | None) -> Any:
    """`make_program` for `size` runs, sharded over `mesh` and compiled (a jax.stages.Compiled)."""
    runs = NamedSharding(mesh, P("runs"))
    replicated = NamedSharding(mesh, P())
    per_device = jax.shard_map(
        make_program(config, num_classes, probes, keep_params, batch, picks),
        mesh=mesh, in_specs=(P("runs"), P(), P("runs")), out_specs=P("runs"),
        # Runs never communicate, so there is nothing for the replication check to prove, and
        # it cannot see through model._affine's custom gradient (whose bias gradient it would
        # call "replicated" while the primal is per device).
        check_vma=False)
    fn = jax.jit(per_device, in_shardings=(runs, replicated, runs), out_shardings=runs)
    key_shape = jax.random.key_data(jax.random.key(0)).shape
    key_spec = jax.ShapeDtypeStruct((size, *key_shape), jnp.uint32, sharding=runs)
    dev_spec = DeviceData(*(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
                            for x in dev))
    hyper_spec = Hyper(*(jax.ShapeDtypeStruct((size,), jnp.float32, sharding=runs)
                         for _ in Hyper._fields))
    return fn.lower(key_spec, dev_spec, hyper_spec).compile(compiler_options=options)


def get_program(
    config: Config,
    dev: DeviceData,
    size: int,
    mesh: Mesh,
    *,
    cache: ProgramCache | None = None,
    num_classes: int = 10,
    probes: bool = False,
    keep_params: bool = False,
    compile_mode: str = "default",
    runs_per_batch: int | None = None,
    picks: pick.Options | None = None,
) -> Program:
    """The compiled program for `size` runs of `config`'s structure, from `cache` if it is
    there (and put there once compiled; no cache: compiled afresh). `dev` only lends its shapes
    and dtypes.

    Each device of `mesh` trains its share of the runs (`jax.shard_map`: no communication
    between runs), `runs_per_batch` at a time (default: `auto_runs_per_batch`). `picks`: what
    the runs differ in among the picked settings (`plan.group_options`; `config` is then their
    `plan.group_key`), which the program picks per run. A stored program that picks among
    more serves too (`ProgramCache.serving`).
    """
    options = compiler_options(compile_mode, mesh)
    config = program_key(config)
    batch = _runs_per_batch(config, dev, mesh, size // mesh.devices.size, num_classes,
                            runs_per_batch)
    key_shape = jax.random.key_data(jax.random.key(0)).shape
    dev_shapes = tuple((x.shape, str(x.dtype)) for x in dev)
    cache_key = (config, picks, num_classes, probes, keep_params, size, batch,
                 key_shape, dev_shapes, tuple(d.id for d in mesh.devices.flat),
                 tuple(sorted((options or {}).items())))
    found = None if cache is None else cache.serving(cache_key)
    if found is not None:
        return Program(cache.get(found), 0.0, True, batch)
    t0 = time.perf_counter()
    compiled = _compile(config, dev, size, mesh, num_classes, probes, keep_params, batch,
                        options, picks)
    seconds = time.perf_counter() - t0
    if cache is not None:
        cache.put(cache_key, compiled)
    return Program(compiled, seconds, False, batch)


def key_data(seeds: Sequence[int]) -> np.ndarray:
    """Raw key data of `jax.random.key(seed)` for each seed: the CLI's exact keys."""
    return np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])


def stack_hypers(hypers: Sequence[Hyper]) -> Hyper:
    """One Hyper of (R,) float32 arrays from R runs' Hypers."""
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
    cache: ProgramCache | None = None,
) -> dict[str, Any]:
    """Train configurations of one structure (each with its own seed, learning rate, input
    scaling, initialisation, dropout rates, loss) as one sharded program, all at once. For tests
    and custom experiments; `run_sweep` is the same path with chunks, files and statistics
    around it. `cache`: where the program is looked up and kept (see `get_program`)."""
    keys = {shared_key(c) for c in configs}
    if len(keys) != 1:
        raise SpecError("train_runs needs configurations that differ only in traced settings "
                        f"({', '.join(TRACED_FIELDS)}) and in their loss and activation")
    mesh = run_mesh(devices)
    size = chunk_size(len(configs), None, mesh.devices.size)
    program = get_program(group_key(configs), dev, size, mesh, cache=cache,
                          num_classes=num_classes,
                          probes=probes, keep_params=keep_params, compile_mode=compile_mode,
                          runs_per_batch=runs_per_batch, picks=pick.options_of(configs))
    x_train = np.asarray(dev.x_train) if x_train is None else x_train
    hypers = [hyper_from_config(c, x_train) for c in configs]
    return execute(program, [c.seed for c in configs], hypers, place_data(dev, mesh), mesh, size)
