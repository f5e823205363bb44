"""Checkpoints: any pytree of arrays to one `.npz` file, written atomically.

Each leaf is stored under its pytree path (`[0]['w']`, ...), so the file is readable with plain
`numpy.load` and a mismatch is reported by name. Restoring needs a template pytree of the same
structure (e.g. freshly initialised state): the structure lives in code, the numbers in the file.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the old
checkpoint. A rename within one file system is atomic, so a crash leaves either the old
checkpoint or the new one, never half of one (and at most a stray temporary file, `.NAME.*.tmp`,
which `remove_temporary` clears). The rename replaces a symbolic link itself, never the file it
points to. Every file gets the mode a plain `open` would give it (the user's umask applied).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np

from jaxmlp import faults

_META = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the configuration."""


class WriteError(OSError):
    """A file could not be written (a full disk, a folder removed or made read-only); the
    message names the file and the reason, and what was there before is intact."""


def file_mode() -> int:
    """The mode `open` gives a new file: 0o666 less the process's umask (read without changing
    it where Linux says it, since os.umask sets it for every thread at once)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_error(path: str | os.PathLike, error: OSError) -> WriteError:
    """One line naming the file and why it could not be written."""
    e = WriteError(f"cannot write {path} ({error.strerror or error})")
    e.errno = error.errno  # the kind of failure, for callers that ask (ENOSPC, EACCES)
    return e


def atomic_write(path: Path, write: Callable[[BinaryIO], None], point: str | None = None
                 ) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`. `point`:
    the fail point this write is (`jaxmlp.faults`); a WriteError says why it failed."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())  # mkstemp's 0600 would differ from open's
            faults.reach(point, path, torn=lambda: (write(f), f.flush()))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str, point: str | None = None) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    atomic_write(Path(path), lambda f: f.write(text.encode()), point)


def remove_temporary(folder: Path, names: Iterable[str]) -> list[str]:
    """Delete the temporary files that interrupted atomic writes of `names` (glob patterns)
    left in `folder` (`.NAME.XXXXXXXX.tmp`, as `atomic_write` names them, and nothing else);
    returns their names."""
    left = sorted({p for name in names for p in folder.glob(f".{name}.*.tmp")
                   if p.is_file() and not p.is_symlink()})
    for p in left:
        p.unlink(missing_ok=True)
    return [p.name for p in left]


def _named_leaves(tree: Any) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): np.asarray(leaf) for p, leaf in flat}


def save(path: str | os.PathLike, tree: Any, meta: dict[str, Any] | None = None,
         point: str | None = None) -> None:
    """Save the arrays of `tree` (and a small JSON-able `meta` dict) to `path` atomically."""
    path = Path(path)
    arrays = _named_leaves(jax.device_get(tree))
    arrays[_META] = np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays), point)


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Restore a pytree shaped like `template` from `path`; returns `(tree, meta)`.

    Every leaf must be present with the template's shape and dtype; anything else is a
    CheckpointError naming the file and the leaf.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {name: f[name] for name in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({e})") from None
    raw_meta = stored.pop(_META, None)
    meta = json.loads(raw_meta.tobytes()) if raw_meta is not None else {}
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for p, leaf in flat:
        name = jax.tree_util.keystr(p)
        if name not in stored:
            raise CheckpointError(f"checkpoint {path} has no entry {name}: it was made by a "
                                  "different configuration")
        value = stored[name]
        want = np.asarray(leaf)
        if value.shape != want.shape or value.dtype != want.dtype:
            raise CheckpointError(
                f"checkpoint {path}: {name} is {value.dtype}{list(value.shape)}, the configuration "
                f"needs {want.dtype}{list(want.shape)}"
            )
        leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta
