"""`run_sweep`: check everything, plan the chunks, compile one group ahead of training, train and
save chunk after chunk, then write the tables. Each step is a small function below it."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

import jaxmlp.sweep.distributed as distributed  # the module, not the package: no cycle
from jaxmlp import faults, sizes, stopping
from jaxmlp.config import Config, check_against_data
from jaxmlp.loop import DeviceData, hyper_from_config, model_sizes
from jaxmlp.sweep.datasets import DataCache, sweep_data
from jaxmlp.sweep.plan import (
    Chunk,
    Run,
    data_choice,
    group_options,
    group_runs,
    plan_chunks,
    plan_runs,
)
from jaxmlp.sweep.program import (
    ProgramCache,
    compiler_options,
    execute,
    get_program,
    place_data,
    run_mesh,
)
from jaxmlp.sweep.record import Session, build_record, end_session
from jaxmlp.sweep.result import SweepResult
from jaxmlp.sweep.spec import (
    SpecError,
    SweepSpec,
    check_max_parallel,
    check_options,
    validate_spec,
)
from jaxmlp.sweep.store import (
    CHUNKS,
    SweepError,
    flatten_result,
    pack_results,
    prepare_out,
    read_chunks,
    unpack_results,
    write_chunk,
    write_record,
)
from jaxmlp.sweep.tables import summarize, write_outputs, write_plots


class Plan(NamedTuple):
    """What one call trains and where: runs, their groups (one program call each), chunks,
    devices."""

    runs: list[Run]
    groups: list[tuple[Config, list[int]]]
    chunks: list[Chunk]
    mesh: Mesh
    options: dict[str, Any] | None  # compiler options


class Options(NamedTuple):
    """How one call trains: compiler mode, runs per batch, and the caches it draws on."""

    compile_mode: str
    runs_per_batch: int | None
    programs: ProgramCache
    datasets: DataCache


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
    programs: ProgramCache | None = None,
    datasets: DataCache | None = None,
) -> SweepResult:
    """Train every run of `spec` (skipping chunks already in `out/chunks`) and write the outputs.

    `devices` default to every device (on one host: no more than a chunk has runs);
    `runs_per_batch` to `auto_runs_per_batch`'s choice. `max_chunks` stops after training that
    many chunks in this call, as an interruption would (the result then has `complete=False`
    and no tables are written).

    `programs` and `datasets` are the caches of compiled programs and loaded data sets: pass the
    same objects to several sweeps to compile each structure and read each data set once
    (default: fresh ones, for this call only).

    After `jax.distributed.initialize` (`distributed.start_processes`), every process calls
    this with the same spec: the runs are sharded over every device of every process, process 0
    alone touches `out`, and every process returns the same, complete result. A process that
    could not start, or was given another spec or other data, stops them all before training
    (SpecError, SweepError); a failure during training raises `distributed.ProcessLost`.
    """
    session = Session()
    opts = Options(compile_mode, runs_per_batch,
                   ProgramCache() if programs is None else programs,
                   DataCache() if datasets is None else datasets)
    max_parallel = check_max_parallel(max_parallel)
    out = Path(out)
    writer = jax.process_index() == 0  # of several processes, process 0 alone writes `out`
    plan, (old, done, pending) = open_or_join(spec, out, max_parallel, devices, opts, writer)
    if done and writer:
        log(f"resuming {out}: {len(done)} of {len(plan.runs)} runs already trained; "
            f"{len(pending)} of {len(plan.chunks)} chunks to go")
    record = build_record(spec, plan.runs, plan.groups, plan.chunks, plan.mesh, max_parallel,
                          plan.options, old, opts.datasets)
    if writer:
        write_record(out, record)
    try:
        train_chunks(spec, plan, opts, pending, done, session, out / CHUNKS if writer else None,
                     progress=progress and writer, max_chunks=max_chunks)
    except BaseException as e:
        # Interrupted (Ctrl-C) or failed: the finished chunks are on disk; log the session too.
        end_session(record, session, pending, "interrupted")
        if writer:
            write_record(out, record)
        if jax.process_count() > 1 and isinstance(e, Exception):
            raise distributed.lost_in_training(e, out / CHUNKS) from e
        raise
    return finish(spec, out, plan, opts, pending, done, session, record, writer=writer,
                  plots=plots)


class Start(NamedTuple):
    """Where a call starts from: the record already in `out` (None: a new sweep, or not
    process 0), the results already trained, by run, and the chunks left to train."""

    old: dict[str, Any] | None
    done: dict[int, dict[str, Any]]
    pending: list[Chunk]


def open_or_join(spec: SweepSpec, out: Path, max_parallel: int | None,
                 devices: Sequence[jax.Device] | None, opts: Options, writer: bool
                 ) -> tuple[Plan, Start]:
    """The plan and where this call starts from: alone, or with the sweep's other processes."""
    if jax.process_count() == 1:
        plan = make_plan(spec, max_parallel, devices, opts)
        return plan, open_out(out, spec, plan)
    return start_together(spec, out, max_parallel, devices, opts, writer)


