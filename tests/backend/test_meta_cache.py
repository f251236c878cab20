"""Tests for backend.routes.meta's dataset-availability cache (cachetools TTLCache, 30 s)."""
from __future__ import annotations

import time

from backend.routes import meta
from trainer import data as data_mod


def test_availability_is_cached_per_folder_for_the_ttl(monkeypatch, tmp_path):
    calls = []

    def fake_available(name, data_dir):
        calls.append((name, data_dir))
        return name == "mnist"

    monkeypatch.setattr(data_mod, "dataset_available", fake_available)
    meta._availability.clear()
    folder = str(tmp_path)
    first = meta.dataset_availability(folder)
    assert first["mnist"] is True and first["cifar10"] is False
    n = len(calls)
    first["mnist"] = False  # callers get a copy
    assert meta.dataset_availability(folder)["mnist"] is True and len(calls) == n  # cached
    meta.dataset_availability(str(tmp_path / "other"))
    assert len(calls) == 2 * n  # another folder is its own entry
    meta._availability.expire(time.monotonic() + meta._AVAILABILITY_TTL + 1)  # 30 s later
    meta.dataset_availability(folder)
    assert len(calls) == 3 * n
    meta._availability.clear()
