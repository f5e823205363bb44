"""Faults at every write point: a run, a sweep and an experiment are killed (SIGKILL), stopped
(SIGTERM, SIGHUP, SIGINT) and starved of disk at each place where they write (the table in
`jaxmlp.faults`, armed through JAXMLP_FAIL_AT), then what a user runs next is run (`--resume`, the
same command again, `python -m jaxmlp.plots`). After it, the folder must hold what an
uninterrupted run writes: the final parameters and every metric bitwise equal (same machine,
same flags, so no tolerance), each epoch's row exactly once, no temporary file left, and no
half-written file read as whole on the way.

Each case is one row of `CASES`; the same table writes docs/faults.md (`python
tests/test_faults.py` rewrites it; `test_the_fault_table_in_the_docs_is_this_one` checks it).
Every process is real and run to its end: nothing waits on a clock or races a signal (the fail
point sends the signal to its own process at a set write). The disk-full cases run in a 16 MiB
tmpfs mounted in a private mount namespace (`unshare -rm`); where the machine cannot make one,
they are skipped with the reason.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from jaxmlp import faults

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "mnist-sample"
DOC = REPO / "docs" / "faults.md"
TIMEOUT = 300  # seconds for one command; each needs a few

# The commands, started as from a terminal: SIGINT, SIGTERM and SIGHUP at their defaults (a
# test worker may have been started with some ignored, and a child keeps what it inherits).
AS_FROM_A_TERMINAL = """
import runpy, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
target, sys.argv = sys.argv[1], sys.argv[1:]
if target.endswith(".py"):  # a script: its folder first on the path, as `python script.py`
    sys.path.insert(0, target.rpartition("/")[0])
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""

DATA = ["--dataset", "mnist", "--data-dir", str(SAMPLE)]
RUN = [*DATA, "--hidden", "8", "--epochs", "3", "--batch-size", "100", "--train-subset", "300",
       "--no-progress"]
SWEEP = [*DATA, "--grid", "hidden=8,16", "--seeds", "2", "--epochs", "2", "--batch-size", "50",
         "--train-subset", "200", "--test-subset", "100", "--optimizer", "sgd",
         "--learning-rate", "0.1", "--compile", "fast", "--cpu-devices", "1", "--max-parallel",
         "1", "--no-progress"]


class Scenario(NamedTuple):
    """A command that writes, and what a user runs after it stopped."""

    target: str  # the module or script
    args: tuple[str, ...]  # after --out OUT
    then: str  # what the user runs next, in words (the docs' table)


SCENARIOS = {
    "run": Scenario("jaxmlp.train", (*RUN, "--diagnose"), "`--resume DIR`"),
    "run with --plots": Scenario("jaxmlp.train", (*RUN, "--plots"), "`--resume DIR`"),
    "overfit": Scenario("jaxmlp.train", (*DATA, "--hidden", "32", "--overfit", "20",
                                         "--overfit-steps", "300", "--no-progress"),
                        "the same command"),
    "sweep": Scenario("jaxmlp.sweep", tuple(SWEEP), "the same command"),
    "experiment": Scenario(str(REPO / "experiments" / "sweep_lr.py"),
                           ("--smoke", "--data-dir", str(SAMPLE), "--no-progress"),
                           "the same command"),
}


class Case(NamedTuple):
    point: str
    count: int  # the arrival at the point that fails
    action: str  # KILL, TERM, HUP, INT or FULL
    scenario: str
    left: str  # what the fault leaves behind, checked (`check_left`): cut, temporary, nothing


