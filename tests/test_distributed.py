"""One sweep across two real processes (`jax.distributed`, coordinator on 127.0.0.1, one CPU
device each, gloo for the cross-process CPU collectives): the same runs as one process, refused
when the processes disagree, resumable after either process is killed (by a fail point,
`jaxmlp.faults`: at a set write, not at a moment raced against), stopped together by a signal to
one of them, and a coordinator that refuses said at once. Plus the pure parts: where the process
settings come from, and what the processes compare.

Every sweep here is the same tiny one (two structures x two seeds on 400 real MNIST images),
compiled in XLA's fast CPU mode, so the whole file runs in well under a minute on two cores.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from jaxmlp import faults
from jaxmlp.config import Config
from jaxmlp.sweep.datasets import DataCache
from jaxmlp.sweep.distributed import (
    agreement,
    coordinator_problem,
    data_checksum,
    failure,
    process_settings,
    status,
)
from jaxmlp.sweep.store import read_chunks

REPO = Path(__file__).resolve().parent.parent

# One process trains each structure's two runs on one device, side by side (vmapped); two
# processes train one run each on their own device. Same arithmetic per run, but XLA may
# vectorise and fuse the batched program differently, so float32 sums (losses over 200-400
# examples) may round differently in the last bits: a few ulps of a loss near 2, ~1e-6. 1e-5
# leaves room for that and stays far below any real difference (another seed, batch or learning
# rate moves the losses by 1e-2 or more); accuracies over 200 examples move in steps of 0.005.
# (On this grid the two are in fact bitwise equal.)
TOLERANCE = 1e-5
TIMEOUT = 120  # seconds for one process; far above the few it needs

SWEEP = ["--dataset", "mnist", "--grid", "hidden=16,32", "--seeds", "2",
         "--epochs", "2", "--batch-size", "50", "--train-subset", "400", "--test-subset", "200",
         "--optimizer", "sgd", "--learning-rate", "0.1", "--compile", "fast", "--cpu-devices",
         "1", "--no-plots", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gloo_note() -> str:
    """What a failed two-process run may owe to the jaxlib at hand."""
    import jax
    from jax._src import lib  # no public API says which collectives jaxlib was built with

    ext = getattr(lib, "_jax", None) or getattr(lib, "xla_extension", None)
    have = ext is not None and hasattr(ext, "make_gloo_tcp_collectives")
    return (f"jax {jax.__version__}: gloo CPU collectives "
            f"{'available' if have else 'NOT available: two-process CPU sweeps cannot run'}")


def start(out: Path, data_dir: Path, process_id: int | None = None, port: int = 0,
          extra: Sequence[str] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m jaxmlp.sweep` on the tiny sweep: one process alone (process_id None), or
    process `process_id` of two."""
    argv = [sys.executable, "-m", "jaxmlp.sweep", "--out", str(out), *SWEEP, *extra,
            "--data-dir", str(data_dir)]
    if process_id is not None:
        argv += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                 "--process-id", str(process_id)]
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait(procs: Sequence[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; kills them all if one hangs."""
    done = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=TIMEOUT)
            done.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return done


def describe(done: Sequence[tuple[int, str, str]]) -> str:
    return "\n".join(f"--- process {i}: exit {rc}\n{out[-1500:]}\n{err[-3000:]}"
                     for i, (rc, out, err) in enumerate(done)) + "\n" + gloo_note()


def two(out: Path, data_dir: Path, extras: Sequence[Sequence[str]], env: dict[str, str]
        ) -> list[tuple[int, str, str]]:
    """Processes 0 and 1 of the same sweep, to the end."""
    port = free_port()
    return wait([start(out, data_dir, i, port, extras[i], env) for i in range(2)])


def results(folder: Path) -> dict[int, dict[str, np.ndarray]]:
    record = json.loads((folder / "sweep.json").read_text())
    return read_chunks(folder / "chunks", record["fingerprint"], record["num_runs"])


def largest_difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    worst = 0.0
    for r in a:
        assert sorted(a[r]) == sorted(b[r]), r
        for k in a[r]:
            x, y = np.asarray(a[r][k], np.float64), np.asarray(b[r][k], np.float64)
            assert x.shape == y.shape, (r, k)
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


@pytest.fixture(scope="module")
def alone(mnist_sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep trained by one process, on one device."""
    out = tmp_path_factory.mktemp("alone") / "sweep"
    done = wait([start(out, mnist_sample_dir)])
    assert done[0][0] == 0, describe(done)
    return out


def test_a_process_given_another_spec_is_refused(mnist_sample_dir: Path, tmp_path: Path
                                                 ) -> None:
    out = tmp_path / "sweep"
    done = two(out, mnist_sample_dir, extras=((), ("--seeds", "3")), env={})
    assert [rc for rc, _, _ in done] == [2, 2], describe(done)
    for _, _, err in done:
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: process 1 was given another sweep (spec fingerprint "), last
    assert not out.exists()  # refused before process 0 touched the folder


def test_the_data_checksum_tells_data_apart_by_content(mnist_sample_dir: Path,
                                                       tmp_path: Path) -> None:
    # What two processes compare besides the spec (refused through the same exchange as the
    # real processes above): the same files anywhere agree; one label changed does not.
    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(mnist_sample_dir, same)
    shutil.copytree(mnist_sample_dir, other)
    labels = other / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # the first label (after the 8-byte IDX header)
    labels.write_bytes(gzip.compress(bytes(raw)))

    def checksum(folder: Path) -> str:
        return data_checksum([Config(dataset="mnist", data_dir=str(folder))], DataCache())

    assert checksum(mnist_sample_dir) == checksum(same) != checksum(other)


def test_the_data_checksum_covers_every_data_set_a_sweep_reads() -> None:
    # Toy sets are generated from their seed: two seeds are two data sets, both hashed.
    spirals = [Config(dataset="spirals", data_seed=s) for s in (0, 1)]
    assert (data_checksum(spirals, DataCache())
            != data_checksum(spirals[:1] * 2, DataCache())
            == data_checksum(spirals[:1], DataCache()))


def test_agreement_names_the_first_process_that_differs() -> None:
    ok = status("f0", "d0")
    assert agreement([ok, ok, ok]) is None
    assert agreement([ok, status("f0", "d1"), status("f1", "d0")]).startswith(
        "process 1 read other data (checksum d1) than process 0 (d0)")
    assert agreement([ok, ok, status("f1", "d0")]).startswith(
        "process 2 was given another sweep (spec fingerprint f1) than process 0 (f0)")
    assert agreement([ok, failure(ValueError("no MNIST here\nsecond line"))]) == \
        "process 1 of 2 could not start: no MNIST here"


class Killed(NamedTuple):
    """A two-process sweep whose process `victim` was killed at its `at`-th chunk (a fail
    point: process 1 once it has trained its share of the chunk, process 0 in the middle of
    writing it), then the same two commands again."""

    out: Path
    elsewhere: Path  # process 1's --out: process 0 alone writes, so it must never appear
    killed: list[tuple[int, str, str]]
    chunks_left: int
    status_left: str
    resumed: list[tuple[int, str, str]]


def kill_one(tmp: Path, data_dir: Path, victim: int, at: int) -> Killed:
    out, elsewhere = tmp / "sweep", tmp / "not-written"
    envs = [{}, {}]
    envs[victim] = {faults.ENV: f"chunk:{at}:KILL"}
    port = free_port()
    first = wait([start(o, data_dir, i, port, env=envs[i])
                  for i, o in enumerate((out, elsewhere))])
    left = len(list((out / "chunks").glob("chunk-*.npz")))
    status = json.loads((out / "sweep.json").read_text())["status"] if out.exists() else ""
    port = free_port()
    again = wait([start(o, data_dir, i, port) for i, o in enumerate((out, elsewhere))])
    return Killed(out, elsewhere, first, left, status, again)


@pytest.fixture(scope="module")
def killed(mnist_sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Killed:
    return kill_one(tmp_path_factory.mktemp("killed"), mnist_sample_dir, victim=1, at=1)


@pytest.fixture(scope="module")
def killed_writer(mnist_sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Killed:
    return kill_one(tmp_path_factory.mktemp("killed0"), mnist_sample_dir, victim=0, at=2)


def check_survivor(done: tuple[int, str, str], every: list[tuple[int, str, str]]) -> None:
    """The process left alive stops by itself (the test would time out otherwise), with one
    line and no traceback."""
    rc, _, err = done
    assert rc == 1, describe(every)
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: training stopped ("), err


def check_resumed(killed: Killed, trained_before: int, sessions: list[int]) -> None:
    done = killed.resumed
    assert [rc for rc, _, _ in done] == [0, 0], describe(done)
    assert (f"resuming {killed.out}: {trained_before} of 4 runs already trained; "
            f"{(4 - trained_before) // 2} of 2 chunks to go" in done[0][1]), describe(done)
    record = json.loads((killed.out / "sweep.json").read_text())
    assert record["status"] == "complete"
    assert [s["runs_trained"] for s in record["sessions"]] == sessions
    assert not list(killed.out.rglob(".*.tmp")), "a temporary file was left"


def test_a_killed_process_leaves_a_folder_that_resumes(killed: Killed) -> None:
    done = killed.killed
    assert done[1][0] == -signal.SIGKILL, describe(done)
    assert killed.chunks_left == 1, describe(done)  # written before process 0 learnt of it
    check_survivor(done[0], done)
    assert killed.status_left == "interrupted"
    check_resumed(killed, trained_before=2, sessions=[2, 2])


def test_a_killed_writer_leaves_whole_chunks_only(killed_writer: Killed, alone: Path) -> None:
    done = killed_writer.killed
    assert done[0][0] == -signal.SIGKILL, describe(done)
    check_survivor(done[1], done)
    # Killed while writing its second chunk: the first is whole, the second never appeared
    # (only its temporary file, which the next start removes).
    assert killed_writer.chunks_left == 1, describe(done)
    # Killed, process 0 never closed its session in sweep.json: the record has the second.
    check_resumed(killed_writer, trained_before=2, sessions=[2])
    assert largest_difference(results(alone), results(killed_writer.out)) == 0.0


def test_a_signal_to_one_process_stops_both_after_the_same_chunk(
        mnist_sample_dir: Path, tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "sweep", tmp_path / "not-written"
    port = free_port()
    done = wait([start(o, mnist_sample_dir, i, port,
                       env={faults.ENV: "chunk:1:TERM"} if i == 1 else {})
                 for i, o in enumerate((out, elsewhere))])
    assert [rc for rc, _, _ in done] == [143, 143], describe(done)
    for _, _, err in done:
        assert "Traceback" not in err, err
    assert done[0][2].strip().splitlines()[-1].startswith(
        "error: terminated (SIGTERM) (sent to process 1); finished chunks are saved in "), done
    assert "run the same command again to continue" in done[1][2].strip().splitlines()[-1]
    assert len(list((out / "chunks").glob("chunk-*.npz"))) == 1
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"


def test_two_processes_train_the_same_runs_as_one(alone: Path, killed: Killed) -> None:
    done = killed.resumed
    assert [rc for rc, _, _ in done] == [0, 0], describe(done)
    assert not killed.elsewhere.exists()
    record = json.loads((killed.out / "sweep.json").read_text())
    assert record["process_count"] == 2 and len(record["devices"]) == 2
    assert (killed.out / "summary.csv").exists()
    assert "process 1 of 2: trained its share" in done[1][1]
    diff = largest_difference(results(alone), results(killed.out))
    print(f"largest difference, one process vs two: {diff:.3g}")
    assert diff <= TOLERANCE, diff


@pytest.mark.parametrize(("flags", "environ", "expected"), [
    ((None, None, None), {}, None),
    (("h:1", 2, 1), {}, ("h:1", 2, 1, "the command line")),
    (("h:1", 2, 1), {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1",
                     "OMPI_COMM_WORLD_SIZE": "2"}, ("h:1", 2, 1, "the command line")),
    ((None, 1, None), {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "4",
                       "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, None),
    ((None, None, None), {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]",
                          "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1"},
     (None, None, None, "SLURM, 4 tasks")),
    ((None, None, None), {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
                          "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, None),
    ((None, None, None), {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1",
                          "OMPI_COMM_WORLD_SIZE": "2"}, (None, None, None, "Open MPI, 2 tasks")),
])
def test_process_settings_come_from_the_flags_then_the_job(flags: tuple, environ: dict,
                                                           expected: tuple | None) -> None:
    assert process_settings(*flags, environ) == expected


@pytest.mark.parametrize(("flags", "message"), [
    (("h:1", None, None), "--num-processes, --process-id are missing"),
    ((None, 2, 0), "--coordinator is missing"),
    (("h", 2, 0), "--coordinator must be HOST:PORT"),
    (("h:1", 2, 2), "--process-id must be between 0 and 1"),
    (("h:1", 0, 0), "--num-processes must be at least 1"),
])
def test_bad_process_flags_are_one_clear_message(flags: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        process_settings(*flags, {})


def test_a_coordinator_that_answers_is_reached() -> None:
    said: list[str] = []
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert coordinator_problem(f"127.0.0.1:{listening.getsockname()[1]}", 5,
                                   said.append) is None
    assert said == []


def test_a_refusing_coordinator_is_said_at_once_and_given_up_on() -> None:
    port = free_port()  # nothing listens there
    said: list[str] = []
    problem = coordinator_problem(f"127.0.0.1:{port}", 0.5, said.append)
    assert problem == f"127.0.0.1:{port} refused every connection for 0.5 s"
    assert said == [f"the coordinator 127.0.0.1:{port} refused the connection (nothing listens "
                    "there yet); retrying for up to 0.5 s"]


def test_a_coordinator_that_never_answers_is_given_up_on_after_the_wait() -> None:
    said: list[str] = []
    # A name under .invalid never resolves (RFC 6761): no answer, and no refusal either.
    problem = coordinator_problem("coordinator.invalid:9", 0.3, said.append)
    assert problem is not None, problem
    assert problem.startswith("no answer from coordinator.invalid:9 in 0.3 s ("), problem
    assert said == []


def test_a_process_whose_coordinator_refuses_stops_with_one_line(
        mnist_sample_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    done = wait([start(tmp_path / "sweep", mnist_sample_dir, 1, port,
                       extra=("--join-timeout", "2"))])
    rc, _, err = done[0]
    assert rc == 2, describe(done)
    assert "Traceback" not in err, err
    assert (f"the coordinator 127.0.0.1:{port} refused the connection (nothing listens there "
            "yet); retrying for up to 2 s") in err
    assert err.strip().splitlines()[-1] == (
        f"error: could not reach the coordinator: 127.0.0.1:{port} refused every connection "
        "for 2 s. Start process 0 there, and check the address, the port and any firewall")


def test_a_bad_join_timeout_is_one_line(mnist_sample_dir: Path, tmp_path: Path) -> None:
    done = wait([start(tmp_path / "sweep", mnist_sample_dir, extra=("--join-timeout", "0"))])
    assert done[0][0] == 2, describe(done)
    assert done[0][2].strip().splitlines()[-1] == (
        "error: --join-timeout must be a whole number of seconds, at least 1, got 0")
