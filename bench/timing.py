"""Small timing helpers: a synchronizing clock and order statistics."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["Clock", "median", "percentile", "summarize"]


class Clock:
    """``perf_counter`` that first waits for queued GPU work when the device is a GPU."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        dev = torch.device(device)
        self._sync: Callable[[], None] = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self._sync()
        return time.perf_counter()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"Invalid percentile: {q}")
    return float(np.percentile(np.asarray(values, dtype=float), q))  # linear interpolation (numpy's default)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, median, p5/p95, min, max of a sample."""
    return {"n": len(values), "median": median(values), "p5": percentile(values, 5), "p95": percentile(values, 95),
            "min": float(min(values)), "max": float(max(values))}
