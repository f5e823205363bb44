"""Pages: a run's or a sweep's folder as one HTML page, from the folder's files alone.

`write_run_page(folder)` and `write_sweep_page(folder)` write `report.html` into the folder;
`write_folder_page(folder)` picks the kind. Nothing here trains or loads data: a page reads
config.json, metrics.jsonl, diagnostics.jsonl, summary.json, overfit.json and the PNGs of a run,
or sweep.json, summary.md and the PNGs of a sweep, so any folder, an old one included, gets a
page, and rebuilding it gives the same page.

The modules: `render` (the one Jinja2 environment, `write_page`, `Picture`), `chart` (learning
curves as numbers for inline SVG), `markdown` (the summary.md subset as blocks), `guide` (where
docs/ explains each finding), `facts` (reading files leniently; numbers and settings in words),
`run` and `sweep` (each page's context). Templates and the stylesheet are package data in
`templates/`.
"""

from __future__ import annotations

from pathlib import Path

from jaxmlp.pages.guide import FINDING_GUIDE, finding_link
from jaxmlp.pages.render import Picture, render, write_page
from jaxmlp.pages.run import read_run, run_context, write_run_page
from jaxmlp.pages.sweep import is_sweep_folder, sweep_context, write_sweep_page
from jaxmlp.rundir import REPORT_HTML


def write_folder_page(folder: str | Path) -> Path:
    """report.html for a sweep folder (it holds sweep.json) or a run folder."""
    folder = Path(folder)
    return write_sweep_page(folder) if is_sweep_folder(folder) else write_run_page(folder)


__all__ = [
    "FINDING_GUIDE", "REPORT_HTML", "Picture", "finding_link", "is_sweep_folder", "read_run",
    "render", "run_context", "sweep_context", "write_folder_page", "write_page",
    "write_run_page", "write_sweep_page",
]
