"""A folder's files read leniently, and their numbers and settings put into words and cells for
the pages.

A page is written for folders in every state, a killed run's among them, so a line that cannot
be read (the one being written when the process died) is left out and said, never an error.
Every sentence that quotes a number formats it here, and the tests read the same numbers back
from the files to check the sentence.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp import stats
from jaxmlp.config import Config, flag_name
from jaxmlp.rundir import RunDirError

# --- reading -----------------------------------------------------------------------------------


def read_json(path: Path, unreadable: list[str]) -> Any:
    """The JSON in `path`; None when it is not there, or (said in `unreadable`) not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        unreadable.append(f"{path.name} could not be read ({e})")
        return None


def read_rows(read: Callable[[Callable[[str], None]], list[dict[str, Any]]],
              unreadable: list[str]) -> list[dict[str, Any]]:
    """The rows a `RunDir` reader gives (`RunDir.metrics`, `.diagnostics`: the one reader of a
    run folder's jsonl files), with what it warns about (a cut last line) said in `unreadable`;
    a file it refuses (a malformed row) is said there too, and gives no rows."""
    try:
        return read(unreadable.append)
    except RunDirError as e:
        unreadable.append(f"{e}; its rows are left out")
        return []


# --- numbers -----------------------------------------------------------------------------------


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any) -> str:
    """A loss or other measurement, 4 significant digits; 'n/a' when there is none."""
    return f"{x:.4g}" if finite(x) else "n/a"


def pct(x: Any) -> str:
    """A fraction as a percentage, as the console and the tables print it."""
    return stats.pct(x) if finite(x) else "n/a"


def percent(x: Any) -> float | None:
    return 100.0 * x if finite(x) else None


