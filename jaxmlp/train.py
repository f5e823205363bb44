"""`python -m jaxmlp.train`: train one MLP, with metrics, a checkpoint and (optionally)
diagnostics and plots.

The command only parses flags and reports; the run is `jaxmlp.runner.run`, the training maths
`jaxmlp.loop`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from jaxmlp import checkpoint, cli, compilation, data, pages, sizes, stopping
from jaxmlp.config import Config, ConfigError, flag_name
from jaxmlp.overfit_run import run_overfit
from jaxmlp.rundir import CONFIG_JSON, result_lines
from jaxmlp.runner import Diverged, Interrupted, WriteFailed, run


def _run_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=None, help="output folder (default: a new folder under runs/)")
    g.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR with its own configuration (and "
                        "its --diagnose and --plots)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default: on)")


def _diagnostics_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("diagnostics (see docs/when-training-goes-wrong.md)")
    g.add_argument("--diagnose", action="store_true",
                   help="record per-layer gradient norms, update ratios, activation statistics, "
                        "dead/saturated units and the first non-finite value in "
                        "diagnostics.jsonl, and end with a plain-language report")
    g.add_argument("--plots", action="store_true",
                   help="write PNGs to the run folder: learning curves, per-layer gradient "
                        "norms, confusion matrix, misclassified test images (for 2-D points: "
                        "the decision boundary, by epoch, and the first layer's units); implies "
                        "--diagnose")
    g.add_argument("--overfit", type=int, metavar="N", default=None,
                   help="instead of training normally, fit the first N training examples (full "
                        "batch, constant learning rate) until 100%% training accuracy; report "
                        "the steps and seconds it took (exit 1 if it never gets there); with "
                        "--diagnose, the report on those steps; with --plots, their pictures")
    g.add_argument("--overfit-steps", type=int, metavar="STEPS", default=None,
                   help=f"step limit for --overfit (default: 2000; at most "
                        f"{sizes.OVERFIT_STEPS_MAX:,}: every step's loss is kept)")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m jaxmlp.train",
        description="Train one MLP on MNIST-style data, with metrics and a checkpoint.",
    )
    _run_flags(parser)
    _diagnostics_flags(parser)
    cli.add_dataclass_flags(parser, Config, "configuration")
    return parser


def _overfit(parser: argparse.ArgumentParser, args: argparse.Namespace,
             argv: list[str] | None) -> int:
    if args.resume:
        cli.fail("--overfit starts from fresh parameters; drop --resume")
    given = cli.flags_given(parser, argv)
    try:
        result = run_overfit(cli.dataclass_from_args(Config, args), args.overfit, args.out,
                             max_steps=args.overfit_steps, progress=args.progress,
                             diagnose=args.diagnose, plots=args.plots, given=given)
    except (ConfigError, data.DataError, checkpoint.WriteError) as e:
        cli.fail(str(e), code=1 if isinstance(e, checkpoint.WriteError) else 2)
    except KeyboardInterrupt as e:
        cli.fail(f"{stopping.describe(e)}; --overfit starts from the beginning each time: run "
                 "the same command again", code=stopping.exit_code(e))
    print(result.describe())
    if args.out:
        print(f"outputs in {args.out}; {write_page(args.out)}")
    return 0 if result.reached else 1


def _check_resume(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  argv: list[str] | None) -> None:
    """--resume takes everything from the run folder: refuse flags that would be ignored."""
    given = cli.flags_given(parser, argv) & {f.name for f in dataclasses.fields(Config)}
    if given:
        flags = ", ".join(flag_name(g) for g in sorted(given))
        cli.fail(f"--resume takes the configuration from {args.resume}/{CONFIG_JSON}; "
                 f"drop {flags}")
    if args.out:
        cli.fail("--resume DIR writes into DIR; drop --out")


def write_page(folder: str) -> str:
    """The run's page, written into its folder; the words that say where it is (or why there
    is none: a page never costs the run its result)."""
    try:
        return f"page: {pages.write_run_page(folder)}"
    except (OSError, ConfigError) as e:
        return f"no page written ({e})"


def format_summary(s: dict[str, Any], page: str = "") -> str:
    resumed = s.get("resumed_after_epoch", 0)
    # A resumed run's training time spans every session; its wall time is this session's.
    train = (f"train {s['train_seconds']:.2f} (epochs 1-{s['epochs_done']}, every session)"
             if resumed else f"train {s['train_seconds']:.2f}")
    wall = (f"wall {s['wall_seconds']:.2f} (this session, after epoch {resumed})" if resumed
            else f"wall {s['wall_seconds']:.2f}")
    later = s.get("evaluate_compile_seconds")
    evaluation = f" + {later:.2f} (the evaluation, during epoch 1)" if later is not None else ""
    lines = [
        *result_lines(s),
        f"seconds: data {s['data_seconds']:.2f}, compile {s['compile_seconds']:.2f} (alongside "
        f"the data){evaluation}, {train}, {wall}",
    ]
    t = s.get("train_seconds_to_98pct")
    if t is not None:
        lines.append(f"reached 98% test accuracy after {t:.2f} s of training")
    lines.append(f"outputs in {s['out']}" + (f"; {page}" if page else ""))
    return "\n".join(line for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    # Python start-up plus importing jax, optax and jaxmlp: everything before this line.
    import_seconds = compilation.process_age_seconds()
    compilation.tune_xla_cpu()  # before the first computation initialises XLA
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.overfit is not None:
        return _overfit(parser, args, argv)
    if args.resume:
        _check_resume(parser, args, argv)
    # Before anything compiles: a second identical run loads its programs from the disk cache.
    cache_folder = compilation.enable_compilation_cache()
    try:
        config = cli.dataclass_from_args(Config, args)
        summary = run(config, args.resume or args.out, resume=bool(args.resume),
                      progress=args.progress, diagnose=args.diagnose, plots=args.plots,
                      given=cli.flags_given(parser, argv))
    except (ConfigError, data.DataError, checkpoint.CheckpointError) as e:
        cli.fail(str(e))
    except Diverged as e:
        print(f"outputs in {e.folder}; {write_page(e.folder)}")
        cli.fail(str(e), code=3)
    except (WriteFailed, checkpoint.WriteError) as e:
        cli.fail(str(e), code=1)
    except Interrupted as e:
        print(f"outputs in {e.folder}; {write_page(e.folder)}")
        cli.fail(f"{stopping.describe(e.signal)}; finished epochs are checkpointed: continue "
                 f"with --resume {e.folder}", code=stopping.exit_code(e.signal))
    except KeyboardInterrupt as e:
        cli.fail(f"{stopping.describe(e)} before training started; nothing to resume",
                 code=stopping.exit_code(e))
    print(format_summary(summary, write_page(summary["out"])))
    print(compilation.startup_line(import_seconds, summary["data_seconds"],
                                   summary["compile_seconds"], summary.get("startup_seconds"),
                                   cache_folder))
    return 0


if __name__ == "__main__":
    stopping.handle_signals()  # SIGTERM and SIGHUP stop a run as Ctrl-C does
    sys.exit(main())
