"""A sweep's tables: results.csv (run x epoch), runs.csv (run), summary.csv and summary.md
(variant, with statistics over seeds), the findings any sweep can state, and the plots."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp import checkpoint, stats
from jaxmlp.loop import steps_per_epoch
from jaxmlp.plots import sweep as plots_sweep
from jaxmlp.plots.layout import distinct_numbers
from jaxmlp.probes import PROBE_EXAMPLES
from jaxmlp.sweep.datasets import DataCache
from jaxmlp.sweep.plan import Run
from jaxmlp.sweep.program import PROBES, RESULT_FIELDS
from jaxmlp.sweep.result import SweepResult
from jaxmlp.sweep.spec import SweepSpec, format_value

# The files a complete sweep writes beside sweep.json (and chunks/).
RESULTS_CSV, RUNS_CSV, SUMMARY_CSV, SUMMARY_MD = ("results.csv", "runs.csv", "summary.csv",
                                                  "summary.md")
CURVES_PNG, FINAL_PNG = "curves.png", "final_accuracy.png"

# Where the words of these tables are explained in plain terms (bootstrap interval, blocked
# pairs, input-blind images, lockstep, traced settings).
GLOSSARY = "Terms: jaxmlp's guide, docs/words.md."


def results_columns(spec: SweepSpec) -> list[str]:
    """results.csv's columns: run, variant, the settings that vary, seed, epoch, metrics."""
    return ["run", "variant", *spec.varied_fields(), "seed", "epoch", *RESULT_FIELDS,
            "nonfinite", "first_bad_step"]


def _cell(x: Any) -> Any:
    """A CSV cell: floats in their shortest exact form (float32 as float32), nan/inf spelled
    out, booleans as 0/1, tuples as 64x64, None as empty."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_, int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            return "nan" if math.isnan(float(x)) else ("inf" if x > 0 else "-inf")
        return str(x) if isinstance(x, np.floating) else repr(x)
    if isinstance(x, tuple):
        return format_value(x)
    return x


def results_rows(spec: SweepSpec, runs: Sequence[Run], results: Sequence[Mapping[str, Any]]
                 ) -> list[dict[str, Any]]:
    """results.csv's rows: one per run per epoch."""
    varied = spec.varied_fields()
    rows = []
    for r in runs:
        res = results[r.index]
        settings = {k: format_value(getattr(r.config, k)) for k in varied}
        for e in range(len(res["train_loss"])):
            bad = int(res["first_bad_step"][e])
            rows.append({
                "run": r.index,
                "variant": spec.variants[r.variant].name,
                **settings,
                "seed": r.seed,
                "epoch": e + 1,
                **{k: _cell(res[k][e]) for k in RESULT_FIELDS},
                "nonfinite": int(bool(res["nonfinite"][e])),
                # 1-based step within the epoch, as `python -m jaxmlp.train` reports it.
                "first_bad_step": bad + 1 if bad >= 0 else "",
            })
    return rows


def run_summary(spec: SweepSpec, run: Run, res: Mapping[str, Any], datasets: DataCache
                ) -> dict[str, Any]:
    """One row of runs.csv: a run's final metrics, divergence and probes (`datasets` gives the
    training set's size, which turns a diverged step into an update count)."""
    nonfinite = np.asarray(res["nonfinite"], bool)
    diverged = bool(nonfinite.any())
    row: dict[str, Any] = {
        "run": run.index,
        "variant": spec.variants[run.variant].name,
        **{k: format_value(getattr(run.config, k)) for k in spec.varied_fields()},
        "seed": run.seed,
        **{f"final_{k}": res[k][-1] for k in RESULT_FIELDS},
        "diverged": int(diverged),
        "diverged_epoch": "",
        "diverged_update": "",
        "epochs_to_target": stats.epochs_to_target(res["test_accuracy"], spec.target_accuracy),
    }
    if diverged:
        e = int(np.flatnonzero(nonfinite)[0])
        row["diverged_epoch"] = e + 1
        step = int(res["first_bad_step"][e])
        if step >= 0:  # the update count from the start of training, 1-based
            n = datasets.num_train(run.config)
            row["diverged_update"] = e * steps_per_epoch(run.config, n) + step + 1
    if spec.probes:
        for p in PROBES:
            for when in ("init", "final"):
                row[f"{p}_{when}"] = float(res[f"{p}_{when}"])
    return row


