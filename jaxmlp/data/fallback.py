"""The data set a configuration asks for: named, it must be found; left unset, MNIST, else the
bundled digits with a note saying why (so `python -m jaxmlp.train` works offline)."""

from __future__ import annotations

from jaxmlp.config import Config
from jaxmlp.data.dataset import Dataset
from jaxmlp.data.errors import DatasetNotFound
from jaxmlp.data.lookup import load_dataset
from jaxmlp.data.tfds import tfds_advice


def load_data(config: Config, *, progress: bool) -> tuple[Dataset, str | None]:
    """(data set, fallback note or None) for `config.dataset`, `data_dir` and `source`."""
    if config.dataset is not None:
        ds = load_dataset(config.dataset, data_dir=config.data_dir, source=config.source,
                          progress=progress, data_seed=config.data_seed)
        return ds, None
    try:
        return load_dataset("mnist", data_dir=config.data_dir, source=config.source,
                            progress=progress), None
    except DatasetNotFound as e:
        tried = "; ".join(e.tried) if e.tried else "every source"
        note = (
            f"MNIST could not be found or downloaded (tried: {tried}). Training on "
            "scikit-learn's bundled 8x8 digits instead, so this run works offline; its accuracy "
            "is not comparable with MNIST's. To get MNIST, put the four IDX files in a folder "
            f"and set JAXMLP_DATA_DIR (or --data-dir), {tfds_advice()}, or run once with "
            "network access (the files are cached in ~/.cache/jaxmlp)."
        )
        return load_dataset("digits"), note