CASES = (
    Case("run_config", 1, "KILL", "run", "temporary"),
    Case("metrics_row", 2, "KILL", "run", "cut"),
    Case("diagnostics_row", 3, "KILL", "run", "cut"),
    Case("checkpoint", 2, "KILL", "run", "temporary"),
    Case("summary", 1, "KILL", "run", "temporary"),
    Case("pictures", 1, "KILL", "run with --plots", "nothing"),
    Case("page", 1, "KILL", "run with --plots", "temporary"),
    Case("overfit", 1, "KILL", "overfit", "temporary"),
    Case("sweep_record", 1, "KILL", "sweep", "temporary"),
    Case("sweep_record", 2, "KILL", "sweep", "temporary"),
    Case("chunk", 2, "KILL", "sweep", "temporary"),
    Case("sweep_tables", 3, "KILL", "sweep", "temporary"),
    Case("sweep_pictures", 1, "KILL", "sweep", "nothing"),
    Case("experiment_log", 1, "KILL", "experiment", "temporary"),
    Case("findings", 1, "KILL", "experiment", "temporary"),
    # A signal: the epoch or chunk in progress is finished and saved, then the command stops.
    Case("metrics_row", 2, "TERM", "run", "nothing"),
    Case("checkpoint", 1, "HUP", "run", "nothing"),
    Case("summary", 1, "TERM", "run", "nothing"),
    Case("diagnostics_row", 2, "INT", "run", "nothing"),
    Case("chunk", 2, "TERM", "sweep", "nothing"),
    Case("chunk", 1, "TERM", "experiment", "nothing"),
    # A full disk: the write fails, one line says so, what was written before is intact.
    Case("run_config", 1, "FULL", "run", "nothing"),
    Case("checkpoint", 2, "FULL", "run", "nothing"),
    Case("summary", 1, "FULL", "run", "nothing"),
    Case("chunk", 2, "FULL", "sweep", "nothing"),
)

SIGNALS = faults.SIGNALS
# How each signal is named in the line a stopped command ends with.
SIGNAL_WORDS = {"TERM": "(SIGTERM)", "HUP": "(SIGHUP)", "INT": "(Ctrl-C)"}


def case_id(case: Case) -> str:
    return f"{case.point}:{case.count}:{case.action}"


# --- running the commands ---------------------------------------------------------------------


class Done(NamedTuple):
    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"exit {self.code}\n--- stdout\n{self.stdout[-2000:]}\n--- stderr\n"
                f"{self.stderr[-4000:]}")


def argv(target: str, *args: str) -> list[str]:
    return [sys.executable, "-c", AS_FROM_A_TERMINAL, target, *args]


def command(scenario: str, out: Path) -> list[str]:
    s = SCENARIOS[scenario]
    return argv(s.target, "--out", str(out), *s.args)


def next_command(scenario: str, out: Path) -> list[str]:
    """What a user runs after the command stopped: a run resumes; the rest run again."""
    if SCENARIOS[scenario].target == "jaxmlp.train" and "--overfit" not in SCENARIOS[scenario].args:
        return argv("jaxmlp.train", "--resume", str(out), "--no-progress")
    return command(scenario, out)


def launch(cmd: list[str], fail_at: str | None = None, cwd: Path = REPO) -> Done:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["PYTHONPATH"] = str(REPO)
    if fail_at:
        env[faults.ENV] = fail_at
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return Done(p.returncode, p.stdout, p.stderr)


def no_traceback(done: Done) -> None:
    assert "Traceback" not in done.stderr, done.describe()


def last_line(done: Done) -> str:
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# --- what a folder holds, for comparing ------------------------------------------------------

# Keys that differ from one invocation to the next by design: times, dates, folders, commands.
NOT_COMPARED = ("started", "command", "out", "resumed_after_epoch")