def summarize(spec: SweepSpec, runs: Sequence[Run], results: Sequence[Mapping[str, Any]],
              datasets: DataCache) -> list[dict[str, Any]]:
    """Per variant: seeds, divergence, final test accuracy and train loss (mean, std, 95% CI),
    epochs to the target accuracy, and the probes' means."""
    varied = spec.varied_fields()
    rows = []
    for v, variant in enumerate(spec.variants):
        mine = [r for r in runs if r.variant == v]
        per_run = [run_summary(spec, r, results[r.index], datasets) for r in mine]
        acc = stats.describe([p["final_test_accuracy"] for p in per_run])
        loss = stats.describe([p["final_train_loss"] for p in per_run])
        reached = [p["epochs_to_target"] for p in per_run if p["epochs_to_target"] is not None]
        config = spec.config(v)
        row: dict[str, Any] = {
            "variant": variant.name,
            **{k: format_value(getattr(config, k)) for k in varied},
            "seeds": len(mine),
            "diverged_frac": float(np.mean([p["diverged"] for p in per_run])),
            **{f"test_acc_{k}": acc[k] for k in ("mean", "std", "ci_lo", "ci_hi")},
            "train_loss_n": loss["n"],
            **{f"train_loss_{k}": loss[k] for k in ("mean", "std", "ci_lo", "ci_hi")},
            "target_accuracy": spec.target_accuracy,
            "reached_frac": len(reached) / len(mine),
            "epochs_to_target_mean": float(np.mean(reached)) if reached else math.nan,
        }
        if spec.probes:
            for p in PROBES:
                for when in ("init", "final"):
                    vals = np.asarray([q[f"{p}_{when}"] for q in per_run], float)
                    row[f"{p}_{when}_mean"] = (float(np.nanmean(vals))
                                               if np.isfinite(vals).any() else math.nan)
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(row.get(k)) for k in columns})
    checkpoint.atomic_write_text(path, buf.getvalue())


def _settings_lines(spec: SweepSpec, record: Mapping[str, Any]) -> list[str]:
    """summary.md's opening: the grid, the data, the fixed settings, the devices and times."""
    varied = set(spec.varied_fields())
    fixed = {k: v for k, v in spec.config(0).to_dict().items()
             if k not in varied and k not in ("seed", "data_dir")}
    datasets = ", ".join(f"{n} ({d['source']})" for n, d in record["datasets"].items())
    lines = [f"# {spec.name}", ""]
    if spec.note:
        lines += [spec.note, ""]
    lines += [
        f"- {len(spec.variants)} variants x {len(spec.seeds)} seeds "
        f"({', '.join(map(str, spec.seeds))}) = {record['num_runs']} runs; groups (one "
        f"structure and data set each) {record['num_groups']}, programs compiled "
        f"{record['programs_compiled']}",
        f"- data: {datasets}" + (f"; test set: first {spec.test_subset} examples"
                                 if spec.test_subset else ""),
        "- fixed settings: " + ", ".join(f"{k}={format_value(_tuple(v))}"
                                         for k, v in fixed.items()),
        f"- devices: {len(record['devices'])} x {record['device_kind']}; wall "
        f"{record['wall_seconds']:.1f} s (compile {record['compile_seconds']:.1f} s, train "
        f"{record['train_seconds']:.1f} s); jax {record['versions']['jax']}",
        "",
    ]
    return lines


