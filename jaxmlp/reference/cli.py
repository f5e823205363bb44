"""The command `python -m jaxmlp.reference`: `write DIR` computes a worked case and writes its
files; `check DIR YOURS` holds a learner's numbers against it (exit 0: all match, 1: some
differ, 2: a file it cannot use)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from jaxmlp import cli, data
from jaxmlp.checkpoint import atomic_write, atomic_write_text
from jaxmlp.config import (
    ACTIVATIONS,
    ERRORS,
    INITS,
    OUTPUTS,
    REDUCTIONS,
    TARGETS,
    Config,
    ConfigError,
)
from jaxmlp.reference import files
from jaxmlp.reference.case import (
    INPUTS,
    TOY_CLASSES,
    Case,
    CaseSpec,
    all_names,
    compute_case,
    image_inputs,
    num_layers_of,
    toy_inputs,
    validate_spec,
)
from jaxmlp.reference.compare import CaseFileError, as_arrays, compare
from jaxmlp.reference.readme import case_readme, describe
from jaxmlp.reference.report import format_check

DEFAULTS = CaseSpec()


# The training flags' own help, so a choice reads the same here as in `python -m jaxmlp.train`.
CONFIG_HELP = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(Config)}
CONFIG_HELP["init"] = ("weight initialisation, then rounded to 2 decimals: he (std "
                       "sqrt(2/fan_in)), glorot, lecun or normal (std 1)")


def _add_write_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the case into (created if needed)")
    parser.add_argument("--hidden", nargs="*", type=int, default=list(DEFAULTS.hidden),
                        metavar="N", help="hidden layer widths (default: 3; none: --hidden)")
    parser.add_argument("--examples", type=int, default=DEFAULTS.examples,
                        help="examples in the batch (default: %(default)s)")
    choices = (("activation", ACTIVATIONS), ("init", INITS), ("output", OUTPUTS),
               ("error", ERRORS), ("class_reduction", REDUCTIONS),
               ("example_reduction", REDUCTIONS), ("targets", TARGETS))
    for name, names in choices:
        parser.add_argument("--" + name.replace("_", "-"), choices=names,
                            default=getattr(DEFAULTS, name),
                            help=f"{CONFIG_HELP[name]} (default: %(default)s)")
    parser.add_argument("--inputs", choices=INPUTS, default=DEFAULTS.inputs,
                        help="toy: 2x2 images, no data needed; mnist: the first training "
                             "images, from MNIST (or, where no place has it, the bundled 8x8 "
                             "digits) (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate,
                        help="the SGD step's learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="seed of the inputs and parameters (default: %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="for --inputs mnist: the folder with the MNIST IDX files (default: "
                             "the places python -m jaxmlp.train looks)")


COMMANDS = ("write", "check")
PROG = "python -m jaxmlp.reference"


def build_parser(command: str) -> cli.ArgumentParser:
    """The parser of one command. One parser per command, not argparse sub-commands, so each
    gets `cli.ArgumentParser`'s one-line errors and forgiving spellings for its own flags."""
    if command == "write":
        parser = cli.ArgumentParser(
            prog=f"{PROG} write",
            description="Write a small, fully specified case into DIR: case.json, case.npz, "
                        "settings.json and README.md (its formulas).")
        _add_write_flags(parser)
        return parser
    parser = cli.ArgumentParser(
        prog=f"{PROG} check",
        description="Compare YOURS with the case in DIR: forward, then backward from the loss, "
                    "then the step. Exit 0 when all match, 1 when one differs, 2 for a file that "
                    "cannot be used.")
    parser.add_argument("dir", help="the case folder (from `write`)")
    parser.add_argument("yours", help="your numbers: .json (one object) or .npz, any subset of "
                                      "the case's names")
    return parser


def build_top_parser() -> cli.ArgumentParser:
    """Only for `--help` and a missing or mistyped command."""
    parser = cli.ArgumentParser(
        prog=PROG,
        description="A worked backpropagation case to hold a hand-written MLP against: every "
                    "number of one forward pass, one backward pass and one SGD step.",
        epilog=f"{PROG} write DIR [flags] writes a case; {PROG} check DIR YOURS compares yours "
               f"with it. {PROG} write --help lists the flags.")
    parser.add_argument("command", choices=COMMANDS, help="write or check")
    return parser


def _spec(args: argparse.Namespace) -> CaseSpec:
    return CaseSpec(hidden=tuple(args.hidden), examples=args.examples,
                    activation=args.activation, init=args.init, output=args.output,
                    error=args.error, class_reduction=args.class_reduction,
                    example_reduction=args.example_reduction, targets=args.targets,
                    learning_rate=args.learning_rate, seed=args.seed, inputs=args.inputs)