def untimed(value: Any) -> Any:
    """`value` without the keys that hold times (`*seconds*`), dates, folders and commands."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if k not in NOT_COMPARED and "seconds" not in k}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends in a cut line"
    return [json.loads(line) for line in text.splitlines()]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [untimed(r) for r in csv.DictReader(f)]


def folder_state(scenario: str, out: Path) -> dict[str, Any]:
    """Everything in a finished folder that must not depend on how it got there."""
    temporaries = sorted(p.name for p in out.rglob(".*.tmp"))
    assert not temporaries, f"temporary files left in {out}: {temporaries}"
    if scenario == "overfit":
        return {"overfit": untimed(json.loads((out / "overfit.json").read_text()))}
    if scenario in ("sweep", "experiment"):
        record = json.loads((out / "sweep.json").read_text())
        assert record["status"] == "complete", record["status"]
        chunks = {p.name: {k: v for k, v in arrays(p).items() if k != "seconds"}
                  for p in sorted((out / "chunks").glob("chunk-*.npz"))}
        state = {"chunks": chunks, "results": csv_rows(out / "results.csv"),
                 "summary": csv_rows(out / "summary.csv"),
                 "pictures": sorted(p.name for p in out.glob("*.png"))}
        if scenario == "experiment":
            text = (out / "summary.md").read_text()
            state["findings"] = text.split("## Findings", 1)[1]
        return state
    metrics = jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in metrics] == [1, 2, 3], "an epoch's row twice or missing"
    state = {"checkpoint": arrays(out / "checkpoint.npz"), "metrics": untimed(metrics),
             "summary": untimed(json.loads((out / "summary.json").read_text()))}
    if "--plots" in SCENARIOS[scenario].args:  # (a `python -m jaxmlp.plots` on the way draws)
        state["pictures"] = sorted(p.name for p in out.glob("*.png"))
    if (out / "diagnostics.jsonl").exists():
        diagnostics = jsonl(out / "diagnostics.jsonl")
        assert [r["epoch"] for r in diagnostics] == [0, 1, 2, 3], "a row twice or missing"
        state["diagnostics"] = diagnostics
    return state


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal, and arrays bitwise so (NaN equal to NaN: the same bits)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), f"{where} differs"
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each scenario's folder from one uninterrupted command, made when first asked for."""
    made: dict[str, dict[str, Any]] = {}

    class Lazy(dict):
        def __missing__(self, scenario: str) -> dict[str, Any]:
            out = tmp_path_factory.mktemp("reference") / "out"
            done = launch(command(scenario, out))
            assert done.code == 0, done.describe()
            made[scenario] = folder_state(scenario, out)
            return made[scenario]

    return Lazy()


# --- what each fault leaves ------------------------------------------------------------------


def check_left(case: Case, out: Path) -> None:
    """The folder as the fault left it: a cut last line, or a stray temporary file beside the
    file as it was, or nothing of the point's own."""
    if case.left == "cut":
        name = {"metrics_row": "metrics.jsonl", "diagnostics_row": "diagnostics.jsonl"}[
            case.point]
        text = (out / name).read_text()
        assert text and not text.endswith("\n"), f"{name} should end in a cut line"
    elif case.left == "temporary":
        left = list(out.rglob(".*.tmp"))
        assert len(left) == 1, f"one temporary file expected in {out}: {left}"


def saved_units(case: Case, out: Path) -> int:
    """Epochs in the checkpoint (a run), or chunk files (a sweep)."""
    if SCENARIOS[case.scenario].target == "jaxmlp.train":
        meta = arrays(out / "checkpoint.npz")["__meta__"]
        return json.loads(meta.tobytes())["epoch"]
    return len(list((out / "chunks").glob("chunk-*.npz")))


def check_stopped(case: Case, done: Done, out: Path) -> None:
    """A signal: the exit status is 128 + its number, the last line names it and what to run;
    during training, the epoch or chunk the signal came in is saved before it stops."""
    assert done.code == 128 + SIGNALS[case.action], done.describe()
    line = last_line(done)
    assert line.startswith("error: ") and SIGNAL_WORDS[case.action] in line, line
    if case.point in DURING_TRAINING:  # the arrival's epoch (diagnostics: row 0 comes first)
        assert saved_units(case, out) == case.count - (case.point == "diagnostics_row")
    elif case.point == "summary":  # the stop is said in summary.json (the page reads it)
        assert saved_units(case, out) == 3
        assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert ("--resume" in line) if SCENARIOS[case.scenario].target == "jaxmlp.train" else (
        "same command" in line), line


