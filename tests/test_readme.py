"""The examples of README.md and the guide (docs/*.md) stay true: every `python -m jaxmlp.train`
command they show parses and validates with today's flags, has a declared outcome (exit status
and the phrase that names what went wrong) that every block showing it shows, and still comes
out that way when run on a tenth of MNIST; the script that reruns them covers every one of
those files and rewrites exactly the output between a command and its exit status."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from jaxmlp import cli
from jaxmlp.config import Config, validate
from jaxmlp.train import build_parser, main

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# (file, the command's arguments) for every example, in every file that shows one.
EXAMPLES = [(path, args) for path in DOCUMENTS
            for args in re.findall(r"^\$ python -m jaxmlp\.train(.*)$", path.read_text(),
                                   flags=re.MULTILINE)]
COMMANDS = sorted({args for _, args in EXAMPLES})


def _script():
    spec = importlib.util.spec_from_file_location("readme_examples",
                                                  REPO / "scripts" / "readme_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What each README example must show: its exit status and the phrase of the finding (or result
# line) it is there to teach. Settings were chosen so that the outcome is the same on seeds 0, 1
# and 2, and on a tenth of the data: outcomes on a knife's edge would teach the wrong thing on
# another CPU.
OUTCOMES = {
    "": (0, "mnist: test accuracy"),
    " --seed 1": (0, "mnist: test accuracy"),
    " --seed 2": (0, "mnist: test accuracy"),
    " --dataset moons": (0, "moons: test accuracy"),
    " --dataset circles": (0, "circles: test accuracy"),
    " --dataset xor": (0, "xor: test accuracy"),
    " --dataset blobs": (0, "blobs: test accuracy"),
    " --dataset spirals --plots": (0, "spirals: test accuracy"),
    " --output none --error mse --optimizer sgd --learning-rate 0.5 --schedule constant "
    "--diagnose --plots": (3, "the loss became non-finite"),
    " --input-scale raw --epochs 1 --diagnose": (0, "layer 1's pre-activations have a std of"),
    " --input-scale raw --optimizer momentum --learning-rate 0.001 --schedule constant --epochs 3 "
    "--diagnose": (0, "units are dead"),
    " --init normal --init-scale 1e-4 --optimizer sgd --learning-rate 0.1 --schedule constant "
    "--epochs 3 --diagnose": (0, "got all-zero outputs"),
    " --activation sigmoid --hidden 64 64 64 64 64 64 --init normal --init-scale 0.01 --epochs 3 "
    "--diagnose --plots": (0, "vanishing gradients"),
    " --activation tanh --input-scale raw --init normal --epochs 3 --diagnose":
        (0, "units are saturated"),
    " --output sum_normalize --error cross_entropy --epochs 3 --diagnose":
        (0, "got a negative 'probability'"),
    " --example-reduction sum --optimizer sgd --learning-rate 0.01 --schedule constant --epochs 3 "
    "--diagnose": (3, "--example-reduction sum makes the gradient 128x"),
    " --optimizer sgd --learning-rate 1e-6 --schedule constant --epochs 3 --diagnose":
        (0, "they hardly move"),
    " --train-subset 500 --batch-size 50 --epochs 40 --diagnose":
        (0, "the network memorises the training examples"),
    " --overfit 100": (0, "100% training accuracy on 100 mnist examples"),
    " --output sum_normalize --error mse --class-reduction mean --input-scale raw --optimizer sgd "
    "--learning-rate 1 --schedule constant --diagnose":
        (0, "what predicting 0.1 for every class scores under this loss (MSE"),
    " --overfit 100 --input-scale raw --optimizer sgd --learning-rate 0.01 --schedule constant":
        (1, "did NOT reach 100% training accuracy"),
}
# The MNIST examples run on the first 6,000 training images (the README's own --train-subset
# wins: it comes later on the command line); --overfit takes its N examples itself, and a toy
# set's 1,000 points are used whole.
SMALL = ["--train-subset", "6000"]


def test_the_readme_and_the_guide_show_train_examples() -> None:
    assert len(COMMANDS) >= 10
    assert any(path.name == "README.md" for path, _ in EXAMPLES), "the README shows none"


def test_the_script_reruns_the_examples_of_every_file_that_has_them() -> None:
    assert _script().documents() == DOCUMENTS


def test_every_example_shows_its_declared_outcome() -> None:
    assert COMMANDS == sorted(OUTCOMES), "an example without a declared outcome"
    for path, args in EXAMPLES:
        status, phrase = OUTCOMES[args]
        blocks = path.read_text().split(f"$ python -m jaxmlp.train{args}\n")[1:]
        for block in blocks:
            shown, rest = block.split("[exit status", 1)
            assert phrase in shown, (path.name, args, phrase)
            assert rest.startswith(f" {status}]"), (path.name, args, status)


@pytest.mark.xla_defaults
@pytest.mark.parametrize("args", list(OUTCOMES), ids=range(len(OUTCOMES)))
def test_every_readme_example_still_comes_out_that_way(
    args: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, phrase = OUTCOMES[args]
    small = [] if "--overfit" in args or "--dataset" in args else SMALL  # toy sets are small
    argv = ["--data-dir", str(mnist_dir), *small, *args.split(), "--no-progress", "--out",
            str(tmp_path / "run")]
    try:
        code = main(argv)
    except SystemExit as e:  # user errors and divergence leave through cli.fail
        code = e.code
    printed = capsys.readouterr()
    assert code == status, (args, printed.out, printed.err)
    assert phrase in printed.out + printed.err, (args, printed.out, printed.err)


@pytest.mark.parametrize("args", COMMANDS, ids=range(len(COMMANDS)))
def test_every_readme_command_parses_and_validates(args: str) -> None:
    parsed = build_parser().parse_args(args.split())
    validate(cli.dataclass_from_args(Config, parsed))


def test_the_example_script_rewrites_only_the_output_blocks() -> None:
    script = _script()
    text = "intro\n```\n$ python -m jaxmlp.train --epochs 1\nold line\n[exit status 0]\n```\nend"
    start = text.split("\n").index("$ python -m jaxmlp.train --epochs 1")
    new = script.rewrite(text, {start: ["new line", "[exit status 3]"]})
    assert new == ("intro\n```\n$ python -m jaxmlp.train --epochs 1\nnew line\n[exit status 3]"
                   "\n```\nend")
    assert any(script.MACHINE.search(path.read_text()) for path in DOCUMENTS), \
        "the sentence naming the examples' machine is gone: the script cannot update it"


def test_the_example_script_reruns_each_example_once_and_rewrites_every_file(
    tmp_path: Path, mnist_sample_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture
) -> None:
    """Two files showing the same example: it runs once, both blocks get its output, and
    `--check` then finds them up to date (an example whose output holds no timing)."""
    script = _script()
    command = (f"$ python -m jaxmlp.train --dataset mnist --data-dir {mnist_sample_dir} "
               "--hidden 8 --batch-size 50 --epochs 1 --output none --error mse --optimizer sgd "
               "--learning-rate 100 --schedule constant")
    files = [tmp_path / "a.md", tmp_path / "b.md"]
    for path in files:
        path.write_text(f"intro\n```\n{command}\nstale output\n[exit status 7]\n```\nend\n")
    monkeypatch.setattr(script, "documents", lambda: files)
    assert script.main([]) == 0
    assert "reran 1 examples; rewrote 2 of 2 files" in capsys.readouterr().out
    for path in files:
        block = path.read_text().split(command + "\n", 1)[1].split("```", 1)[0]
        assert block.startswith("error: the loss became non-finite")
        assert block.endswith("[exit status 3]\n") and "stale" not in block
        assert "outputs in" not in block  # the lines that change from run to run are left out
    assert script.main(["--check"]) == 0


def test_the_example_script_runs_a_pages_shell_examples_in_one_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's other commands run in order in one folder of its own, after the python blocks
    saved as files above them; an output shown from `...` keeps as many last lines as it had."""
    script = _script()
    page = tmp_path / "p.md"
    page.write_text(
        "A script, saved as `hello.py`:\n\n```python\nimport sys\n\nprint('hello,', sys.argv[1])\n"
        "```\n\n```\n$ python hello.py you > said.txt\n[exit status 9]\n$ cat said.txt\nstale\n"
        "[exit status 9]\n$ seq 1 5\n...\nx\nx\n[exit status 9]\n$ false\n[exit status 0]\n```\n")
    monkeypatch.setattr(script, "documents", lambda: [page])
    assert script.main([]) == 0
    text = page.read_text()
    assert "$ python hello.py you > said.txt\n[exit status 0]\n" in text
    assert "$ cat said.txt\nhello, you\n[exit status 0]\n" in text
    assert "$ seq 1 5\n...\n4\n5\n[exit status 0]\n" in text
    assert "$ false\n[exit status 1]\n" in text
    assert script.main(["--check"]) == 0
