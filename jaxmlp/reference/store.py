"""A case's files on disk: `write_case` is the one write path (the command's `write`, and any
caller that puts a case in a folder of its own)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jaxmlp.reference.files as files  # the module, not the package: no cycle
from jaxmlp.reference.case import Case, CaseSpec
from jaxmlp.reference.readme import case_readme


def case_blobs(case: Case, spec: CaseSpec, what: str) -> dict[str, bytes]:
    """Every file of a case, as bytes (`what`: its inputs in words)."""
    return {files.CASE_NPZ: files.case_npz(case), files.CASE_JSON: files.case_json(case).encode(),
            files.README: case_readme(case, spec, what).encode(),
            files.SETTINGS: files.settings_json(spec, what).encode()}


def write_case(folder: Path, case: Case, spec: CaseSpec, what: str) -> None:
    """Write the case into `folder` (created if need be; an OSError says why it cannot be).
    Every file is written beside its place first (flushed to disk), then moved in, with
    settings.json out first and back in last: an earlier case stays whole until the new one is
    on disk, and an interrupted move leaves no folder that `check` takes for a whole case."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, str] = {}
    try:
        for name, blob in case_blobs(case, spec, what).items():
            fd, staged[name] = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        (folder / files.SETTINGS).unlink(missing_ok=True)
        for name in sorted(staged, key=lambda n: n == files.SETTINGS):
            os.replace(staged.pop(name), folder / name)
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
