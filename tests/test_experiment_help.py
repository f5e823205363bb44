"""Each experiment's `--help` opens with its question in whole sentences: its docstring's first
paragraph, not a first line cut mid-sentence."""

from __future__ import annotations

import re

import pytest
from _experiments import EXPERIMENTS, load

SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_"))


def test_the_summary_is_the_first_paragraph_on_one_line() -> None:
    import _common

    doc = "Why flatten? The same MLP on MNIST as it is and\nwith its pixels shuffled.\n\nMore."
    assert _common.summary(doc) == ("Why flatten? The same MLP on MNIST as it is and with its "
                                    "pixels shuffled.")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_describes_the_experiment_in_whole_sentences(
        name: str, capsys: pytest.CaptureFixture) -> None:
    module = load(name)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    # argparse prints the usage, a blank line, the description (wrapped), a blank line.
    description = " ".join(text.split("\n\n")[1].split())
    first = " ".join(module.__doc__.strip().split("\n\n")[0].split())
    assert description.startswith(first), name
    assert re.search(r"[.?!]$", first), (name, first)  # a paragraph ends a sentence
