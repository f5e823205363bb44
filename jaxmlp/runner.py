"""One training run with its side effects: prepare, compile, epochs, finish.

`run(config, out)` is what `python -m jaxmlp.train` does, in four steps that each do one job:

1. `prepare`: the configuration (a resumed run's own), the data, the run folder, and the
   programs (`jaxmlp.programs`: compiled ahead of time, from the data's expected shapes, in a
   thread of their own while the data loads), then the initial (or restored) state;
2. `Recorder`: diagnostics.jsonl under --diagnose;
3. `train_epochs`: the Python loop over epochs: one host synchronisation per epoch, a metrics
   line and a checkpoint after each, a clear error when the loss goes non-finite; a signal
   (Ctrl-C, SIGTERM, SIGHUP) stops it once the epoch in progress is saved (`jaxmlp.stopping`);
4. `finish`: the report, the plots, summary.json (a run whose parameters end non-finite is
   diverged, whatever produced them).

The maths is in `jaxmlp.loop`; the folder's format in `jaxmlp.rundir`; this module is the edge
where the two meet the clock, the progress bar and the disk.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxmlp import checkpoint, data, faults, programs, sizes, stopping
from jaxmlp.config import (
    Config,
    ConfigError,
    check_against_data,
    dataset_defaults,
    flag_name,
    validate,
)
from jaxmlp.diagnostics import Recorder, nonfinite_note, num
from jaxmlp.loop import DeviceData, Hyper, TrainState, device_data, hyper_from_config, model_sizes
from jaxmlp.plots import run as plotting
from jaxmlp.programs import Programs
from jaxmlp.report import Finding, diagnose, format_report, gradient_verdict
from jaxmlp.report.base import step_causes, step_fixes
from jaxmlp.rundir import (
    DIVERGED,
    FINISHED,
    INTERRUPTED,
    SUMMARY,
    RunDir,
    continued_outputs,
    default_folder,
)
from jaxmlp.versions import versions

# The test accuracy whose training time the summary reports ("time to 98%").
TARGET_ACCURACY = 0.98


class Diverged(RuntimeError):
    """The loss became non-finite; the message names the epoch and step, `folder` the run."""

    def __init__(self, message: str, folder: str) -> None:
        super().__init__(message)
        self.folder = folder


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (`signal`, the KeyboardInterrupt it raised) once the run folder
    existed: the finished epochs are checkpointed in `folder`."""

    def __init__(self, folder: str, signal: KeyboardInterrupt | None = None) -> None:
        super().__init__(folder)
        self.folder = folder
        self.signal = signal if signal is not None else KeyboardInterrupt()


class WriteFailed(RuntimeError):
    """A write into the run folder failed (a full disk, a folder removed): what was written
    before is intact; the message says what to run once it is fixed."""


class Prepared(NamedTuple):
    config: Config
    dataset: data.Dataset
    dev: DeviceData
    hyper: Hyper
    run: RunDir
    programs: Programs
    state: TrainState
    data_key: jax.Array
    start_epoch: int
    history: list[dict[str, Any]]
    diag_rows: list[dict[str, Any]]
    times: dict[str, float]  # data_seconds, compile_seconds, startup_seconds


# --- 1. prepare -----------------------------------------------------------------------------------


def _record(config: Config, dataset: data.Dataset, note: str | None, dev: DeviceData,
            hyper: Hyper, applied: dict[str, Any] | None = None,
            outputs: dict[str, bool] | None = None,
            command: Sequence[str] | None = None) -> dict[str, Any]:
    """config.json: what was asked, and what was used (the data set's own defaults and the
    preprocessing that did not apply, when there are any: an MNIST record stays as it was), the
    `outputs` asked for (--diagnose, --plots), which a resumed run goes on writing, and the
    `command` (default: this process's)."""
    record = {"requested": config.dataset, "used": dataset.name, "source": dataset.source,
              "verified": dataset.verified, "fallback": note,
              "num_train": int(dev.x_train.shape[0]), "num_test": int(dev.x_test.shape[0]),
              "num_classes": dataset.num_classes}
    if applied:
        record["defaults"] = applied
    skipped = _skipped(config, dataset)
    if skipped:
        record["skipped_preprocessing"] = skipped
    return {
        "config": config.to_dict(),
        "dataset": record,
        "hyper": {k: float(v) for k, v in hyper._asdict().items()},
        "versions": versions(),
        "devices": [str(d) for d in jax.devices()],
        "command": list(sys.argv if command is None else command),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"outputs": outputs} if outputs else {}),
    }


