"""The data sets of a sweep, each loaded once: a `DataCache` that several sweeps (and an
experiment's own measurements) can share, and the device data of a configuration."""

from __future__ import annotations

import numpy as np

from jaxmlp import data
from jaxmlp.config import Config
from jaxmlp.loop import DeviceData, device_data

# The settings that choose a data set as loaded; the training subset and the pixel order are
# applied to it afterwards (`plan.DATA_FIELDS` is all of them).
LOADED_FIELDS = ("dataset", "data_dir", "source", "data_seed")


def loaded_key(config: Config) -> tuple:
    """What selects `config`'s data set as loaded (`LOADED_FIELDS`): equal keys read the same
    arrays."""
    return tuple(getattr(config, f) for f in LOADED_FIELDS)


class DataCache:
    """Loaded data sets by `loaded_key`, with their fallback notes.

    Pass one object to every sweep of an experiment (`run_sweep(..., datasets=cache)`) so that a
    data set is read from disk once; a sweep given none loads its own.
    """

    def __init__(self) -> None:
        self._sets: dict[tuple, tuple[data.Dataset, str | None]] = {}

    def dataset(self, config: Config) -> tuple[data.Dataset, str | None]:
        """(data set, fallback note or None) for `config`, loaded on first use."""
        key = loaded_key(config)
        if key not in self._sets:
            self._sets[key] = data.load_data(config, progress=False)
        return self._sets[key]

    def num_train(self, config: Config) -> int:
        """Training examples a run of `config` trains on (its `train_subset`, if smaller)."""
        n = self.dataset(config)[0].y_train.shape[0]
        return n if config.train_subset is None else min(n, config.train_subset)

    def __len__(self) -> int:
        return len(self._sets)

    def clear(self) -> None:
        self._sets.clear()


def sweep_data(config: Config, test_subset: int | None, datasets: DataCache | None = None
               ) -> tuple[DeviceData, np.ndarray]:
    """The device data for a configuration (and the host copy of its training pixels).

    `datasets` is where the data set comes from (default: a fresh cache, which reads it)."""
    dataset, _ = (DataCache() if datasets is None else datasets).dataset(config)
    dev = device_data(dataset, config)
    if test_subset is not None:
        dev = dev._replace(x_test=dev.x_test[:test_subset], y_test=dev.y_test[:test_subset])
    return dev, np.asarray(dev.x_train)