def open_out(out: Path, spec: SweepSpec, plan: Plan) -> Start:
    """Create `out` (or check it holds this sweep) and read back the chunks already trained."""
    old = prepare_out(out, spec)
    chunk_dir = out / CHUNKS
    chunk_dir.mkdir(parents=True, exist_ok=True)
    done = read_chunks(chunk_dir, spec.fingerprint(), len(plan.runs))
    pending = [c for c in plan.chunks if not all(r in done for r in c.runs)]
    return Start(old, done, pending)


def start_together(spec: SweepSpec, out: Path, max_parallel: int | None,
                   devices: Sequence[jax.Device] | None, opts: Options, writer: bool
                   ) -> tuple[Plan, Start]:
    """`make_plan` and `open_out` for a sweep of several processes, each step followed by a
    collective so that every process stops at the same point, with the same message, if any
    fails: every process plans and loads its data, and they compare spec and data; then process
    0 opens `out` and sends everyone the results already trained and the chunks left."""
    try:
        plan = make_plan(spec, max_parallel, devices, opts)
        checksum = distributed.data_checksum([c for c, _ in plan.groups], opts.datasets)
        mine = distributed.status(spec.fingerprint(), checksum)
    except Exception as e:
        mine, error = distributed.failure(e), e
    else:
        error = None
    why = distributed.agreement(distributed.gather_bytes(mine))
    if error is not None:
        raise error  # this process's own error, as it would be alone
    if why is not None:
        raise SweepError(why)
    start, sent = Start(None, {}, []), b""
    if writer:
        try:
            start = open_out(out, spec, plan)
            left = {c.id for c in start.pending}
            pending = [i for i, c in enumerate(plan.chunks) if c.id in left]
            sent = pack_results({-1: {"pending": np.asarray(pending, np.int64)}, **start.done})
        except Exception as e:
            sent, error = b"error:" + distributed.one_line(e).encode(), e
    reply = distributed.gather_bytes(sent)[0]
    if error is not None:
        raise error
    if reply.startswith(b"error:"):
        raise SweepError(f"process 0 could not start: {reply[6:].decode()}")
    if not writer:
        done = unpack_results(reply)
        pending = [plan.chunks[int(i)] for i in done.pop(-1)["pending"]]
        start = Start(None, done, pending)
    return plan, start


def make_plan(spec: SweepSpec, max_parallel: int | None, devices: Sequence[jax.Device] | None,
              opts: Options) -> Plan:
    """The runs, groups, devices and chunks. Everything that can fail on bad settings happens
    here, before any training (and before the output folder is touched)."""
    configs = validate_spec(spec)
    check_options(spec)
    runs = plan_runs(spec)
    groups = group_runs(runs)
    if devices is None and jax.process_count() == 1:
        # No more devices than a chunk has runs: an idle device would train padding.
        widest = max(len(ids) for _, ids in groups)
        devices = jax.devices()[:max(1, min(widest, max_parallel or widest))]
    mesh = run_mesh(devices)
    options = compiler_options(opts.compile_mode, mesh)
    if opts.runs_per_batch is not None and opts.runs_per_batch < 1:
        raise SpecError(f"runs_per_batch must be at least 1, got {opts.runs_per_batch}")
    check_data(spec, configs, opts.datasets)
    chunks = plan_chunks(groups, max_parallel, mesh.devices.size)
    check_memory(groups, chunks, mesh, opts.datasets)
    return Plan(runs, groups, chunks, mesh, options)


