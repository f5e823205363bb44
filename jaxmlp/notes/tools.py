"""The questions the notes answer with a tool: checking your own backprop (a `jaxmlp.reference`
case, and a check of a file with one classic mistake), a toy problem to debug on (spirals,
with its decision boundary), how long overfitting a few images takes (`--overfit N`), and why
a run is slow (this machine's epoch beside the matrix-product floor, and where the time goes).
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import numpy as np

from jaxmlp import compilation, floor, pages, reference, runner
from jaxmlp.config import Config
from jaxmlp.loop import model_sizes, steps_per_epoch
from jaxmlp.notes.answer import (
    Answer,
    Link,
    Unreadable,
    need,
    page_link,
    picture,
    read_json,
    read_jsonl,
    write_json,
)
from jaxmlp.notes.budget import NOTES_SETUP, Setting
from jaxmlp.notes.failures import diagnosis, run_config
from jaxmlp.overfit_run import run_overfit
from jaxmlp.pages.facts import command_line
from jaxmlp.plots import plane
from jaxmlp.plots import run as plotting
from jaxmlp.plots.backend import figure, save
from jaxmlp.reference.case import write_flags
from jaxmlp.reference.readme import describe
from jaxmlp.reference.report import format_check
from jaxmlp.rundir import METRICS, OVERFIT, SUMMARY

# --- checking your own backprop -------------------------------------------------------------------

CASE, YOURS = "case", "yours-with-a-mistake.json"
CHECK_JSON, CHECK_TXT, CHECK_PNG = "check.json", "check.txt", "check.png"
MISTAKE = "activation_derivative_missing"  # dL/dz taken equal to dL/da, in layer 1
# The notes' loss, with a learning rate at which its one step lowers the case's loss (at the
# case's usual 0.1 the step overshoots: each output over the total is steep where the sum of the
# outputs is small).
NOTES_CASE = {**{k: NOTES_SETUP[k] for k in ("output", "error", "class_reduction")},
              "learning_rate": 0.01}


def measure_backprop(s: Setting, folder: Path) -> None:
    spec = reference.validate_spec(reference.CaseSpec(
        dataclasses.replace(reference.CASE_CONFIG, **NOTES_CASE)))
    x, y = reference.toy_inputs(spec.examples, spec.config.seed, spec.classes)
    case = reference.compute_case(x, y, spec.classes, spec)
    reference.write_case(folder / CASE, case, spec, "toy 2x2 images, pixels row by row in "
                         "0.0..1.0; labels 0, 1, 2, 0, 1 (they carry no meaning)")
    # A learner's file with one classic mistake: every number of the case, but the backward
    # pass and the step as `reference.mistakes` computes them with the mistake made in layer 1.
    wrong = reference.backward(case, spec.config, MISTAKE, layer=1)
    yours = {k: v for k, v in case.items() if not k.startswith(("grad.", "after_step."))}
    yours.update({k: v[0] for k, v in wrong.items() if v})
    write_json(folder / YOURS, {k: np.asarray(v).tolist() for k, v in yours.items()})
    comparison = reference.compare(case, {k: np.asarray(v) for k, v in yours.items()}, spec)
    first = comparison.first
    write_json(folder / CHECK_JSON, {
        "mistake": MISTAKE, "case": describe(case, spec),
        "write": command_line(("python", "-m", "jaxmlp.reference", "write", "DIR"),
                              write_flags(spec)), "loss": float(case["loss"]),
        "loss_after_step": float(case["after_step.loss"]), "quantities": len(case),
        "first": None if first is None else {"key": first.key, "yours": first.yours,
                                             "expected": first.expected},
        "findings": [{"name": f.name, "says": f.says, "fix": f.fix}
                     for f in comparison.findings]})
    sizes = {k: int(np.asarray(v).size) for k, v in case.items()}
    (folder / CHECK_TXT).write_text(format_check(comparison, sizes, describe(case, spec), YOURS)
                                    + "\n")
    draw_check(folder / CHECK_PNG, comparison)


def draw_check(path: Path, comparison: reference.Comparison) -> None:
    """Each quantity of the file with a mistake against the case's, in the order of the
    computation: the largest difference over the check's tolerance (1: the limit; a match
    below 1e-3 of it is drawn at 1e-3)."""
    given = comparison.given
    fig = figure(7.5, 3.4)
    ax = fig.add_subplot()
    worst = [max(r.worst / reference.RTOL, 1e-3) for r in given]
    ax.bar(range(len(given)), worst, color=["#0072B2" if r.ok else "#D55E00" for r in given])
    ax.axhline(1.0, color="grey", lw=1, ls=":")
    ax.set_yscale("log")
    ax.set_xticks(range(len(given)), [r.key for r in given], rotation=90, fontsize=6)
    ax.set_ylabel("difference / tolerance")
    ax.set_title("A file with one mistake, checked against the case (orange: differs)")
    save(fig, path)


def answer_backprop(root: Path, rel: str) -> Answer:
    check = read_json(root / rel / CHECK_JSON)
    loss, after = (float(need(check, k, root / rel / CHECK_JSON))
                   for k in ("loss", "loss_after_step"))
    said = [f"The case ({check.get('case', '')}) holds {check.get('quantities', '?')} "
            f"quantities, every number of one forward pass, one backward pass and one step. "
            f"Its step took the loss from {loss:.6g} to {after:.6g}"
            + (": a step against the gradient lowered it." if after < loss else
               ": it did not lower the loss, which a small enough step always does: look at "
               "the case's learning rate.")
            + f" The same case, anywhere: {check.get('write', '')}."]
    first, found = check.get("first"), check.get("findings") or []
    if first:
        said.append(f"A file with the activation's derivative left out in layer 1 first differs "
                    f"at {first['key']} ({first['yours']:.6g} where the case has "
                    f"{first['expected']:.6g}), and check names the mistake: "
                    + "; ".join(f["says"] for f in found) + ".")
    else:
        said.append("The file with a mistake in it matched the case: check did not catch it, "
                    "which it should; see check.txt.")
    return Answer(tuple(said),
                  "Write your own forward and backward pass for the case's tiny network, save "
                  "your numbers under the case's names (JSON or npz), and check them: "
                  f"python -m jaxmlp.reference check {rel}/{CASE} yours.json. It compares them "
                  "in the order your code computes them and names the first that differs, and "
                  "the classic mistake that gives exactly that number. Once yours matches, the "
                  "step you take is the one that lowers the loss.",
                  (picture(root, rel, CHECK_PNG, "Bars: for each quantity of the file with "
                           "a mistake, in the order of the computation, its largest difference "
                           "from the case over the check's tolerance; the quantities after the "
                           "mistake differ", "What check compares, quantity by quantity."),),
                  (Link(f"{rel}/{CASE}/README.md", "the case: its README.md, with the "
                            "formulas of this loss"),
                       Link(f"{rel}/{CHECK_TXT}", "what check says of the file with a mistake")))


# --- a toy problem --------------------------------------------------------------------------------


def measure_toy(s: Setting, folder: Path) -> None:
    epochs = {"default": {}, "quick": {"epochs": 20}, "smoke": {"epochs": 5}}[s.budget.mode]
    runner.run(Config(dataset="spirals", **epochs), folder, progress=s.progress, diagnose=True,
               plots=True, log=lambda _: None)
    pages.write_run_page(folder)


def answer_toy(root: Path, rel: str) -> Answer:
    folder = root / rel
    summary = read_json(folder / SUMMARY)
    metrics = [m for m in read_jsonl(folder / METRICS) if m.get("test_accuracy") is not None]
    if not metrics:
        raise Unreadable(f"{folder / METRICS}: no epoch finished")
    config = run_config(folder)
    sizes = "-".join(map(str, (2, *config.hidden, 3)))
    said = [f"On 1,000 points of three interleaved spirals, a {sizes} network went from "
            f"{metrics[0]['test_accuracy']:.1%} test accuracy after epoch 1 to "
            f"{metrics[-1]['test_accuracy']:.1%} after epoch {metrics[-1]['epoch']}, in "
            f"{float(need(summary, 'train_seconds', folder / SUMMARY)):.2f} s of training."]
    found, healthy = diagnosis(folder)
    said.append("Its report: " + ("; ".join(found.values()) if found else f"{healthy}."))
    return Answer(tuple(said),
                  "A problem in the plane can be looked at: every input is a point, the "
                  "network's answer is a colour over the plane, each first-layer unit is a line "
                  "where it switches on, and a network of a few hundred parameters trains in "
                  "seconds. A bug shows as a boundary that does not follow the spirals. Start "
                  "there, then move to MNIST.",
                  (picture(root, rel, plane.DECISION_BOUNDARY, "The predicted class over the "
                           "plane, with the spirals' training points", "The decision "
                           "boundary."),
                   picture(root, rel, plane.BOUNDARY_EPOCHS, "The decision boundary at "
                           "initialisation and after some epochs", "The boundary forming.")),
                  (page_link(root, rel, "the run on the spirals"),))


# --- how long to overfit a few images -------------------------------------------------------------


def overfit_folder(n: int) -> str:
    return f"{n}-images"


def measure_overfit(s: Setting, folder: Path) -> None:
    for n in s.budget.overfit_sizes:
        sub = folder / overfit_folder(n)
        run_overfit(Config(dataset="mnist", data_dir=s.data_dir), n, sub, progress=s.progress,
                    log=lambda _: None)
        if n == max(s.budget.overfit_sizes):  # the picture the answer shows, as --plots draws it
            plotting.write_overfit_plots(sub, read_json(sub / OVERFIT))
        pages.write_run_page(sub)


def answer_overfit(root: Path, rel: str) -> Answer:
    subs = sorted((p for p in (root / rel).iterdir() if (p / OVERFIT).is_file()),
                  key=lambda p: int(p.name.split("-")[0]))
    if not subs:
        raise Unreadable(f"{root / rel} holds no {OVERFIT}")
    said, links, reached, seconds = [], [], True, 0.0
    for sub in subs:
        o = read_json(sub / OVERFIT)
        n, steps = o.get("examples"), o.get("steps")
        seconds += float(o.get("seconds", 0))
        if o.get("reached"):
            said.append(f"{n} MNIST images: 100% training accuracy after {steps} full-batch "
                        f"steps, {o.get('seconds', 0):.2f} s (compiling took "
                        f"{o.get('compile_seconds', 0):.2f} s more).")
        else:
            reached = False
            best = max(o.get("accuracy") or [0])
            said.append(f"{n} MNIST images: not memorised in {steps} steps "
                        f"({o.get('seconds', 0):.2f} s); best {best:.1%}.")
        links.append(page_link(root, f"{rel}/{sub.name}", f"--overfit {n}"))
    said.append(f"{seconds:.2f} s of steps for the {len(subs)} sets together: seconds, not "
                "minutes, on this machine. A network that cannot do this has a bug or a setting "
                "that stops it learning." if reached else
                f"This run did not memorise every set in {seconds:.2f} s of steps, which is not "
                "the usual outcome for the default network: the pages say where it stopped.")
    return Answer(tuple(said),
                  "A network with far more parameters than examples can memorise a few images "
                  "in a few dozen full-batch steps: it needs no generalisation, only room. That "
                  "makes it the first test of a new network or a new loss: if it cannot "
                  "memorise 10 images, look for the bug before training on 60,000.",
                  (picture(root, f"{rel}/{subs[-1].name}", plotting.OVERFIT_CURVES, "The loss and "
                           "training accuracy at every full-batch step of the largest set",
                           "The largest set, step by step."),),
                  tuple(links))


# --- why a run is slow ----------------------------------------------------------------------------

SPEED_JSON, SPEED_PNG = "speed.json", "speed.png"
MATMUL_N = {"default": 2048, "quick": 1024, "smoke": 512}


def measure_speed(s: Setting, folder: Path) -> None:
    config = Config(dataset="mnist", data_dir=s.data_dir, epochs=1,
                    train_subset=s.budget.speed_subset)
    before = compilation.cache_stats()
    runner.run(config, folder, progress=s.progress, log=lambda _: None)
    after = compilation.cache_stats()
    summary = read_json(folder / SUMMARY)
    n = MATMUL_N[s.budget.mode]
    train_n = s.datasets.num_train(config)
    sizes = model_sizes(config, 784)
    steps = steps_per_epoch(config, train_n)
    value = {"import_seconds": s.import_seconds, "matmul_n": n,
             "gflops": floor.matmul_gflops(n, reps=5), "sizes": sizes,
             "batch_size": config.batch_size, "steps": steps, "examples": train_n,
             "flops_per_epoch": floor.mlp_train_flops(sizes, config.batch_size) * steps,
             "cache_hits": after.get("hits", 0) - before.get("hits", 0),
             "cache_misses": after.get("misses", 0) - before.get("misses", 0),
             "cores": compilation.cpu_cores(), "machine": platform.machine()}
    write_json(folder / SPEED_JSON, value)
    draw_speed(folder / SPEED_PNG, value, summary)
    pages.write_run_page(folder)


def _parts(speed: dict, summary: dict) -> list[tuple[str, float | None]]:
    return [("import", speed.get("import_seconds")), ("data", summary.get("data_seconds")),
            ("compile", summary.get("compile_seconds")),
            ("train (1 epoch)", summary.get("train_seconds")),
            ("floor of that epoch", speed["flops_per_epoch"] / speed["gflops"] / 1e9)]


def draw_speed(path: Path, speed: dict, summary: dict) -> None:
    parts = [(k, v) for k, v in _parts(speed, summary) if v is not None]
    fig = figure(6.4, 2.8)
    ax = fig.add_subplot()
    ax.barh([k for k, _ in parts][::-1], [v for _, v in parts][::-1], color="#0072B2")
    ax.set_xlabel("seconds")
    ax.set_title("Where one run's time went, and the arithmetic floor of its epoch")
    save(fig, path)


def answer_speed(root: Path, rel: str) -> Answer:
    folder = root / rel
    speed, summary = read_json(folder / SPEED_JSON), read_json(folder / SUMMARY)
    epoch = float(need(summary, "train_seconds", folder / SUMMARY))
    flops, gflops = (float(need(speed, k, folder / SPEED_JSON))
                     for k in ("flops_per_epoch", "gflops"))
    floor_s = flops / gflops / 1e9
    sizes = "-".join(map(str, speed.get("sizes", [])))
    said = [f"On this machine ({speed.get('cores')} cores, {speed.get('machine')}), one epoch of "
            f"the default network ({sizes}, batch {speed.get('batch_size')}) over "
            f"{speed.get('examples'):,} images took {epoch:.3g} s. Its matrix products are "
            f"{flops / 1e9:.3g} GFLOP, which at the {gflops:.3g} GFLOP/s this machine's matrix "
            f"product reached ({speed.get('matmul_n')}^3, float32) take {floor_s:.3g} s: the "
            f"epoch took {epoch / floor_s:.2g} times that floor (its products ran at "
            f"{floor_s / epoch:.0%} of the machine's matrix-product speed)."]
    parts = _parts(speed, summary)[:4]
    known = [(k, v) for k, v in parts if v is not None]
    said.append("Where the run's time went: " + ", ".join(f"{k} {v:.2f} s" for k, v in known)
                + f" (compilation: {speed.get('cache_hits', 0)} program(s) loaded from the "
                f"compilation cache, {speed.get('cache_misses', 0)} compiled).")
    return Answer(tuple(said),
                  "An epoch is mostly matrix products, and the floor says how fast this machine "
                  "can do them. A hand-written network that is much slower than a few times the "
                  "floor spends its time elsewhere: a Python loop over examples or neurons "
                  "(each a tiny operation with a large overhead), a batch of one, float64, "
                  "autograd graphs rebuilt every step, or recompiling every step. Time the "
                  "parts (import, data, compile, train) before optimising any of them.",
                  (picture(root, rel, SPEED_PNG, "Bars: seconds of import, data loading, "
                           "compilation, one training epoch, and that epoch's arithmetic floor",
                           "Where the time went."),),
                  (page_link(root, rel, "the run that was timed"),))