def _skipped(config: Config, dataset: data.Dataset) -> list[str]:
    return data.skipped_steps(dataset.points, config.flatten, config.input_scale,
                              dataset.x_train.shape)


def with_defaults(config: Config, given: Collection[str] | None, log: Callable[[str], None],
                  leave: Collection[str] = ()) -> tuple[Config, dict[str, Any]]:
    """`config.dataset_defaults`, validated, then said in flags when it sets anything (after
    the checks: a refused setting is the only line)."""
    config, applied = dataset_defaults(config, given, leave)
    validate(config)
    if applied:
        words = " ".join(f"{flag_name(k)} {' '.join(map(str, v)) if isinstance(v, tuple) else v}"
                         for k, v in applied.items())
        log(f"{config.dataset}: its own defaults for the settings not given: {words}")
    return config, applied


def load(config: Config, *, progress: bool, log: Callable[[str], None] = print,
         loaded: tuple[data.Dataset, str | None] | None = None
         ) -> tuple[data.Dataset, str | None, DeviceData, Hyper]:
    """The data a checked configuration trains on, on the device, and its `Hyper` values
    (`loaded`: what `data.load_data` returned, when the caller has it already)."""
    dataset, note = loaded if loaded is not None else data.load_data(config, progress=progress)
    check_against_data(config, len(dataset.y_train))
    inputs = int(np.prod(dataset.x_train.shape[1:]))  # the network must fit the device
    sizes.check_memory(config, model_sizes(config, inputs, dataset.num_classes), jax.devices()[0])
    if note:
        log(note)
    skipped = _skipped(config, dataset)
    if skipped:
        log(f"{dataset.name}: preprocessing skipped, it does not apply: {'; '.join(skipped)}")
    dev = device_data(dataset, config)
    return dataset, note, dev, hyper_from_config(config, np.asarray(dev.x_train))


def settle(config: Config, out: str | Path | None, *, resume: bool,
           given: Collection[str] | None, log: Callable[[str], None]
           ) -> tuple[Config, dict[str, Any]]:
    """The configuration a run trains with (a resumed run's own, from its folder; else
    `config` with its data set's own defaults), and the defaults so applied."""
    if not resume:
        return with_defaults(config, given, log)
    if out is None:
        raise ConfigError("--resume needs the run folder to continue")
    return RunDir(out).config(), {}


def prepare(config: Config, out: str | Path | None, *, resume: bool, progress: bool,
            log: Callable[[str], None], given: Collection[str] | None = None,
            outputs: dict[str, bool] | None = None, chunked: bool = False,
            command: Sequence[str] | None = None) -> Prepared:
    """Everything a run needs before its first epoch; bad settings fail here, before any work.
    The programs compile while the data loads (`programs.start`; the epoch as chunks when
    `chunked`). `given`: the settings given explicitly, which the data set's own defaults leave
    alone; `outputs`: what the run writes (--diagnose, --plots) and `command`, recorded by a
    new run (`_record`)."""
    t_start = time.perf_counter()
    config, applied = settle(config, out, resume=resume, given=given, log=log)
    compiling = programs.start(config, bool(outputs and outputs["diagnose"]), chunked)
    try:
        dataset, note, dev, hyper = load(config, progress=progress, log=log)
        t_data = time.perf_counter()
        run = (RunDir(out) if resume else RunDir.create(
            out if out is not None else default_folder(dataset.name),
            _record(config, dataset, note, dev, hyper, applied, outputs, command)))
    except BaseException:
        programs.stop(compiling)
        raise
    progs = programs.ready(compiling, dev, dataset.num_classes)
    state, data_key = progs.init(np.uint32(config.seed), hyper)
    times = {"data_seconds": t_data - t_start, "compile_seconds": progs.seconds,
             "startup_seconds": time.perf_counter() - t_start}
    if not resume:
        return Prepared(config, dataset, dev, hyper, run, progs, state, data_key, 0, [], [],
                        times)
    state, start_epoch = run.restore(state)
    history, diag_rows = run.truncate(start_epoch)
    log(f"resuming {run} after epoch {start_epoch} of {config.epochs}")
    return Prepared(config, dataset, dev, hyper, run, progs, state, data_key, start_epoch,
                    history, diag_rows, times)


