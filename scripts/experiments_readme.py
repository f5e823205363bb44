"""Copy the experiments' generated results into experiments/README.md.

    python -m benchmarks.bench_cold --keep runs/cold     # or run each experiment yourself
    python scripts/experiments_readme.py runs/cold       # a folder holding NAME/ per experiment

Each experiment's section of experiments/README.md quotes its `summary.md` (tables, budget and
findings, all written by the script that ran it) between `<!-- NAME: begin -->` and
`<!-- NAME: end -->`; the table of programs and seconds near the top, between
`<!-- experiments: begin -->` and `<!-- experiments: end -->`, comes from each folder's
`experiment.json` and `sweep.json` files. Nothing between the markers is written by hand, so the
figures quoted are always those of one set of runs. Experiments missing from FOLDER keep
their earlier blocks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "experiments" / "README.md"
NAMES = ("sweep_reduction", "sweep_lr", "sweep_loss", "overfit_small", "sweep_init",
         "paper_table", "sweep_pixels")


def replace_block(doc: str, name: str, text: str) -> str:
    """`doc` with the lines between `name`'s markers replaced by `text`."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    if doc.count(begin) != 1 or doc.count(end) != 1:
        raise SystemExit(f"{README}: needs exactly one {begin} and one {end}")
    start, stop = doc.index(begin) + len(begin), doc.index(end)
    return doc[:start] + "\n" + text.strip() + "\n" + doc[stop:]


def quoted_summary(folder: Path) -> str:
    """`summary.md` without its title, its headings demoted below the README's sections, and
    the machine's own paths left out (the data's folder differs on every machine)."""
    lines = folder.joinpath("summary.md").read_text().splitlines()
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    out = []
    for line in body:
        if line.startswith("## "):
            line = "####" + line[2:]
        out.append(re.sub(r"\(idx files in [^;)]*", "(idx files", line))
    return "\n".join(out)


def sweeps(folder: Path) -> list[dict]:
    """Every sweep.json the experiment wrote (its main sweep and its controls)."""
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("sweep.json"))]


def timing_row(name: str, folder: Path) -> str:
    """Runs, programs, compiling and wall of the experiment's latest invocation that trained."""
    calls = json.loads(folder.joinpath("experiment.json").read_text())["invocations"]
    # The latest that trained: a rerun that only rewrites the tables takes seconds.
    last = next((c for c in reversed(calls) if c["runs_trained"]), calls[-1])
    found = sweeps(folder)
    programs = sum(s.get("programs_compiled", 0) for s in found)
    runs = sum(s["num_runs"] for s in found)
    compiling = last.get("compile_seconds")
    share = f" ({compiling / last['wall_seconds']:.0%})" if compiling else ""
    return (f"| [`{name}.py`]({name}.py) | {runs} | {programs} | "
            f"{'' if compiling is None else f'{compiling:.1f} s{share}'} | "
            f"{last['wall_seconds']:.1f} s | {last['machine']}, jax {last['jax']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="holds one output folder per experiment")
    args = parser.parse_args(argv)
    doc = README.read_text()
    present = [n for n in NAMES if args.folder.joinpath(n, "summary.md").is_file()]
    if not present:
        raise SystemExit(f"{args.folder}: no experiment's summary.md in it (NAME/summary.md)")
    for name in present:
        doc = replace_block(doc, name, quoted_summary(args.folder / name))
    rows = [timing_row(n, args.folder / n) for n in present]
    doc = replace_block(doc, "experiments", "\n".join(
        ["| script | runs | programs compiled | compiling (share of wall) | wall | machine |",
         "|---|---|---|---|---|---|", *rows]))
    README.write_text(doc)
    print(f"{README.relative_to(REPO)}: quoted {', '.join(present)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
