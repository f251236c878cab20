"""Min/max-preserving downsampling of a metric series, so loss spikes survive in a chart of N points.

numpy only: the API thins what it sends (backend.store) and the UI thins what it keeps (frontend.series) with
this one function.
"""
from __future__ import annotations

import numpy as np

__all__ = ["minmax_indices"]


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted, unique) of at most ``max_points`` points that keep the shape of ``values``.

    The first and last points are always kept. The points between them are cut into
    ``(max_points - 2) // 2`` buckets of (nearly) equal count; each bucket keeps the index of its
    smallest and of its largest value (M4-style without the bucket ends). NaN values (non-finite
    losses are stored as null) are ignored within a bucket; a bucket of only NaNs keeps its first point.
    Cost: O(n) vectorized numpy, no Python loop over points or buckets.

    Args:
        values: the series (1-D, float; NaN allowed).
        max_points: the most points to return (>= 2).

    Returns:
        int64 array of indices into ``values``.
    """
    n = int(values.shape[0])
    if max_points < 2:
        raise ValueError(f"Invalid max_points: {max_points} (need at least 2)")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    buckets = (max_points - 2) // 2
    if buckets == 0:
        return np.array([0, n - 1], dtype=np.int64)
    inner = np.asarray(values[1:n - 1], dtype=np.float64)
    m = inner.shape[0]  # > 2 * buckets, so no bucket is empty
    edges = np.linspace(0, m, buckets + 1).astype(np.int64)
    starts, sizes = edges[:-1], np.diff(edges)
    nan = np.isnan(inner)
    lo = np.where(nan, np.inf, inner)
    hi = np.where(nan, -np.inf, inner)
    pos = np.arange(m, dtype=np.int64)
    mins = np.repeat(np.minimum.reduceat(lo, starts), sizes)
    maxs = np.repeat(np.maximum.reduceat(hi, starts), sizes)
    argmin = np.minimum.reduceat(np.where(lo == mins, pos, m), starts)
    argmax = np.minimum.reduceat(np.where(hi == maxs, pos, m), starts)
    return np.unique(np.concatenate((np.array([0, n - 1], dtype=np.int64), argmin + 1, argmax + 1)))
