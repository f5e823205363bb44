"""Every run and sweep folder gets a page, from its files alone, and the page says what the files
say: the result line, where a failed run stopped and why, the report's findings with their
guide links, sentences whose numbers are the folder's own, every picture (or why one is
missing), and the commands. Anything read from a file is text on the page, never markup.

The folders are made once for the module by the commands themselves (`python -m jaxmlp.train`
and `python -m jaxmlp.sweep`, run in this process) from the committed MNIST sample: a finished
run with --diagnose --plots, a run that diverges, one interrupted after its first epoch, an
--overfit folder and a sweep. The last tests open the same pages in headless Chromium
(tests/_browser.py): every picture loaded and described, no console error, no request beyond
the folder, the folder's numbers in the rendered text, and no script run from a hostile file.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import pytest
from _browser import Browser, find_chromium

from jaxmlp import cli, pages, runner, stats
from jaxmlp.config import Config
from jaxmlp.pages import chart, facts, markdown
from jaxmlp.pages.guide import finding_link
from jaxmlp.plots import cli as plots_cli
from jaxmlp.rundir import REPORT_HTML, SUMMARY, result_lines
from jaxmlp.sweep.cli import main as sweep_main
from jaxmlp.train import build_parser
from jaxmlp.train import main as train_main

REPO = Path(__file__).resolve().parent.parent
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _train(argv: list[str]) -> int:
    try:
        return train_main([*argv, "--no-progress"])
    except SystemExit as e:  # divergence and interruption leave through cli.fail
        return int(e.code)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, mnist_sample_dir: Path) -> dict[str, Path]:
    """Folders written by the commands, each with its report.html."""
    root = tmp_path_factory.mktemp("pages")
    data = ["--dataset", "mnist", "--data-dir", str(mnist_sample_dir)]
    small = [*data, "--hidden", "16", "--batch-size", "50"]
    out = {name: root / name for name in ("ok", "diverged", "interrupted", "overfit", "sweep")}
    assert _train([*small, "--epochs", "2", "--diagnose", "--plots", "--out",
                   str(out["ok"])]) == 0
    # Linear outputs, squared error, plain SGD at lr 100: the loss leaves float32 in epoch 1.
    assert _train([*small, "--epochs", "2", "--output", "none", "--error", "mse", "--optimizer",
                   "sgd", "--learning-rate", "100", "--schedule", "constant", "--diagnose",
                   "--out", str(out["diverged"])]) == 3
    real = runner.train_epochs

    def one_epoch_then_ctrl_c(p, epoch_fn, eval_fn, recorder, end, **kw):
        real(p, epoch_fn, eval_fn, recorder, p.start_epoch + 1, **kw)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "train_epochs", one_epoch_then_ctrl_c)
        assert _train([*small, "--epochs", "3", "--out", str(out["interrupted"])]) == 130
    assert _train([*data, "--hidden", "16", "--overfit", "20", "--diagnose", "--plots", "--out",
                   str(out["overfit"])]) == 0
    assert sweep_main([*small, "--epochs", "1", "--grid", "learning_rate=0.001,0.01",
                       "--seeds", "2", "--no-progress", "--out", str(out["sweep"])]) == 0
    return out


def read(folder: Path, name: str):
    text = (folder / name).read_text()
    return ([json.loads(s) for s in text.splitlines() if s.strip()] if name.endswith(".jsonl")
            else json.loads(text))


def page_text(folder: Path) -> str:
    """The page as a reader sees its text: tags dropped, entities decoded."""
    body = (folder / REPORT_HTML).read_text()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


# --- the commands write the pages, from the files -------------------------------------------------


def test_every_folder_has_its_page(folders: dict[str, Path]) -> None:
    for name, folder in folders.items():
        assert (folder / REPORT_HTML).is_file(), name


def test_a_failed_run_records_how_it_ended(folders: dict[str, Path]) -> None:
    assert read(folders["ok"], SUMMARY)["status"] == "finished"
    diverged = read(folders["diverged"], SUMMARY)
    assert diverged["status"] == "diverged"
    assert diverged["message"].startswith("the loss became non-finite")
    interrupted = read(folders["interrupted"], SUMMARY)
    assert interrupted["status"] == "interrupted" and interrupted["epochs_done"] == 1
    assert f"--resume {folders['interrupted']}" in interrupted["message"]


def test_rebuilding_from_the_files_gives_the_same_page(folders: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """The page is a function of the folder's files: copied elsewhere and rebuilt, it is the
    same but for the folder's own name."""
    for name, folder in folders.items():
        copy = shutil.copytree(folder, tmp_path / name)
        (copy / REPORT_HTML).unlink()
        pages.write_folder_page(copy)
        rebuilt = (copy / REPORT_HTML).read_text().replace(str(copy), str(folder))
        assert rebuilt == (folder / REPORT_HTML).read_text(), name


