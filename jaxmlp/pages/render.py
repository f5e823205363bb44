"""The one renderer: Jinja2 templates (package data, autoescaped) in, a self-contained page out.

Every page extends `templates/base.html`, which inlines the one stylesheet and sets a content
security policy that allows no script and nothing from the network. The pieces pages share
(a picture or the note that stands in for a missing one, a command, sentences, a chart, a
finding with its guide link, a table, Markdown blocks) are the macros of `templates/parts.html`.
A new kind of page is one template that extends base.html and calls those macros, plus one
function that gathers its context and calls `write_page`.

Values reach the templates as data (strings, numbers, dataclasses) and autoescaping turns every
`<`, `&` and quote in them into text: a config.json or summary.md holding `<script>` shows the
characters and runs nothing.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from jaxmlp import checkpoint
from jaxmlp.rundir import REPORT_HTML

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("jaxmlp.pages", "templates"),
    autoescape=True,  # every template, whatever its name: nothing from a file is markup
    undefined=jinja2.StrictUndefined,  # a misspelt name is an error, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclasses.dataclass(frozen=True)
class Picture:
    """A picture of the folder (`src`, relative to the page), or, with `missing`, the note that
    stands in for it: which file and why it is not there."""

    name: str
    alt: str
    caption: str = ""
    missing: str = ""

    @property
    def src(self) -> str:
        return urllib.parse.quote(self.name)


def pictures(folder: Path, captions: Mapping[str, tuple[str, str]],
             expected: Iterable[str] = (), why_missing: str = "") -> list[Picture]:
    """The folder's PNGs, those named in `captions` first (in its order), then the rest by
    name; then a note for each `expected` name the folder lacks, saying `why_missing`.
    `captions`: file name -> (alt text, caption)."""
    present = sorted(p.name for p in folder.glob("*.png") if p.is_file())
    order = [n for n in captions if n in present] + [n for n in present if n not in captions]
    shown = [Picture(n, *captions.get(n, (f"picture {n} of this folder", ""))) for n in order]
    gone = [Picture(n, "", missing=why_missing) for n in dict.fromkeys(expected)
            if n not in present]
    return shown + gone


def render(template: str, context: Mapping[str, Any]) -> str:
    """`template` rendered with `context`."""
    return _ENV.get_template(template).render(**context)


def write_page(folder: Path, template: str, context: Mapping[str, Any],
               name: str = REPORT_HTML) -> Path:
    """Render `template` with `context` into `folder`/`name` (a run's or sweep's report.html
    by default), atomically: a reader sees the old page or the new one. Returns its path."""
    path = Path(folder) / name
    checkpoint.atomic_write_text(path, render(template, context), "page")
    return path
