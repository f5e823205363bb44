"""`python -m jaxmlp.sweep`: the command line. The parser is built from small groups of flags;
the base configuration, grid and seeds become one spec document (`spec_document`), which
`spec.spec_from_dict` checks like a spec file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import jax

from jaxmlp import checkpoint, cli, compilation, data, pages, sizes, stopping
from jaxmlp.config import Config, ConfigError
from jaxmlp.sweep import distributed
from jaxmlp.sweep.program import COMPILE_MODES
from jaxmlp.sweep.result import SweepResult
from jaxmlp.sweep.run import run_sweep
from jaxmlp.sweep.spec import (
    SpecError,
    SweepSpec,
    check_field,
    field_name,
    normalise,
    read_spec_file,
    spec_from_dict,
)
from jaxmlp.sweep.store import CHUNKS, SweepError
from jaxmlp.sweep.tables import generic_findings

_HINTS = typing.get_type_hints(Config)


def _convert(name: str, text: str) -> Any:
    """One grid value from the command line, converted to the field's type."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    if name == "hidden":
        if text.lower() in ("", "none"):
            return ()
        try:
            return tuple(int(w) for w in text.lower().split("x"))
        except ValueError:
            raise SpecError(f"--grid hidden: {text!r} is not a list of widths like 64 or "
                            "128x64") from None
    if base is bool:
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise SpecError(f"--grid {name}: {text!r} is not true or false")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise SpecError(f"--grid {name}: {text!r} is not a {base.__name__}") from None
    return text


def parse_grid_flag(text: str) -> tuple[str, list[Any]]:
    """`--grid learning_rate=0.01,0.1` -> ("learning_rate", [0.01, 0.1]); a JSON list after
    the = sign is taken as it is (`--grid 'hidden=[[64],[128,128]]'`)."""
    if "=" not in text:
        raise SpecError(f"--grid {text!r}: write FIELD=VALUE1,VALUE2,... (e.g. "
                        "learning_rate=0.01,0.1)")
    name, values = text.split("=", 1)
    name = field_name(name)
    check_field(name, "--grid")
    if values.strip().startswith("["):
        try:
            parsed = json.loads(values)
        except json.JSONDecodeError as e:
            raise SpecError(f"--grid {name}: {values!r} is not a JSON list ({e})") from None
        if not isinstance(parsed, list) or not parsed:
            raise SpecError(f"--grid {name}: give a non-empty list")
        return name, [normalise(name, v) for v in parsed]
    items = [v.strip() for v in values.split(",")]
    if not items or (any(v == "" for v in items) and name != "hidden"):
        raise SpecError(f"--grid {name}: empty value in {values!r}")
    return name, [_convert(name, v) for v in items]


def _spec_flags(g: argparse._ArgumentGroup) -> None:
    """What to sweep: the spec file, the grid, the seeds and the spec's other options."""
    g.add_argument("--spec", metavar="FILE", help="a TOML or JSON sweep spec (keys: name, note, "
                   "base, grid, variants, seeds, target_accuracy, test_subset, probes, "
                   "max_parallel)")
    g.add_argument("--out", required=True, help="output folder; the same folder again resumes")
    g.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a grid axis (repeat for more axes); replaces the spec's axis of that "
                   "name. FIELD as its flag or field is spelled (lr, learning-rate, "
                   "learning_rate). Widths: --grid hidden=64,128x128")
    g.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train seeds 0..N-1 of every variant (default: the spec's, else 5)")
    g.add_argument("--seed-list", type=int, nargs="+", default=None, metavar="S",
                   help="train exactly these seeds")
    g.add_argument("--name", default=None, help="the sweep's title in summary.md")
    g.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy that counts as reached (default 0.9)")
    g.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on the first N test examples only")
    g.add_argument("--probes", action=argparse.BooleanOptionalAction, default=None,
                   help="measure dead units and all-zero outputs at init and at the end")


def _run_flags(g: argparse._ArgumentGroup) -> None:
    """How to train it: parallelism, devices, batching of runs, compilation, outputs."""
    g.add_argument("--max-parallel", type=int, default=None, metavar="K",
                   help="train at most K runs at a time (memory grows with K)")
    g.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="on a CPU, split it into N JAX devices that train runs side by side "
                   f"(default: one per core; at most {sizes.CPU_DEVICES_PER_CORE} per core)")
    g.add_argument("--runs-per-batch", type=int, default=None, metavar="B",
                   help="on each device, train B runs side by side (vmapped) at a time, in a "
                   "loop (default: on CPU as many as fit half the last-level cache; elsewhere "
                   "all)")
    g.add_argument("--compile", choices=COMPILE_MODES, default="default",
                   help="default: XLA's usual optimisation; fast: on CPU, compile 2-3x faster "
                   "but train up to 4x slower (only worth it for tiny sweeps)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar")
    g.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the PNG plots")


def build_parser() -> argparse.ArgumentParser:
    """The command's flags: the sweep's, then every `Config` field (the base configuration)."""
    parser = cli.ArgumentParser(
        prog="python -m jaxmlp.sweep",
        description="Train a grid of variants x seeds as a few vmapped programs, with statistics "
        "and plots. The base configuration comes from --spec and/or the configuration flags "
        "(flags given explicitly override the spec); the grid from the spec's [grid] table "
        "and/or --grid.",
    )
    group = parser.add_argument_group("sweep")
    _spec_flags(group)
    _run_flags(group)
    distributed.add_process_flags(parser)
    cli.add_dataclass_flags(parser, Config, "base configuration")
    return parser