def test_python_m_jaxmlp_plots_rebuilds_a_page(folders: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """From a sweep folder, and from a run that diverged before its first checkpoint (no
    plots to redraw: said, and the page written all the same)."""
    for name in ("sweep", "diverged"):
        copy = shutil.copytree(folders[name], tmp_path / name)
        (copy / REPORT_HTML).unlink()
        assert plots_cli.main([str(copy)]) == 0
        assert (copy / REPORT_HTML).is_file()
    assert "no plots redrawn: the run diverged in its first epoch" in capsys.readouterr().out


def test_the_finished_page_says_the_result_and_the_settings(folders: dict[str, Path]) -> None:
    folder = folders["ok"]
    text = page_text(folder)
    summary, metrics = read(folder, SUMMARY), read(folder, "metrics.jsonl")
    assert "; ".join(result_lines(summary)) in text
    for m in metrics:  # the epoch table: the folder's numbers, as the console formats them
        assert stats.pct(m["test_accuracy"]) in text and facts.num(m["train_loss"]) in text
    again = re.search(r"To run it again \(every setting that is not a default\): (.*?) Data",
                      text).group(1)
    assert again.startswith("python -m jaxmlp.train --dataset mnist --data-dir ")
    assert "--hidden 16 --batch-size 50 --epochs 2 --diagnose --plots" in again
    assert "--hidden 16 given" in text and "--activation relu default" in text


def test_the_command_to_run_it_again_gives_the_same_configuration(folders: dict[str, Path]
                                                                  ) -> None:
    record = read(folders["ok"], "config.json")
    run = pages.read_run(folders["ok"])
    again = pages.run_context(run)["again"].split()[3:]
    parsed = cli.dataclass_from_args(Config, build_parser().parse_args(again))
    assert parsed.to_dict() == Config.from_dict(record["config"]).to_dict()


def test_findings_link_to_their_section_of_the_guide(folders: dict[str, Path]) -> None:
    run = pages.read_run(folders["diverged"])
    found = pages.run_context(run)["findings"]
    assert found and found[0].code == "nonfinite"  # the report's rules on the folder's rows
    body = (folders["diverged"] / REPORT_HTML).read_text()
    link = finding_link("nonfinite", folders["diverged"])
    assert link.href and link.href.endswith("when-training-goes-wrong.md#the-loss-becomes-nan-"
                                            "or-inf")
    assert (folders["diverged"] / link.href.split("#")[0]).resolve().is_file()
    assert f'href="{link.href}"' in body
    assert found[0].message in page_text(folders["diverged"])


def test_a_diverged_page_leads_with_what_failed(folders: dict[str, Path]) -> None:
    folder = folders["diverged"]
    text = page_text(folder)
    bad = [m for m in read(folder, "metrics.jsonl") if m.get("diverged_at_step")][-1]
    headline = (f"This run diverged at epoch {bad['epoch']}, step {bad['diverged_at_step']}: "
                "the loss became NaN or inf")
    assert text.index(headline) < text.index("Learning curves")
    assert read(folder, SUMMARY)["message"] in text
    if bad["epoch"] == 1:  # no checkpoint: the page says why there are no pictures
        assert "there is no checkpoint to draw" in text


def test_a_folder_without_summary_json(folders: dict[str, Path], tmp_path: Path) -> None:
    """Killed before summary.json (or written before it said how the run ended): a run whose
    metrics end in a diverged epoch diverged; any other stopped early."""
    for name, says in (("diverged", "This run diverged at epoch"),
                       ("ok", "This run stopped before it finished")):
        copy = shutil.copytree(folders[name], tmp_path / name)
        (copy / SUMMARY).unlink()
        pages.write_run_page(copy)
        assert says in page_text(copy), name


def test_an_interrupted_and_an_overfit_page(folders: dict[str, Path]) -> None:
    text = page_text(folders["interrupted"])
    assert "This run was interrupted after 1 of 3 epochs" in text
    assert f"--resume {folders['interrupted']}" in text
    record = read(folders["overfit"], "overfit.json")
    text = page_text(folders["overfit"])
    steps = record["steps"]
    assert (f"Memorised 20 examples in {steps} steps" if record["reached"]
            else f"Did not memorise 20 examples in {steps} steps") in text
    assert "python -m jaxmlp.train --dataset mnist" in text and "--overfit 20" in text


def test_an_unfinished_sweep_says_so(folders: dict[str, Path], tmp_path: Path) -> None:
    """A sweep interrupted before its tables: sweep.json says so, its chunks say how far."""
    copy = shutil.copytree(folders["sweep"], tmp_path / "sweep")
    record = read(copy, "sweep.json")
    record["status"] = "interrupted"
    (copy / "sweep.json").write_text(json.dumps(record))
    for name in ("summary.md", "summary.csv", "curves.png", "final_accuracy.png"):
        (copy / name).unlink()
    chunks = sorted((copy / "chunks").glob("chunk-*.npz"))
    chunks[0].unlink()
    pages.write_sweep_page(copy)
    text = page_text(copy)
    assert "This sweep was interrupted: the same command again trains the rest" in text
    assert (f"{len(chunks) - 1} of {record['num_chunks']} chunks trained "
            f"({record['num_runs']} runs in all)") in text
    assert "No summary.md yet" in text


def test_the_sweep_page_shows_the_tables_and_findings(folders: dict[str, Path]) -> None:
    folder = folders["sweep"]
    text = page_text(folder)
    for row in csv.DictReader(open(folder / "summary.csv")):
        ci = stats.fmt_ci(float(row["test_acc_ci_lo"]), float(row["test_acc_ci_hi"]), 100, 2)
        assert f"{row['variant']} {stats.pct(float(row['test_acc_mean']))}" in text
        assert ci in text
    findings = (folder / "summary.md").read_text().split("## Findings", 1)[1]
    for line in findings.splitlines():
        if line.startswith("- "):
            assert line[2:] in text
    assert "python -m jaxmlp.sweep" not in text or "--grid learning_rate=0.001,0.01" in text


# --- generated sentences quote the folder's numbers ----------------------------------------------


def test_the_curve_sentences_quote_the_metrics(folders: dict[str, Path]) -> None:
    for name in ("ok", "diverged"):
        folder = folders[name]
        metrics = read(folder, "metrics.jsonl")
        steps = [v for m in metrics for v in m.get("step_loss") or []]
        done = [m for m in metrics if m.get("train_loss") is not None]
        loss, acc = pages.run_context(pages.read_run(folder))["charts"]
        first = next(v for v in steps if facts.finite(v))
        assert (f"from {first:.4g} at the first step to "
                f"{steps[-1]:.4g}" if facts.finite(steps[-1]) else "to n/a") in loss.description
        assert f"at the last of {len(steps)} steps" in loss.description
        bad = next((i for i, v in enumerate(steps) if not facts.finite(v)), None)
        assert ("non-finite" in loss.description) == (bad is not None)
        if bad is not None:
            assert f"non-finite at step {bad + 1} of the run" in loss.description
        if done:
            assert (f"test loss {done[-1]['test_loss']:.4g} after epoch {done[-1]['epoch']}"
                    in loss.description)
            assert (f"{stats.pct(done[-1]['test_accuracy'])} after epoch {done[-1]['epoch']}"
                    in acc.description)
        assert loss.description in page_text(folder)


# --- anything from a file is text ---------------------------------------------------------------


def hostile_run(folder: Path, out: Path) -> Path:
    """`folder` copied, with markup in every string config.json and summary.json hold."""
    copy = shutil.copytree(folder, out)
    record = read(copy, "config.json")
    record["command"] = ["jaxmlp/train.py", "--data-dir", HOSTILE]
    record["config"]["data_dir"] = HOSTILE
    record["dataset"]["source"] = HOSTILE
    record["versions"]["jax"] = HOSTILE
    (copy / "config.json").write_text(json.dumps(record))
    summary = read(copy, SUMMARY)
    summary["diagnosis"] = [{"code": "dead_units", "message": HOSTILE, "advice": HOSTILE}]
    (copy / SUMMARY).write_text(json.dumps(summary))
    with open(copy / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 9, "train_loss": HOSTILE, "step_loss": [HOSTILE, 1.0]})
                + '\n{"epoch": "' + HOSTILE.replace('"', "'") + '", "step_loss": [2]}\n{cut off')
    pages.write_run_page(copy)
    return copy


