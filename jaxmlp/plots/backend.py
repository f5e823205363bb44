"""matplotlib, imported on first use with its Agg backend (files only, no display needed), and
the one way a picture reaches its file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint


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
    """Write `fig` as a PNG through `checkpoint.atomic_write`: never a half-written picture (an
    interrupted redraw leaves the previous one), the user's umask's mode as every file of the
    folder has. The figure is closed either way."""
    try:
        checkpoint.atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        pyplot().close(fig)
