"""sweep.json: what a sweep asked for, on which data and devices, and how long each call of
`run_sweep` took (`Session`; sessions accumulate over resumes)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from jaxmlp.config import Config
from jaxmlp.sweep.datasets import DataCache
from jaxmlp.sweep.plan import TRACED_FIELDS, Chunk, Run, group_options
from jaxmlp.sweep.program import Program
from jaxmlp.sweep.spec import SweepSpec
from jaxmlp.versions import versions


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclasses.dataclass
class Session:
    """One call of `run_sweep`, timed as it goes; `end_session` adds it to the record."""

    started: str = dataclasses.field(default_factory=_now)
    t_start: float = dataclasses.field(default_factory=time.perf_counter)
    trained: list[str] = dataclasses.field(default_factory=list)  # chunk ids trained
    compile_info: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    train_seconds: dict[int, float] = dataclasses.field(default_factory=dict)

    def program_ready(self, group: int, program: Program) -> None:
        """Note how group's program came (compiled or from the cache), once per group."""
        self.compile_info.setdefault(group, {"compile_seconds": program.seconds,
                                             "reused": program.reused,
                                             "runs_per_batch": program.runs_per_batch})

    def add_train_seconds(self, group: int, seconds: float) -> None:
        self.train_seconds[group] = self.train_seconds.get(group, 0.0) + seconds


def end_session(record: dict[str, Any], session: Session, pending: Sequence[Chunk],
                status: str) -> None:
    """Add this call's timings to the record (sessions accumulate over resumes)."""
    compile_info, train_seconds = session.compile_info, session.train_seconds
    entry = {
        "started": session.started,
        "status": status,
        "wall_seconds": time.perf_counter() - session.t_start,
        "chunks_trained": len(session.trained),
        "runs_trained": sum(len(c.runs) for c in pending if c.id in session.trained),
        "programs_compiled": sum(1 for i in compile_info.values() if not i["reused"]),
        "programs_reused": sum(1 for i in compile_info.values() if i["reused"]),
        "compile_seconds": sum(i["compile_seconds"] for i in compile_info.values()),
        "train_seconds": sum(train_seconds.values()),
    }
    for g, info in compile_info.items():
        program = record["programs"][g]
        if not info["reused"]:
            program["compile_seconds"] = round(info["compile_seconds"], 3)
        else:  # from the cache (another sweep or group compiled it): it cost nothing here
            program.setdefault("compile_seconds", 0.0)
        program["reused_from_cache"] = info["reused"]
        program["runs_per_batch"] = info["runs_per_batch"]
        program["train_seconds"] = round(program.get("train_seconds", 0.0)
                                         + train_seconds.get(g, 0.0), 3)
    record["sessions"].append(entry)
    record["status"] = status
    _totals(record)


def _programs(spec: SweepSpec, runs: Sequence[Run], groups: Sequence[tuple[Config, list[int]]],
              chunks: Sequence[Chunk], old: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Per group (one structure and data set; one compiled program each, which groups that
    differ only in their data share): its structure, variants, runs and chunks, and the timings
    that earlier sessions recorded for it."""
    by_group: dict[int, list[Chunk]] = {}
    for c in chunks:
        by_group.setdefault(c.group, []).append(c)
    programs = []
    old_programs = (old or {}).get("programs", [])
    for g, (key, run_ids) in enumerate(groups):
        structure = {k: v for k, v in key.to_dict().items() if k not in TRACED_FIELDS}
        picks = group_options(runs, run_ids)  # one program for several: each run picks its own
        if picks and picks.losses:
            structure = {k: v for k, v in structure.items() if k not in ("output", "error")}
            structure["losses"] = [list(pair) for pair in picks.losses]
        if picks and picks.activations:
            structure.pop("activation")
            structure["activations"] = list(picks.activations)
        variants = sorted({runs[i].variant for i in run_ids})
        program = {
            "program": g,
            "structure": structure,
            "variants": [spec.variants[v].name for v in variants],
            "runs": len(run_ids),
            "runs_per_call": by_group[g][0].size,
            "chunks": len(by_group[g]),
        }
        same = json.loads(json.dumps(structure))  # as sweep.json stores it (tuples as lists)
        if g < len(old_programs) and old_programs[g].get("structure") == same:
            # Timings of earlier sessions (a resumed sweep adds to them).
            for k in ("compile_seconds", "reused_from_cache", "train_seconds"):
                if k in old_programs[g]:
                    program[k] = old_programs[g][k]
        programs.append(program)
    return programs


def build_record(
    spec: SweepSpec,
    runs: Sequence[Run],
    groups: Sequence[tuple[Config, list[int]]],
    chunks: Sequence[Chunk],
    mesh: Mesh,
    max_parallel: int | None,
    options: dict[str, Any] | None,
    old: dict[str, Any] | None,
    datasets: DataCache,
) -> dict[str, Any]:
    """sweep.json: what was asked, on what, and how long it took (sessions accumulate)."""
    data_sets = {}
    for config, _ in groups:
        ds, note = datasets.dataset(config)
        data_sets[ds.name] = {"source": ds.source, "num_train_available": len(ds.y_train),
                              "num_test_available": len(ds.y_test), "fallback": note}
    return {
        "fingerprint": spec.fingerprint(),
        "spec": spec.to_dict(),
        "num_variants": len(spec.variants),
        "num_seeds": len(spec.seeds),
        "num_runs": len(runs),
        "num_groups": len(groups),
        "num_chunks": len(chunks),
        "traced_settings": list(TRACED_FIELDS),
        "max_parallel": max_parallel,
        "compiler_options": options or {},
        "datasets": data_sets,
        "programs": _programs(spec, runs, groups, chunks, old),
        "versions": versions(),
        "devices": [str(d) for d in mesh.devices.flat],
        "device_kind": mesh.devices.flat[0].device_kind,
        "process_count": jax.process_count(),
        "command": sys.argv,
        "sessions": list(old.get("sessions", [])) if old else [],
        "status": "running",
    }


def _totals(record: dict[str, Any]) -> None:
    s = record["sessions"]
    record["wall_seconds"] = round(sum(x["wall_seconds"] for x in s), 3)
    record["compile_seconds"] = round(sum(x["compile_seconds"] for x in s), 3)
    record["train_seconds"] = round(sum(x["train_seconds"] for x in s), 3)
    record["programs_compiled"] = sum(x["programs_compiled"] for x in s)
