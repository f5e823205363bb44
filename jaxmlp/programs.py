"""The compiled programs of one run, built ahead of time from shapes alone.

A run needs four programs: the initial state, the epoch (with the per-step statistics of
`--diagnose` in it, when asked), the evaluation and, under `--diagnose`, the probe of the
parameters. None of them depends on the data's values, only on their shapes, and a known data
set's shapes are known before a byte of it is read (`data.expected_shape`). So `start` compiles
them in a thread of their own (`jit(...).lower(shapes).compile()`) while the caller loads and
checks the data: XLA compiles outside Python's lock, reading the files mostly does too. The
evaluation is not needed before the first epoch ends, so it compiles last, on the same thread,
while the first epoch trains (`Deferred`): the first step waits for the other three only. When
the data turns out to have other shapes (a folder of one's own IDX files, the digits fallback),
`ready` compiles again for the shapes it has.

A run that reports as it goes (the lab's) compiles its epoch as `Chunks` instead: the epoch's
shuffle, then chunks of about `CHUNK_EXAMPLES` examples' steps, each one program running the
loop's own scan of steps (`loop.make_steps`), and the chunks' metrics combined into the
epoch's, the same numbers one epoch program gives.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import data, probes
from jaxmlp.config import Config
from jaxmlp.loop import (
    DeviceData,
    Hyper,
    TrainState,
    epoch_metrics,
    epoch_order,
    initial_state,
    make_epoch,
    make_evaluate,
    make_step,
    make_steps,
    steps_per_epoch,
)
from jaxmlp.optim import make_optimizer

# About this many training examples per chunk of a chunked epoch: a chunk of MNIST at batch 128
# is 128 steps, long enough that launching it and reading its metrics cost next to nothing.
CHUNK_EXAMPLES = 16384


class Chunks(NamedTuple):
    """An epoch as chunks of `size` steps (its last chunk `rest`'s, when they do not divide).

    `order(data_key, e) -> (epoch key, order)`: epoch e's key and batches (`loop.epoch_order`);
    `full` and `rest`: `(state, dev, hyper, epoch key, order, first) -> (state, first bad step,
    StepMetrics)` for the steps from `first`; `combine(parts)`: the (first bad step,
    StepMetrics) of every chunk of an epoch, in order, as the epoch program's result."""

    size: int
    steps: int  # per epoch
    order: Callable[..., Any]
    full: Callable[..., Any]
    rest: Callable[..., Any] | None
    combine: Callable[..., Any]

    def plan(self) -> list[tuple[int, int]]:
        return chunk_plan(self.steps, self.size)

    def program(self, steps: int) -> Callable[..., Any]:
        return self.full if steps == self.size or self.rest is None else self.rest


class Deferred:
    """A program compiling in the background: the first call waits for it (and raises what
    compiling it raised); `seconds` is its tracing, lowering and XLA time, once it is ready."""

    def __init__(self, future: concurrent.futures.Future) -> None:
        self._future = future

    def __call__(self, *args: Any) -> Any:
        return self._future.result()[0](*args)

    @property
    def seconds(self) -> float:
        return self._future.result()[1]


def _timed(build: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return build(), time.perf_counter() - t0


class Programs(NamedTuple):
    """One run's compiled programs, and the shapes they were compiled for."""

    dev: DeviceData  # of jax.ShapeDtypeStruct
    num_classes: int
    init: Callable[..., Any]  # (seed, hyper) -> (TrainState, data key)
    # (state, dev, hyper, data key, epoch) -> (state, EpochMetrics[, EpochDiagnostics]); the
    # epoch's key is fold_in(data key, epoch), as `loop.make_train` derives it
    epoch: Callable[..., Any]
    # (params, pixels, labels, hyper) -> (loss, accuracy); a `Deferred` when `start` compiled it
    evaluate: Callable[..., Any]
    probe: Callable[..., Any] | None  # (params, dev, hyper) -> probes.ProbeStats; --diagnose
    seconds: float  # tracing, lowering and XLA of all but the evaluation, on the thread that
    # compiled them
    chunks: Chunks | None = None  # compiled instead of `epoch` when asked (`epoch` is None)
    # and an epoch has more than one chunk


def device_shapes(config: Config, shape: data.Shape) -> DeviceData:
    """The `loop.device_data` of a data set of `shape`, as shapes: its training subset, flat."""
    n = shape.num_train if config.train_subset is None else min(shape.num_train,
                                                                config.train_subset)
    sds = jax.ShapeDtypeStruct
    return DeviceData(sds((n, shape.features), shape.dtype), sds((n,), np.int32),
                      sds((shape.num_test, shape.features), shape.dtype),
                      sds((shape.num_test,), np.int32))


def shapes_of(dev: DeviceData) -> DeviceData:
    return DeviceData(*(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in dev))


def diagnosed_epoch(config: Config, num_train: int) -> Callable[..., Any]:
    """`epoch(state, dev, hyper, data_key, e) -> (state, metrics, EpochDiagnostics)`: the epoch
    with `probes.step_statistics` in its step, summarised on the device."""
    epoch = plain_epoch(config, num_train, probes.step_statistics())

    def diagnosed(state: TrainState, dev: DeviceData, hyper: Hyper, data_key: jax.Array,
                  e: jax.Array) -> tuple[Any, Any, probes.EpochDiagnostics]:
        state, m = epoch(state, dev, hyper, data_key, e)
        return state, *split_diagnostics(m)

    return diagnosed


def split_diagnostics(m: Any) -> tuple[Any, probes.EpochDiagnostics]:
    """(the epoch's metrics without its steps' statistics, those statistics summarised)."""
    return m._replace(step_stats=None), probes.summarize_epoch(m.step_stats)


def plain_epoch(config: Config, num_train: int,
                stats: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """`loop.make_epoch` with the optimizer built from the (traced) `hyper` it is called with
    (its update reads the learning rate from the state, as `initial_state` put it there), and
    epoch `e`'s key folded in from the run's data key inside the program."""

    def epoch(state: TrainState, dev: DeviceData, hyper: Hyper, data_key: jax.Array,
              e: jax.Array) -> Any:
        tx = make_optimizer(config, steps_per_epoch(config, num_train), hyper.learning_rate)
        step = make_step(config, tx, stats)
        return make_epoch(config, tx, step)(state, dev, hyper, jax.random.fold_in(data_key, e))

    return epoch


def chunk_plan(steps: int, size: int) -> list[tuple[int, int]]:
    """(first step, steps) of each chunk of an epoch of `steps`, chunks of `size`."""
    return [(first, min(size, steps - first)) for first in range(0, steps, size)]


def chunk_steps(config: Config, num_train: int) -> int:
    """Steps per chunk: about `CHUNK_EXAMPLES` examples' worth, at most an epoch's."""
    steps = steps_per_epoch(config, num_train)
    return max(1, min(steps, math.ceil(CHUNK_EXAMPLES / config.batch_size)))


def _chunk(config: Config, steps: int, size: int, stats: Callable[..., Any] | None
           ) -> Callable[..., Any]:
    """The chunk of `size` steps from step `first` (traced) of an epoch of `steps`."""

    def chunk(state: TrainState, dev: DeviceData, hyper: Hyper, key: jax.Array,
              order: jax.Array, first: jax.Array) -> Any:
        tx = make_optimizer(config, steps, hyper.learning_rate)
        rows = jax.lax.dynamic_slice_in_dim(order, first, size)
        return make_steps(config, tx, make_step(config, tx, stats))(state, dev, hyper, key,
                                                                    rows, first)

    return chunk


def compile_chunks(config: Config, dev: DeviceData, state: Any, hyper: Hyper, data_key: Any,
                   diagnose: bool) -> Chunks:
    """`Chunks` of an epoch on data of `dev`'s shapes, from `state`'s (shapes too)."""
    num_train = dev.x_train.shape[0]
    steps, size = steps_per_epoch(config, num_train), chunk_steps(config, num_train)
    stats = probes.step_statistics() if diagnose else None

    def order(data_key: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
        key = jax.random.fold_in(data_key, e)  # as `plain_epoch` folds it
        return key, epoch_order(key, num_train, config.batch_size)

    def combine(parts: list[tuple[jax.Array, Any]]) -> Any:
        firsts, outs = zip(*parts, strict=True)
        bad = jnp.stack(firsts)  # each chunk's first bad step in the epoch, or -1
        first_bad = jnp.min(jnp.where(bad >= 0, bad, steps))
        m = epoch_metrics(jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs),
                          jnp.where(first_bad < steps, first_bad, -1).astype(jnp.int32))
        return split_diagnostics(m) if diagnose else m

    e = jax.ShapeDtypeStruct((), jnp.int32)
    key, rows = jax.eval_shape(order, data_key, e)
    programs, results = {}, {}
    for n in sorted({size, steps % size} - {0}):
        chunk = jax.jit(_chunk(config, steps, n, stats), donate_argnums=0)
        lowered = chunk.lower(state, dev, hyper, key, rows, e)
        programs[n], results[n] = lowered.compile(), lowered.out_info[1:]
    parts = [results[n] for _, n in chunk_plan(steps, size)]
    return Chunks(size, steps, jax.jit(order).lower(data_key, e).compile(), programs[size],
                  programs.get(steps % size), jax.jit(combine).lower(parts).compile())


def compile_programs(config: Config, dev: DeviceData, num_classes: int, diagnose: bool,
                     chunked: bool = False,
                     later: concurrent.futures.Executor | None = None) -> Programs:
    """Every program of a run on data of `dev`'s shapes (`device_shapes`, `shapes_of`); the
    epoch as `Chunks` when `chunked` and it has more than one. The state is donated to the epoch
    (or chunk): XLA may update the parameters in place. With `later`, the evaluation is handed
    to it to compile after these (a `Deferred`) instead of compiled here."""
    t0 = time.perf_counter()
    hyper = Hyper(*[jax.ShapeDtypeStruct((), jnp.float32)] * len(Hyper._fields))
    seed = jax.ShapeDtypeStruct((), jnp.uint32)
    epoch_number = jax.ShapeDtypeStruct((), jnp.int32)
    # The seed's key is made inside the program: no program of its own for it.
    init = jax.jit(lambda s, h: initial_state(jax.random.key(s), config, dev, h,
                                              num_classes)[:2])
    state, data_key = jax.eval_shape(init, seed, hyper)
    num_train = dev.x_train.shape[0]
    epoch = diagnosed_epoch(config, num_train) if diagnose else plain_epoch(config, num_train)
    probe = None
    if diagnose:
        probe = jax.jit(probes.make_probe(config, num_classes)).lower(
            state.params, dev, hyper).compile()
    # An epoch of one chunk is the epoch program itself.
    chunked = chunked and chunk_steps(config, num_train) < steps_per_epoch(config, num_train)
    chunks = compile_chunks(config, dev, state, hyper, data_key, diagnose) if chunked else None
    init = init.lower(seed, hyper).compile()
    epoch = None if chunked else jax.jit(epoch, donate_argnums=0).lower(
        state, dev, hyper, data_key, epoch_number).compile()
    seconds = time.perf_counter() - t0

    def evaluate() -> Any:
        return jax.jit(make_evaluate(config)).lower(state.params, dev.x_test, dev.y_test,
                                                    hyper).compile()

    evaluate = evaluate() if later is None else Deferred(later.submit(_timed, evaluate))
    return Programs(dev, num_classes, init, epoch, evaluate, probe, seconds, chunks)


class Compiling(NamedTuple):
    """Programs being compiled in a thread of their own (`start`), for the shapes guessed."""

    config: Config
    diagnose: bool
    future: concurrent.futures.Future
    pool: concurrent.futures.ThreadPoolExecutor
    chunked: bool = False


def start(config: Config, diagnose: bool, chunked: bool = False) -> Compiling:
    """Begin compiling `config`'s programs for the shapes its data set will have (MNIST when
    none is named, as `data.load_data` tries first), in a background thread."""
    shape = data.expected_shape(config.dataset or "mnist")
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxmlp-compile")
    future = pool.submit(compile_programs, config, device_shapes(config, shape),
                         shape.num_classes, diagnose, chunked, pool)
    return Compiling(config, diagnose, future, pool, chunked)


def ready(compiling: Compiling, dev: DeviceData, num_classes: int) -> Programs:
    """The programs for the data that was loaded: those compiled in the background when they
    fit its shapes, else compiled now. Waits for the background compile of all but the
    evaluation either way (an error there is raised here); the evaluation goes on compiling in
    that thread, which ends when it is done."""
    try:
        programs = compiling.future.result()
    except BaseException:
        stop(compiling)
        raise
    compiling.pool.shutdown(wait=False)
    if programs.dev == shapes_of(dev) and programs.num_classes == num_classes:
        return programs
    return compile_programs(compiling.config, shapes_of(dev), num_classes, compiling.diagnose,
                            compiling.chunked)


def stop(compiling: Compiling) -> None:
    """Abandon a background compile (the run failed before it was needed): wait for the thread
    to end without raising what it raised."""
    compiling.future.cancel()
    compiling.pool.shutdown(wait=True, cancel_futures=True)
