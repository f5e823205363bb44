"""One training run with its side effects: prepare, compile, epochs, finish.

`run(config, out)` is what `python -m jaxmlp.train` does, in four steps that each do one job:

1. `prepare`: the configuration (a resumed run's own), the data, the run folder;
2. `compile_programs`: the epoch (with per-step statistics under --diagnose) and the
   evaluation, compiled ahead of time so compilation is measured apart from training;
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
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxmlp import checkpoint, data, faults, probes, sizes, stopping
from jaxmlp.config import (
    Config,
    ConfigError,
    check_against_data,
    dataset_defaults,
    flag_name,
    validate,
)
from jaxmlp.diagnostics import make_row, nonfinite_note, num
from jaxmlp.loop import (
    DeviceData,
    Hyper,
    TrainState,
    device_data,
    hyper_from_config,
    initial_state,
    make_epoch,
    make_evaluate,
    make_step,
    model_sizes,
)
from jaxmlp.plots import run as plotting
from jaxmlp.report import Finding, diagnose, format_report, gradient_verdict
from jaxmlp.report.base import step_causes, step_fixes
from jaxmlp.rundir import SUMMARY, RunDir, continued_outputs, default_folder
from jaxmlp.versions import versions

# The test accuracy whose training time the summary reports ("time to 98%").
TARGET_ACCURACY = 0.98


class Diverged(RuntimeError):
    """The loss became non-finite; the message names the epoch and step."""


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
    state: TrainState
    data_key: jax.Array
    tx: Any
    start_epoch: int
    history: list[dict[str, Any]]
    diag_rows: list[dict[str, Any]]


# --- 1. prepare -----------------------------------------------------------------------------------


def _record(config: Config, dataset: data.Dataset, note: str | None, dev: DeviceData,
            hyper: Hyper, applied: dict[str, Any] | None = None,
            outputs: dict[str, bool] | None = None) -> dict[str, Any]:
    """config.json: what was asked, and what was used (the data set's own defaults and the
    preprocessing that did not apply, when there are any: an MNIST record stays as it was), and
    the `outputs` asked for (--diagnose, --plots), which a resumed run goes on writing."""
    record = {"requested": config.dataset, "used": dataset.name, "source": dataset.source,
              "verified": dataset.verified, "fallback": note,
              "num_train": int(dev.x_train.shape[0]), "num_test": int(dev.x_test.shape[0])}
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
        "command": sys.argv,
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


def prepare(config: Config, out: str | Path | None, *, resume: bool, progress: bool,
            log: Callable[[str], None], given: Collection[str] | None = None,
            outputs: dict[str, bool] | None = None) -> Prepared:
    """Everything a run needs before compiling; bad settings fail here, before any work.
    `given`: the settings given explicitly, which the data set's own defaults leave alone;
    `outputs`: what a new run records it writes (`_record`)."""
    applied: dict[str, Any] = {}
    if resume:
        if out is None:
            raise ConfigError("--resume needs the run folder to continue")
        config = RunDir(out).config()
    else:
        config, applied = with_defaults(config, given, log)
    dataset, note, dev, hyper = load(config, progress=progress, log=log)
    state, data_key, tx = initial_state(jax.random.key(config.seed), config, dev, hyper,
                                        dataset.num_classes)
    if not resume:
        path = out if out is not None else default_folder(dataset.name)
        run = RunDir.create(path, _record(config, dataset, note, dev, hyper, applied, outputs))
        return Prepared(config, dataset, dev, hyper, run, state, data_key, tx, 0, [], [])
    run = RunDir(out)
    state, start_epoch = run.restore(state)
    history, diag_rows = run.truncate(start_epoch)
    log(f"resuming {run} after epoch {start_epoch} of {config.epochs}")
    return Prepared(config, dataset, dev, hyper, run, state, data_key, tx, start_epoch, history,
                    diag_rows)


# --- 2. compile (and the diagnostics recorder) ----------------------------------------------------


class Recorder:
    """Writes diagnostics.jsonl for --diagnose, and keeps the rows for the report.

    The epoch it compiles is `loop.make_epoch` with `probes.step_statistics` in its step; the
    probe of the parameters runs as a separate program after each epoch (and once for the
    initial parameters). Nothing here waits for the device except `end_epoch`, called after
    the epoch's one host synchronisation.
    """

    def __init__(self, p: Prepared) -> None:
        self.config, self.run = p.config, p.run
        self.shapes = list(itertools.pairwise(model_sizes(p.config, p.dev.x_train.shape[1],
                                                          p.dataset.num_classes)))
        self.probe = jax.jit(probes.make_probe(p.config, p.dataset.num_classes))
        self.rows = list(p.diag_rows)
        self.run.start_diagnostics(self.rows)
        # Probe the initial parameters (epoch 0), unless a resumed run already has them; the
        # row is written with epoch 1, whose first step supplies the initial gradient norms.
        self._initial = None if self.rows else self.probe(p.state.params, p.dev, p.hyper)
        self._pending: tuple[Any, Any, int] | None = None

    def epoch(self, config: Config, tx: Any) -> Callable[..., Any]:
        """`epoch(state, data, hyper, key) -> (state, EpochMetrics, EpochDiagnostics)`."""
        epoch = make_epoch(config, tx, make_step(config, tx, probes.step_statistics()))

        def diagnosed(state: TrainState, dev: DeviceData, hyper: Hyper, key: jax.Array
                      ) -> tuple[Any, Any, probes.EpochDiagnostics]:
            state, m = epoch(state, dev, hyper, key)
            return state, m._replace(step_stats=None), probes.summarize_epoch(m.step_stats)

        return diagnosed

    def wrap(self, epoch_fn: Callable[..., Any]) -> Callable[..., Any]:
        """Adapt the compiled epoch to `make_epoch`'s `(state, metrics)`, and queue the probe
        of the new parameters; the results wait on the device until `end_epoch`."""

        def epoch(state: Any, dev: DeviceData, hyper: Hyper, key: jax.Array) -> tuple[Any, Any]:
            state, metrics, diag = epoch_fn(state, dev, hyper, key)
            steps = metrics.step_loss.shape[0]  # a static shape: no device wait
            self._pending = (diag, self.probe(state.params, dev, hyper), steps)
            return state, metrics

        return epoch

    def end_epoch(self, epoch: int) -> None:
        assert self._pending is not None, "end_epoch without an epoch"
        (d, probe, steps), self._pending = self._pending, None
        d = jax.device_get(d)
        if self._initial is not None:
            first_step = d.step_grad_norm[0] if d.step_grad_norm.shape[0] else None
            self._append(make_row(0, self.config, self.shapes, self._initial,
                                  grad_norm=first_step))
            self._initial = None
        self._append(make_row(epoch, self.config, self.shapes, probe, d, steps=steps))

    def _append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.run.append_diagnostics(row)


def compile_programs(p: Prepared, recorder: Recorder | None
                     ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(epoch, evaluate), compiled. The state is donated: XLA may update parameters in place
    instead of allocating new buffers each epoch."""
    epoch = recorder.epoch(p.config, p.tx) if recorder else make_epoch(p.config, p.tx)
    epoch_fn = jax.jit(epoch, donate_argnums=0).lower(
        p.state, p.dev, p.hyper, jax.random.fold_in(p.data_key, 0)).compile()
    if recorder:
        epoch_fn = recorder.wrap(epoch_fn)
    eval_fn = jax.jit(make_evaluate(p.config)).lower(
        p.state.params, p.dev.x_test, p.dev.y_test, p.hyper).compile()
    return epoch_fn, eval_fn


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
        state, m = epoch_fn(state, p.dev, p.hyper, jax.random.fold_in(p.data_key, e))
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
                                              note))
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
        plots: bool = False, given: Collection[str] | None = None) -> dict[str, Any]:
    """Train one model, writing config.json, metrics.jsonl, checkpoint.npz and summary.json.

    With `resume=True`, `out` is an existing run folder whose config.json is the configuration
    (`config` is ignored) and says what else it writes. `max_epochs` stops after that many
    epochs in this call, as an interruption would. `diagnose` also writes diagnostics.jsonl and
    logs a report; `plots` writes PNGs (and turns on `diagnose`). `given`: the fields set
    explicitly, kept whatever the data set's own defaults say (None: those still at Config's
    defaults are not given). Returns the summary. Once the folder exists, a signal raises
    `Interrupted` and a failed write `WriteFailed`; a non-finite loss or final parameters raise
    `Diverged`, with a summary.json that says so.
    """
    t_start = time.perf_counter()
    outputs = {"diagnose": diagnose or plots, "plots": plots}
    if resume and out is not None:  # a resumed run goes on writing what it was asked for
        outputs = continued_outputs(out, outputs, log)
    p = prepare(config, out, resume=resume, progress=progress, log=log, given=given,
                outputs=outputs)
    times: dict[str, float] = {"data_seconds": time.perf_counter() - t_start}
    try:
        diagnose, plots = outputs["diagnose"], outputs["plots"]
        recorder = Recorder(p) if diagnose else None
        epoch_fn, eval_fn = compile_programs(p, recorder)
        times["compile_seconds"] = time.perf_counter() - t_start - times["data_seconds"]
        end = p.config.epochs if max_epochs is None else min(p.config.epochs,
                                                             p.start_epoch + max_epochs)
        with stopping.deferred("epoch"):
            state, history = train_epochs(p, epoch_fn, eval_fn, recorder, end,
                                          progress=progress, plots=plots)
        if history and not finite(state.params):  # whatever produced them: diverged
            raise Diverged(f"the parameters after epoch {history[-1]['epoch']} hold non-finite "
                           "values (NaN or inf) although the loss stayed finite: the run "
                           f"diverged. Try {' or '.join(step_fixes(p.config))}.")
        summary = finish(p, state, history, recorder, plots, log, times)
        summary["wall_seconds"] = time.perf_counter() - t_start
        p.run.write_json(SUMMARY, summary, point="summary")
    except Diverged as e:  # summary.json says so, with the epochs that finished
        history = [h for h in p.run.metrics() if h["train_loss"] is not None]
        p.run.write_json(SUMMARY, {**summarize(p, history, times), "diverged": str(e)},
                         point="summary")
        raise
    except KeyboardInterrupt as e:
        raise Interrupted(str(p.run), e) from None
    except checkpoint.WriteError as e:
        raise WriteFailed(f"{e}; what was written before is intact: once there is room (or the "
                          f"folder is back), continue with --resume {p.run}") from None
    return summary
