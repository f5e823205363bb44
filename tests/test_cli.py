"""`python -m jaxmlp.train` end to end: a small real run, bad settings, the offline fallback;
and the command line every command shares (jaxmlp/cli.py): one-line errors naming the flag,
did-you-mean, underscore spellings, --lr, defaults said once in --help."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from jaxmlp import cli
from jaxmlp.config import Config, ConfigError, check_against_data, validate
from jaxmlp.data.__main__ import main as data_main
from jaxmlp.gradcheck.cli import main as gradcheck_main
from jaxmlp.plots.cli import main as plots_main
from jaxmlp.sweep.cli import build_parser as sweep_parser
from jaxmlp.sweep.cli import main as sweep_main
from jaxmlp.train import build_parser as train_parser
from jaxmlp.train import main

SMALL = ["--hidden", "16", "--epochs", "1", "--train-subset", "1000", "--batch-size", "50",
         "--schedule", "constant", "--learning-rate", "0.01",
         "--no-progress"]


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a download server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture()
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment in which MNIST cannot be had: no data folder named, an empty cache and
    tfds dir, and a mirror that refuses connections (so no test ever touches the network)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "JAXMLP_DATA_DIR": "",  # empty is unset: a named folder would be the only place looked
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TFDS_DATA_DIR": str(empty),
        "JAXMLP_MIRRORS": _closed_port_url(),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "jaxmlp.train", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=300)


def test_cli_trains_and_records_everything(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "run"
    proc = _cli([*SMALL, "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["train_subset"] == 1000
    assert record["dataset"]["used"] == "mnist" and record["dataset"]["fallback"] is None
    (row,) = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["epoch"] == 1 and 0.5 < row["test_accuracy"] <= 1.0
    assert (out / "checkpoint.npz").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] == row["test_accuracy"]


def test_cli_resume_continues_a_cut_run(tmp_path: Path, mnist_dir: Path) -> None:
    from jaxmlp.config import Config
    from jaxmlp.train import run

    config = Config(dataset="mnist", data_dir=str(mnist_dir), hidden=(16,), epochs=2,
                    train_subset=1000, batch_size=100)
    run(config, tmp_path / "cut", progress=False, max_epochs=1, log=lambda _: None)
    proc = _cli(["--resume", str(tmp_path / "cut"), "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "2/2 epochs" in proc.stdout
    rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


BAD_SETTINGS = [
    (["--hidden", "0"], "--hidden"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--learning-rate", "-0.1"], "--learning-rate"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--optimizer", "adamw"], "--optimizer"),
    (["--activation", "swish"], "--activation"),
    (["--input-scale", "half"], "--input-scale"),
    (["--targets", "integer"], "--targets integer"),
    (["--no-flatten"], "--no-flatten"),
    (["--batch-size", "5000", "--train-subset", "1000"], "--batch-size 5000"),
    (["--train-subset", "70000"], "--train-subset"),
]


@pytest.mark.parametrize(("args", "named"), BAD_SETTINGS, ids=[" ".join(a) for a, _ in
                                                                 BAD_SETTINGS])
def test_bad_settings_are_refused_before_any_work(
    args: list[str], named: str, tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out),
              "--no-progress"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert err.count("\n") == 1  # one message, one line
    assert not out.exists()  # nothing written


def test_user_errors_print_no_traceback(tmp_path: Path) -> None:
    proc = _cli(["--learning-rate", "-1", "--out", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--learning-rate" in proc.stderr


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path)])
    assert e.value.code != 0 and "config.json" in capsys.readouterr().err


def test_resume_refuses_conflicting_flags(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path), "--epochs", "5"])
    assert e.value.code != 0 and "drop --epochs" in capsys.readouterr().err


def test_offline_fallback_to_digits_is_said_and_recorded(tmp_path: Path, offline_env) -> None:
    out = tmp_path / "run"
    # Exactly the out-of-the-box command, on a machine where MNIST cannot be had.
    proc = _cli(["--no-progress", "--out", str(out)], env=offline_env)
    assert proc.returncode == 0, proc.stderr
    assert "MNIST could not be found" in proc.stdout and "digits" in proc.stdout
    record = json.loads((out / "config.json").read_text())
    assert record["dataset"]["requested"] is None
    assert record["dataset"]["used"] == "digits"
    assert "MNIST could not be found" in record["dataset"]["fallback"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits" and summary["test_accuracy"] > 0.9


def test_named_dataset_that_cannot_be_had_is_an_error(tmp_path: Path, offline_env) -> None:
    proc = _cli(["--dataset", "mnist", "--no-progress", "--out", str(tmp_path / "run")],
                env=offline_env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "mnist" in proc.stderr.lower()
    assert not (tmp_path / "run").exists()


def test_help_explains_every_flag() -> None:
    proc = _cli(["--help"])
    assert proc.returncode == 0
    for flag in ("--input-scale", "--class-reduction", "--example-reduction", "--output",
                 "--schedule", "--resume", "--out", "--init"):
        assert flag in proc.stdout


# --- the shared command line (jaxmlp/cli.py) ------------------------------------------------------

# Cheap settings, so that a value validation ever lets through costs seconds, not a real run
# (none that --overfit sets itself). The flag under test comes after them, so it wins.
TINY = ["--dataset", "digits", "--hidden", "8", "--no-progress"]

# Every numeric flag of train: the values it refuses, and the ones it takes that sit on the edge
# (zero is a valid weight decay, momentum, warmup or seed; not a valid size or rate). nan and
# inf are text to a whole-number flag, and floats to argparse's type=float, hence both checked.
# The third column is what the flag needs beside it to be used at all.
NUMERIC_FLAGS: list[tuple[str, list[str], list[str], list[str]]] = [
    ("--train-subset", ["0", "-5", "nan", "inf", "abc", "1.5"], ["1"], []),
    ("--hidden", ["0", "-5", "nan", "inf", "abc"], ["1"], []),
    ("--batch-size", ["0", "-5", "nan", "inf", "abc", "1.5"], ["1"], []),
    ("--epochs", ["0", "-5", "nan", "inf", "abc"], ["1"], []),
    ("--seed", ["-1", "nan", "inf", "abc", "4294967296", "18446744073709551616"],
     ["0", "4294967295"], []),
    ("--learning-rate", ["0", "-0.1", "-1e-3", "nan", "inf", "-inf", "abc"], ["1e-9"], []),
    ("--init-scale", ["0", "-1", "nan", "inf", "-inf", "abc"], ["1e-9"], []),
    ("--momentum", ["-0.1", "1", "1.5", "nan", "inf", "abc"], ["0", "0.999"], []),
    ("--weight-decay", ["-0.1", "-1e-3", "nan", "inf", "-inf", "abc"], ["0"], []),
    ("--warmup-epochs", ["-0.5", "nan", "inf", "abc"], ["0"], []),
    ("--overfit", ["0", "-5", "nan", "inf", "abc"], [], []),
    ("--overfit-steps", ["0", "-5", "nan", "inf", "abc"], [], ["--overfit", "10"]),
]
BAD_NUMBERS = [(flag, value, extra) for flag, bad, _, extra in NUMERIC_FLAGS for value in bad]
GOOD_EDGES = [(flag, value, extra) for flag, _, good, extra in NUMERIC_FLAGS for value in good]


def _refusal(command: Callable[[list[str]], int], argv: list[str],
             capsys: pytest.CaptureFixture) -> tuple[int | str | None, str]:
    """Run a command's main in-process; its exit code and stderr, which must hold one line."""
    with pytest.raises(SystemExit) as exit_info:
        command(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return exit_info.value.code, err


@pytest.mark.parametrize(("flag", "value", "extra"), BAD_NUMBERS,
                         ids=[f"{f} {v}" for f, v, _ in BAD_NUMBERS])
def test_every_bad_number_is_one_line_naming_the_flag(
    flag: str, value: str, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never"
    code, err = _refusal(main, [*TINY, *extra, flag, value, "--out", str(out)], capsys)
    assert code == 2
    assert flag in err and "must be" in err  # the flag, and what it takes
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value", "extra"), GOOD_EDGES,
                         ids=[f"{f} {v}" for f, v, _ in GOOD_EDGES])
def test_edge_values_the_table_calls_valid_are_taken(flag: str, value: str,
                                                     extra: list[str]) -> None:
    config = validate(cli.dataclass_from_args(Config, train_parser().parse_args(
        [*TINY, *extra, flag, value])))
    got = getattr(config, flag[2:].replace("-", "_"))
    assert (got[0] if flag == "--hidden" else got) == float(value)


@pytest.mark.parametrize("argv", [["--learning-rate", "nan"], ["--lr", "-inf"],
                                  ["--batch-size", "abc"], ["--momentum", "1"],
                                  ["--hidden", "0"]], ids=" ".join)
def test_sweep_refuses_bad_numbers_of_its_base_configuration(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never"
    # --cpu-devices 1: one CPU device, JAX's own default, for the tests after this one.
    code, err = _refusal(sweep_main, [*argv, "--out", str(out), "--cpu-devices", "1"], capsys)
    flag = {"--lr": "--learning-rate"}.get(argv[0], argv[0])
    assert code == 2 and flag in err and "must be" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-3", "nan", "abc"])
def test_gradcheck_refuses_bad_example_counts(value: str, capsys: pytest.CaptureFixture) -> None:
    code, err = _refusal(gradcheck_main, ["--examples", value], capsys)
    assert code == 2 and "--examples must be" in err


TYPOS = [
    (main, ["--learnig-rate", "0.1"], "unknown flag --learnig-rate; did you mean --learning-rate?"),
    (main, ["--learnig_rate=0.1"], "unknown flag --learnig_rate; did you mean --learning-rate?"),
    (main, ["--no-progrss"], "unknown flag --no-progrss; did you mean --no-progress?"),
    (main, ["--zzzzzz"], "unknown flag --zzzzzz; python -m jaxmlp.train --help lists the flags"),
    # Before sweep's own complaint that --out is missing: the typo is the news.
    (sweep_main, ["--batch-sise", "8"], "unknown flag --batch-sise; did you mean --batch-size?"),
    (gradcheck_main, ["--exampels", "3"], "unknown flag --exampels; did you mean --examples?"),
    (plots_main, ["run", "--hlep"], "unknown flag --hlep; did you mean --help?"),
]


@pytest.mark.parametrize(("command", "argv", "line"), TYPOS,
                         ids=[f"{c.__module__} {' '.join(a)}" for c, a, _ in TYPOS])
def test_a_mistyped_flag_gets_one_line_with_the_closest_flag(
    command: Callable[[list[str]], int], argv: list[str], line: str,
    capsys: pytest.CaptureFixture
) -> None:
    code, err = _refusal(command, argv, capsys)
    assert code == 2 and err == f"error: {line}\n"


def test_a_typo_through_a_real_process_is_one_line(tmp_path: Path) -> None:
    proc = _cli(["--learnig-rate", "0.1", "--out", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown flag --learnig-rate; did you mean --learning-rate?\n"
    assert not (tmp_path / "x").exists()


def test_a_bad_number_through_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    proc = _cli(["--seed", "18446744073709551616", *TINY, "--out", str(tmp_path / "x")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --seed must be") and proc.stderr.count("\n") == 1


def _config(argv: list[str]) -> Config:
    return cli.dataclass_from_args(Config, train_parser().parse_args(argv))


def test_underscore_spellings_mean_the_same_flags() -> None:
    hyphens = ["--learning-rate", "0.05", "--batch-size=64", "--no-flatten", "--train-subset",
               "100", "--init-scale=-2", "--class-reduction", "mean", "--hidden", "4", "4"]
    underscores = [re.sub(r"^--[a-z_-]+", lambda m: "--" + m[0][2:].replace("-", "_"),
                          a) for a in hyphens]
    assert "--no_flatten" in underscores and "--batch_size=64" in underscores
    assert _config(underscores) == _config(hyphens) != Config()


@pytest.mark.parametrize("build", [train_parser, sweep_parser], ids=["train", "sweep"])
def test_every_generated_flag_takes_its_underscore_spelling(build) -> None:
    parser = build()
    options = parser._option_string_actions
    names = {f.name for f in dataclasses.fields(Config)}
    generated = [o for o, a in options.items() if a.dest in names and "-" in o[2:]]
    assert "--no-flatten" in generated and "--warmup-epochs" in generated
    for option in generated:
        spelled, unknown = cli.spell_flags([option.replace("-", "_").replace("__", "--", 1)],
                                           options)
        assert (spelled, unknown) == ([option], []), option


def test_underscore_spellings_count_as_given_for_resume(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path), "--batch_size", "8", "--lr", "0.1"])
    assert e.value.code != 0
    assert "drop --batch-size, --learning-rate" in capsys.readouterr().err


def test_lr_is_learning_rate_and_help_says_so() -> None:
    assert _config(["--lr", "0.02"]) == _config(["--learning-rate", "0.02"]) != Config()
    assert _config(["--lr=-1e-3"]).learning_rate == -1e-3  # validation refuses it, with its flag
    # A prefix shared by both spellings still means the one flag, as before --lr existed.
    assert _config(["--l", "0.03"]).learning_rate == 0.03
    assert "--learning-rate LEARNING_RATE, --lr LEARNING_RATE" in train_parser().format_help()


def _help_entries(parser) -> dict[str, str]:
    """Each flag's paragraph of --help, on one line, by its first option string."""
    text = parser.format_help()
    entries = re.split(r"\n(?=  -)", text.split("\n\n", 2)[-1])
    return {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries if e.startswith("  -")}


@pytest.mark.parametrize("build", [train_parser, sweep_parser], ids=["train", "sweep"])
def test_help_says_each_default_once_in_words(build, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    entries = _help_entries(build())
    fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(Config)}
    assert fields <= set(entries)
    for flag in fields:
        assert entries[flag].count("(default:") == 1, entries[flag]
    assert "(default: None)" not in " ".join(entries.values())
    assert entries["--train-subset"].endswith("(default: all of them)")
    assert entries["--dataset"].endswith("(default: mnist, falling back to digits)")
    assert entries["--hidden"].endswith("(default: 512 512)")
    assert entries["--flatten"].endswith("(default: on)")


def test_integer_targets_say_exactly_what_to_add() -> None:
    for typed in ([], ["--error", "mse"], ["--output", "none"]):
        with pytest.raises(ConfigError, match="--targets integer") as e:
            validate(_config(["--targets", "integer", *typed]))
        (added,) = re.findall(r"add ((?:--\S+ \S+ ?)+) \(", str(e.value))
        assert not set(typed) & set(added.split())  # only what is still missing
        validate(_config(["--targets", "integer", *typed, *added.split()]))  # and it is enough


def test_a_small_subset_names_a_batch_size_that_works() -> None:
    config = Config(train_subset=100)  # against the default --batch-size 128
    with pytest.raises(ConfigError, match="--batch-size") as e:
        check_against_data(config, 60000)
    (size,) = re.findall(r"Use --batch-size (\d+)", str(e.value))
    check_against_data(dataclasses.replace(config, batch_size=int(size)), 60000)


def test_a_mistyped_choice_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean adam\\?"):
        validate(Config(optimizer="adamw"))


# ----------------------------------------------------------------------------------------------
# Every path-taking flag: missing, the wrong kind, not writable, holding something else
# ----------------------------------------------------------------------------------------------


def _path_cases(root: Path, sample: Path) -> list[tuple[Callable, list[str], str]]:
    """(command's main, argv, what the one error line must say). `root` holds `afile` (a file),
    `run/` (a finished run) and `sweep/` (a finished sweep); nothing exists under `missing`.
    A folder under a file stands in for one that cannot be written (tests run as root)."""
    data = ["--dataset", "mnist", "--data-dir", str(sample), "--no-progress"]
    afile, run, missing = root / "afile", root / "run", root / "missing"
    return [
        (main, [*data, "--out", str(afile)], f"--out {afile} is a file, not a folder"),
        (main, [*data, "--out", str(afile / "sub")], f"cannot be created: {afile} is a file"),
        (main, [*data, "--out", str(run)], f"--out {run} already holds a run"),
        (main, [*data, "--overfit", "10", "--out", str(afile)], f"--out {afile} is a file"),
        (main, ["--resume", str(missing)], "no config.json there"),
        (main, ["--resume", str(afile)], "no config.json there"),
        (main, ["--resume", str(root)], "no config.json there"),
        (main, ["--dataset", "mnist", "--data-dir", str(missing)], "no such folder"),
        (main, ["--dataset", "mnist", "--data-dir", str(afile)], "no such folder"),
        (main, ["--data-dir", str(root / "sweep")], "no IDX files in it"),
        (sweep_main, [*data, "--grid", "learning_rate=0.1", "--out", str(afile)],
         f"--out {afile} is a file, not a folder"),
        (sweep_main, [*data, "--grid", "learning_rate=0.1", "--out", str(afile / "x")],
         f"cannot be created: {afile} is a file"),
        (sweep_main, [*data, "--grid", "learning_rate=0.1", "--out", str(run)],
         "is not a sweep folder"),
        (sweep_main, [*data, "--grid", "learning_rate=0.2", "--out", str(root / "sweep")],
         "holds a different sweep"),
        (sweep_main, ["--spec", str(missing), "--out", str(root / "new")], str(missing)),
        (sweep_main, ["--spec", str(afile), "--out", str(root / "new")], str(afile)),
        (gradcheck_main, ["--data-dir", str(missing)], "no such folder"),
        (plots_main, [str(missing)], "no config.json there"),
        (plots_main, [str(afile)], "no config.json there"),
        (data_main, ["fetch", "mnist", "--data-dir", str(missing)], "no such folder"),
    ]


@pytest.fixture(scope="module")
def path_root(tmp_path_factory: pytest.TempPathFactory, mnist_sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("paths")
    (root / "afile").write_text("the user's own file\n")
    assert main(["--dataset", "mnist", "--data-dir", str(mnist_sample_dir), "--hidden", "8",
                 "--epochs", "1", "--no-progress", "--out", str(root / "run")]) == 0
    assert sweep_main(["--dataset", "mnist", "--data-dir", str(mnist_sample_dir), "--hidden",
                       "8", "--epochs", "1", "--grid", "learning_rate=0.1", "--seeds", "1",
                       "--no-progress", "--no-plots", "--out", str(root / "sweep")]) == 0
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", range(20))
def test_every_bad_path_is_one_line_and_changes_nothing(
    case: int, path_root: Path, mnist_sample_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    command, argv, says = _path_cases(path_root, mnist_sample_dir)[case]
    before = _snapshot(path_root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        command(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, (argv, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert says in err, (says, err)
    assert _snapshot(path_root) == before  # nothing already written was touched
    assert not (path_root / "new").exists()


def test_the_path_table_has_every_case(tmp_path: Path) -> None:
    assert len(_path_cases(tmp_path, tmp_path)) == 20  # the parametrize range above


def test_an_experiment_gets_the_same_one_line_errors(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "experiments" / "sweep_lr.py"
    afile = tmp_path / "afile"
    afile.write_text("kept\n")
    for argv, says in ((["--data-dir", str(tmp_path / "missing")], "no such folder"),
                       (["--out", str(afile)], "is a file, not a folder")):
        proc = subprocess.run([sys.executable, str(script), "--smoke", *argv],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert afile.read_text() == "kept\n"