def check_memory(groups: Sequence[tuple[Config, list[int]]], chunks: Sequence[Chunk],
                 mesh: Mesh, datasets: DataCache) -> None:
    """Each group's runs side by side fit a device's memory (`sizes.check_memory`): its largest
    chunk's share of each device, or the whole chunk where the devices are one CPU's, sharing
    the machine's memory."""
    device = jax.local_devices()[0]
    for g, (config, _) in enumerate(groups):
        widest = max((c.size for c in chunks if c.group == g), default=1)
        share = widest if device.platform == "cpu" else -(-widest // mesh.devices.size)
        dataset, _ = datasets.dataset(config)
        inputs = int(np.prod(dataset.x_train.shape[1:]))
        sizes.check_memory(config, model_sizes(config, inputs, dataset.num_classes), device,
                           runs=share)


def check_data(spec: SweepSpec, configs: Sequence[Config], datasets: DataCache) -> None:
    """Every variant's configuration fits its data set (batch size, training subset, test
    subset)."""
    for config in configs:
        dataset, _ = datasets.dataset(config)
        check_against_data(config, len(dataset.y_train))
        if spec.test_subset is not None and spec.test_subset > len(dataset.y_test):
            raise SpecError(f"test_subset {spec.test_subset} is larger than the test set "
                            f"({len(dataset.y_test)} examples)")


def place_group_data(spec: SweepSpec, plan: Plan, pending: Sequence[Chunk], datasets: DataCache
                     ) -> dict[int, tuple[DeviceData, np.ndarray]]:
    """Per group with chunks to train: its data on every device of the mesh, and the host copy
    of its training pixels. One copy per distinct data set."""
    group_data: dict[int, tuple[DeviceData, np.ndarray]] = {}
    placed: dict[tuple, tuple[DeviceData, np.ndarray]] = {}
    for c in pending:
        config = plan.groups[c.group][0]
        key = data_choice(config)
        if key not in placed:
            dev, x_train = sweep_data(config, spec.test_subset, datasets)
            placed[key] = (place_data(dev, plan.mesh), x_train)
        group_data[c.group] = placed[key]
    return group_data


def start_compiling(pool: concurrent.futures.Executor, spec: SweepSpec, plan: Plan,
                    opts: Options, pending: Sequence[Chunk],
                    group_data: dict[int, tuple[DeviceData, np.ndarray]]
                    ) -> dict[int, concurrent.futures.Future]:
    """Each pending group's program, compiled in `pool` in the order the groups train: the
    next structure compiles while this one trains."""
    num_classes = {g: opts.datasets.dataset(plan.groups[g][0])[0].num_classes
                   for g in group_data}
    futures = {}
    for c in pending:
        if c.group not in futures:
            futures[c.group] = pool.submit(
                get_program, plan.groups[c.group][0], group_data[c.group][0], c.size, plan.mesh,
                cache=opts.programs, num_classes=num_classes[c.group], probes=spec.probes,
                compile_mode=opts.compile_mode, runs_per_batch=opts.runs_per_batch,
                picks=group_options(plan.runs, plan.groups[c.group][1]))
    return futures


@stopping.deferred("chunk")  # a signal waits for the chunk in progress: see stop_if_asked
def train_chunks(
    spec: SweepSpec,
    plan: Plan,
    opts: Options,
    pending: Sequence[Chunk],
    done: dict[int, dict[str, Any]],
    session: Session,
    chunk_dir: Path | None,
    *,
    progress: bool,
    max_chunks: int | None,
) -> None:
    """Train the pending chunks in order (at most `max_chunks`), each saved in `chunk_dir` (None:
    this process does not write) and added to `done` as soon as it finishes. A signal stops
    it once the chunk in progress is saved (`stop_if_asked`)."""
    group_data = place_group_data(spec, plan, pending, opts.datasets)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="compile")
    futures = start_compiling(pool, spec, plan, opts, pending, group_data)
    bar = tqdm(total=len(plan.runs), initial=len(done), unit="run", desc=spec.name,
               disable=not progress, leave=True)
    try:
        for c in pending:
            if max_chunks is not None and len(session.trained) >= max_chunks:
                break
            bar.set_postfix_str(f"program {c.group + 1}/{len(plan.groups)}"
                                + ("" if futures[c.group].done() else " (compiling)"))
            program = futures[c.group].result()
            session.program_ready(c.group, program)
            arrays = train_chunk(spec, plan, c, program, group_data[c.group], session,
                                 chunk_dir)
            for j, r in enumerate(c.runs):
                done[r] = {k: v[j] for k, v in arrays.items()}
            session.trained.append(c.id)
            bar.update(len(c.runs))
            acc = float(np.mean(arrays["test_accuracy"][:, -1]))
            bar.set_postfix_str(f"program {c.group + 1}/{len(plan.groups)}, last chunk test acc "
                                f"{acc:.3f}")
            stop_if_asked()
    finally:
        bar.close()
        pool.shutdown(wait=False, cancel_futures=True)


