"""How big a piece of work is, and whether it fits: the bytes a run holds while it trains, the
memory its device has, and the limits of the flags that size work or output. Each is checked
before any work, and a setting beyond its limit is refused by its flag's name.

    --hidden, --batch-size   one run's parameters, gradients, optimizer state and a batch's
                             activations must fit the device's memory (with --max-parallel runs
                             side by side in a sweep)
    --overfit-steps          at most OVERFIT_STEPS_MAX: every step's loss and accuracy (and
                             statistics, under --diagnose) are kept on the device and written to
                             overfit.json
    --cpu-devices            at most CPU_DEVICES_PER_CORE per core: each device trains on a
                             core's thread and holds its own copy of the data, so more only adds
                             copies

--epochs has no limit: a long run is what was asked for, and its outputs grow by one line an
epoch (metrics.jsonl's holds each step's loss: about 10 bytes a step).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

from jaxmlp.config import Config, ConfigError

OVERFIT_STEPS_MAX = 100_000
CPU_DEVICES_PER_CORE = 4


def parameters(sizes: Sequence[int]) -> int:
    """Weights and biases of a network with layer `sizes`, inputs to outputs."""
    return sum(i * o + o for i, o in itertools.pairwise(sizes))


def slots(optimizer: str) -> int:
    """Arrays of the parameters' size the optimizer keeps (momentum: 1, adam: 2)."""
    return {"sgd": 0, "momentum": 1}.get(optimizer, 2)


def run_bytes(sizes: Sequence[int], optimizer: str, batch_size: int) -> int:
    """Bytes one run holds while it trains: parameters, gradients, optimizer slots and a batch's
    activations with their gradients, all float32."""
    activations = 2 * batch_size * sum(sizes)
    return 4 * (parameters(sizes) * (2 + slots(optimizer)) + activations)


def memory_bytes(device: Any) -> int | None:
    """The memory `device` offers: an accelerator's own (what JAX's allocator may use), a CPU's
    the machine's physical memory; None where neither says."""
    if getattr(device, "platform", "cpu") != "cpu":
        stats = device.memory_stats() or {}
        return stats.get("bytes_limit")
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(config: Config, sizes: Sequence[int], device: Any, runs: int = 1) -> None:
    """A ConfigError naming --hidden and --batch-size when `runs` runs of `config` (with layer
    `sizes`, inputs to outputs) side by side would not fit `device`'s memory: one run training,
    and the parameters and optimizer state of the others (the least they hold, so that a sweep
    that fits is never refused)."""
    have = memory_bytes(device)
    held = 4 * parameters(sizes) * (1 + slots(config.optimizer))
    need = run_bytes(sizes, config.optimizer, config.batch_size) + (runs - 1) * held
    if have is None or need <= have:
        return
    what = (f"{runs} runs of {parameters(sizes):,} parameters side by side" if runs > 1
            else f"{parameters(sizes):,} parameters")
    fewer = ", or fewer runs at a time (--max-parallel)" if runs > 1 else ""
    raise ConfigError(
        f"--hidden {' '.join(map(str, config.hidden))} with --batch-size {config.batch_size}: "
        f"training {what} needs at least {gigabytes(need)} (parameters, gradients, "
        f"{config.optimizer}'s state and a batch's activations, in float32), more than the "
        f"{gigabytes(have)} of memory this {getattr(device, 'platform', 'cpu')} device has: use "
        f"narrower or fewer layers, or a smaller batch{fewer}")


def check_overfit_steps(steps: int) -> None:
    if steps > OVERFIT_STEPS_MAX:
        raise ConfigError(f"--overfit-steps must be at most {OVERFIT_STEPS_MAX:,} (every step's "
                          f"loss and accuracy are kept and written to overfit.json), got "
                          f"{steps:,}")


def check_cpu_devices(count: int, cores: int) -> None:
    if count > CPU_DEVICES_PER_CORE * cores:
        raise ConfigError(f"--cpu-devices must be at most {CPU_DEVICES_PER_CORE * cores} "
                          f"({CPU_DEVICES_PER_CORE} per core; this machine has {cores}): each "
                          f"device trains on a core and holds a copy of the data, got {count}")