@pytest.mark.parametrize("case", [c for c in CASES if c.action != "FULL"], ids=case_id)
def test_a_fault_at_a_write_point_loses_nothing(case: Case, tmp_path: Path,
                                                reference: dict[str, dict[str, Any]]) -> None:
    out = tmp_path / "out"
    first = launch(command(case.scenario, out), f"{case.point}:{case.count}:{case.action}")
    if case.action == "KILL":
        assert first.code == -signal.SIGKILL, (
            f"{case.point} was not reached {case.count} times\n" + first.describe())
    else:
        check_stopped(case, first, out)
        no_traceback(first)
    check_left(case, out)
    if case.left == "cut":  # read before it is repaired: the cut line is left out, said once
        drawn = launch(argv("jaxmlp.plots", str(out)))
        assert drawn.code == 0, drawn.describe()
        assert "is cut short (its write was interrupted); it is left out" in drawn.stderr
        no_traceback(drawn)
    then = launch(next_command(case.scenario, out))
    if then.code != 0 and "not a jaxmlp run folder" in then.stderr:
        # Killed before config.json: --resume says there is no run, so the user starts it again.
        no_traceback(then)
        then = launch(command(case.scenario, out))
    assert then.code == 0, then.describe()
    no_traceback(then)
    assert_same(folder_state(case.scenario, out), reference[case.scenario])


def test_every_write_point_has_a_case() -> None:
    killed = {c.point for c in CASES if c.action == "KILL"}
    assert killed == set(faults.POINTS), set(faults.POINTS) ^ killed
    assert {c.action for c in CASES} == {"KILL", "FULL", *SIGNALS}
    assert {c.scenario for c in CASES if c.action in SIGNALS} >= {"run", "sweep", "experiment"}


# --- a full disk ------------------------------------------------------------------------------


def small_filesystem_problem() -> str | None:
    """Why this machine cannot mount a private tmpfs for a test, or None."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux) to make a private mount namespace"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return ("cannot mount a tmpfs in a private mount namespace (unshare -rm: no user "
                f"namespaces, or no root): {probe.stderr.strip()[:200]}")
    return None


def in_small_filesystem(tmp_path: Path, steps: list[tuple[list[str], str | None]],
                        name: str = "out") -> list[Done]:
    """Run `steps` (command, fail point) one after the other with the folder `name` on a 16 MiB
    tmpfs of their own, removing the filler a FULL fault left (the user freeing space) after
    each; the folder is copied to `tmp_path / name` at the end."""
    mount, logs = tmp_path / "mnt", tmp_path / "logs"
    mount.mkdir()
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["PYTHONPATH"] = str(REPO)
    lines = ["set -u", f"mount -t tmpfs -o size=16m tmpfs {shlex.quote(str(mount))}"]
    for i, (cmd, fail_at) in enumerate(steps):
        prefix = f"{faults.ENV}={shlex.quote(fail_at)} " if fail_at else ""
        lines.append(f"cd {shlex.quote(str(REPO))} && {prefix}{shlex.join(cmd)} "
                     f"> {logs}/{i}.out 2> {logs}/{i}.err; echo $? > {logs}/{i}.code")
        lines.append(f"rm -f {shlex.quote(str(mount / faults.FILLER))}")
    lines.append(f"cp -a {shlex.quote(str(mount / name))} {shlex.quote(str(tmp_path))}/")
    subprocess.run(["unshare", "-rm", "bash", "-c", "\n".join(lines)], env=env, check=True,
                   timeout=TIMEOUT * len(steps))
    return [Done(int((logs / f"{i}.code").read_text()), (logs / f"{i}.out").read_text(),
                 (logs / f"{i}.err").read_text()) for i in range(len(steps))]


@pytest.mark.parametrize("case", [c for c in CASES if c.action == "FULL"], ids=case_id)
def test_a_full_disk_at_a_write_point_loses_nothing(case: Case, tmp_path: Path,
                                                    reference: dict[str, dict[str, Any]]) -> None:
    problem = small_filesystem_problem()
    if problem:
        pytest.skip(problem)
    inside = tmp_path / "mnt" / "out"
    # A run that could not write its config.json did not start: its command is run again.
    again = case.scenario != "run" or case.point == "run_config"
    first, then = in_small_filesystem(tmp_path, [
        (command(case.scenario, inside), f"{case.point}:{case.count}:FULL"),
        ((command if again else next_command)(case.scenario, inside), None)])
    # The write that found no room (this one, or a later one: a line may still fit in a block
    # the file already has) is one line naming the file and what to run once there is room.
    assert first.code == 1, first.describe()
    no_traceback(first)
    line = last_line(first)
    assert line.startswith("error: cannot write ") and "No space left on device" in line, line
    assert ("same command again" if again else f"continue with --resume {inside}") in line, line
    assert then.code == 0, then.describe()
    no_traceback(then)
    assert_same(folder_state(case.scenario, tmp_path / "out"), reference[case.scenario])


# --- the table in the docs --------------------------------------------------------------------

LEFT_WORDS = {
    "cut": "its file ends in a cut line, which every reader (`python -m jaxmlp.plots`, "
           "`--resume`) leaves out with a warning naming it",
    "temporary": "the file as it was, beside a whole temporary file never renamed over it "
                 "(removed at the next start)",
    "nothing": "the files as they were before the point",
}
DURING_TRAINING = ("metrics_row", "diagnostics_row", "checkpoint", "chunk")  # signals wait
FAULT_WORDS = {"KILL": "SIGKILL", "TERM": "SIGTERM", "HUP": "SIGHUP", "INT": "SIGINT (Ctrl-C)",
               "FULL": "disk full"}


def what_is_left(case: Case) -> str:
    """The table's words for what the fault leaves, checked by the test of the case."""
    if case.action == "KILL":
        return LEFT_WORDS[case.left]
    if case.action == "FULL":
        return ("exit 1 and one line naming the file that found no room; what was written "
                "before is intact")
    code = 128 + SIGNALS[case.action]
    if case.point not in DURING_TRAINING:
        return f"training was over: it stops there, exit {code} and one line saying what to run"
    unit = "epoch" if SCENARIOS[case.scenario].target == "jaxmlp.train" else "chunk"
    return (f"the {unit} in progress finished and saved, then exit {code} and one line saying "
            "what to run")


