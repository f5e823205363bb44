"""Sweeps: a grid of variants times seeds, trained as a few vmapped, sharded programs.

A question like "does dividing by the batch size matter?" deserves several seeds of several
variants, with statistics, not one run of each. This package makes that cheap:

- **One program per structure.** Settings split in two. *Traced* settings (the seed, the
  learning rate, the input scaling, the initialisation scale and the dropout rates, though
  whether a rate is above 0 is structural) enter the compiled program as
  values, so `jax.vmap` trains every combination of them at once. *Structural* settings (loss,
  output transform, reductions, architecture, optimizer, batch size, epochs) change the
  program itself and compile separately, once each. 2 structural variants x 4 learning rates x
  8 seeds is 2 programs, not 64. Settings that only choose the data (`plan.DATA_FIELDS`: the
  data set, the training subset, the pixel order) train as groups of their own on their own
  arrays, sharing the program when the shapes agree.
- **Sharded.** The run axis is split over every device with `jax.sharding` (a `Mesh` with one
  axis, `runs`, and `jax.shard_map`), so several GPUs, or several hosts after
  `jax.distributed.initialize()`, share the runs with no change to the experiment. On a CPU the
  command line makes one JAX device per core (`compilation.split_cpu_into_devices`), so runs
  train side by side on every core.
- **Batched to fit.** Each device trains its runs `runs_per_batch` at a time: all of them
  vmapped on an accelerator; on a CPU as many as fit half the last-level cache, in a loop
  (`auto_runs_per_batch`). Vmapping every run on a CPU made each run slower than training it
  alone (benchmarks/README.md).
- **Chunked.** `max_parallel=K` trains at most K runs at a time; memory grows with K, not with
  the grid.
- **Resumable.** Each chunk's results are written atomically as it finishes; the same command
  with the same `--out` skips finished chunks.
- **Cached, explicitly.** Compiled programs and loaded data sets live in a `ProgramCache` and a
  `DataCache` that the caller owns: hand the same ones to several sweeps (an experiment's main
  grid, then its controls) and each structure compiles once, each data set loads once.

Outputs in `out/`: `results.csv` (one row per run per epoch), `runs.csv` (one row per run),
`summary.csv` and `summary.md` (per variant: mean, std and 95% bootstrap CI over seeds),
`sweep.json` (spec, versions, devices, timings), `curves.png`, `final_accuracy.png`, and
`chunks/` (the raw per-chunk results that make resuming possible).

The modules, each importing only those above it: `spec` (what to train: `SweepSpec`,
`make_spec`, spec files); `plan` (runs, structures, chunks); `datasets` (`DataCache`);
`program` (the compiled, sharded program of one structure, `ProgramCache`, `train_runs`);
`result` (`SweepResult`); `store` (chunk files, the output folder); `tables` (CSV files,
summary.md, findings, plots); `trajectories` (`compare_trajectories`); `record` (sweep.json and
its sessions); `run` (`run_sweep`); `cli` (`python -m jaxmlp.sweep`, not re-exported: it is the
command on top of the package). This package re-exports
their public names.

    python -m jaxmlp.sweep --spec spec.toml --out runs/my-sweep
    python -m jaxmlp.sweep --dataset mnist --hidden 64 --epochs 3 --optimizer sgd \\
        --grid learning_rate=0.01,0.1,1 --seeds 5 --out runs/lr
"""

from __future__ import annotations

from jaxmlp.sweep.datasets import DataCache, sweep_data
from jaxmlp.sweep.plan import (
    PICKED_FIELDS,
    TRACED_FIELDS,
    Chunk,
    Run,
    chunk_size,
    group_key,
    group_runs,
    plan_chunks,
    plan_runs,
    shared_key,
    structural_key,
)
from jaxmlp.sweep.program import (
    COMPILE_MODES,
    DEFAULT_CACHE_BYTES,
    FAST_CPU_OPTIONS,
    PROBES,
    RESULT_FIELDS,
    Program,
    ProgramCache,
    auto_runs_per_batch,
    compiler_options,
    execute,
    get_program,
    key_data,
    last_level_cache_bytes,
    make_program,
    place_data,
    run_mesh,
    run_step_bytes,
    stack_hypers,
    train_runs,
)
from jaxmlp.sweep.record import Session
from jaxmlp.sweep.result import SweepResult
from jaxmlp.sweep.run import run_sweep
from jaxmlp.sweep.spec import (
    SpecError,
    SweepSpec,
    Variant,
    format_value,
    make_spec,
    read_spec_file,
    spec_from_dict,
    validate_spec,
)
from jaxmlp.sweep.store import CHUNKS, SWEEP_JSON, SweepError
from jaxmlp.sweep.tables import (
    generic_findings,
    results_columns,
    results_rows,
    run_summary,
    summarize,
    summary_markdown,
    write_findings,
    write_outputs,
)
from jaxmlp.sweep.trajectories import compare_trajectories

__all__ = [
    "CHUNKS", "COMPILE_MODES", "DEFAULT_CACHE_BYTES", "FAST_CPU_OPTIONS", "PICKED_FIELDS",
    "PROBES", "RESULT_FIELDS", "SWEEP_JSON", "TRACED_FIELDS", "Chunk", "DataCache", "Program",
    "ProgramCache", "Run", "Session", "SpecError", "SweepError", "SweepResult", "SweepSpec",
    "Variant", "auto_runs_per_batch", "chunk_size", "compare_trajectories", "compiler_options",
    "execute", "format_value", "generic_findings", "get_program", "group_key", "group_runs",
    "key_data", "last_level_cache_bytes", "make_program", "make_spec", "place_data", "plan_chunks",
    "plan_runs", "read_spec_file", "results_columns", "results_rows", "run_mesh", "run_step_bytes",
    "run_summary", "run_sweep", "shared_key", "spec_from_dict", "stack_hypers", "structural_key",
    "summarize", "summary_markdown", "sweep_data", "train_runs", "validate_spec", "write_findings",
    "write_outputs",
]
