"""One sweep across several processes, on one machine or many, with `jax.distributed`.

Every process runs the same command. They join through a coordinator (process 0's address and a
free port: `--coordinator HOST:PORT --num-processes N --process-id I`, the arguments of
`jax.distributed.initialize`), or, with none of those flags, through the job's environment when
SLURM (`srun`) or Open MPI (`mpirun`) started several of them, as JAX detects it. The runs are
sharded over every device of every process; process 0 alone writes the output folder.

Before training, the processes compare what they were given (`agreement`): the spec's
fingerprint and a checksum of the data they loaded. Any difference, or any process that could
not start, stops all of them with one line. During training a process that fails or is stopped
leaves the others stuck in their next collective; they stop too (`ProcessLost`), and the same
command again, on every process, resumes from the chunks process 0 saved.

Flags and start-up live here, once, for `python -m jaxmlp.sweep` and the experiments' scripts:

    add_process_flags(parser)   # --coordinator, --num-processes, --process-id
    start_processes(args)       # after the XLA flags and CPU split, before any computation
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxmlp import cli, stopping
from jaxmlp.config import Config
from jaxmlp.sweep.datasets import DataCache, loaded_key
from jaxmlp.sweep.store import SweepError

# The variables by which jax.distributed.initialize recognises a job of several tasks (see
# jax/_src/clusters/ompi_cluster.py and slurm_cluster.py), in the order JAX tries them.
CLUSTERS = (
    ("Open MPI", ("OMPI_MCA_orte_hnp_uri",), "OMPI_COMM_WORLD_SIZE"),
    ("SLURM", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
               "SLURM_LOCALID"), "SLURM_NTASKS"),
)

# How long a process waits for the others to join, unless --join-timeout says otherwise:
# jax.distributed.initialize's default.
JOIN_SECONDS = 300
# How long a coordinator that refuses connections is retried: process 0 of the same job starts
# within seconds of the others; longer, and it was never started there (or listens elsewhere).
REFUSED_SECONDS = 30


class ProcessLost(SweepError):
    """Training stopped in a sweep of several processes: this one or another failed or left."""


def lost_in_training(error: Exception, chunk_dir: Path) -> ProcessLost:
    """What a process says when training stopped under it (`error`), and how to continue."""
    return ProcessLost(
        f"training stopped ({one_line(error)}); when one process of a sweep fails or is "
        f"stopped, the others stop too. The finished chunks are in {chunk_dir} on process 0: "
        "start every process again with the same command to continue")


class Processes(NamedTuple):
    """How this process joins the others: what to pass to `jax.distributed.initialize` (None:
    JAX reads it from the cluster's environment) and, in words, where the settings came from."""

    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    source: str


def add_process_flags(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes and --process-id, in a group of their own."""
    g = parser.add_argument_group(
        "processes", "one sweep across several processes or machines (jax.distributed); under "
        "SLURM (srun) or Open MPI (mpirun) these come from the job, so give none of them")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address and a free port that every process can reach")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="how many processes share the sweep (default 1, or the job's)")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's number, 0 to N-1; process 0 writes the outputs")
    g.add_argument("--join-timeout", type=int, default=None, metavar="SECONDS",
                   help=f"how long to wait for every process to join (default {JOIN_SECONDS}); "
                   f"a coordinator that refuses connections is said at once and retried for "
                   f"at most {REFUSED_SECONDS} s of it")


def cluster_environment(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """(launcher, task count) when SLURM or Open MPI launched this process as one of several
    tasks; None otherwise (a single task stays one process, as without a launcher)."""
    for name, present, count in CLUSTERS:
        if all(v in environ for v in present):
            try:
                tasks = int(environ.get(count, "1"))
            except ValueError:
                return None
            return (name, tasks) if tasks > 1 else None
    return None


def process_settings(coordinator: str | None, num_processes: int | None,
                     process_id: int | None, environ: Mapping[str, str]) -> Processes | None:
    """How to join the other processes, from the flags and then the cluster's environment; None
    for a sweep of one process. A ValueError says which flag is wrong."""
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num-processes must be at least 1, got {num_processes}")
    if num_processes is not None and process_id is not None \
            and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be between 0 and {num_processes - 1} (--num-"
                         f"processes {num_processes}), got {process_id}")
    if process_id is not None and process_id < 0:
        raise ValueError(f"--process-id must be at least 0, got {process_id}")
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:12345), got "
                             f"{coordinator!r}")
    given = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}
    cluster = cluster_environment(environ)
    if num_processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"--process-id must be 0 with --num-processes 1, got {process_id}")
        return None
    missing = [flag for flag, value in given.items() if value is None]
    if cluster is not None and missing:  # JAX fills in the rest from the job's environment
        return Processes(coordinator, num_processes, process_id,
                         f"{cluster[0]}, {cluster[1]} tasks")
    if len(missing) == len(given):
        return None
    if missing:
        raise ValueError(f"{', '.join(given)} go together: {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} missing (under SLURM or Open "
                         "MPI, give none of them)")
    return Processes(coordinator, num_processes, process_id, "the command line")


def start_processes(args: argparse.Namespace) -> int:
    """Join the sweep's other processes, if there are any; returns the process count.

    Call it before any computation, after the settings JAX reads when its backend starts
    (`compilation.tune_xla_cpu`, `split_cpu_into_devices`). A bad flag, a coordinator that
    refuses or does not answer (`coordinator_problem`) or a failed join is one line on stderr
    and exit code 2 (but if processes never come, JAX itself aborts process 0 when the wait,
    --join-timeout, is over).
    """
    try:
        settings = process_settings(args.coordinator, args.num_processes, args.process_id,
                                    os.environ)
        wait = join_seconds(getattr(args, "join_timeout", None))
    except ValueError as e:
        cli.fail(str(e))
    if settings is None:
        return 1
    if jax.config.jax_cpu_collectives_implementation is None:
        # Older JAX has no cross-process CPU collectives unless asked; gathering the results of
        # the runs is one. GPUs and TPUs bring their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = settings.coordinator or "the coordinator the job names"
    say = lambda line: print(line, file=sys.stderr, flush=True)
    say(f"joining the sweep's processes at {where} (settings from {settings.source}; waits up "
        f"to {wait} s for all of them, --join-timeout)")
    if settings.coordinator and settings.process_id not in (None, 0):
        # JAX itself would abort the process with a stack trace once its timeout expires.
        problem = coordinator_problem(settings.coordinator, wait, say)
        if problem:
            cli.fail(f"could not reach the coordinator: {problem}. Start process 0 there, and "
                     "check the address, the port and any firewall")
    try:
        jax.distributed.initialize(settings.coordinator, settings.num_processes,
                                   settings.process_id, initialization_timeout=wait)
        devices = jax.devices()  # starts the backend: a missing collectives library fails here
    except Exception as e:  # JAX's errors here are RuntimeError, ValueError or XlaRuntimeError
        cli.fail(f"could not join the sweep's processes at {where}: {one_line(e)}")
    # JAX's preemption notifier has just taken SIGTERM: take it back, so that a signal stops the
    # processes together after a chunk (`run.stop_if_asked`) instead of being swallowed.
    stopping.handle_signals()
    say(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} "
        f"of {len(devices)} devices")
    return jax.process_count()


def join_seconds(value: int | None) -> int:
    """--join-timeout, checked (default `JOIN_SECONDS`)."""
    if value is None:
        return JOIN_SECONDS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--join-timeout must be a whole number of seconds, at least 1, got "
                         f"{value!r}")
    return value


def coordinator_problem(address: str, seconds: float, say: Callable[[str], None]
                        ) -> str | None:
    """None once something accepts TCP connections at HOST:PORT; else what went wrong, in
    words. Process 0 may start later than this one, so both failures are retried: a refused
    connection (nothing listens there: process 0 not started yet, or another port) is said at
    once and retried for at most `REFUSED_SECONDS` (or `seconds`, if less); no answer at all (a
    wrong address, a firewall) for `seconds`."""
    host, _, port = address.rpartition(":")
    start = time.monotonic()
    refused_since: float | None = None
    refused_for = min(REFUSED_SECONDS, seconds)
    while True:
        left = seconds - (time.monotonic() - start)
        try:
            with socket.create_connection((host.strip("[]"), int(port)),
                                          timeout=max(0.1, min(2.0, left))):
                return None
        except ConnectionRefusedError:
            now = time.monotonic()
            if refused_since is None:
                refused_since = now
                say(f"the coordinator {address} refused the connection (nothing listens there "
                    f"yet); retrying for up to {refused_for:g} s")
            if now - refused_since >= refused_for:
                return f"{address} refused every connection for {refused_for:g} s"
        except OSError as e:
            refused_since = None
            if time.monotonic() - start >= seconds:
                return f"no answer from {address} in {seconds:g} s ({e.strerror or e})"
        time.sleep(0.2)


def one_line(error: BaseException) -> str:
    """An exception as one line: its message's first line (JAX's can run to pages)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def gather_bytes(payload: bytes) -> list[bytes]:
    """Every process's `payload`, in process order (one process: [payload]).

    A collective: every process must call it at the same point, or the callers wait for the
    missing ones. Two all-gathers: the lengths, then the padded bytes.
    """
    if jax.process_count() == 1:
        return [payload]
    raw = np.frombuffer(payload, np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.asarray([raw.size], np.int32)))
    lengths = lengths.reshape(-1)
    padded = np.zeros(max(1, int(lengths.max())), np.uint8)
    padded[:raw.size] = raw
    every = np.asarray(multihost_utils.process_allgather(padded))
    return [every[i, :n].tobytes() for i, n in enumerate(lengths)]


