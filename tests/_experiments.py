"""Running an experiment script in the test process, and reading its generated findings: for
test_experiments.py and test_experiments_new.py."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))  # for `import _common`, as when run as a script

import _common  # noqa: E402


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def run(name: str, out: Path, data_dir: Path, *extra: str) -> ModuleType:
    module = load(name)
    code = module.main(["--smoke", "--out", str(out), "--data-dir", str(data_dir),
                        "--no-progress", *extra])
    assert code == 0
    return module


def findings(out: Path) -> list[str]:
    text = (out / "summary.md").read_text()
    tail = text.split("## Findings", 1)[1]
    assert "##" not in tail, "the findings must end summary.md"
    bullets = [line[2:] for line in tail.splitlines() if line.startswith("- ")]
    # What a smoke budget's numbers are worth (experiments/_common.py) is said beside them.
    assert _common.SMALL_BUDGET.format(mode="smoke") in text
    bullets = [b for b in bullets if "is a smoke budget" not in b]
    assert bullets
    for b in bullets:  # generated from numbers, not prose
        assert re.search(r"\d", b), b
        assert not re.search(r"\bnan\b|n/a", b), b
    return bullets