def fault_table() -> str:
    """docs/faults.md, from `CASES`."""
    lines = [
        "# What survives which fault",
        "",
        *textwrap.wrap(
            "Every place where `python -m jaxmlp.train`, `python -m jaxmlp.sweep` and the "
            "experiments write is a named fail point (`jaxmlp/faults.py`). The tests in "
            "`tests/test_faults.py` stop the command at each point in turn (SIGKILL in the "
            "middle of the write; a signal; a file system that is full), then run what a user "
            "runs next, and check that the folder ends as an uninterrupted command leaves it: "
            "the final parameters and every metric bitwise equal, each epoch's row exactly "
            "once, no temporary file left. This page is generated from that table of cases "
            "(`python tests/test_faults.py` rewrites it; the tests check that it is current).",
            95),
        "",
        "| Write point | What is written there | Fault (at which arrival) | What it leaves | "
        "Then | Result |",
        "|---|---|---|---|---|---|",
    ]
    for c in CASES:
        result = f"the same as an uninterrupted {c.scenario.split()[0]}"
        lines.append(f"| `{c.point}` ({c.scenario}) | {faults.POINTS[c.point]} | "
                     f"{FAULT_WORDS[c.action]} ({c.count}) | {what_is_left(c)} | "
                     f"{SCENARIOS[c.scenario].then} | {result} |")
    lines += ["", *textwrap.wrap(
        "A multi-process sweep: when one process is killed (process 0, which writes, or "
        "another), the others stop at their next exchange with one line (`error: training "
        "stopped (...)`), the chunks written are whole, and the same commands again finish the "
        "sweep with the results of an uninterrupted one; a signal to one process stops them "
        "all after the same chunk (`tests/test_distributed.py`). A process that stops "
        "answering without dying (a machine lost) is noticed by JAX's heartbeat after 100 s, "
        "and JAX ends the others itself, with its own message.", 95), ""]
    return "\n".join(lines)


def test_the_fault_table_in_the_docs_is_this_one() -> None:
    assert DOC.read_text() == fault_table(), (
        f"{DOC} is not the table of tests/test_faults.py: run `python tests/test_faults.py`")


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(fault_table())
    print(f"wrote {DOC}")
