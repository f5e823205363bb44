"""How big each measurement of `python -m jaxmlp.notes` is (`Budget`, one per mode), the
configurations they start from, and what every measurement is handed (`Setting`).

Three budgets, as the experiments have: `default` answers the questions (at least 3 seeds
wherever an interval is quoted; at most 5 minutes on 2 CPU cores with a warm compilation
cache); `quick` checks that everything runs within 60 s, and its page says that its numbers
are not the answer; `smoke` (hidden) is smaller still, for the test suite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from jaxmlp import sweep
from jaxmlp.config import Config

MODES = ("default", "quick", "smoke")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of one mode's measurements."""

    mode: str
    seeds: int  # per sweep variant
    train_subset: int  # MNIST training images of the sweeps
    test_subset: int  # ... and test images they are scored on
    hidden: tuple[int, ...]  # the sweeps' network
    epochs: int
    batch_size: int
    run_subset: int  # training images of the single runs (the notes' own setup, ...)
    run_epochs: int
    notes_hidden: tuple[int, ...]  # the network of the notes' own setup
    lrs: tuple[float, ...]  # the learning-rate sweep of "how far to step"
    overfit_sizes: tuple[int, ...]  # N of --overfit N
    speed_subset: int | None  # the speed run's training images (None: all of them)
    depths: tuple[int, ...]  # hidden layers of the gradient-ratio grid

    @property
    def smoke_label(self) -> bool:
        """Whether the page must say that these numbers are not the answer."""
        return self.mode != "default"


BUDGETS = {
    "default": Budget("default", seeds=5, train_subset=20_000, test_subset=10_000,
                      hidden=(64,), epochs=3, batch_size=64, run_subset=10_000, run_epochs=3,
                      notes_hidden=(512, 512), lrs=(0.001, 0.01, 0.1, 1.0, 10.0),
                      overfit_sizes=(10, 100, 1000), speed_subset=None, depths=(1, 3, 6)),
    "quick": Budget("quick", seeds=3, train_subset=2_000, test_subset=1_000, hidden=(32,),
                    epochs=1, batch_size=64, run_subset=1_000, run_epochs=2,
                    notes_hidden=(128, 128), lrs=(0.01, 0.1, 1.0, 10.0),
                    overfit_sizes=(10, 100), speed_subset=10_000, depths=(1, 3, 6)),
    "smoke": Budget("smoke", seeds=2, train_subset=500, test_subset=500, hidden=(16,),
                    epochs=1, batch_size=50, run_subset=500, run_epochs=2,
                    notes_hidden=(32, 32), lrs=(0.1, 10.0), overfit_sizes=(10,),
                    speed_subset=1_000, depths=(1, 3)),
}

# The learning rates of the sweeps: Adam's default, and plain SGD's at which the usual loss
# (softmax, cross-entropy, mean over the batch) trains this network well in a few epochs.
LR_ADAM = 1e-3
LR_SGD = 0.1

# The learning notes' own setup (docs/when-training-goes-wrong.md, "The loss settles at the
# uniform guess"): each output over the total, MSE averaged over the classes and the examples,
# raw 0..255 pixels, and "no learning rate yet": a step of the whole gradient, plain SGD at 1.
NOTES_SETUP = {"output": "sum_normalize", "error": "mse", "class_reduction": "mean",
               "example_reduction": "mean", "input_scale": "raw", "optimizer": "sgd",
               "learning_rate": 1.0, "schedule": "constant"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """What every measurement is handed: its budget, the data, and the caches the whole
    command shares (each structure compiles once, each data set loads once)."""

    budget: Budget
    data_dir: str | None
    progress: bool
    import_seconds: float | None = None  # the command's start-up, for the speed question
    command: tuple[str, ...] = ()  # as typed, for the record
    programs: sweep.ProgramCache = dataclasses.field(
        default_factory=sweep.ProgramCache, compare=False, repr=False)
    datasets: sweep.DataCache = dataclasses.field(
        default_factory=sweep.DataCache, compare=False, repr=False)
    log: Callable[[str], None] = dataclasses.field(default=print, compare=False, repr=False)

    def mnist(self, **settings: object) -> Config:
        """A sweep's base on MNIST (named: a missing MNIST is an error, never the digits)."""
        b = self.budget
        base = {"dataset": "mnist", "data_dir": self.data_dir, "hidden": b.hidden,
                "train_subset": b.train_subset, "epochs": b.epochs,
                "batch_size": b.batch_size, "optimizer": "adam", "learning_rate": LR_ADAM,
                "schedule": "constant"}
        return Config(**{**base, **settings})

    def single(self, **settings: object) -> Config:
        """A single run's configuration on MNIST: the runs' size, Config's defaults else."""
        b = self.budget
        base = {"dataset": "mnist", "data_dir": self.data_dir, "train_subset": b.run_subset,
                "epochs": b.run_epochs, "batch_size": b.batch_size}
        return Config(**{**base, **settings})

    def notes_setup(self, **settings: object) -> Config:
        """The notes' own setup, at the single runs' size."""
        return self.single(**{"hidden": self.budget.notes_hidden, **NOTES_SETUP, **settings})

    def sweep(self, spec: sweep.SweepSpec, out: Path) -> sweep.SweepResult:
        """`run_sweep` with the command's caches; tiny budgets compile for speed (XLA's fast
        CPU mode), as the experiments' do."""
        return sweep.run_sweep(spec, out, progress=self.progress, log=self.log,
                               compile_mode="default" if self.budget.mode == "default"
                               else "fast", programs=self.programs, datasets=self.datasets)