# --- 2. compile (and the diagnostics recorder) ----------------------------------------------------


def recorder_of(p: Prepared) -> Recorder:
    """The diagnostics recorder of a prepared run: its rows so far (a resumed run's), and the
    probe of its initial parameters when it has none."""
    shapes = list(itertools.pairwise(model_sizes(p.config, p.dev.x_train.shape[1],
                                                 p.dataset.num_classes)))
    probe = p.programs.probe
    initial = None if p.diag_rows else probe(p.state.params, p.dev, p.hyper)
    return Recorder(p.config, p.run, probe, shapes, p.diag_rows, initial)


# --- 3. the epochs ----------------------------------------------------------------------------


def divergence_message(config: Config, epoch: int, step: int, num_steps: int, p: Prepared,
                       note: str) -> str:
    kept = (f"the last good checkpoint (epoch {epoch - 1}) in {p.run.checkpoint_path} is intact"
            if epoch > 1 else "no checkpoint was written (it diverged in the first epoch)")
    # The report's words for what makes steps large, so the two never disagree.
    causes = step_causes(config) or [f"a learning rate too large for these inputs (now "
                                     f"{config.learning_rate:g})"]
    return (f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step} of "
            f"{num_steps}; training stopped and {kept}. Usual causes: {'; '.join(causes)}; "
            f"try {' or '.join(step_fixes(config))}." + note)


def step_losses(m: Any) -> list[float | None]:
    """Every step's mean per-example loss, to 6 significant digits (enough for a curve, even a
    flat one; the metrics line stays a few kB): what learning_curves.png draws and the report
    reads."""
    return [None if v is None else float(f"{v:.6g}") for v in map(num, m.step_loss)]


def _metrics_row(epoch: int, m: Any, test_loss: Any, test_accuracy: Any, seconds: float,
                 config: Config) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": num(m.train_loss),
            "train_accuracy": num(m.train_accuracy), "test_loss": num(test_loss),
            "test_accuracy": num(test_accuracy), "epoch_seconds": seconds,
            "learning_rate_peak": config.learning_rate, "step_loss": step_losses(m)}