def _inputs(spec: CaseSpec, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(x, y, number of classes, what the inputs are, in words)."""
    if spec.inputs == "toy":
        x, y = toy_inputs(spec.examples, spec.seed)
        return x, y, TOY_CLASSES, ("toy 2x2 images, pixels row by row in 0.0..1.0; labels "
                                   "0, 1, 0, 1, ... (they carry no meaning)")
    try:
        ds, note = data.load_data(Config(data_dir=data_dir), progress=False)
    except data.DataError as e:
        cli.fail(str(e))
    if note:
        print("MNIST not found: using scikit-learn's bundled 8x8 digits (see --data-dir)")
    try:
        x, y = image_inputs(ds.x_train, ds.y_train, spec.examples)
    except ValueError as e:
        cli.fail(str(e))
    return x, y, ds.num_classes, (f"the first {spec.examples} {ds.name} training images, "
                                  f"flattened, pixels / 255")


def write(args: argparse.Namespace) -> int:
    try:
        spec = validate_spec(_spec(args))
    except (ConfigError, ValueError) as e:
        cli.fail(str(e))
    x, y, num_classes, what = _inputs(spec, args.data_dir)
    try:
        case = compute_case(x, y, num_classes, spec)
    except ValueError as e:
        cli.fail(str(e))
    # Everything is computed before anything is written, and each file is replaced atomically.
    texts = {files.CASE_JSON: files.case_json(case),
             files.SETTINGS: files.settings_json(spec, what),
             files.README: case_readme(case, spec, what)}
    folder = Path(args.dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / files.CASE_NPZ, lambda f: f.write(files.case_npz(case)))
        for name, text in texts.items():
            atomic_write_text(folder / name, text)
    except OSError as e:
        cli.fail(f"cannot write the case into {folder}: {e.strerror or e}")
    print(f"wrote {folder}: {files.CASE_JSON}, {files.CASE_NPZ}, {files.SETTINGS}, "
          f"{files.README}")
    print(f"  {describe(case, spec)}")
    print(f"  {len(case)} quantities; loss {float(case['loss']):.6g}")
    print(f"  read {folder / files.README}, then: python -m jaxmlp.reference check {folder} "
          f"yours.json")
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        cli.fail(f"cannot read {what} {path}: {e.strerror or e}")


def _load_case(folder: Path) -> tuple[Case, CaseSpec, str]:
    if not (folder / files.CASE_NPZ).is_file() or not (folder / files.SETTINGS).is_file():
        cli.fail(f"{folder} is not a case folder (no {files.CASE_NPZ} and {files.SETTINGS}); "
                 f"write one first: python -m jaxmlp.reference write {folder}")
    again = f"write the case again: python -m jaxmlp.reference write {folder}"
    try:
        spec, what = files.parse_settings(_read(folder / files.SETTINGS, "the case's settings")
                                          .decode("utf-8", "replace"), str(folder / files.SETTINGS))
        case = files.parse_npz(_read(folder / files.CASE_NPZ, "the case"),
                               str(folder / files.CASE_NPZ))
    except CaseFileError:
        cli.fail(f"{folder} holds a damaged case; {again}")
    if sorted(case) != sorted(all_names(num_layers_of(case))):
        cli.fail(f"{folder / files.CASE_NPZ} is not a whole case; {again}")
    return case, spec, what


def check(args: argparse.Namespace) -> int:
    case, spec, _ = _load_case(Path(args.dir))
    path = Path(args.yours)
    if path.suffix not in files.SUFFIXES:
        cli.fail(f"{path}: your file must end in .json (one object of name -> value) or .npz "
                 f"(np.savez(path, **arrays)), not {path.suffix or 'no suffix'}")
    try:
        yours = as_arrays(files.parse_yours(_read(path, "your file"), str(path)), case, str(path))
    except CaseFileError as e:
        cli.fail(str(e))
    comparison = compare(case, yours, spec)
    sizes = {key: int(value.size) for key, value in case.items()}
    print(format_check(comparison, sizes, f"{args.dir}: {describe(case, spec)}", str(path)))
    return 0 if comparison.ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        build_top_parser().parse_args(argv[:1])  # help, or a one-line error naming the choices
        cli.fail(f"say which command: {PROG} write DIR, or {PROG} check DIR YOURS")
    args = build_parser(argv[0]).parse_args(argv[1:])
    return write(args) if argv[0] == "write" else check(args)
