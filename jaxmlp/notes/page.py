"""The notes' page, `DIR/index.html`, from the folders under DIR alone (and `DIR/notes.json`,
which says at which budget each answer was measured): `notes_context` gathers what
`pages/templates/notes.html` shows, `write_notes_page` renders it with the pages' renderer.
Nothing here trains: the page is rebuilt from the same files whenever one answer is measured
again, and `python -m jaxmlp.notes --out DIR --page-only` rebuilds it by hand.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint
from jaxmlp.config import ConfigError
from jaxmlp.notes.answer import Answer, Unreadable
from jaxmlp.notes.budget import BUDGETS
from jaxmlp.notes.questions import QUESTIONS, Question, Quote
from jaxmlp.pages import write_page
from jaxmlp.pages.facts import command_line
from jaxmlp.pages.guide import GuideLink, guide_link

NOTES_JSON, INDEX_HTML = "notes.json", "index.html"
PROGRAM = ("python", "-m", "jaxmlp.notes")
SMALL_BUDGET = ("measured at the {mode} budget: a smoke budget, which checks that the "
                "measurement runs, on too few seeds, images and steps to answer anything. The "
                "sentences say what these small numbers show, not the answer; rerun without "
                "--{mode}.")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One question on the page: its words, and its answer or why there is none."""

    name: str
    title: str
    quotes: tuple[Quote, ...]
    measured: str
    answer: Answer | None
    note: str  # why there is no answer
    mode: str  # the budget it was measured at ("" when it was not)
    budget_note: str  # the smoke budget's label, when it applies
    seconds: float | None
    command: str
    guide: GuideLink
    experiment: str


def read_record(out: Path) -> dict[str, Any]:
    """notes.json (an empty record where there is none yet); a ConfigError when it is not one."""
    path = out / NOTES_JSON
    if not path.is_file():
        return {"answers": {}, "sessions": []}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); choose another --out") from None
    if not isinstance(record, dict) or not isinstance(record.get("answers"), dict):
        raise ConfigError(f"{path} is not a notes record; choose another --out")
    record.setdefault("sessions", [])
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    checkpoint.atomic_write_text(out / NOTES_JSON, json.dumps(record, indent=2) + "\n")


def rerun_command(out: Path, name: str, done: dict[str, Any]) -> str:
    """The command that measures `name` again at the budget it was measured at."""
    args = ["--out", str(out), "--only", name]
    if done.get("mode") in ("quick", "smoke"):
        args.append(f"--{done['mode']}")
    if done.get("data_dir"):
        args += ["--data-dir", str(done["data_dir"])]
    return command_line(PROGRAM, args)


def entry(out: Path, q: Question, done: dict[str, Any] | None) -> Entry:
    """The page's entry for `q`: its answer read from `out/q.name`, or the reason there is none."""
    answer, note = None, ""
    if done is None:
        note = "Not measured in this folder yet: the command below measures it."
    elif done.get("status") != "done":
        note = f"The measurement stopped: {done.get('message', 'no reason recorded')}."
    else:
        try:
            answer = q.answer(out, q.name)
        except (Unreadable, KeyError, TypeError, ValueError, IndexError, ArithmeticError) as e:
            note = f"Its folder cannot be read back ({e}): measure it again."
    mode = (done or {}).get("mode", "")
    return Entry(q.name, q.title, q.quotes, q.measured, answer, note, mode,
                 SMALL_BUDGET.format(mode=mode) if mode in BUDGETS and
                 BUDGETS[mode].smoke_label else "",
                 (done or {}).get("seconds"), rerun_command(out, q.name, done or {}),
                 guide_link(*q.guide, out), q.experiment)


def cache_words(sessions: list[dict[str, Any]]) -> str:
    """What the compilation cache did in the last session, and what a cold cache added, where
    an earlier session of the same measurements compiled what the last one loaded."""
    last = sessions[-1] if sessions else None
    if not last or "cache_misses" not in last:
        return ""
    said = (f"The last session ({last.get('started', '')}) measured "
            f"{', '.join(last.get('answers', []))} in {last['wall_seconds']:.1f} s; it compiled "
            f"{last['cache_misses']} programs and loaded {last['cache_hits']} from the "
            "compilation cache.")
    cold = next((s for s in sessions[:-1] if s.get("cache_misses") and
                 (s.get("mode"), s.get("answers")) == (last.get("mode"), last.get("answers"))),
                None)
    if cold is not None and last["cache_misses"] == 0:
        return said + (f" The same measurements with a cold cache ({cold.get('started', '')}, "
                       f"{cold['cache_misses']} programs compiled) took "
                       f"{cold['wall_seconds']:.1f} s: a cold cache added "
                       f"{cold['wall_seconds'] - last['wall_seconds']:.0f} s on this machine.")
    return said + (" With a warm cache the same command loads those programs instead of "
                   "compiling them: run it again to see what that saves here."
                   if last["cache_misses"] else "")


def notes_context(out: Path) -> dict[str, Any]:
    """Everything notes.html shows."""
    out = Path(out)
    record = read_record(out)
    entries = [entry(out, q, record["answers"].get(q.name)) for q in QUESTIONS]
    sessions = record["sessions"]
    small = sorted({e.mode for e in entries if e.budget_note})
    return {
        "title": "The learning notes, answered on this machine",
        "folder": out, "entries": entries, "small": small,
        "session": cache_words(sessions), "experiments": guide_link("experiments.md", "", out),
        "command": command_line(PROGRAM, ["--out", str(out)]),
        "rebuild": command_line(PROGRAM, ["--out", str(out), "--page-only"]),
    }


def write_notes_page(out: Path) -> Path:
    """Write `out`/index.html from the folders under `out`; returns its path."""
    return write_page(Path(out), "notes.html", notes_context(Path(out)), name=INDEX_HTML)
