"""A run's page, from its folder's files alone: what was run, how it ended, the learning curves,
the report's findings with the guide's section on each, every picture, and the command that
runs it again. An `--overfit N --out DIR` folder (overfit.json) gets the same page for its steps.

`read_run` reads the files (the one side effect); everything after it is a function of what it
read. `write_run_page` is what the commands call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jaxmlp.pages.chart as chart  # the modules, not the package: no cycle
import jaxmlp.pages.facts as facts
from jaxmlp import data
from jaxmlp.config import TOY_DATASETS, Config, ConfigError
from jaxmlp.overfit import OVERFIT_MAX_STEPS, OverfitResult
from jaxmlp.overfit_run import OVERFIT_SETS
from jaxmlp.pages.guide import GuideLink, finding_link
from jaxmlp.pages.render import Picture, pictures, write_page
from jaxmlp.plots import plane
from jaxmlp.plots import run as plotting
from jaxmlp.report import Finding, diagnose, format_report
from jaxmlp.rundir import (
    CHECKPOINT,
    CONFIG_JSON,
    DIVERGED,
    FINISHED,
    INTERRUPTED,
    OVERFIT,
    REPORT_HTML,
    SUMMARY,
    RunDir,
    result_lines,
)

# What each picture a run can draw shows: (alt text, caption). Names are the plots' own.
CAPTIONS = {
    plotting.LEARNING_CURVES: ("Learning curves: the training loss at every step and the test "
                               "loss per epoch, and the accuracy per epoch",
                               "Loss (log scale) and accuracy, per step and per epoch."),
    plotting.OVERFIT_CURVES: ("The loss and training accuracy at every full-batch step",
                              "--overfit: loss and training accuracy per step."),
    plotting.GRADIENT_NORMS: ("Each layer's gradient norm at every measured step, log scale",
                              "Gradient norms per layer: vanishing when layer 1 lies orders of "
                              "magnitude below the last, exploding when they climb."),
    plotting.CONFUSION: ("Confusion matrix: test examples by true and predicted class",
                         "Which classes are mistaken for which."),
    plotting.MISCLASSIFIED: ("Test images the network got wrong, with true and predicted labels",
                             "Misclassified test images."),
    plane.DECISION_BOUNDARY: ("The predicted class over the plane, with the training points",
                              "Decision boundary; crosses: test points it gets wrong."),
    plane.BOUNDARY_EPOCHS: ("The decision boundary at initialisation and after some epochs",
                            "The boundary, epoch by epoch."),
    plane.FIRST_LAYER: ("What each first-layer unit computes over the plane",
                        "First-layer units: where each switches on."),
}


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """What a run folder holds (None or empty: the file is not there)."""

    folder: Path
    record: dict[str, Any] | None  # config.json
    metrics: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    overfit: dict[str, Any] | None
    unreadable: tuple[str, ...]  # lines or files that could not be read, said on the page
    files: tuple[str, ...]
    checkpoint: bool


@dataclasses.dataclass(frozen=True)
class Status:
    kind: str  # finished, diverged, interrupted, unfinished, reached, not_reached, or as recorded
    failed: bool
    headline: str
    message: str  # what stopped it, in the words it was said in
    how_far: str


@dataclasses.dataclass(frozen=True)
class FindingView:
    code: str
    message: str
    advice: str
    link: GuideLink


def read_run(folder: Path) -> RunFiles:
    """The files of a run folder; a ConfigError when it holds neither config.json nor
    overfit.json."""
    folder = Path(folder)
    unreadable: list[str] = []
    record = facts.read_json(folder / CONFIG_JSON, unreadable)
    overfit = facts.read_json(folder / OVERFIT, unreadable)
    if record is None and overfit is None:
        raise ConfigError(f"{folder} holds no {CONFIG_JSON} or {OVERFIT}, so it is not a "
                          "jaxmlp run folder: give the folder a run wrote (--out)")
    run = RunDir(folder)
    return RunFiles(folder, record, facts.read_rows(run.metrics, unreadable),
                    facts.read_rows(run.diagnostics, unreadable),
                    facts.read_json(folder / SUMMARY, unreadable), overfit, tuple(unreadable),
                    tuple(sorted(p.name for p in folder.iterdir()
                                 if p.is_file() and p.name != REPORT_HTML)),
                    (folder / CHECKPOINT).is_file())


def finished_epochs(run: RunFiles) -> list[dict[str, Any]]:
    return [m for m in run.metrics if m.get("train_loss") is not None]


def asked_config(run: RunFiles) -> Config | None:
    """The configuration as the run was asked for (None if unreadable)."""
    try:
        return Config.from_dict((run.record or run.overfit or {})["config"])
    except (KeyError, TypeError, ValueError):
        return None


def config_of(run: RunFiles) -> Config | None:
    """The configuration the run trained with, on the data set it used (a run that fell back
    to digits trained on digits)."""
    asked = asked_config(run)
    used = ((run.record or {}).get("dataset") or {}).get("used")
    return dataclasses.replace(asked, dataset=used) if asked and used else asked


def num_classes(run: RunFiles, config: Config | None) -> int:
    """The data set's classes: as recorded, else (folders from before it was) the toy set's
    own number, else MNIST's 10."""
    recorded = ((run.record or {}).get("dataset", {}).get("num_classes")
                or (run.overfit or {}).get("num_classes"))
    if recorded:
        return int(recorded)
    if config is not None and config.dataset in TOY_DATASETS:
        return data.load_toy(config.dataset, config.data_seed).num_classes
    return data.NUM_CLASSES


