"""The versions a result was produced with, recorded in every run and sweep folder."""

from __future__ import annotations

import platform

import jax
import jaxlib
import numpy as np
import optax

import jaxmlp


def versions() -> dict[str, str]:
    return {
        "jaxmlp": jaxmlp.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
