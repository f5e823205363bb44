"""matplotlib, imported on first use with its Agg backend (files only, no display needed), and
the one way a picture reaches its file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend, imported here so that only runs that draw
    pay for importing it."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never try to open a window (CI, ssh, no display)
    import matplotlib.pyplot as plt

    return plt


def figure(width: float, height: float) -> Any:
    """An empty figure of `width` x `height` inches whose layout engine (constrained layout)
    makes room for every label, title and legend, inside the figure, when it is drawn."""
    return pyplot().figure(figsize=(width, height), layout="constrained")


def save(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write `fig` as a PNG beside `path`, then rename it over: never a half-written picture
    (an interrupted redraw leaves the previous one). The figure is closed either way."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        pyplot().close(fig)