# --- how it ended --------------------------------------------------------------------------------


def status(run: RunFiles) -> Status:
    """How the run ended, as summary.json records it (a folder without one: killed, or
    running; one from before `status` was recorded: finished, or diverged if metrics.jsonl
    ends with the diverged epoch), and how far it got."""
    if run.overfit is not None and run.record is None:
        return _overfit_status(run.overfit)
    s, done = run.summary, finished_epochs(run)
    total = (run.record or {}).get("config", {}).get("epochs", "?")
    last = done[-1] if done else None
    far = (f"{len(done)} of {total} epochs finished" + (
        f"; after epoch {last['epoch']}: test accuracy {facts.pct(last.get('test_accuracy'))}, "
        f"train loss {facts.num(last.get('train_loss'))}" if last else ""))
    bad = next((m for m in reversed(run.metrics) if m.get("diverged_at_step")), None)
    kind = (s or {}).get("status", FINISHED if s else DIVERGED if bad else "unfinished")
    if kind == FINISHED:
        return Status(kind, False, "; ".join(result_lines(s)), "", far)
    if kind == DIVERGED:
        where = f" at epoch {bad['epoch']}, step {bad['diverged_at_step']}" if bad else ""
        return Status(kind, True, f"This run diverged{where}: the loss became NaN or inf",
                      str((s or {}).get("message", "")), far)
    if kind == INTERRUPTED:
        return Status(kind, True, f"This run was interrupted after {len(done)} of {total} "
                      "epochs", str(s.get("message", "")), far)
    if s is None:
        return Status(kind, True, "This run stopped before it finished",
                      f"There is no {SUMMARY}: the run was killed, or is still running.", far)
    return Status(str(kind), True, f"This run ended: {kind}", str(s.get("message", "")), far)


def _overfit_status(o: dict[str, Any]) -> Status:
    result = overfit_result(o)
    kind = "reached" if result.reached else "not_reached"
    head = (f"Memorised {result.examples} examples in {result.steps} steps" if result.reached
            else f"Did not memorise {result.examples} examples in {result.steps} steps")
    return Status(kind, not result.reached, head, result.describe(),
                  f"{result.steps} of at most {o.get('max_steps', OVERFIT_MAX_STEPS)} steps")


