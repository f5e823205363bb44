"""A sweep's folder on disk: the chunk files that make resuming possible (written atomically,
read back with their fingerprints checked), the sweep.json record, and the checks that an output
folder holds this same sweep, and no links to write through. Each write is a fail point
(`jaxmlp.faults`): "chunk" and "sweep_record"."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxmlp import checkpoint
from jaxmlp.rundir import make_folder, refuse_links
from jaxmlp.sweep.plan import Chunk
from jaxmlp.sweep.spec import SweepSpec

SWEEP_JSON = "sweep.json"
CHUNKS = "chunks"
CHUNK_FILES = "chunk-*.npz"
# What a sweep (and an experiment, into the same folder) writes atomically, as glob patterns: an
# interrupted write leaves a temporary file of one of these, removed when the sweep starts again.
SWEEP_FILES = ("*.json", "*.csv", "*.md", "*.html")


class SweepError(RuntimeError):
    """The output folder or a finished chunk does not fit this sweep."""


def _atomic_npz(path: Path, arrays: Mapping[str, np.ndarray], point: str) -> None:
    checkpoint.atomic_write(path, lambda f: np.savez(f, **arrays), point)


def flatten_result(out: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A program's results as plain arrays, without the parameters (never saved in a chunk)."""
    return {k: np.asarray(v) for k, v in out.items() if k != "params"}


def write_chunk(chunk_dir: Path, chunk: Chunk, arrays: Mapping[str, np.ndarray],
                fingerprint: str, seconds: float) -> None:
    """`chunk_dir/chunk-<id>.npz`, atomically: the chunk's per-run arrays (run axis first), its
    run ids, the sweep's fingerprint and the seconds it trained for."""
    _atomic_npz(chunk_dir / f"chunk-{chunk.id}.npz", {
        **arrays,
        "run_ids": np.asarray(chunk.runs, np.int64),
        "fingerprint": np.asarray(fingerprint),
        "seconds": np.asarray(seconds),
    }, "chunk")


def read_chunks(folder: Path, fingerprint: str, num_runs: int) -> dict[int, dict[str, Any]]:
    """Per-run results from every readable chunk file; unreadable ones are retrained."""
    done: dict[int, dict[str, Any]] = {}
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob(CHUNK_FILES)):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            print(f"warning: {path} is unreadable; its runs will be trained again",
                  file=sys.stderr)
            continue
        if str(arrays.pop("fingerprint", "")) != fingerprint:
            raise SweepError(f"{path} belongs to a different sweep; use another --out")
        ids = arrays.pop("run_ids")
        arrays.pop("seconds", None)
        for j, r in enumerate(ids):
            if not 0 <= int(r) < num_runs:
                raise SweepError(f"{path} names run {int(r)}, which this sweep does not have")
            done[int(r)] = {k: v[j] for k, v in arrays.items()}
    return done


def pack_results(done: Mapping[int, Mapping[str, np.ndarray]]) -> bytes:
    """Per-run results as one .npz in memory (keys `<run>/<metric>`), to send to other
    processes; `unpack_results` reads it back."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{r}/{k}": np.asarray(v) for r, arrays in done.items()
                        for k, v in arrays.items()})
    return buffer.getvalue()


def unpack_results(payload: bytes) -> dict[int, dict[str, np.ndarray]]:
    """The per-run results `pack_results` packed."""
    done: dict[int, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as f:
        for key in f.files:
            run, name = key.split("/", 1)
            done.setdefault(int(run), {})[name] = f[key]
    return done


def prepare_out(out: Path, spec: SweepSpec) -> dict[str, Any] | None:
    """Create `out`, or check that it holds this same sweep, with no links in it or in its
    chunks folder. Returns the old record, if any."""
    make_folder(out)  # a file in the way, or a folder that takes none, is one clear error
    refuse_links(out, "--out")
    refuse_links(out / CHUNKS, "--out")
    # What writes that were cut short left, removed before the folder is judged.
    checkpoint.remove_temporary(out, SWEEP_FILES)
    if (out / CHUNKS).is_dir():
        checkpoint.remove_temporary(out / CHUNKS, (CHUNK_FILES,))
    record_path = out / SWEEP_JSON
    if record_path.exists():
        try:
            old = json.loads(record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SweepError(f"--out {out}: {SWEEP_JSON} is corrupt ({e}); choose another --out "
                             "or delete the folder") from None
        if old.get("fingerprint") != spec.fingerprint():
            raise SweepError(
                f"--out {out} holds a different sweep ({old.get('spec', {}).get('name')!r}, "
                f"fingerprint {old.get('fingerprint')}; this one is {spec.fingerprint()}): its "
                "variants, seeds or settings differ. Choose another --out, or delete the folder "
                "to start over."
            )
        return old
    if out.exists() and any(p for p in out.iterdir() if p.name != CHUNKS):
        raise SweepError(f"--out {out} exists and is not a sweep folder (no {SWEEP_JSON}); "
                         "choose another --out")
    return None


def write_record(out: Path, record: Mapping[str, Any]) -> None:
    """`out/sweep.json`, atomically."""
    checkpoint.atomic_write_text(out / SWEEP_JSON, json.dumps(record, indent=2) + "\n",
                                 "sweep_record")
