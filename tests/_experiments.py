"""Running an experiment script in the test process, and reading its generated findings: for
test_experiments.py and test_experiments_new.py."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

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
    for b in bullets:
        assert not re.search(r"\bnan\b|n/a", b), b
    return bullets


def perturb_chunks(out: Path) -> int:
    """Rewrite every finished chunk of every sweep under `out` with other numbers, as another
    machine or seed might have given them: the runs of each chunk take each other's results in
    reverse order (what was best moves), every error rate (1 - accuracy) is halved, every loss
    scaled by 1.53, every probe's fraction (dead units, blocked, ...) replaced by its complement,
    and the chunk's first run scores 100% throughout. Returns the number of chunks rewritten."""
    paths = sorted(out.rglob("chunk-*.npz"))
    for path in paths:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        n = len(arrays["run_ids"])
        for k, v in arrays.items():
            if k in ("run_ids", "fingerprint", "seconds") or v.dtype.kind != "f":
                continue
            v = v[::-1] if n > 1 else v
            if "accuracy" in k:
                v = 1 - (1 - v) * 0.5
                v[0] = 1.0
            elif "loss" in k:
                v = v * 1.53
            elif k.endswith(("_init", "_final")):
                v = 1 - v
            arrays[k] = v.astype(arrays[k].dtype)
        np.savez(path, **arrays)
    return len(paths)


def assert_findings_follow_numbers(name: str, out: Path, data_dir: Path,
                                   standing: tuple[str, ...] = (), *extra: str) -> None:
    """Change the sweeps' numbers and run the experiment again (it reads its finished runs
    back): every finding must change with them, but those that start with one of `standing`
    (what the experiment says whatever its sweeps gave: a caveat, a measurement it makes
    outside them). A finding that stays the same was not generated from the numbers."""
    before = findings(out)
    assert perturb_chunks(out) > 0
    run(name, out, data_dir, *extra)
    after = findings(out)
    unchanged = [b for b in after if b in before and not b.startswith(standing)]
    assert not unchanged, f"findings that did not follow the numbers: {unchanged}"
