"""matplotlib, imported on first use with its Agg backend: files only, no display needed."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend, imported here so that only runs that draw
    pay for importing it."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never try to open a window (CI, ssh, no display)
    import matplotlib.pyplot as plt

    return plt