def _start_jax(args: argparse.Namespace) -> None:
    """Before JAX starts: the XLA:CPU options `python -m jaxmlp.train` uses, one CPU device per
    core so that runs train side by side (benchmarks/README.md), and the other processes of the
    sweep, if it has several."""
    compilation.tune_xla_cpu()
    for flag, value in (("--cpu-devices", args.cpu_devices),
                        ("--runs-per-batch", args.runs_per_batch)):
        if value is not None and value < 1:
            cli.fail(f"{flag} must be at least 1, got {value}")
    if args.cpu_devices is not None:
        try:
            sizes.check_cpu_devices(args.cpu_devices, compilation.cpu_cores())
        except ConfigError as e:
            cli.fail(str(e))
    compilation.split_cpu_into_devices(args.cpu_devices)
    distributed.start_processes(args)
    # Re-running a sweep (or one with the same structures) then loads its programs from disk.
    compilation.enable_compilation_cache()


def spec_document(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  argv: list[str] | None) -> dict[str, Any]:
    """The spec file's document (if any) with the command line's settings applied: flags given
    explicitly override the spec's base, --grid axes replace its axes of the same name."""
    given = cli.flags_given(parser, argv)
    if "seed" in given:
        raise SpecError("--seed sets one run's seed; a sweep takes --seeds N or --seed-list")
    doc = dict(read_spec_file(args.spec)) if args.spec else {}
    if args.spec:
        base = dict(doc.get("base", {})) if isinstance(doc.get("base", {}), dict) else {}
        base.update({f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                     if f.name in given})
    else:  # no spec: the configuration flags, defaults included, are the base
        base = cli.dataclass_from_args(Config, args).to_dict()
    base.pop("seed", None)
    doc["base"] = base
    grid = dict(doc.get("grid", {})) if isinstance(doc.get("grid", {}), dict) else {}
    for flag in args.grid:
        name, values = parse_grid_flag(flag)
        grid[name] = values
    doc["grid"] = grid
    if args.seeds is not None:
        doc["seeds"] = args.seeds
    if args.seed_list is not None:
        doc["seeds"] = args.seed_list
    for k in ("name", "target_accuracy", "test_subset", "probes", "max_parallel"):
        if getattr(args, k) is not None:
            doc[k] = getattr(args, k)
    return doc


def write_page(out: str) -> str:
    """The sweep's page, written into `out` by process 0 (if the sweep got as far as its
    sweep.json); the words that say where it is."""
    if jax.process_index() > 0 or not pages.is_sweep_folder(Path(out)):
        return ""
    try:
        return f"; page: {pages.write_sweep_page(out)}"
    except OSError as e:
        return f"; no page written ({e})"


def _report(spec: SweepSpec, result: SweepResult, out: str) -> None:
    rec = result.record
    if jax.process_index() > 0:
        print(f"process {jax.process_index()} of {jax.process_count()}: trained its share of "
              f"{spec.name}'s {rec['num_runs']} runs; process 0 writes the outputs in {out}")
        return
    print(f"{spec.name}: {rec['num_runs']} runs ({len(spec.variants)} variants x "
          f"{len(spec.seeds)} seeds); groups {rec['num_groups']}, programs compiled "
          f"{rec['programs_compiled']}; wall "
          f"{rec['wall_seconds']:.1f} s (compile {rec['compile_seconds']:.1f} s, train "
          f"{rec['train_seconds']:.1f} s)")
    for line in generic_findings(spec, result.summary):
        print(f"- {line}")
    print(f"outputs in {out}{write_page(out)}")


def stopped_message(error: KeyboardInterrupt, out: str) -> str:
    """What a sweep stopped by a signal says: which, where its chunks are, what to run (and its
    page, which says how far it got)."""
    return (f"{stopping.describe(error)}; finished chunks are saved in {out}/{CHUNKS}: run the "
            f"same command again to continue{write_page(out)}")


def main(argv: list[str] | None = None) -> int:
    """Run the sweep the flags describe; 0 when it completes, 2 on bad input, 1 when a write
    fails, 128 + the signal's number if stopped by one (130 for Ctrl-C, 143 for SIGTERM; the
    finished chunks are kept)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _start_jax(args)
    user_errors = (SpecError, SweepError, ConfigError, data.DataError, checkpoint.CheckpointError)
    try:
        doc = spec_document(parser, args, argv)
        spec, run_options = spec_from_dict(doc, where=args.spec or "command line")
    except user_errors as e:
        distributed.abandon_start(e)
        cli.fail(str(e))
    try:
        result = run_sweep(spec, args.out, max_parallel=run_options.get("max_parallel"),
                           progress=args.progress, compile_mode=args.compile, plots=args.plots,
                           runs_per_batch=args.runs_per_batch)
    except distributed.ProcessLost as e:
        distributed.leave(str(e), code=1)
    except user_errors as e:
        cli.fail(str(e))
    except checkpoint.WriteError as e:
        cli.fail(f"{e}; the finished chunks are intact: once there is room, run the same "
                 "command again to continue", code=1)
    except KeyboardInterrupt as e:
        if jax.process_count() > 1:
            distributed.leave(stopped_message(e, args.out), code=stopping.exit_code(e))
        cli.fail(stopped_message(e, args.out), code=stopping.exit_code(e))
    _report(spec, result, args.out)
    return 0