def _results_table(spec: SweepSpec, summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-variant table of final accuracy, train loss, epochs to target and divergence."""
    target = stats.pct(spec.target_accuracy, 0)
    lines = [
        "Final values are from the last epoch, over seeds: mean ± std [95% bootstrap CI of the "
        "mean]. Train loss is the mean per-example loss whatever the reduction, over runs that "
        f"stayed finite (n). 'to {target}': mean epochs to reach {target} test accuracy, over "
        "the seeds that reached it (how many in brackets). 'diverged': runs whose loss became "
        f"NaN/inf. {GLOSSARY}",
        "",
        f"| variant | final test accuracy | final train loss (n) | to {target} | diverged |",
        "|---|---|---|---|---|",
    ]
    for row in summary:
        acc = (f"{stats.pct(row['test_acc_mean'])} ± {stats.pct(row['test_acc_std'])} "
               f"{stats.fmt_ci(row['test_acc_ci_lo'], row['test_acc_ci_hi'], 100, 2)}")
        loss = (f"{stats.fmt(row['train_loss_mean'])} ± {stats.fmt(row['train_loss_std'])} "
                f"{stats.fmt_ci(row['train_loss_ci_lo'], row['train_loss_ci_hi'])} "
                f"({row['train_loss_n']})")
        reached = round(row["reached_frac"] * row["seeds"])
        to_target = (f"{row['epochs_to_target_mean']:.1f} ({reached}/{row['seeds']})"
                     if reached else f"never (0/{row['seeds']})")
        diverged = f"{round(row['diverged_frac'] * row['seeds'])}/{row['seeds']}"
        lines.append(f"| {row['variant']} | {acc} | {loss} | {to_target} | {diverged} |")
    return [*lines, ""]


def _probes_table(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-variant probes, at initialisation -> after training."""
    lines = [f"Unit probes on the first {PROBE_EXAMPLES:,} training examples, mean over seeds, "
             f"at initialisation -> after training (see `jaxmlp.probes`; {GLOSSARY}):", "",
             "| variant | dead/saturated units | blocked unit-image pairs | input-blind "
             "images | all-zero outputs |",
             "|---|---|---|---|---|"]
    for row in summary:
        cells = [f"{stats.pct(row[f'{p}_init_mean'], 1)} -> "
                 f"{stats.pct(row[f'{p}_final_mean'], 1)}" for p in PROBES]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def summary_markdown(spec: SweepSpec, summary: Sequence[Mapping[str, Any]],
                     record: Mapping[str, Any], findings: Sequence[str],
                     sections: Sequence[tuple[str, str]] = ()) -> str:
    """summary.md: settings, the per-variant table, extra sections, then the findings last."""
    lines = _settings_lines(spec, record) + _results_table(spec, summary)
    if spec.probes:
        lines += _probes_table(summary)
    for title, body in sections:
        lines += [f"## {title}", "", body.rstrip(), ""]
    lines += ["## Findings", "", "Generated from the results above by the code that ran the "
              "sweep; rerunning regenerates them.", ""]
    lines += [f"- {f}" for f in findings]
    return "\n".join(lines) + "\n"


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def generic_findings(spec: SweepSpec, summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """Findings any sweep can state: best and worst variant, separation, divergence."""
    if not summary:
        return []
    order = sorted(summary, key=lambda r: -np.nan_to_num(r["test_acc_mean"], nan=-1.0))
    best, worst = order[0], order[-1]

    def acc(r: Mapping[str, Any]) -> str:
        return (f"{stats.pct(r['test_acc_mean'])} "
                f"(95% CI {stats.fmt_ci(r['test_acc_ci_lo'], r['test_acc_ci_hi'], 100, 2)})")

    out = [f"Highest mean final test accuracy: {best['variant']} at {acc(best)} over "
           f"{best['seeds']} seeds."]
    if len(order) > 1:
        out.append(f"Lowest: {worst['variant']} at {acc(worst)}.")
        second = order[1]
        a = {k: best[f"test_acc_{k}"] for k in ("ci_lo", "ci_hi")}
        b = {k: second[f"test_acc_{k}"] for k in ("ci_lo", "ci_hi")}
        if stats.intervals_overlap(a, b):
            out.append(f"The runner-up, {second['variant']} at {acc(second)}, overlaps the best "
                       "one's interval: these seeds do not separate them.")
        else:
            out.append(f"The runner-up, {second['variant']} at {acc(second)}, lies outside the "
                       "best one's interval.")
    diverged = [r for r in summary if r["diverged_frac"] > 0]
    if diverged:
        listed = ", ".join(f"{r['variant']} ({round(r['diverged_frac'] * r['seeds'])}/"
                           f"{r['seeds']})" for r in diverged)
        out.append(f"{len(diverged)} of {len(summary)} variants had runs whose loss became "
                   f"NaN/inf: {listed}.")
    else:
        out.append(f"No run of the {len(summary)} variants diverged (every loss stayed finite).")
    return out


def write_outputs(
    out: Path,
    spec: SweepSpec,
    runs: Sequence[Run],
    results: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any],
    *,
    datasets: DataCache,
    plots: bool = True,
) -> None:
    """results.csv, runs.csv, summary.csv, summary.md (with generic findings) and the plots."""
    _write_csv(out / RESULTS_CSV, results_rows(spec, runs, results), results_columns(spec))
    run_rows = [run_summary(spec, r, results[r.index], datasets) for r in runs]
    _write_csv(out / RUNS_CSV, run_rows, list(run_rows[0]))
    _write_csv(out / SUMMARY_CSV, summary, list(summary[0]))
    text = summary_markdown(spec, summary, record, generic_findings(spec, summary))
    checkpoint.atomic_write_text(out / SUMMARY_MD, text)
    if plots:
        write_plots(out, spec, runs, results, datasets)


def panels_by(overrides: Sequence[Sequence[tuple[str, Any]]]) -> list[str] | None:
    """One panel label per variant for curves.png, grouping by the varied setting that leaves
    the fewest panels with at most `LINES_PER_PANEL` lines each; None when one panel is enough
    (or no setting does it). Numbers in the labels carry the digits that tell them apart.

    Where that grouping leaves about one line per panel (a sweep of one setting: 16 variants
    at 15 learning rates were 15 panels, too far apart to compare and 5 s to draw),
    consecutive variants share a panel instead (`panels_in_order`)."""
    if len(overrides) <= plots_sweep.LINES_PER_PANEL:
        return None
    fields = sorted({k for o in overrides for k, _ in o})
    best = None
    for f in fields:
        text = _field_texts([v for o in overrides for k, v in o if k == f])
        labels = [next((f"{k}={text[v]}" for k, v in o if k == f), f"{f}: base")
                  for o in overrides]
        sizes = [labels.count(x) for x in set(labels)]
        if 1 < len(sizes) and max(sizes) <= plots_sweep.LINES_PER_PANEL and (
                best is None or len(sizes) < len(set(best))):
            best = labels
    if best is not None and 2 * len(overrides) < 3 * len(set(best)):  # < 1.5 lines a panel
        return panels_in_order(overrides)
    return best


def panels_in_order(overrides: Sequence[Sequence[tuple[str, Any]]]) -> list[str]:
    """Consecutive variants in as few panels as hold at most `LINES_PER_PANEL` lines each
    (sizes within one of each other), each panel titled by the range it holds of the setting
    with the most values: "learning_rate 0.1 … 0.001", in the sweep's order."""
    n = len(overrides)
    k = math.ceil(n / plots_sweep.LINES_PER_PANEL)
    values = {f: [dict(o).get(f) for o in overrides] for f in {f for o in overrides for f, _ in o}}
    field = max(sorted(values), key=lambda f: len(set(map(repr, values[f]))))
    text = _field_texts([v for v in values[field] if v is not None])
    labels, start = [], 0
    for i in range(k):
        size = n // k + (i < n % k)
        held = list(dict.fromkeys(text[v] for v in values[field][start:start + size]
                                  if v is not None)) or ["base"]
        title = f"{field}={held[0]}" if len(held) == 1 else f"{field} {held[0]} … {held[-1]}"
        labels += [title if title not in labels else f"{title} ({i + 1}/{k})"] * size
        start += size
    return labels


def _field_texts(values: Sequence[Any]) -> dict[Any, str]:
    """How each value of one setting is written in a panel label: numbers rounded to the
    digits that tell them apart (0.1/255 is 0.00039, not 0.000392157), others as in names."""
    distinct = list(dict.fromkeys(values))
    if distinct and all(isinstance(v, float) for v in distinct):
        return dict(zip(distinct, distinct_numbers(distinct), strict=True))
    return {v: format_value(v) for v in distinct}


def write_plots(out: Path, spec: SweepSpec, runs: Sequence[Run],
                results: Sequence[Mapping[str, Any]], datasets: DataCache) -> None:
    """curves.png (learning curves over seeds) and final_accuracy.png, per variant."""
    names = [v.name for v in spec.variants]
    by_variant = [[r for r in runs if r.variant == v] for v in range(len(names))]

    def stack(metric: str) -> list[np.ndarray]:
        return [np.stack([results[r.index][metric] for r in rs]) for rs in by_variant]

    finals = [np.asarray([results[r.index]["test_accuracy"][-1] for r in rs])
              for rs in by_variant]
    configs = [spec.config(v) for v in range(len(names))]
    factors, loss_label = plots_sweep.loss_on_one_scale(
        configs, [datasets.dataset(c)[0].num_classes for c in configs])
    losses = [f * loss for f, loss in zip(factors, stack("train_loss"), strict=True)]
    plots_sweep.plot_curves(out / CURVES_PNG, names, losses, stack("test_accuracy"),
                            spec.name, panels_by([v.overrides for v in spec.variants]),
                            loss_label)
    plots_sweep.plot_final(out / FINAL_PNG, names, finals, spec.name)


def write_findings(result: SweepResult, findings: Sequence[str],
                   sections: Sequence[tuple[str, str]] = ()) -> None:
    """Rewrite summary.md with an experiment's own findings (and extra sections) at the end."""
    text = summary_markdown(result.spec, result.summary, result.record, findings, sections)
    checkpoint.atomic_write_text(result.out / SUMMARY_MD, text)