def first_to_stop(signum: int | None) -> tuple[int, int]:
    """(signal, process) of the lowest-numbered process that was sent a signal, from each one's
    own (`signum`, None when none came); (0, -1) when none was. A collective, after each chunk:
    every process learns it at the same point, and they stop together."""
    told = [int(b) for b in gather_bytes(str(signum or 0).encode())]
    return next(((s, i) for i, s in enumerate(told) if s), (0, -1))


def data_checksum(configs: Sequence[Config], datasets: DataCache) -> str:
    """A hash of every data set the configurations train on, as loaded (pixels and labels of
    both splits), in order of first use: equal on two processes when they read the same data."""
    h = hashlib.sha256()
    seen = set()
    for config in configs:
        dataset, _ = datasets.dataset(config)
        key = loaded_key(config)
        if key in seen:
            continue
        seen.add(key)
        for x in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
            x = np.ascontiguousarray(x)
            h.update(f"{x.dtype}{x.shape}".encode())
            h.update(x.tobytes())
    return h.hexdigest()[:16]


def status(fingerprint: str, checksum: str) -> bytes:
    """What a process tells the others before training: its spec and its data."""
    return json.dumps({"fingerprint": fingerprint, "data": checksum}).encode()


def failure(error: BaseException) -> bytes:
    """What a process that could not start tells the others."""
    return json.dumps({"error": one_line(error)}).encode()


