"""A sweep's page (an experiment's output folder is a sweep's, with more in it), from its files:
how far it got, summary.md's tables with their intervals and its generated findings, the
curves as small multiples and every other picture, the command, and links to the pages of the
sweeps inside it (an experiment's controls).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jaxmlp.pages.facts as facts  # the modules, not the package: no cycle
import jaxmlp.pages.markdown as markdown
from jaxmlp.pages.render import Picture, pictures, write_page
from jaxmlp.rundir import CONFIG_JSON, REPORT_HTML
from jaxmlp.sweep.store import CHUNKS, SWEEP_JSON
from jaxmlp.sweep.tables import CURVES_PNG, FINAL_PNG, SUMMARY_MD

EXPERIMENT_JSON = "experiment.json"  # experiments/_common.py's log of each invocation
FINDINGS = "Findings"  # summary.md's section of generated findings

CAPTIONS = {
    CURVES_PNG: ("Learning curves of every variant: mean over seeds with the spread between "
                 "them, in small multiples", "Training loss and test accuracy per epoch, one "
                 "line per variant (mean over seeds, band: their spread)."),
    FINAL_PNG: ("Final test accuracy of every variant, each seed a point",
                "Final test accuracy per variant, every seed."),
}


@dataclasses.dataclass(frozen=True)
class SubPage:
    name: str  # the folder, relative to this one
    href: str | None  # its report.html, when it has one
    what: str


def is_sweep_folder(folder: Path) -> bool:
    return (Path(folder) / SWEEP_JSON).is_file()


def _status(record: dict[str, Any], chunks_done: int) -> tuple[str, bool, str]:
    """(headline, failed, how far it got)."""
    kind = record.get("status", "unknown")
    runs, total = record.get("num_runs", "?"), record.get("num_chunks", "?")
    far = f"{chunks_done} of {total} chunks trained ({runs} runs in all)"
    if kind == "complete":
        return (f"Complete: {runs} runs, {record.get('num_variants', '?')} variants x "
                f"{record.get('num_seeds', '?')} seeds", False, far)
    words = {"interrupted": "was interrupted", "incomplete": "is not complete",
             "running": "is running, or stopped without a word (killed)"}
    return (f"This sweep {words.get(kind, kind)}: the same command again trains the rest and "
            "writes the tables", True, far)


def sub_pages(folder: Path) -> list[SubPage]:
    """The run and sweep folders inside `folder` (an experiment's controls, a validation
    sweep), two levels down at most."""
    found = []
    for path in sorted([*folder.glob("*/*"), *folder.glob("*")]):
        if path.is_dir() and path.name != CHUNKS and (
                (path / SWEEP_JSON).is_file() or (path / CONFIG_JSON).is_file()):
            page = path / REPORT_HTML
            rel = path.relative_to(folder).as_posix()
            found.append(SubPage(rel, f"{rel}/{REPORT_HTML}" if page.is_file() else None,
                                 "sweep" if (path / SWEEP_JSON).is_file() else "run"))
    return found


def command(folder: Path, record: dict[str, Any]) -> str | None:
    """The command that made the folder: an experiment's last invocation, else the sweep's."""
    unreadable: list[str] = []
    log = facts.read_json(folder / EXPERIMENT_JSON, unreadable) or {}
    invocations = log.get("invocations") or []
    argv = invocations[-1].get("command") if invocations else record.get("command")
    return facts.typed_command(argv or [])


def sweep_context(folder: Path) -> dict[str, Any]:
    """Everything sweep.html shows."""
    folder = Path(folder)
    unreadable: list[str] = []
    record = facts.read_json(folder / SWEEP_JSON, unreadable) or {}
    try:
        text = (folder / SUMMARY_MD).read_text()
    except FileNotFoundError:
        text = ""
    sections = markdown.sections(markdown.parse(text))
    intro = [b for b in sections.pop("", []) if not (b.kind == "heading" and b.level == 1)]
    findings = sections.pop(FINDINGS, [])
    chunks = len(list((folder / CHUNKS).glob("chunk-*.npz")))
    headline, failed, far = _status(record, chunks)
    expected = [CURVES_PNG, FINAL_PNG] if text else []
    name = (record.get("spec") or {}).get("name") or folder.name
    return {
        "title": f"{name}: a jaxmlp sweep", "folder": folder, "headline": headline,
        "failed": failed, "how_far": far, "note": (record.get("spec") or {}).get("note", ""),
        "has_summary": bool(text), "intro": intro, "sections": list(sections.items()),
        "findings": findings,
        "pictures": pictures(folder, CAPTIONS, expected,
                             "the sweep wrote its tables without plots (--no-plots)"),
        "command": command(folder, record), "rebuild": f"python -m jaxmlp.plots {folder}",
        "sub_pages": sub_pages(folder), "machine": _machine(record),
        "unreadable": unreadable, "files": sorted(p.name for p in folder.iterdir()
                                                  if p.is_file() and p.name != REPORT_HTML),
    }


def _machine(record: dict[str, Any]) -> list[str]:
    lines = facts.machine_lines(record)
    seconds = [record.get(k) for k in ("wall_seconds", "compile_seconds", "train_seconds")]
    if all(facts.finite(x) for x in seconds):
        lines.append("wall {:.1f} s (compile {:.1f} s, train {:.1f} s)".format(*seconds)
                     + f" over {len(record.get('sessions') or [])} session(s)")
    return lines


def write_sweep_page(folder: str | Path) -> Path:
    """Write `folder`/report.html from the sweep folder's files; returns its path."""
    return write_page(Path(folder), "sweep.html", sweep_context(Path(folder)))


__all__ = ["Picture", "SubPage", "is_sweep_folder", "sub_pages", "sweep_context",
           "write_sweep_page"]