def array(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([v if finite(v) else np.nan for v in values], float)


def loss_words(steps: Sequence[Any], done: Sequence[dict[str, Any]]) -> str:
    """What the loss chart shows, with its numbers (the chart's alt text)."""
    shown = [v for v in steps if finite(v)]
    if not shown:
        return "Loss per step: no step's loss was recorded."
    words = (f"Training loss at every step (log scale), from {num(shown[0])} at the first "
             f"step to {num(steps[-1])} at the last of {len(steps)} steps")
    bad = next((i for i, v in enumerate(steps) if not finite(v)), None)
    if bad is not None:
        words += f"; it became non-finite at step {bad + 1} of the run"
    if done:
        words += (f"; test loss {num(done[-1].get('test_loss'))} after epoch "
                  f"{done[-1]['epoch']}")
    return words + "."


def accuracy_words(done: Sequence[dict[str, Any]], classes: int) -> str:
    """What the accuracy chart shows, with its numbers."""
    if not done:
        return "Accuracy per epoch: no epoch finished."
    first, last = done[0], done[-1]
    return (f"Test accuracy per epoch: {pct(first.get('test_accuracy'))} after epoch "
            f"{first['epoch']}, {pct(last.get('test_accuracy'))} after epoch {last['epoch']} "
            f"(training accuracy {pct(last.get('train_accuracy'))}); chance is "
            f"{100 / classes:.0f}% for {classes} classes.")


def series_words(what: str, values: Sequence[Any], unit: str, percent: bool = False) -> str:
    shown = [(i, v) for i, v in enumerate(values) if finite(v)]
    if not shown:
        return f"{what.capitalize()}: nothing recorded."
    say = pct if percent else num
    (i0, v0), (i1, v1) = shown[0], shown[-1]
    return (f"{what.capitalize()} per {unit}, from {say(v0)} at {unit} {i0} to {say(v1)} at "
            f"{unit} {i1}.")


# --- settings ----------------------------------------------------------------------------------


def value_words(value: Any) -> str:
    """A setting as it is typed: on/off, `512 512`, unset."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    return str(value)


def origin(name: str, value: Any, record: dict[str, Any] | None) -> str:
    """Where a setting's value came from: given, the data set's own default, or the default."""
    dataset = (record or {}).get("dataset", {})
    if name in (dataset.get("defaults") or {}):
        return f"{dataset.get('used')}'s own default"
    field = next(f for f in dataclasses.fields(Config) if f.name == name)
    return "default" if value == field.default else "given"


def given_settings(config: Config, record: dict[str, Any] | None,
                   leave: Collection[str] = ()) -> dict[str, Any]:
    """The settings that differ from their defaults (not those in `leave`)."""
    return {k: v for k, v in dataclasses.asdict(config).items()
            if k not in leave and origin(k, v, record) == "given"}


def flags(settings: dict[str, Any]) -> list[str]:
    """The command-line flags that set `settings`."""
    out: list[str] = []
    for name, value in settings.items():
        flag = flag_name(name)
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def settings_table(config: Config, record: dict[str, Any] | None,
                   decided: Collection[str] = (), decider: str = ""
                   ) -> list[tuple[str, str, str]]:
    """(flag, value, where it came from) for every setting; those in `decided` were set by
    `decider` (--overfit's batch, subset and schedule)."""
    return [(flag_name(k), value_words(v),
             f"set by {decider}" if k in decided else origin(k, v, record))
            for k, v in dataclasses.asdict(config).items()]


def typed_command(argv: Sequence[str]) -> str | None:
    """A recorded `sys.argv` as the command typed: `python -m jaxmlp.train ...` for a module of
    jaxmlp, `python experiments/x.py ...` for an experiment; None for anything else (a test
    calling `main` in its own process records pytest's)."""
    if not argv:
        return None
    path = Path(argv[0])
    if path.parent.name == "experiments":
        program = ["python", f"experiments/{path.name}"]
    elif path.name == "__main__.py" and path.parent.parent.name == "jaxmlp":
        program = ["python", "-m", f"jaxmlp.{path.parent.name}"]
    elif path.suffix == ".py" and path.parent.name == "jaxmlp":
        program = ["python", "-m", f"jaxmlp.{path.stem}"]
    else:
        return None
    return command_line(program, list(argv[1:]))


def command_line(program: Sequence[str], args: Sequence[str]) -> str:
    """A command as it would be typed in a POSIX shell."""
    return " ".join([*program, shlex.join(args)] if args else program)


# --- the folder's other records --------------------------------------------------------------


def epoch_rows(metrics: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """metrics.jsonl as table cells, one row per epoch (a diverged epoch says where)."""
    rows = []
    for m in metrics:
        if m.get("diverged_at_step"):
            note = f"diverged at step {m['diverged_at_step']}"
        else:
            note = ""
        rows.append({"epoch": str(m.get("epoch", "?")), "train_loss": num(m.get("train_loss")),
                     "train_accuracy": pct(m.get("train_accuracy")),
                     "test_loss": num(m.get("test_loss")),
                     "test_accuracy": pct(m.get("test_accuracy")),
                     "seconds": f"{m['epoch_seconds']:.2f}" if finite(m.get("epoch_seconds"))
                     else "n/a", "note": note})
    return rows


def data_lines(record: dict[str, Any] | None) -> list[str]:
    """The data set config.json records: which, from where, how many examples, what was
    skipped."""
    d = (record or {}).get("dataset")
    if not d:
        return []
    lines = [f"{d.get('used')} (asked for: {d.get('requested') or 'the default'}), from "
             f"{d.get('source')}"]
    if d.get("fallback"):
        lines.append(f"fallback: {d['fallback']}")
    counts = f"{d.get('num_train')} training and {d.get('num_test')} test examples"
    if d.get("num_classes"):
        counts += f", {d['num_classes']} classes"
    lines.append(counts)
    lines += [f"preprocessing skipped: {s}" for s in d.get("skipped_preprocessing") or []]
    return lines


def machine_lines(record: dict[str, Any]) -> list[str]:
    """Versions, devices and start time, as recorded."""
    lines = []
    if record.get("versions"):
        lines.append(", ".join(f"{k} {v}" for k, v in record["versions"].items()))
    if record.get("devices"):
        lines.append("devices: " + ", ".join(map(str, record["devices"])))
    if record.get("started"):
        lines.append(f"started {record['started']}")
    return lines
