"""The little Markdown that summary.md files use, read into blocks of plain text for a template.

A sweep's summary.md (and an experiment's, with its own sections) is headings, paragraphs,
bullet lists, pipe tables and `code`. This reads exactly that into data: a template renders it,
escaping every piece, so nothing in the file can become markup. Anything else (links, HTML,
emphasis) stays as the text it is.
"""

from __future__ import annotations

import dataclasses
import re

# Inline pieces: `code` and **strong**; everything between is text.
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


@dataclasses.dataclass(frozen=True)
class Span:
    kind: str  # "text", "code" or "strong"
    text: str


@dataclasses.dataclass(frozen=True)
class Block:
    kind: str  # "heading", "paragraph", "list", "table" or "code"
    spans: tuple[Span, ...] = ()  # heading, paragraph
    level: int = 0  # heading
    items: tuple[tuple[Span, ...], ...] = ()  # list items; a table's header
    rows: tuple[tuple[tuple[Span, ...], ...], ...] = ()  # table rows
    text: str = ""  # code


def inline(text: str) -> tuple[Span, ...]:
    """`text` as spans of text, code and strong."""
    spans, at = [], 0
    for m in _INLINE.finditer(text):
        if m.start() > at:
            spans.append(Span("text", text[at:m.start()]))
        spans.append(Span("code", m.group(1)) if m.group(1) is not None
                     else Span("strong", m.group(2)))
        at = m.end()
    if at < len(text):
        spans.append(Span("text", text[at:]))
    return tuple(spans)


def _cells(line: str) -> tuple[tuple[Span, ...], ...]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return tuple(inline(c.strip()) for c in inner.split("|"))


def _table(lines: list[str]) -> Block:
    rows = [ln for ln in lines if not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", ln)]
    return Block("table", items=_cells(rows[0]), rows=tuple(_cells(r) for r in rows[1:]))


def _list(lines: list[str]) -> Block:
    items: list[str] = []
    for ln in lines:
        if ln.lstrip().startswith(("- ", "* ")):
            items.append(ln.lstrip()[2:].strip())
        elif items:  # a continuation line of the item above
            items[-1] += " " + ln.strip()
    return Block("list", items=tuple(inline(i) for i in items))


def _chunks(text: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) for each run of lines: a fenced code block, or lines up to a blank one."""
    out: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            out.append(("code", lines[i + 1:end]))
            i = end + 1
        elif lines[i].strip():
            j = i
            while j < len(lines) and lines[j].strip() and not lines[j].startswith("```"):
                j += 1
            out.append(("text", lines[i:j]))
            i = j
        else:
            i += 1
    return out


def parse(text: str) -> list[Block]:
    """The blocks of `text`, in order."""
    blocks: list[Block] = []
    for kind, lines in _chunks(text):
        if kind == "code":
            blocks.append(Block("code", text="\n".join(lines)))
            continue
        while lines and (m := re.match(r"(#{1,6})\s+(.*)", lines[0])):
            blocks.append(Block("heading", spans=inline(m.group(2).strip()), level=len(m[1])))
            lines = lines[1:]
        if not lines:
            continue
        if lines[0].lstrip().startswith("|"):
            blocks.append(_table(lines))
        elif lines[0].lstrip().startswith(("- ", "* ")):
            blocks.append(_list(lines))
        else:
            blocks.append(Block("paragraph", spans=inline(" ".join(ln.strip() for ln in lines))))
    return blocks


def sections(blocks: list[Block]) -> dict[str, list[Block]]:
    """The blocks under each level-2 heading, by the heading's text ("" for those before the
    first)."""
    out: dict[str, list[Block]] = {"": []}
    current = ""
    for b in blocks:
        if b.kind == "heading" and b.level == 2:
            current = "".join(s.text for s in b.spans)
            out[current] = []
        else:
            out[current].append(b)
    return out
