"""`python -m jaxmlp.plots RUN_DIR`: redraw the plots of a run folder from what it holds."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import jax
import numpy as np

from jaxmlp import checkpoint, cli, data
from jaxmlp.config import Config, ConfigError
from jaxmlp.loop import device_data, hyper_from_config, initial_state
from jaxmlp.plots.run import write_overfit_plots, write_run_plots
from jaxmlp.report import diagnose, gradient_verdict
from jaxmlp.rundir import CONFIG_JSON, OVERFIT, RunDir


def plot_overfit_folder(run_dir: str | os.PathLike) -> list[str]:
    """Re-draw the plots of an `--overfit N --out DIR` folder from its overfit.json."""
    path = Path(run_dir) / OVERFIT
    try:
        record = json.loads(path.read_text())
        config = Config.from_dict(record["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); run the --overfit command again") from e
    rows = record.get("diagnostics") or []
    num_classes = record.get("num_classes", 10)  # folders from before it was recorded: MNIST's
    verdict = gradient_verdict(diagnose(config, rows, (), num_classes)) if rows else None
    return write_overfit_plots(run_dir, record, verdict, num_classes)


def plot_run_folder(run_dir: str | os.PathLike) -> list[str]:
    """Re-draw the plots of a finished (or interrupted) run from what its folder holds (an
    `--overfit` folder's too)."""
    folder = Path(run_dir)
    if (folder / OVERFIT).is_file() and not (folder / CONFIG_JSON).is_file():
        return plot_overfit_folder(folder)
    run = RunDir(run_dir)
    config = run.config(flag="RUN_DIR")
    dataset, _ = data.load_data(config, progress=False)
    dev = device_data(dataset, config)
    hyper = hyper_from_config(config, np.asarray(dev.x_train))
    template, _, _ = initial_state(jax.random.key(0), config, dev, hyper, dataset.num_classes)
    state, _ = run.restore(template)
    history = [h for h in run.metrics() if h.get("train_loss") is not None]
    rows = run.diagnostics()
    verdict = gradient_verdict(diagnose(config, rows, history, dataset.num_classes))
    return write_run_plots(run.path, config, state.params, dataset, dev, hyper, history, rows,
                           verdict)


def main(argv: list[str] | None = None) -> int:
    parser: argparse.ArgumentParser = cli.ArgumentParser(
        prog="python -m jaxmlp.plots", description="Draw the plots of a jaxmlp run folder.")
    parser.add_argument("run_dir", help="a folder written by python -m jaxmlp.train (also "
                                        "--overfit N --out DIR)")
    args = parser.parse_args(argv)
    try:
        written = plot_run_folder(args.run_dir)
    except (ConfigError, data.DataError, checkpoint.CheckpointError) as e:
        cli.fail(str(e))
    print(f"wrote {', '.join(written)} in {args.run_dir}")
    return 0