def train_epochs(p: Prepared, epoch_fn: Callable[..., Any], eval_fn: Callable[..., Any],
                 recorder: Recorder | None, end_epoch: int, *, progress: bool,
                 plots: bool) -> tuple[TrainState, list[dict[str, Any]]]:
    """Epochs `p.start_epoch + 1 .. end_epoch`; returns the final state and the history."""
    state, history, config = p.state, list(p.history), p.config
    bar = tqdm(range(p.start_epoch, end_epoch), initial=p.start_epoch, total=config.epochs,
               desc="epochs", unit="epoch", disable=not progress, leave=True)
    for e in bar:
        t_epoch = time.perf_counter()
        state, m = epoch_fn(state, p.dev, p.hyper, p.data_key, np.int32(e))
        test_loss, test_accuracy = eval_fn(state.params, p.dev.x_test, p.dev.y_test, p.hyper)
        # The one host synchronisation of the epoch.
        m, test_loss, test_accuracy = jax.device_get((m, test_loss, test_accuracy))
        if recorder:
            recorder.end_epoch(e + 1)  # before the clock stops: its cost is part of the epoch
        seconds = time.perf_counter() - t_epoch
        if m.first_bad_step >= 0:
            step = int(m.first_bad_step) + 1
            p.run.append_metrics({"epoch": e + 1, "diverged_at_step": step, "train_loss": None,
                                  "epoch_seconds": seconds, "step_loss": step_losses(m)[:step]})
            bar.close()
            if plots and recorder:  # the gradient norms leading up to the blow-up
                plotting.gradient_norms(recorder.rows, p.run.path / plotting.GRADIENT_NORMS)
            note = nonfinite_note(recorder.rows) if recorder else ""
            raise Diverged(divergence_message(config, e + 1, step, m.step_loss.shape[0], p,
                                              note), str(p.run))
        row = _metrics_row(e + 1, m, test_loss, test_accuracy, seconds, config)
        history.append(row)
        p.run.append_metrics(row)
        p.run.save_checkpoint(state, e + 1)
        bar.set_postfix(loss=f"{m.train_loss:.4f}", train_acc=f"{m.train_accuracy:.4f}",
                        test_acc=f"{test_accuracy:.4f}")
        stopping.check()  # a signal during the epoch stops here, with the epoch saved
    bar.close()
    return state, history


# --- 4. finish ----------------------------------------------------------------------------------


def seconds_to_target(history: list[dict[str, Any]], target: float = TARGET_ACCURACY
                      ) -> float | None:
    """Training seconds until the first epoch whose test accuracy reached `target`."""
    reached = [h for h in history if (h["test_accuracy"] or 0) >= target]
    if not reached:
        return None
    first = reached[0]["epoch"]
    return sum(h["epoch_seconds"] for h in history if h["epoch"] <= first)


def summarize(p: Prepared, history: list[dict[str, Any]], times: dict[str, float]
              ) -> dict[str, Any]:
    """summary.json's numbers. `train_seconds` sums every session's epochs (a resumed run's
    too), while the `times` (and `wall_seconds`) are this session's alone."""
    last = history[-1] if history else {}
    return {
        "out": str(p.run),
        "dataset": p.dataset.name,
        "epochs_done": last.get("epoch", p.start_epoch),
        "epochs": p.config.epochs,
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "final_train_loss": last.get("train_loss"),
        **times,
        "train_seconds": sum(h.get("epoch_seconds", 0.0) for h in history),
        f"train_seconds_to_{int(TARGET_ACCURACY * 100)}pct": seconds_to_target(history),
        "resumed_after_epoch": p.start_epoch,
    }


def finite(params: Any) -> bool:
    """Whether every parameter is a finite number (one small reduction on the device)."""
    return bool(jax.device_get(jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))))


def finish(p: Prepared, state: TrainState, history: list[dict[str, Any]],
           recorder: Recorder | None, plots: bool, log: Callable[[str], None],
           times: dict[str, float]) -> dict[str, Any]:
    """The report and the plots; returns the summary (`run` writes it, with the wall time)."""
    findings: list[Finding] = []
    if recorder:
        findings = diagnose(p.config, recorder.rows, history, p.dataset.num_classes)
        log(format_report(findings, recorder.rows))
    written: list[str] = []
    if plots:
        faults.reach("pictures", p.run.path / plotting.LEARNING_CURVES)
        try:
            written = plotting.write_run_plots(
                p.run.path, p.config, state.params, p.dataset, p.dev, p.hyper, history,
                recorder.rows if recorder else [], gradient_verdict(findings))
        except OSError as e:  # matplotlib's own writes: one line naming the folder
            raise checkpoint.write_error(f"the plots in {p.run}", e) from None
        log(f"plots: {', '.join(written)} in {p.run}")
    summary = summarize(p, history, times)
    if recorder:
        summary["diagnosis"] = [dataclasses.asdict(f) for f in findings]
    if written:
        summary["plots"] = written
    return summary