def hostile_sweep(folder: Path, out: Path) -> Path:
    copy = shutil.copytree(folder, out)
    record = read(copy, "sweep.json")
    record["spec"]["name"], record["spec"]["note"] = HOSTILE, HOSTILE
    (copy / "sweep.json").write_text(json.dumps(record))
    with open(copy / "summary.md", "a") as f:
        f.write(f"- {HOSTILE} `{HOSTILE}` **{HOSTILE}**\n\n| {HOSTILE} |\n|---|\n| x |\n")
    pages.write_sweep_page(copy)
    return copy


def test_markup_from_a_file_is_escaped(folders: dict[str, Path], tmp_path: Path) -> None:
    for copy in (hostile_run(folders["ok"], tmp_path / "run"),
                 hostile_sweep(folders["sweep"], tmp_path / "sweep")):
        body = (copy / REPORT_HTML).read_text()
        assert "<script" not in body.lower() and "<img src=x" not in body.lower()
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in body
        assert HOSTILE in page_text(copy)
    assert "could not be read" in page_text(tmp_path / "run") or "left out" in page_text(
        tmp_path / "run")


# --- the pieces ---------------------------------------------------------------------------------


def test_the_markdown_reader_keeps_text_as_text() -> None:
    blocks = markdown.parse("# t\n\npara `code` and **bold**\nmore\n\n- a\n  b\n- c\n\n"
                            "| h1 | h2 |\n|---|---|\n| 1 | `<b>` |\n\n## Findings\n\n- f\n")
    assert [b.kind for b in blocks] == ["heading", "paragraph", "list", "table", "heading",
                                        "list"]
    assert [(s.kind, s.text) for s in blocks[1].spans] == [
        ("text", "para "), ("code", "code"), ("text", " and "), ("strong", "bold"),
        ("text", " more")]
    assert [[s.text for s in item] for item in blocks[2].items] == [["a b"], ["c"]]
    assert blocks[3].rows[0][1][0] == markdown.Span("code", "<b>")
    assert list(markdown.sections(blocks)) == ["", "Findings"]


