"""`python -m jaxmlp.plots RUN_DIR`: redraw the plots of a run folder from what it holds."""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from jaxmlp import checkpoint, cli, data
from jaxmlp.config import ConfigError
from jaxmlp.loop import device_data, hyper_from_config, initial_state
from jaxmlp.plots.run import write_run_plots
from jaxmlp.report import diagnose, gradient_verdict
from jaxmlp.rundir import RunDir


def plot_run_folder(run_dir: str | os.PathLike) -> list[str]:
    """Re-draw the plots of a finished (or interrupted) run from what its folder holds."""
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
    parser = argparse.ArgumentParser(prog="python -m jaxmlp.plots",
                                     description="Draw the plots of a jaxmlp run folder.")
    parser.add_argument("run_dir", help="a folder written by python -m jaxmlp.train")
    args = parser.parse_args(argv)
    try:
        written = plot_run_folder(args.run_dir)
    except (ConfigError, data.DataError, checkpoint.CheckpointError) as e:
        cli.fail(str(e))
    print(f"wrote {', '.join(written)} in {args.run_dir}")
    return 0
