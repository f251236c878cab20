"""Which GPUs the job runner may use, how many runs train at once, and how many threads each gets."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from backend.settings import Settings, cpu_count

__all__ = ["SlotPlan", "detect_gpus", "plan_slots"]

_MAX_CPU_RUNS = 4


@dataclass(frozen=True)
class SlotPlan:
    """``slots[i]`` is the GPU id run slot ``i`` is pinned to (None: CPU only)."""

    gpus: tuple[str, ...]
    slots: tuple[str | None, ...]
    torch_threads: int

    @property
    def limit(self) -> int:
        return len(self.slots)


def detect_gpus(spec: str | None) -> list[str]:
    """GPU ids from ``spec`` ("0,1"; "" or "-1" for none), else those ``nvidia-smi`` lists (none if it fails)."""
    if spec is not None:
        if spec in ("", "-1", "none"):
            return []
        return [g.strip() for g in spec.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def plan_slots(settings: Settings, gpus: list[str] | None = None) -> SlotPlan:
    """One run per visible GPU by default; on CPU one per core up to 4. Threads are split among the runs."""
    gpus = detect_gpus(settings.gpus) if gpus is None else gpus
    cores = cpu_count()
    limit = settings.max_concurrent_runs or (len(gpus) if gpus else max(1, min(_MAX_CPU_RUNS, cores)))
    slots = tuple(gpus[i % len(gpus)] for i in range(limit)) if gpus else (None,) * limit
    threads = settings.torch_threads or max(1, cores // limit)
    return SlotPlan(gpus=tuple(gpus), slots=slots, torch_threads=threads)
