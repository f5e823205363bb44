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
from jaxmlp.config import Config, ConfigError, flag_name
from jaxmlp.reference import files
from jaxmlp.reference.case import (
    CASE_CONFIG,
    CASE_FIELDS,
    INPUTS,
    MAX_CLASSES,
    MAX_EXAMPLES,
    MAX_HIDDEN_LAYERS,
    MAX_WIDTH,
    MIN_CLASSES,
    TOY_CLASSES,
    Case,
    CaseSpec,
    all_names,
    compute_case,
    image_inputs,
    loss_after_step,
    num_layers_of,
    toy_inputs,
    validate_spec,
)
from jaxmlp.reference.compare import CaseFileError, as_arrays, compare
from jaxmlp.reference.readme import describe
from jaxmlp.reference.report import format_check
from jaxmlp.reference.store import write_case

DEFAULTS = CaseSpec()
FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# The training flags' own help, so a choice reads the same here as in `python -m jaxmlp.train`.
HELP = {name: FIELDS[name].metadata.get("help", "") for name in CASE_FIELDS}
HELP["hidden"] = (f"hidden layer widths: at most {MAX_HIDDEN_LAYERS} layers of at most "
                  f"{MAX_WIDTH} units, a case to read by hand (none: --hidden)")
HELP["init"] = ("weight initialisation, then rounded to 2 decimals: he (std sqrt(2/fan_in)), "
                "glorot, lecun or normal (std 1)")
HELP["learning_rate"] = "the SGD step's learning rate"
HELP["seed"] = "seed of the inputs and parameters"


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each training setting a case uses (`CASE_FIELDS`), spelled, checked and
    explained as the training command does; bad values reach `config.validate`."""
    for name in CASE_FIELDS:
        default = getattr(CASE_CONFIG, name)
        choices = FIELDS[name].metadata.get("choices")
        words = " ".join(map(str, default)) if name == "hidden" else str(default)
        text = HELP[name] + (f" {{{', '.join(choices)}}}" if choices else "")
        flags = [flag_name(name), *FIELDS[name].metadata.get("aliases", ())]
        if name == "hidden":
            parser.add_argument(*flags, nargs="*", type=cli.number_or_text(int),
                                default=list(default), metavar="N",
                                help=f"{text} (default: {words})")
            continue
        kind = type(default) if isinstance(default, (int, float)) else str
        convert = cli.number_or_text(kind) if kind is not str else str
        parser.add_argument(*flags, type=convert, default=default, metavar=name.upper(),
                            help=f"{text} (default: {words})".replace("%", "%%"))


def _add_write_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the case into: a new or empty one, or one "
                                    "holding an earlier case (which is replaced)")
    parser.add_argument("--examples", type=cli.number_or_text(int), default=DEFAULTS.examples,
                        help=f"examples in the batch, 1 to {MAX_EXAMPLES} (default: "
                             f"%(default)s: with {TOY_CLASSES} classes, the factors of the classic "
                             f"mistakes all differ; the case's README says why)")
    parser.add_argument("--classes", type=cli.number_or_text(int), default=None,
                        help=f"--inputs toy: the number of classes, {MIN_CLASSES} to "
                             f"{MAX_CLASSES} (default: {TOY_CLASSES}); a data set has its own")
    parser.add_argument("--inputs", default=DEFAULTS.inputs,
                        help="toy: 2x2 images, no data needed; mnist: the first training "
                             "images, from MNIST (or, where no place has it, the bundled 8x8 "
                             f"digits) {{{', '.join(INPUTS)}}} (default: %(default)s)")
    _add_config_flags(parser)
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
                        "settings.json and README.md (its formulas). Every setting is within "
                        "the limits of a case read by hand; beyond them it is refused.")
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
               f"with it. The case's flags (--hidden, --examples, --classes, --activation, "
               f"--output, --error, the reductions, --learning-rate, ...) are listed by "
               f"{PROG} write --help.")
    parser.add_argument("command", choices=COMMANDS,
                        help=f"write (its flags: {PROG} write --help) or check")
    return parser


def _spec(args: argparse.Namespace) -> CaseSpec:
    config = dataclasses.replace(CASE_CONFIG, **{name: getattr(args, name)
                                                 for name in CASE_FIELDS})
    config = dataclasses.replace(config, hidden=tuple(config.hidden))
    classes = args.classes
    if classes is None and args.inputs == "toy":
        classes = TOY_CLASSES
    return CaseSpec(config, args.examples, args.inputs, classes)


def _inputs(spec: CaseSpec, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(x, y, number of classes, what the inputs are, in words)."""
    if spec.inputs == "toy":
        k = spec.classes or TOY_CLASSES
        x, y = toy_inputs(spec.examples, spec.config.seed, k)
        labels = ", ".join(str(i % k) for i in range(min(k + 2, 6)))
        return x, y, k, (f"toy 2x2 images, pixels row by row in 0.0..1.0; labels {labels}, ... "
                         f"(they carry no meaning)")
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


def _earlier_case(folder: Path) -> bool:
    """Whether `folder` holds an earlier case (False: it is new or empty); refuses, in one line,
    a folder holding anything else, so that nothing of the user's is replaced."""
    if not folder.exists() and not folder.is_symlink():
        return False
    if not folder.is_dir():
        cli.fail(f"{folder} exists and is not a folder; give a new or empty folder for the case")
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        cli.fail(f"cannot read the folder {folder}: {e.strerror or e}")
    others = sorted(e.name for e in entries if not files.is_case_file(e.name) or e.is_dir())
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        cli.fail(f"{folder} holds files that are not a case's ({', '.join(others[:3])}{more}); "
                 f"nothing was written: give a new or empty folder, or move them")
    return bool(entries)


def write(args: argparse.Namespace) -> int:
    try:
        spec = validate_spec(_spec(args))
    except ConfigError as e:
        cli.fail(str(e))
    x, y, num_classes, what = _inputs(spec, args.data_dir)
    try:
        case = compute_case(x, y, num_classes, spec)
    except ConfigError as e:
        cli.fail(str(e))
    folder = Path(args.dir)
    earlier = _earlier_case(folder)
    try:
        write_case(folder, case, spec, what)
    except OSError as e:
        cli.fail(f"cannot write the case into {folder}: {e.strerror or e}")
    replaced = " (replacing the earlier case there)" if earlier else ""
    print(f"wrote {folder}{replaced}: {files.CASE_JSON}, {files.CASE_NPZ}, {files.SETTINGS}, "
          f"{files.README}")
    print(f"  {describe(case, spec)}")
    print(f"  {len(case)} quantities; loss {float(case['loss']):.6g}, after the step "
          f"{float(case['after_step.loss']):.6g}")
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
    except CaseFileError as e:
        cli.fail(f"{e}; {again}")
    names = all_names(num_layers_of(case))
    if "after_step.loss" not in case and sorted(case) == sorted(set(names) - {"after_step.loss"}):
        case["after_step.loss"] = loss_after_step(case, spec.config)  # an older case's
    if sorted(case) != sorted(names):
        cli.fail(f"{folder / files.CASE_NPZ} is not a whole case; {again}")
    return {name: case[name] for name in names}, spec, what


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