def overfit_result(o: dict[str, Any]) -> OverfitResult:
    """overfit.json as the result it records, to say it in the result's own words."""
    def series(key: str) -> Any:
        return facts.array(o.get(key) or [])

    return OverfitResult(o["examples"], bool(o["reached"]), int(o["steps"]),
                         float(o.get("seconds", 0.0)), float(o.get("compile_seconds", 0.0)),
                         series("loss"), series("accuracy"), o.get("dataset", ""),
                         # `describe` only asks whether the steps were diagnosed
                         step_stats=True if o.get("diagnostics") else None)


# --- what the report says ----------------------------------------------------------------------


def findings(run: RunFiles, config: Config | None) -> tuple[list[FindingView], str]:
    """The report's findings (as summary.json or overfit.json recorded them; for a run that
    stopped before the report, the report's rules on its diagnostics rows) and, when there is
    nothing wrong, the report's line that says so."""
    recorded = (run.summary or {}).get("diagnosis", (run.overfit or {}).get("diagnosis"))
    rows = run.diagnostics or (run.overfit or {}).get("diagnostics") or []
    if recorded is not None:
        found = [Finding(f["code"], f["message"], f.get("advice", "")) for f in recorded]
    elif rows and config is not None:
        found = diagnose(config, rows, finished_epochs(run), num_classes(run, config))
    else:
        return [], ""
    views = [FindingView(f.code, f.message, f.advice, finding_link(f.code, run.folder))
             for f in found]
    return views, ("" if found else format_report([], rows).removeprefix("diagnosis: "))


# --- the learning curves -----------------------------------------------------------------------


def curves(run: RunFiles, classes: int) -> list[chart.Chart]:
    """The loss at every step (with the test loss per epoch) and the accuracy per epoch, from
    metrics.jsonl; an overfit folder's loss and accuracy per step."""
    if run.overfit is not None and run.record is None:
        return _overfit_curves(run.overfit, classes)
    xs, ys = [], []
    for m in run.metrics:
        steps = m.get("step_loss") if isinstance(m.get("step_loss"), list) else []
        if not isinstance(m.get("epoch"), int) or not steps:
            continue
        total = len(steps) if m.get("train_loss") is not None else _steps_in_epoch(run, steps)
        xs += [m["epoch"] - 1 + (i + 1) / total for i in range(len(steps))]
        ys += steps
    done = [m for m in finished_epochs(run) if isinstance(m.get("epoch"), int)]
    epochs = [m["epoch"] for m in done]
    loss = chart.line_chart(
        [chart.Series("train, every step", xs, ys),
         chart.Series("test, end of epoch", epochs, [m.get("test_loss") for m in done], True)],
        title="Loss", x_label="epoch", y_label="mean per-example loss (log)", log_y=True,
        description=facts.loss_words(ys, done))
    acc = chart.line_chart(
        [chart.Series(name, epochs, [facts.percent(m.get(key)) for m in done], True)
         for name, key in (("train (mean over the epoch)", "train_accuracy"),
                           ("test (end of epoch)", "test_accuracy"))],
        title="Accuracy", x_label="epoch", y_label="accuracy (%)", y_range=(0.0, 100.0),
        rule=(100 / classes, f"chance {100 / classes:.0f}%"),
        description=facts.accuracy_words(done, classes))
    return [loss, acc]


def _steps_in_epoch(run: RunFiles, partial: list[Any]) -> int:
    """Steps in a full epoch (for placing a diverged epoch's steps): a finished epoch's count."""
    full = [len(m.get("step_loss") or []) for m in finished_epochs(run)]
    return max(full, default=0) or len(partial) or 1


def _overfit_curves(o: dict[str, Any], classes: int) -> list[chart.Chart]:
    loss, acc = o.get("loss") or [], o.get("accuracy") or []
    steps = list(range(len(loss)))
    return [
        chart.line_chart([chart.Series("loss before the step", steps, loss)], title="Loss",
                         x_label="step", y_label="loss (log)", log_y=True,
                         description=facts.series_words("the loss", loss, "step")),
        chart.line_chart([chart.Series("training accuracy", steps,
                                       [facts.percent(a) for a in acc])],
                         title="Training accuracy", x_label="step", y_label="accuracy (%)",
                         y_range=(0.0, 100.0), rule=(100 / classes, f"chance {100 / classes:.0f}%"),
                         description=facts.series_words("the training accuracy", acc, "step",
                                                        percent=True)),
    ]


