"""`python -m jaxmlp.notes` at its smoke budget (hidden `--smoke`, as the experiments have), on
the committed MNIST sample, run once for the module in this process: every question of the
notes has an answer with sentences, a picture, the command that measures it again and links to
its folders' pages; the sentences follow the numbers of those folders (each number rewritten,
the page rebuilt, every sentence changes); `--only` measures one answer again and leaves the
others' files alone; a measurement that fails puts the earlier answer back; bad input is one
line; and the page opens in headless Chromium with every picture loaded, no console error and
nothing fetched but files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from test_pages import SCREENSHOTS, browser, check_loaded  # noqa: F401 (the fixture)

from jaxmlp import notes
from jaxmlp.config import ConfigError
from jaxmlp.notes import run as notes_run
from jaxmlp.notes.budget import BUDGETS, Setting
from jaxmlp.notes.cli import main
from jaxmlp.notes.questions import Question
from jaxmlp.rundir import REPORT_HTML


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, mnist_sample_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("notes") / "notes"
    assert main(["--smoke", "--out", str(out), "--data-dir", str(mnist_sample_dir),
                 "--no-progress"]) == 0
    return out


def entries(out: Path) -> dict[str, notes.page.Entry]:
    return {e.name: e for e in notes.notes_context(out)["entries"]}


# --- every question answered -----------------------------------------------------------------


def test_every_question_has_an_answer(folder: Path) -> None:
    """An answer for each question: sentences with numbers in them, at least one picture that
    is there (with its words), a link to a file of the folder, and the command that measures
    just that question again."""
    found = entries(folder)
    assert list(found) == list(notes.NAMES)
    page = (folder / notes.INDEX_HTML).read_text()
    for name, e in found.items():
        assert e.answer is not None, (name, e.note)
        assert e.answer.sentences and all(any(c.isdigit() for c in s)
                                          for s in e.answer.sentences), name
        assert e.answer.why
        shown = [p for p in e.answer.pictures if not p.missing]
        assert shown, f"{name}: no picture"
        for p in shown:
            assert (folder / p.name).is_file() and p.alt.strip(), (name, p.name)
        assert e.answer.links, name
        for link in e.answer.links:
            assert (folder / link.href).exists(), (name, link.href)
        assert f"--only {name}" in e.command and "--smoke" in e.command
        assert e.mode == "smoke" and e.budget_note, name
        assert f'id="{name}"' in page and e.quotes[0].text.split(".")[0] in page
    # The measurement folders are normal run and sweep folders, each with its own page.
    assert (folder / "flatten" / "sweep.json").is_file()
    assert (folder / "plateau" / "config.json").is_file()
    for sub in ("flatten", "plateau", "all_zero/tiny-init", "toy", "speed"):
        assert (folder / sub / REPORT_HTML).is_file(), sub


def test_the_smoke_budget_is_said_on_the_page(folder: Path) -> None:
    page = (folder / notes.INDEX_HTML).read_text()
    assert "A smoke budget: these numbers are not the answer" in page
    assert page.count("This answer was measured at the smoke budget") == len(notes.NAMES)


# --- the sentences are the folders' numbers ---------------------------------------------------


def _perturb(value: object) -> object:
    """Every float of a JSON value rewritten (x -> 1.37 x + 0.011); ints, text and booleans
    (counts, names, flags) kept."""
    if isinstance(value, float):
        return value * 1.37 + 0.011
    if isinstance(value, list):
        return [_perturb(v) for v in value]
    if isinstance(value, dict):
        return {k: v if k == "config" else _perturb(v) for k, v in value.items()}
    return value


def _perturb_csv(text: str) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for k, v in row.items():
            if k == "diverged":  # a count the sentences quote: flip it
                row[k] = str(1 - int(v))
            elif any(c in v for c in ".e") and v.replace(".", "").replace("e", "").replace(
                    "-", "").isdigit():
                row[k] = repr(float(v) * 1.37 + 0.011)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def perturb_folder(out: Path) -> int:
    """Rewrite the numbers of every file an answer is read from (the measurement folders'
    JSON, JSON-lines and runs.csv files); returns how many files were rewritten."""
    rewritten = 0
    for path in sorted(out.rglob("*")):
        if path.parent == out or "case" in path.relative_to(out).parts[:-1] \
                or "chunks" in path.parts:
            continue
        if path.suffix == ".json":
            path.write_text(json.dumps(_perturb(json.loads(path.read_text()))))
        elif path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(_perturb(json.loads(line))) + "\n"
                                    for line in path.read_text().splitlines() if line.strip()))
        elif path.name == "runs.csv":
            path.write_text(_perturb_csv(path.read_text()))
        else:
            continue
        rewritten += 1
    return rewritten


def test_the_sentences_follow_the_numbers(folder: Path, tmp_path: Path) -> None:
    """Change every number of the folders, rebuild the page from them (--page-only, which
    trains nothing): every sentence of every answer changes. A sentence that stayed the same
    was not generated from the numbers."""
    copy = tmp_path / "notes"
    shutil.copytree(folder, copy)
    before = {n: e.answer.sentences for n, e in entries(copy).items()}
    assert perturb_folder(copy) > 20
    assert main(["--out", str(copy), "--page-only"]) == 0
    after = entries(copy)
    page = (copy / notes.INDEX_HTML).read_text()
    for name, e in after.items():
        assert e.answer is not None, (name, e.note)
        unchanged = [s for s in e.answer.sentences if s in before[name]]
        assert not unchanged, f"{name}: sentences that did not follow the numbers: {unchanged}"
    assert all(s.split(" ")[0] in page for e in after.values() for s in e.answer.sentences)


def test_the_page_says_what_a_cold_cache_added() -> None:
    """Between a session that compiled its programs and a later one of the same measurements
    that loaded them, the page says the difference; one session alone says what it did."""
    cold = {"mode": "quick", "answers": ["flatten", "step"], "started": "then",
            "wall_seconds": 97.5, "cache_hits": 14, "cache_misses": 263}
    warm = {**cold, "started": "now", "wall_seconds": 38.0, "cache_hits": 277,
            "cache_misses": 0}
    other = {**cold, "answers": ["flatten"], "cache_misses": 0}
    said = notes.page.cache_words([cold, warm])
    assert "compiled 0 programs and loaded 277" in said
    assert "a cold cache added 60 s on this machine" in said
    assert "cold cache added" not in notes.page.cache_words([cold, other])
    assert "run it again" in notes.page.cache_words([cold])
    assert notes.page.cache_words([]) == ""


# --- one answer again, and failures ----------------------------------------------------------


def test_only_measures_one_answer_and_keeps_the_others(folder: Path, tmp_path: Path,
                                                       mnist_sample_dir: Path) -> None:
    copy = tmp_path / "notes"
    shutil.copytree(folder, copy)
    stamps = {p: p.stat().st_mtime_ns for p in copy.rglob("*")
              if p.is_file() and p.parts[len(copy.parts)] not in ("backprop", "index.html",
                                                                    "notes.json")}
    check = copy / "backprop" / "check.json"
    check.write_text("{}")  # the earlier answer's file, replaced by the new measurement
    assert main(["--out", str(copy), "--only", "backprop", "--smoke", "--data-dir",
                 str(mnist_sample_dir), "--no-progress"]) == 0
    assert json.loads(check.read_text())["quantities"] > 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    found = entries(copy)
    assert all(e.answer is not None for e in found.values())
    sessions = json.loads((copy / notes.NOTES_JSON).read_text())["sessions"]
    assert sessions[-1]["answers"] == ["backprop"] and len(sessions) == 2


def test_a_failed_measurement_puts_the_earlier_answer_back(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "earlier.txt").write_text("the earlier answer")

    def fails(setting: Setting, folder: Path) -> None:
        (folder / "half.txt").write_text("half written")
        raise ConfigError("the measurement failed")

    q = Question("q", "?", (), "", fails, lambda root, rel: None, ("", ""))
    with pytest.raises(ConfigError):
        notes_run.measure(q, Setting(BUDGETS["smoke"], None, False), tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["earlier.txt", "q"]


@pytest.mark.parametrize("argv, words", [
    (["--only", "flatten", "nope"], "--only nope: no such question; choose from flatten"),
    (["--page-only"], "--page-only rewrites the page of an existing notes folder"),
])
def test_bad_flags_are_one_line(argv: list[str], words: str,
                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words}") and err.count("\n") == 1, err


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine.txt").write_text("mine")
    (tmp_path / "a-file").write_text("a file")
    for out, words in ((tmp_path, "holds files that are not a notes folder's (a-file, "
                                  "mine.txt)"),
                       (tmp_path / "a-file", "is a file, not a folder")):
        with pytest.raises(SystemExit) as e:
            main(["--out", str(out), "--only", "backprop"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "mine.txt"]
    assert (tmp_path / "mine.txt").read_text() == "mine"


# --- in a real browser ---------------------------------------------------------------------------


def test_the_notes_page_in_a_browser(folder: Path, browser) -> None:  # noqa: F811
    """index.html in headless Chromium: every picture loaded and described, no console error,
    only file:// requests, every question's title and first sentence in the rendered text; the
    screenshot is test-output/pages/notes.png (or under $JAXMLP_TEST_OUTPUT)."""
    page = browser.open(folder / notes.INDEX_HTML)
    check_loaded(page, SCREENSHOTS / "notes.png")
    assert len(page.images) >= len(notes.NAMES)
    text = " ".join(page.text.split())
    for e in entries(folder).values():
        assert e.title in text
        assert " ".join(e.answer.sentences[0].split()) in text
    assert page.scripts == 0 and page.handlers == 0