def run(config: Config, out: str | Path | None = None, *, resume: bool = False,
        progress: bool = True, max_epochs: int | None = None,
        log: Callable[[str], None] = print, diagnose: bool = False,
        plots: bool = False, given: Collection[str] | None = None,
        command: Sequence[str] | None = None,
        epochs: Callable[[Prepared], Callable[..., Any]] | None = None) -> dict[str, Any]:
    """Train one model, writing config.json, metrics.jsonl, checkpoint.npz and summary.json.

    With `resume=True`, `out` is an existing run folder whose config.json is the configuration
    (`config` is ignored) and says what else it writes. `max_epochs` stops after that many
    epochs in this call, as an interruption would. `diagnose` also writes diagnostics.jsonl and
    logs a report; `plots` writes PNGs (and turns on `diagnose`). `given`: the fields set
    explicitly, kept whatever the data set's own defaults say (None: those still at Config's
    defaults are not given). Returns the summary. Once the folder exists, a signal raises
    `Interrupted` and a failed write `WriteFailed`; a non-finite loss or final parameters raise
    `Diverged`, with a summary.json that says so. `command`: what config.json records (default:
    this process's command line). `epochs(prepared)`: the epoch function to train with instead
    of the compiled epoch, from the `programs.Chunks` compiled for it (the lab's live runs).
    """
    t_start = time.perf_counter()
    outputs = {"diagnose": diagnose or plots, "plots": plots}
    if resume and out is not None:  # a resumed run goes on writing what it was asked for
        outputs = continued_outputs(out, outputs, log)
    diagnose, plots = outputs["diagnose"], outputs["plots"]
    p = prepare(config, out, resume=resume, progress=progress, log=log, given=given,
                outputs=outputs, chunked=epochs is not None, command=command)
    times = dict(p.times)
    try:
        recorder = recorder_of(p) if diagnose else None
        epoch_fn = p.programs.epoch if epochs is None else epochs(p)
        epoch_fn = recorder.wrap(epoch_fn) if recorder else epoch_fn
        end = p.config.epochs if max_epochs is None else min(p.config.epochs,
                                                             p.start_epoch + max_epochs)
        with stopping.deferred("epoch"):
            state, history = train_epochs(p, epoch_fn, p.programs.evaluate, recorder, end,
                                          progress=progress, plots=plots)
        if isinstance(p.programs.evaluate, programs.Deferred):  # compiled during epoch 1
            times["evaluate_compile_seconds"] = p.programs.evaluate.seconds
        if history and not finite(state.params):  # whatever produced them: diverged
            raise Diverged(f"the parameters after epoch {history[-1]['epoch']} hold non-finite "
                           "values (NaN or inf) although the loss stayed finite: the run "
                           f"diverged. Try {' or '.join(step_fixes(p.config))}.", str(p.run))
        summary = finish(p, state, history, recorder, plots, log, times)
        summary["wall_seconds"] = time.perf_counter() - t_start
        summary["status"] = FINISHED
        p.run.write_json(SUMMARY, summary, point="summary")
    except Diverged as e:  # summary.json says so, with the epochs that finished
        record_stop(p, times, DIVERGED, str(e))
        raise
    except KeyboardInterrupt as e:
        record_stop(p, times, INTERRUPTED, f"{stopping.describe(e)}; the finished epochs are "
                    f"checkpointed: continue with --resume {p.run}")
        raise Interrupted(str(p.run), e) from None
    except checkpoint.WriteError as e:
        raise WriteFailed(f"{e}; what was written before is intact: once there is room (or the "
                          f"folder is back), continue with --resume {p.run}") from None
    return summary


def record_stop(p: Prepared, times: dict[str, float], status: str, message: str) -> None:
    """summary.json for a run that stopped early: how far it got (its finished epochs, as
    metrics.jsonl holds them), `status` and the `message` that said why, so that its page can
    be rebuilt from the folder alone."""
    history = [h for h in p.run.metrics() if h.get("train_loss") is not None]
    p.run.write_json(SUMMARY, {**summarize(p, history, times), "status": status,
                               "message": message}, point="summary")

