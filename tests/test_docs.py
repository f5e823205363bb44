"""README.md and the guide (docs/) hold together: every relative link names a file that exists,
every `#anchor` names a heading (as GitHub spells it) of the file it points into, the README
stays a front door, and every finding the report can give has a section in the guide that the
pages link to."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jaxmlp.pages.guide import DOCS, FINDING_GUIDE

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code: links there are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the text as shown (no backticks or emphasis),
    lower case, punctuation other than - and _ dropped, spaces as hyphens."""
    text = heading.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file: its headings' (repeats numbered, as GitHub does) and
    any explicit <a id=...>."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    for line in text.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found |= set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    return found


def broken_links(path: Path, text: str | None = None) -> list[str]:
    """Every relative link or anchor of `path` (or of `text`, read as if it were `path`) that
    does not resolve."""
    text = path.read_text() if text is None else text
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not checked here
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{path.name}: {target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{path.name}: {target}: no such section")
    return broken


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = [b for path in DOCUMENTS for b in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_the_link_check_finds_a_missing_file_and_a_missing_section() -> None:
    page = REPO / "docs" / "README.md"
    text = ("[a](when-training-goes-wrong.md#relu-units-die) [b](no-such-page.md) "
            "[c](when-training-goes-wrong.md#no-such-section) [d](#the-jaxmlp-guide) "
            "`[e](not-a-link.md)` [f](https://example.org/x)")
    assert broken_links(page, text) == [
        "README.md: no-such-page.md: no such file",
        "README.md: when-training-goes-wrong.md#no-such-section: no such section",
    ]


def test_slugs_are_githubs() -> None:
    assert slug("Steps that are too large or too small (and the *mean* in mean squared "
                "error)") == ("steps-that-are-too-large-or-too-small-and-the-mean-in-mean-"
                              "squared-error")
    assert slug("What --diagnose costs") == "what---diagnose-costs"
    assert slug("`python -m jaxmlp.plots DIR`: a folder's pictures") == (
        "python--m-jaxmlpplots-dir-a-folders-pictures")


def test_the_readme_is_a_front_door() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    setup = text.split("## Set up", 1)[1].split("```", 2)[1]
    order = [setup.index(c) for c in ("pip install", "python -m jaxmlp.train",
                                      "python -m jaxmlp.notes", "pytest")]
    assert order == sorted(order), "set-up: install, train, the notes, test, in that order"
    for script in sorted(p.name for p in (REPO / "experiments").glob("[!_]*.py")):
        if script != "engine_check.py":  # a check of the engine, not a question
            assert f"experiments/{script}" in text, f"the README's experiments lack {script}"
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name != "README.md":
            assert f"(docs/{page.name}" in text, f"the README does not link to {page.name}"


def finding_codes() -> set[str]:
    """Every code a rule of the report can give: the first argument (or `code=`) of each
    `Finding(...)` in jaxmlp/report/, read from the source."""
    codes = set()
    for path in (REPO / "jaxmlp" / "report").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "code")]
                codes |= {a.value for a in args if isinstance(a, ast.Constant)}
    return codes


def test_every_finding_has_a_section_in_the_guide() -> None:
    codes = finding_codes()
    assert len(codes) >= 16, codes  # the count today; the AST reading has not gone blind
    assert codes <= set(FINDING_GUIDE), f"no guide section for {codes - set(FINDING_GUIDE)}"
    assert DOCS == REPO / "docs"
    for code, (page, anchor) in FINDING_GUIDE.items():
        assert anchor in anchors(DOCS / page), f"{code}: {page}#{anchor} is not a section"
