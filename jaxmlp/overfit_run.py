"""`python -m jaxmlp.train --overfit N` with its side effects: load the data through the
runner's own preparation, fit N examples (`jaxmlp.overfit`), then write overfit.json, the report
and the plots."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import jax

from jaxmlp import data, sizes
from jaxmlp.config import Config, ConfigError, flag_name, positive_int, validate
from jaxmlp.diagnostics import make_row, num
from jaxmlp.loop import DeviceData, model_sizes
from jaxmlp.overfit import OVERFIT_MAX_STEPS, OverfitResult, overfit, overfit_config
from jaxmlp.plots import run as plotting
from jaxmlp.probes import NORM_EVERY, summarize_epoch
from jaxmlp.report import Finding, diagnose, format_report, gradient_verdict
from jaxmlp.rundir import (
    CONFIG_JSON,
    OVERFIT,
    RunDir,
    default_folder,
    make_folder,
    refuse_links,
    refuse_others,
)
from jaxmlp.runner import load, with_defaults

# The settings `overfit_config` decides: the first N examples as one full batch, steps instead
# of epochs, a constant learning rate. A data set's own defaults leave them alone, and typing one
# of them with --overfit is refused, naming the flag that limits it instead where there is one.
OVERFIT_SETS = {"epochs": "--overfit-steps", "batch_size": None, "train_subset": None,
                "schedule": None}


def refuse_what_overfit_sets(config: Config, given: Collection[str]) -> None:
    """ConfigError for a flag in `given` whose setting --overfit decides itself; `--schedule
    constant` passes, since it says what the overfit does."""
    for name in sorted(set(given) & set(OVERFIT_SETS)):
        if name == "schedule":
            if config.schedule != "constant":
                raise ConfigError(f"--overfit steps with a constant learning rate: drop "
                                  f"--schedule {config.schedule}")
            continue
        instead = f" (use {OVERFIT_SETS[name]} to limit it)" if OVERFIT_SETS[name] else ""
        raise ConfigError(f"--overfit trains the first N examples as one full batch until they "
                          f"are memorised{instead}: drop {flag_name(name)}")


def run_overfit(config: Config, num_examples: int, out: str | Path | None = None, *,
                max_steps: int | None = None, progress: bool = True, diagnose: bool = False,
                plots: bool = False, log: Callable[[str], None] = print,
                given: Collection[str] | None = None) -> OverfitResult:
    """`python -m jaxmlp.train --overfit N`: load the data, fit N examples, write overfit.json
    into `out` when given. `diagnose` adds the report of a normal run's --diagnose, on the N
    examples; `plots` draws the steps (and the gradient norms) into `out`, a new folder under
    runs/ when not given; `given` as for `run`. Bad settings raise ConfigError before any
    work."""
    max_steps = OVERFIT_MAX_STEPS if max_steps is None else max_steps
    for value, flag in ((num_examples, "--overfit"), (max_steps, "--overfit-steps")):
        positive_int(value, flag)
    sizes.check_overfit_steps(max_steps)
    refuse_what_overfit_sets(config, given or ())
    if out is not None:
        own_folder(Path(out))  # a bad --out is said before any work
    config, _ = with_defaults(config, given, log, leave=OVERFIT_SETS)
    loaded = data.load_data(validate(config), progress=progress)
    available = len(loaded[0].y_train)
    if num_examples > available:  # said before the subset the overfit implies is checked
        raise ConfigError(f"--overfit {num_examples} is more than the {available} training "
                          f"examples of {loaded[0].name}: use --overfit {available} or fewer")
    config = validate(overfit_config(config, num_examples))
    dataset, _, dev, hyper = load(config, progress=progress, log=log, loaded=loaded)
    diagnose = diagnose or plots  # the gradient picture needs the statistics
    result = overfit(config, dev, hyper, num_examples, max_steps, diagnose=diagnose,
                     num_classes=dataset.num_classes, dataset=dataset.name)
    rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    if diagnose:
        rows, findings = _overfit_report(config, dev, dataset.num_classes, result)
        log(format_report(findings, rows))
    if plots and out is None:
        out = default_folder(f"{dataset.name}-overfit")
    if out is not None:
        own_folder(Path(out))  # the default folder, under --plots
        record = {
            "config": config.to_dict(), "dataset": dataset.name,
            "num_classes": dataset.num_classes, "examples": num_examples,
            "reached": result.reached, "steps": result.steps, "seconds": result.seconds,
            "compile_seconds": result.compile_seconds, "max_steps": max_steps,
            "loss": [num(v) for v in result.loss], "accuracy": [num(v) for v in result.accuracy],
            **({"diagnostics": rows, "diagnosis": [dataclasses.asdict(f) for f in findings]}
               if diagnose else {}),
        }
        if (Path(out) / OVERFIT).exists():
            log(f"{out}: the earlier {OVERFIT} is replaced by this one")
        RunDir(out).write_json(OVERFIT, record, indent=None, point="overfit")
        if plots:
            written = plotting.write_overfit_plots(out, record, gradient_verdict(findings),
                                                   dataset.num_classes)
            log(f"plots: {', '.join(written)} in {out}")
    return result


def own_folder(out: Path) -> None:
    """Create `out`, or check that it is empty or an earlier run's (whose overfit.json and
    pictures an --overfit replaces): never another's files, never through a link."""
    make_folder(out)  # first: a folder that takes no files is said as such
    refuse_links(out, "--out")
    if not (out / OVERFIT).exists() and not (out / CONFIG_JSON).exists():
        refuse_others(out, "--out")


def _overfit_report(config: Config, dev: DeviceData, num_classes: int, result: OverfitResult
                    ) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The diagnostics rows and the report of a diagnosed overfit, run through the same rules
    as a normal run's: row 0 is the initialisation (with the first step's gradients), row 1 the
    end, its gradient and update statistics those of the last steps (`_tail`): at a large
    learning rate the first step can be thousands of times larger than the rest, and a mean
    over every step would stand for the start, not the end."""
    shapes = list(itertools.pairwise(model_sizes(config, dev.x_train.shape[1], num_classes)))
    probe = lambda i: jax.tree.map(lambda leaf: leaf[i], result.probe)
    end = summarize_epoch(jax.tree.map(lambda leaf: leaf[_tail(len(result.loss)):],
                                       result.step_stats))
    rows = [make_row(0, config, shapes, probe(0), grad_norm=result.step_stats.grad_norm[0]),
            make_row(1, config, shapes, probe(1), end, steps=len(result.loss))]
    history = [{"epoch": 1, "train_loss": num(result.loss[-1]),
                "train_accuracy": num(result.accuracy[-1]), "examples": result.examples,
                "step_loss": [num(v) for v in result.loss]}]
    return rows, diagnose(config, rows, history, num_classes, overfit=True)


def _tail(steps: int) -> int:
    """Where the last tenth of `steps` steps begins (at least the last 10 measured ones), on a
    step whose norms were measured (every NORM_EVERY-th)."""
    length = max(10 * NORM_EVERY, steps // 10)
    return max(0, (steps - length) // NORM_EVERY * NORM_EVERY)