def agreement(statuses: Sequence[bytes]) -> str | None:
    """Why the processes cannot train together (one line), or None when they agree: one could
    not start, or one was given another spec or read other data than process 0."""
    told = [json.loads(s) for s in statuses]
    n = len(told)
    for i, s in enumerate(told):
        if "error" in s:
            return f"process {i} of {n} could not start: {s['error']}"
    first = told[0]
    for i, s in enumerate(told[1:], start=1):
        if s["fingerprint"] != first["fingerprint"]:
            return (f"process {i} was given another sweep (spec fingerprint {s['fingerprint']}) "
                    f"than process 0 ({first['fingerprint']}): start every process with the "
                    "same spec and flags, from the same version of the code")
        if s["data"] != first["data"]:
            return (f"process {i} read other data (checksum {s['data']}) than process 0 "
                    f"({first['data']}): every process must see the same data set files (check "
                    "$JAXMLP_DATA_DIR and the data folders on each machine)")
    return None


def abandon_start(error: BaseException) -> None:
    """For a process that fails before it reaches `run_sweep` (a bad spec file, say): send the
    others, waiting at run_sweep's first exchange, this error instead of its status, so that
    they stop with it rather than wait. Nothing with one process."""
    if jax.process_count() > 1:
        gather_bytes(failure(error))


def leave(message: str, code: int) -> typing.NoReturn:
    """End this process at once after `message` on stderr: for a sweep of several processes
    that stopped mid-training. A normal exit would wait in JAX's shutdown barrier for processes
    that will never reach it (up to its heartbeat timeout, 100 s) and then abort with a stack
    trace; the finished chunks are already on disk."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)