def test_the_chart_places_points_on_its_axes() -> None:
    c = chart.line_chart([chart.Series("s", [0, 1, 2, 3], [1.0, None, 10.0, 100.0])],
                         title="t", x_label="x", y_label="y", log_y=True)
    line = c.lines[0]
    assert len(line.segments) == 2  # the None leaves a gap
    (x0, y0), (_, y2), (x3, y3) = line.points
    assert (x0, y0) == (c.left, c.bottom) and (x3, y3) == (c.right, c.top)
    assert y2 == pytest.approx((c.top + c.bottom) / 2, abs=0.1)  # 10 halfway on a log axis
    assert [t.label for t in c.y_ticks] == ["1", "2", "5", "10", "20", "50", "100"]
    assert chart.linear_ticks(0.0, 100.0) == [0, 20, 40, 60, 80, 100]
    assert chart.log_ticks(1.17, 2.3) == [1.0, 2.0, 5.0]


def test_settings_become_flags_and_words() -> None:
    assert facts.flags({"hidden": (16, 16), "flatten": False, "learning_rate": 0.01}) == [
        "--hidden", "16", "16", "--no-flatten", "--learning-rate", "0.01"]
    assert facts.typed_command(["/x/jaxmlp/train.py", "--out", "a b"]) == (
        "python -m jaxmlp.train --out 'a b'")
    assert facts.typed_command(["/x/jaxmlp/sweep/__main__.py"]) == "python -m jaxmlp.sweep"
    assert facts.typed_command(["experiments/sweep_lr.py", "--quick"]) == (
        "python experiments/sweep_lr.py --quick")
    assert facts.typed_command(["/usr/bin/pytest", "-q"]) is None


# --- in a real browser ---------------------------------------------------------------------------