def stop_if_asked() -> None:
    """After each chunk: stop (`stopping.Stopped`) if a signal came during it, to this process
    or, in a sweep of several, to any of them, so that all stop after the same chunk."""
    if jax.process_count() == 1:
        stopping.check()
        return
    signum, sent_to = distributed.first_to_stop(stopping.requested())
    if signum:
        by = None if sent_to == jax.process_index() else f"(sent to process {sent_to})"
        stopping.stop(signum, by)


def train_chunk(spec: SweepSpec, plan: Plan, c: Chunk, program: Any,
                data: tuple[DeviceData, np.ndarray], session: Session, chunk_dir: Path | None
                ) -> dict[str, np.ndarray]:
    """Train one chunk's runs and save them; returns their results (run axis first)."""
    dev, x_train = data
    chunk_runs = [plan.runs[i] for i in c.runs]
    hypers = [hyper_from_config(r.config, x_train) for r in chunk_runs]
    t0 = time.perf_counter()
    result = execute(program, [r.seed for r in chunk_runs], hypers, dev, plan.mesh, c.size)
    seconds = time.perf_counter() - t0
    session.add_train_seconds(c.group, seconds)
    arrays = flatten_result(result)
    if chunk_dir is not None:
        write_chunk(chunk_dir, c, arrays, spec.fingerprint(), seconds)
    else:  # another process writes it: the same moment, for the fail point
        faults.reach("chunk", None)
    return arrays


def finish(spec: SweepSpec, out: Path, plan: Plan, opts: Options, pending: Sequence[Chunk],
           done: dict[int, dict[str, Any]], session: Session, record: dict[str, Any], *,
           writer: bool, plots: bool) -> SweepResult:
    """Close the session in the record and, when every run is done, write the tables."""
    runs = plan.runs
    complete = all(r.index in done for r in runs)
    end_session(record, session, pending, "complete" if complete else "incomplete")
    results: list[dict[str, Any]] = [done.get(r.index, {}) for r in runs]
    summary: list[dict[str, Any]] = []
    if complete:
        # On every process: a script that goes on from the result takes the same path on each.
        summary = summarize(spec, runs, results, opts.datasets)
        if writer:
            with faults.region("sweep_tables"):
                write_outputs(out, spec, runs, results, summary, record,
                              datasets=opts.datasets, plots=False)
            if plots:
                faults.reach("sweep_pictures", out / "pictures")
                write_plots(out, spec, runs, results, opts.datasets)
    if writer:
        write_record(out, record)
    return SweepResult(spec, out, runs, results, summary, record, complete, session.trained)
