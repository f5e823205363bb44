"""`python -m jaxmlp.plots DIR`: redraw the plots of a run folder from what it holds, and
rebuild the page (report.html) of a run or sweep folder from its files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmlp import checkpoint, cli, data, pages
from jaxmlp.config import Config, ConfigError
from jaxmlp.loop import device_data, hyper_from_config, initial_state
from jaxmlp.plots.run import write_overfit_plots, write_run_plots
from jaxmlp.report import diagnose, gradient_verdict
from jaxmlp.rundir import CHECKPOINT, CONFIG_JSON, DIVERGED, OVERFIT, SUMMARY, RunDir


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


def recorded_data_dir(record: dict[str, Any]) -> str | None:
    """The folder a run read its IDX files from, as its config.json records it (the data set's
    `source`, "idx files in FOLDER; ..."), if that folder is still there; else None."""
    source = (record.get("dataset") or {}).get("source") or ""
    found = re.match(r"idx files in (.+?); ", source)
    return found.group(1) if found and Path(found.group(1)).is_dir() else None


def run_config(run: RunDir, data_dir: str | None = None) -> Config:
    """The run's configuration, reading its data from `data_dir` if given, else from where the
    run said (its --data-dir, else the folder config.json records it read), else from
    jaxmlp's usual places (JAXMLP_DATA_DIR, the cache, ...)."""
    config = run.config(flag="RUN_DIR")
    folder = data_dir or config.data_dir or recorded_data_dir(run.read_record("RUN_DIR"))
    return dataclasses.replace(config, data_dir=folder) if folder else config


def plot_run_folder(run_dir: str | os.PathLike, data_dir: str | None = None) -> list[str]:
    """Re-draw the plots of a finished (or interrupted) run from what its folder holds (an
    `--overfit` folder's too); `data_dir`: where its data set is now (see `run_config`)."""
    folder = Path(run_dir)
    if (folder / OVERFIT).is_file() and not (folder / CONFIG_JSON).is_file():
        return plot_overfit_folder(folder)
    run = RunDir(run_dir)
    config = run_config(run, data_dir)
    try:
        dataset, _ = data.load_data(config, progress=False)
    except data.DataError as e:
        hint = "" if data_dir else " Pass --data-dir DIR to say where the data set is now."
        raise data.DataError(f"{e}{hint}") from None
    dev = device_data(dataset, config)
    hyper = hyper_from_config(config, np.asarray(dev.x_train))
    template, _, _ = initial_state(jax.random.key(0), config, dev, hyper, dataset.num_classes)
    state, _ = run.restore(template)
    history = [h for h in run.metrics() if h.get("train_loss") is not None]
    rows = run.diagnostics()
    verdict = gradient_verdict(diagnose(config, rows, history, dataset.num_classes))
    return write_run_plots(run.path, config, state.params, dataset, dev, hyper, history, rows,
                           verdict)


def diverged_without_checkpoint(folder: Path) -> bool:
    """A run that diverged in its first epoch: there is no trained network to draw."""
    try:
        status = json.loads((folder / SUMMARY).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return status == DIVERGED and not (folder / CHECKPOINT).exists()


def redraw_run(folder: Path, data_dir: str | None = None) -> str:
    """Redraw a run folder's plots and rebuild its page; the line that says what was written.
    A folder whose plots cannot be drawn (no data, no checkpoint) still gets its page; a folder
    refused as it is (links in it, a malformed row, no write access) gets nothing."""
    if diverged_without_checkpoint(folder):
        page = pages.write_run_page(folder)
        return (f"no plots redrawn: the run diverged in its first epoch, so there is no "
                f"checkpoint to draw from; wrote {page}")
    try:
        written = plot_run_folder(folder, data_dir)
    except (data.DataError, checkpoint.CheckpointError) as e:
        if not ((folder / CONFIG_JSON).is_file() or (folder / OVERFIT).is_file()):
            raise
        page = pages.write_run_page(folder)
        raise ConfigError(f"{e} (the plots were not redrawn; the page {page} was rebuilt from "
                          "the folder's files)") from e
    pages.write_run_page(folder)
    return f"wrote {', '.join([*written, pages.REPORT_HTML])} in {folder}"


def main(argv: list[str] | None = None) -> int:
    parser: argparse.ArgumentParser = cli.ArgumentParser(
        prog="python -m jaxmlp.plots",
        description="Draw the plots of a jaxmlp run folder and rebuild its page (report.html); "
                    "for a sweep folder, rebuild its page.")
    parser.add_argument("run_dir", metavar="DIR",
                        help="a folder written by python -m jaxmlp.train (also --overfit N --out "
                             "DIR), python -m jaxmlp.sweep or an experiment's script")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the run's data set is now (default: where the run read "
                             "it, as its config.json records; else $JAXMLP_DATA_DIR, then "
                             "jaxmlp's usual places)")
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    try:
        if pages.is_sweep_folder(folder):
            print(f"wrote {pages.write_sweep_page(folder)}")
            return 0
        print(redraw_run(folder, args.data_dir))
    except (ConfigError, data.DataError, checkpoint.CheckpointError, OSError) as e:
        cli.fail(str(e))
    return 0
