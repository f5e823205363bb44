"""A live run's epochs, chunk by chunk: the epoch function `runner.run` trains with in the lab.

Each chunk is one compiled program of `programs.Chunks` (the loop's own scan of steps). Once
chunk n+1 is launched, the host reads chunk n's step losses and its live view (`make_view`: the
test loss and accuracy on the first `LIVE_TEST` test examples and, for points in the plane, the
predicted class over a `GRID` x `GRID` grid), so the device never waits for the page: JAX
launches programs without waiting for them. An epoch returns what the compiled epoch returns,
so `runner.train_epochs` (the metrics row, the checkpoint, the diagnostics row, a divergence)
treats it as any run's epoch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxmlp.loop import make_evaluate
from jaxmlp.plots.plane import plane_grid, predict_classes
from jaxmlp.runner import Prepared, step_losses

LIVE_TEST = 1000  # test examples the live accuracy is measured on after every chunk
GRID = 64  # the plane's cells per side
POINTS = 400  # training points drawn on the plane


class PageStop(KeyboardInterrupt):
    """A stop asked for on the page (or by the lab stopping): a KeyboardInterrupt, so the run
    keeps its finished epochs and says how to continue, as after Ctrl-C; `stopping.describe`
    words it from `signum` (none: "stopped") and `by`."""

    signum = 0

    def __init__(self, by: str = "from the lab's page") -> None:
        super().__init__(by)
        self.by = by


class Frame(NamedTuple):
    """One chunk as the page draws it."""

    epoch: int  # 1-based
    first: int  # the chunk's first step in its epoch, 0-based
    steps: int  # per epoch
    step_loss: list[float | None]
    test_loss: float | None  # on the live test examples
    test_accuracy: float | None
    plane: np.ndarray | None  # the predicted class of each grid cell, row by row


class Listener(Protocol):
    """What a live run tells (the lab's job) and asks (whether to stop)."""

    stop: threading.Event
    stopped_by: str  # how a stop is said: "from the lab's page"

    def started(self, p: Prepared, plane: dict[str, Any] | None) -> None: ...

    def frame(self, frame: Frame) -> None: ...

    def epoch_begins(self, p: Prepared) -> None: ...

    def due(self) -> bool:
        """Whether a frame told now would reach the pages (they get at most a few a second)."""
        ...


def plane_of(p: Prepared) -> tuple[dict[str, Any], np.ndarray] | None:
    """For points in the plane: (the page's picture frame: the grid's extent, its size, some
    training points with their classes; the grid's points), else None."""
    x = np.asarray(p.dataset.x_train)
    if x.ndim != 2 or x.shape[1] != 2:
        return None
    xs, ys, grid = plane_grid(x, GRID)
    y = np.asarray(p.dataset.y_train)
    points = [[round(float(a), 3), round(float(b), 3), int(c)]
              for (a, b), c in zip(x[:POINTS], y[:POINTS], strict=True)]
    return ({"extent": [float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])],
             "size": GRID, "classes": p.dataset.num_classes, "points": points}, grid)


def make_view(p: Prepared, grid: np.ndarray | None) -> Callable[..., Any]:
    """`view(params) -> (test loss, test accuracy, grid classes or None)` on the device: one
    program, the run's own evaluation (`loop.make_evaluate`) and the plots' prediction."""
    n = min(LIVE_TEST, p.dev.x_test.shape[0])
    x, y = p.dev.x_test[:n], p.dev.y_test[:n]
    points = None if grid is None else jax.device_put(grid)
    evaluate = make_evaluate(p.config)

    def view(params: Any, hyper: Any, x: jax.Array, y: jax.Array, points: Any) -> Any:
        loss, accuracy = evaluate(params, x, y, hyper)
        classes = None if points is None else predict_classes(p.config, params, points, hyper)
        return loss, accuracy, classes

    # Compiled now, before the first epoch's clock starts.
    compiled = jax.jit(view).lower(p.state.params, p.hyper, x, y, points).compile()
    return lambda params: compiled(params, p.hyper, x, y, points)


def frame(epoch: int, first: int, steps: int, loss: Any, view: Any) -> Frame:
    """A chunk's frame from its device values (this waits for them); `view` None: its losses
    only."""
    loss, (test_loss, test_accuracy, classes) = jax.device_get(
        (loss, (np.nan, np.nan, None) if view is None else view))
    finite = lambda v: float(v) if np.isfinite(v) else None
    return Frame(epoch, first, steps, step_losses(SimpleNamespace(step_loss=loss)),
                 finite(test_loss), finite(test_accuracy), classes)


def live_epochs(listener: Listener) -> Callable[[Prepared], Callable[..., Any]]:
    """`runner.run`'s `epochs`: for a prepared run, its epoch as chunks, each chunk's frame
    told to `listener` while the next runs (an epoch of one chunk: the epoch program, and its
    frame); `listener.stop` set stops before the next chunk (the epoch in progress is not kept:
    `--resume` continues from the last finished one)."""

    def epochs(p: Prepared) -> Callable[..., Any]:
        chunks, diagnose = p.programs.chunks, p.programs.probe is not None
        plane = plane_of(p)
        view = make_view(p, None if plane is None else plane[1])
        listener.started(p, None if plane is None else plane[0])

        def whole(state: Any, dev: Any, hyper: Any, data_key: jax.Array, e: np.int32) -> Any:
            """An epoch of one chunk: the epoch program, then its frame."""
            if listener.stop.is_set():
                raise PageStop(listener.stopped_by)
            state, *result = p.programs.epoch(state, dev, hyper, data_key, e)
            # Epochs of a few ms (the toy sets) would spend as long again on views no page
            # gets to draw: the view only when a frame is due, and after the last epoch.
            last = int(e) + 1 == p.config.epochs
            shown = view(state.params) if last or listener.due() else None
            listener.epoch_begins(p)
            steps = result[0].step_loss.shape[0]
            listener.frame(frame(int(e) + 1, 0, steps, result[0].step_loss, shown))
            return (state, *result)

        def epoch(state: Any, dev: Any, hyper: Any, data_key: jax.Array, e: np.int32) -> Any:
            assert chunks is not None
            key, order = chunks.order(data_key, e)
            parts: list[Any] = []
            shown: tuple[Any, ...] | None = None
            for first, n in chunks.plan():
                if listener.stop.is_set():
                    raise PageStop(listener.stopped_by)
                state, bad, out = chunks.program(n)(state, dev, hyper, key, order,
                                                    np.int32(first))
                parts.append((bad, out))
                seen = (int(e) + 1, first, chunks.steps, out.loss, view(state.params))
                if shown is None:  # the previous epoch's rows, while this chunk runs
                    listener.epoch_begins(p)
                else:
                    listener.frame(frame(*shown))
                shown = seen
            result = chunks.combine(parts)
            listener.frame(frame(*shown))
            return (state, *result) if diagnose else (state, result)

        return whole if chunks is None else epoch

    return epochs