# Where the screenshots go: CI keeps test-output/ (or $JAXMLP_TEST_OUTPUT) after the run.
SCREENSHOTS = Path(os.environ.get("JAXMLP_TEST_OUTPUT", REPO / "test-output")) / "pages"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing, a skip here and a failure in CI."""
    executable = find_chromium()
    if executable is None:
        message = ("chromium not found: apt-get install chromium (Debian's package; .ci/run "
                   "installs it)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; in CI a missing browser is a failure, not a skip")
        pytest.skip(message)
    b = Browser(executable)
    yield b
    b.close()


def key_numbers(name: str, folder: Path) -> list[str]:
    """What the page of `folder` must show, taken from the folder's own files."""
    if name == "sweep":
        rows = list(csv.DictReader(open(folder / "summary.csv")))
        record = read(folder, "sweep.json")
        return [f"{record['num_runs']} runs, {record['num_variants']} variants x "
                f"{record['num_seeds']} seeds",
                *(f"{r['variant']} {stats.pct(float(r['test_acc_mean']))}" for r in rows)]
    if name == "overfit":
        return [f"in {read(folder, 'overfit.json')['steps']} steps"]
    summary, metrics = read(folder, SUMMARY), read(folder, "metrics.jsonl")
    found = [stats.pct(m["test_accuracy"]) for m in metrics if m.get("test_accuracy")]
    if summary["status"] == "finished":
        found += result_lines(summary)
    else:
        found.append(summary["message"])
    return found


def check_loaded(page, shot: Path) -> None:
    """What every page must be in a browser: pictures loaded, each with its words, no error,
    nothing from anywhere but the folder, something drawn."""
    assert page.images or page.figures, "a page with no picture at all"
    for image in page.images:
        assert image["complete"] and image["width"] > 0, f"not loaded: {image['src']}"
        assert (image["alt"] or "").strip(), f"no alt text: {image['src']}"
    assert all((label or "").strip() for label in page.figures), "a chart without its words"
    assert page.console_errors == []
    assert [u for u in page.requests if not u.startswith("file://")] == []
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(page.screenshot)
    with PIL.Image.open(shot) as im:
        extrema = im.convert("RGB").getextrema()
    assert any(lo != hi for lo, hi in extrema), "the screenshot is one flat colour"


@pytest.mark.parametrize("name", ["ok", "diverged", "interrupted", "overfit", "sweep"])
def test_the_page_in_a_browser(name: str, folders: dict[str, Path], browser: Browser) -> None:
    """Each page opened in headless Chromium; its screenshot is written to
    test-output/pages/<name>.png (or under $JAXMLP_TEST_OUTPUT), where CI keeps it."""
    page = browser.open(folders[name] / REPORT_HTML)
    check_loaded(page, SCREENSHOTS / f"{name}.png")
    text = re.sub(r"\s+", " ", page.text)
    for number in key_numbers(name, folders[name]):
        assert number in text, (name, number)
    assert page.scripts == 0 and page.handlers == 0


def test_a_hostile_folder_runs_no_script(folders: dict[str, Path], browser: Browser,
                                         tmp_path: Path) -> None:
    """Markup in config.json, summary.json, metrics.jsonl, sweep.json and summary.md shows as
    text: no script element, no event handler, nothing run."""
    for copy in (hostile_run(folders["ok"], tmp_path / "run"),
                 hostile_sweep(folders["sweep"], tmp_path / "sweep")):
        page = browser.open(copy / REPORT_HTML)
        assert (page.scripts, page.handlers, page.pwned) == (0, 0, None)
        assert HOSTILE in page.text
        assert page.console_errors == []


def test_the_browser_checks_can_fail(browser: Browser, tmp_path: Path) -> None:
    """A page with every fault the checks look for is caught by each of them."""
    shutil.copy(next(folders_png(tmp_path)), tmp_path / "ok.png")
    (tmp_path / "bad.html").write_text(
        "<!doctype html><title>bad</title><img src='ok.png'><img src='gone.png' alt='gone'>"
        "<img src='http://127.0.0.1:9/x.png' alt='remote'>"
        "<script>console.error('boom'); window.__pwned = 'yes'</script>")
    page = browser.open(tmp_path / "bad.html")
    assert [i["width"] > 0 for i in page.images] == [True, False, False]
    assert page.images[0]["alt"] is None
    assert any("boom" in e for e in page.console_errors)
    assert any("gone.png" in e for e in page.console_errors)
    assert "http://127.0.0.1:9/x.png" in page.requests
    assert (page.scripts, page.pwned) == (1, "yes")


def folders_png(tmp_path: Path) -> Iterator[Path]:
    """A small real PNG for the fault page."""
    path = tmp_path / "made.png"
    PIL.Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    yield path
