"""The README's examples stay runnable: every `python -m jaxmlp.train` command it shows parses
and validates with today's flags, and the script that reruns them rewrites exactly the output
between a command and its exit status."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from jaxmlp import cli
from jaxmlp.config import Config, validate
from jaxmlp.train import build_parser

REPO = Path(__file__).resolve().parent.parent
COMMANDS = re.findall(r"^\$ python -m jaxmlp\.train(.*)$", (REPO / "README.md").read_text(),
                      flags=re.MULTILINE)


def _script():
    spec = importlib.util.spec_from_file_location("readme_examples",
                                                  REPO / "scripts" / "readme_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_train_examples() -> None:
    assert len(COMMANDS) >= 10


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
    assert script.MACHINE.search((REPO / "README.md").read_text()), \
        "the sentence naming the examples' machine is gone: the script cannot update it"
