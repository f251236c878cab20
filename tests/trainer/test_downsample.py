"""Min/max-preserving downsampling against a naive per-bucket reference."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.downsample import minmax_indices


def _reference(values: np.ndarray, max_points: int) -> set[int]:
    n = len(values)
    buckets = (max_points - 2) // 2
    edges = np.linspace(0, n - 2, buckets + 1).astype(int)
    keep = {0, n - 1}
    for a, b in zip(edges[:-1], edges[1:]):
        chunk = values[1 + a:1 + b]
        finite = np.where(np.isnan(chunk), np.inf, chunk)
        keep.add(1 + a + int(np.argmin(finite)))
        keep.add(1 + a + int(np.argmax(np.where(np.isnan(chunk), -np.inf, chunk))))
    return keep


@pytest.mark.parametrize("n,max_points", [(10, 20), (1000, 100), (12345, 2000), (5001, 7), (100, 99)])
def test_matches_reference(n: int, max_points: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.standard_normal(n).cumsum()
    values[rng.integers(0, n, size=max(1, n // 50))] = np.nan
    keep = minmax_indices(values, max_points)
    assert len(keep) <= max(max_points, 0) or n <= max_points
    if n <= max_points:
        assert keep.tolist() == list(range(n))
    else:
        assert set(keep.tolist()) == _reference(values, max_points)
    assert np.all(np.diff(keep) > 0)


def test_spike_first_and_last_survive() -> None:
    values = np.ones(200_000)
    values[123_457] = 50.0
    values[77_777] = -3.0
    keep = minmax_indices(values, 300)
    assert len(keep) <= 300
    assert {0, 199_999, 123_457, 77_777} <= set(keep.tolist())


def test_all_nan_bucket_keeps_a_point_and_tiny_budgets() -> None:
    values = np.full(50, np.nan)
    assert len(minmax_indices(values, 10)) >= 2
    assert minmax_indices(np.arange(10.0), 3).tolist() == [0, 9]
    with pytest.raises(ValueError, match="Invalid max_points"):
        minmax_indices(np.arange(10.0), 1)
