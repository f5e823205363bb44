"""What `check` prints: which quantities match, the first that differs (where, yours vs the
case's), and the mistake it looks like, in plain words (pure string formatting)."""

from __future__ import annotations

import textwrap

from jaxmlp.reference.compare import FLOAT64_LEVEL, RTOL, SECTIONS, Comparison, KeyResult
from jaxmlp.reference.mistakes import Finding

WIDTH = 100


def _wrapped(label: str, words: list[str]) -> list[str]:
    return textwrap.wrap(" ".join(words), WIDTH, initial_indent=f"{label:<10}",
                         subsequent_indent=" " * 10, break_on_hyphens=False)


def _where(r: KeyResult) -> str:
    return f" at [{', '.join(map(str, r.index))}]" if r.index else ""


def _first_line(r: KeyResult, size: int) -> str:
    return (f"FIRST DIFFERENCE {r.key}{_where(r)}: yours {r.yours:.6g}, case {r.expected:.6g} "
            f"({r.bad} of {size} entries differ)")


def _section_lines(comparison: Comparison, section: str, sizes: dict[str, int]) -> list[str]:
    given = [r for r in comparison.given if r.section == section]
    if not given:
        return []
    first = comparison.first
    position = {r.key: i for i, r in enumerate(comparison.results)}
    cut = position[first.key] if first else len(comparison.results)
    before = [r.key for r in given if position[r.key] < cut]
    lines = _wrapped(section, ["match:", *before]) if before else []
    if first is not None and first.section == section:
        lines.append(" " * 10 + _first_line(first, sizes[first.key]) if lines
                     else f"{section:<10}" + _first_line(first, sizes[first.key]))
    return lines


def _later(comparison: Comparison) -> list[str]:
    first = comparison.first
    keys = [r.key for r in comparison.results]
    later = [r for r in comparison.given if keys.index(r.key) > keys.index(first.key)]
    if not later:
        return []
    bad = sum(not r.ok for r in later)
    if bad == 0:
        text = (f"the {len(later)} you gave after it match: the mistake stays in "
                f"{first.key}")
    else:
        text = (f"after it, {bad} more of yours differ ({len(later) - bad} match): they are "
                f"computed from it, so fix the first and check again")
    return textwrap.wrap(text, WIDTH)


def _finding_lines(f: Finding) -> list[str]:
    if not f.causes:
        return (textwrap.wrap(f"likely mistake: {f.says}", WIDTH, subsequent_indent="  ")
                + textwrap.wrap(f"fix: {f.fix}", WIDTH, initial_indent="  ",
                                subsequent_indent="    "))
    lines = textwrap.wrap(f"likely mistake: {f.says}, which fits {len(f.causes)} mistakes in "
                          f"this case; these numbers alone cannot tell which:", WIDTH,
                          subsequent_indent="  ")
    for cause in f.causes:
        lines += textwrap.wrap(f"- {cause.says}", WIDTH, initial_indent="  ",
                               subsequent_indent="    ")
        lines += textwrap.wrap(f"fix: {cause.fix}", WIDTH, initial_indent="    ",
                               subsequent_indent="      ")
    return lines + textwrap.wrap(f"to tell them apart: {f.fix}", WIDTH, initial_indent="  ",
                                 subsequent_indent="    ", break_on_hyphens=False)


def _findings(comparison: Comparison) -> list[str]:
    if not comparison.findings:
        return [f"not one of the classic mistakes this check recognises: hold your formula for "
                f"{comparison.first.key} against the case's README.md"]
    return [line for f in comparison.findings for line in _finding_lines(f)]


def _verdict(comparison: Comparison) -> str:
    worst = max((r.worst for r in comparison.given), default=0.0)
    level = ("float64 agreement" if worst <= FLOAT64_LEVEL else
             "float32-level agreement, as expected of float32 arithmetic")
    return (f"all {len(comparison.given)} quantities you gave match the case (largest difference "
            f"{worst:.1e} of an array's scale: {level})")


def format_check(comparison: Comparison, sizes: dict[str, int], case_line: str,
                 yours_where: str) -> str:
    """The whole report of `check`."""
    given = comparison.given
    missing = len(comparison.results) - len(given)
    lines = textwrap.wrap(f"case      {case_line}", WIDTH, subsequent_indent=" " * 10)
    lines.append(f"yours     {yours_where}: {len(given)} of {len(comparison.results)} quantities"
                 + (f" ({missing} not given, not checked)" if missing else ""))
    lines += textwrap.wrap(f"rule      an array matches when every entry is within {RTOL:.0e} x "
                           f"the largest |value| of the case's array (float32 rounding stays "
                           f"near 1e-7 of it, float64 near 1e-15)", WIDTH,
                           subsequent_indent=" " * 10)
    lines.append("")
    for section in SECTIONS:
        lines += _section_lines(comparison, section, sizes)
    lines.append("")
    if comparison.ok:
        return "\n".join([*lines, _verdict(comparison)])
    return "\n".join([*lines, *_findings(comparison), *_later(comparison)])