# --- pictures and commands ---------------------------------------------------------------------


def run_pictures(run: RunFiles, st: Status) -> tuple[list[Picture], str]:
    """The folder's pictures, notes for those summary.json lists that are gone, and a line on
    why there are none (or too few) and how to draw them."""
    listed = (run.summary or {}).get("plots") or []
    shown = pictures(run.folder, CAPTIONS, listed,
                     f"summary.json lists it as drawn but it is not in this folder (moved or "
                     f"deleted); python -m jaxmlp.plots {run.folder} draws it again")
    if any(not p.missing for p in shown) and st.kind != DIVERGED:
        return shown, ""
    if st.kind == DIVERGED and not run.checkpoint:
        why = ("The run diverged in its first epoch, so there is no checkpoint to draw the "
               "pictures of a trained network from; the curves above come from metrics.jsonl.")
    elif st.kind == DIVERGED:
        why = ("A run that diverges draws only its gradient norms (with --plots); python -m "
               f"jaxmlp.plots {run.folder} draws the rest from the last good checkpoint.")
    else:
        why = ("No pictures: the run was started without --plots. python -m jaxmlp.plots "
               f"{run.folder} draws them from its checkpoint.")
    return shown, why


def commands(run: RunFiles, asked: Config | None) -> tuple[str | None, str | None]:
    """(the command as it was typed, if config.json recorded `python -m jaxmlp.train`; the
    command that runs it again, from the settings `asked` for)."""
    typed = facts.typed_command((run.record or {}).get("command") or [])
    if asked is None:
        return typed, None
    overfit = run.overfit is not None and run.record is None
    given = facts.given_settings(asked, run.record, leave=OVERFIT_SETS if overfit else ())
    extra = []
    if overfit:
        extra = ["--overfit", str(run.overfit["examples"])]
        if run.overfit.get("max_steps", OVERFIT_MAX_STEPS) != OVERFIT_MAX_STEPS:
            extra += ["--overfit-steps", str(run.overfit["max_steps"])]
    if run.diagnostics or (run.overfit or {}).get("diagnostics"):
        extra.append("--diagnose")
    if (run.summary or {}).get("plots") or any(f.endswith(".png") for f in run.files):
        extra.append("--plots")
    return typed, facts.command_line(["python", "-m", "jaxmlp.train"],
                                     [*facts.flags(given), *extra])


def run_context(run: RunFiles) -> dict[str, Any]:
    """Everything run.html shows."""
    config, asked = config_of(run), asked_config(run)
    classes = num_classes(run, config)
    st = status(run)
    found, healthy = findings(run, config)
    shown, pictures_note = run_pictures(run, st)
    typed, again = commands(run, asked)
    return {
        "title": f"{run.folder.name}: {(config.dataset if config else None) or 'run'}",
        "folder": run.folder, "status": st, "findings": found, "healthy": healthy,
        "charts": curves(run, classes), "pictures": shown, "pictures_note": pictures_note,
        "typed": typed, "again": again, "rebuild": f"python -m jaxmlp.plots {run.folder}",
        "settings": facts.settings_table(asked, run.record, OVERFIT_SETS if run.record is None
                                         else (), "--overfit") if asked else [],
        "epochs": facts.epoch_rows(run.metrics), "data": facts.data_lines(run.record),
        "machine": facts.machine_lines(run.record or {}), "files": run.files,
        "unreadable": run.unreadable,
    }


def write_run_page(folder: str | Path) -> Path:
    """Write `folder`/report.html from the run folder's files; returns its path."""
    return write_page(Path(folder), "run.html", run_context(read_run(Path(folder))))
