"""`python -m jaxmlp.notes`: the learning notes' questions, each answered by the smallest
measurement that answers it, on this machine, on one page (`DIR/index.html`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxmlp import cli, compilation, data, sweep
from jaxmlp.config import Config, ConfigError
from jaxmlp.notes.budget import BUDGETS, Setting
from jaxmlp.notes.page import INDEX_HTML, NOTES_JSON, write_notes_page
from jaxmlp.notes.questions import NAMES, QUESTIONS
from jaxmlp.notes.run import open_folder, run_notes
from jaxmlp.rundir import default_folder

PROG = "python -m jaxmlp.notes"


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Answer the learning notes' questions by measurement, on this "
        "machine, and write them on one page (DIR/index.html), each answer linked to the run or "
        "sweep it was read from. The questions: " + ", ".join(NAMES) + ".")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="the notes folder (default: a new folder under runs/); an earlier "
                             "one keeps the answers not measured again")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None,
                        help=f"measure only these questions ({', '.join(NAMES)}); the others' "
                             "answers in DIR stay as they are")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke budget within about 60 s: checks that everything runs; "
                             "its numbers are not the answer, and the page says so")
    # For the test suite: smaller than --quick. Not a measurement.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None,
                        help="folder with MNIST's IDX files or a parent of mnist/ (default: "
                             "$JAXMLP_DATA_DIR, then jaxmlp's usual places)")
    parser.add_argument("--page-only", action="store_true",
                        help="rewrite DIR/index.html from the folders already in DIR, training "
                             "nothing")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show progress bars (default: on)")
    return parser


def chosen(only: list[str] | None) -> list:
    if not only:
        return list(QUESTIONS)
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        cli.fail(f"--only {' '.join(unknown)}: no such question; choose from {', '.join(NAMES)}")
    return [q for q in QUESTIONS if q.name in only]


def main(argv: list[str] | None = None) -> int:
    import_seconds = compilation.process_age_seconds()  # start-up and imports, for `speed`
    compilation.tune_xla_cpu()  # before JAX starts: the trainer's XLA:CPU options, and one
    compilation.split_cpu_into_devices()  # device per core, so sweeps train runs side by side
    args = build_parser().parse_args(argv)
    questions = chosen(args.only)
    if args.page_only and (args.out is None or not (Path(args.out) / NOTES_JSON).is_file()):
        cli.fail("--page-only rewrites the page of an existing notes folder (one holding "
                 f"{NOTES_JSON}): give it with --out")
    out = Path(args.out) if args.out else default_folder("notes")
    mode = "smoke" if args.smoke else "quick" if args.quick else "default"
    try:
        open_folder(out)  # a folder that is not a notes folder is refused before any work
        if args.page_only:
            print(f"wrote {write_notes_page(out)}")
            return 0
        compilation.enable_compilation_cache()
        setting = Setting(BUDGETS[mode], args.data_dir, args.progress, import_seconds,
                          tuple(sys.argv if argv is None else [PROG, *argv]),
                          log=lambda _: None)
        if any(q.name != "toy" for q in questions):  # MNIST missing: one line, before any work
            setting.datasets.dataset(Config(dataset="mnist", data_dir=args.data_dir))
        run_notes(out, questions, setting)
    except (ConfigError, data.DataError, sweep.SpecError, sweep.SweepError) as e:
        cli.fail(str(e))
    except KeyboardInterrupt:
        cli.fail(f"interrupted; the answers measured so far are on {out / INDEX_HTML}", code=130)
    print(f"page: {out / INDEX_HTML}")
    return 0
