"""The user cache folder, where downloads, decoded tfds arrays and compiled programs are kept:
the one home of its location, for the data sets and for `jaxmlp.compilation` alike."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache: $XDG_CACHE_HOME/jaxmlp, else ~/.cache/jaxmlp (not created here)."""
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "jaxmlp"
