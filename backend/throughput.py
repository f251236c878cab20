"""This server's measured training speed per setting, from finished runs: what the Launch page's duration estimate
uses (GET /api/throughput). Bounded (the newest completed runs only) and cached."""
from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from cachetools import TTLCache
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.runner.states import RunState
from backend.tables import Run
from trainer.registry import DATASETS

__all__ = ["throughput", "clear_cache", "MAX_RUNS", "TTL_SECONDS"]

MAX_RUNS = 500  # the newest completed runs looked at
TTL_SECONDS = 30.0
_cache: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=4, ttl=TTL_SECONDS, timer=time.monotonic)
_lock = threading.Lock()  # cachetools caches are not thread-safe; routes run on a thread pool


def _measure(session: Session) -> dict[str, Any]:
    rows = session.execute(
        select(Run.config, Run.optimizer, Run.last_backprops, Run.last_epoch, Run.last_wall_time)
        .where(Run.status == RunState.COMPLETED, Run.last_wall_time > 0, Run.last_backprops > 0)
        .order_by(Run.id.desc()).limit(MAX_RUNS)).all()
    groups: dict[tuple[str, str, str, int | None], dict[str, list[float]]] = {}
    for config, optimizer, backprops, epochs, wall in rows:
        cfg = config or {}
        dataset, model = str(cfg.get("dataset")), str(cfg.get("model"))
        key = (dataset, model, str(optimizer), cfg.get("batch_size"))
        g = groups.setdefault(key, {"per_backprop": [], "per_sample": []})
        g["per_backprop"].append(float(wall) / float(backprops))
        n_train = cfg.get("train_subset") or (DATASETS[dataset].train_size if dataset in DATASETS else None)
        if epochs and n_train:
            g["per_sample"].append(float(wall) / (float(epochs) * float(n_train)))
    items = [{"dataset": d, "model": m, "optimizer": o, "batch_size": b, "runs": len(v["per_backprop"]),
              "seconds_per_backprop": statistics.median(v["per_backprop"]),
              "seconds_per_sample": statistics.median(v["per_sample"]) if v["per_sample"] else None}
             for (d, m, o, b), v in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]
    return {"items": items, "runs_used": len(rows),
            "note": f"median optimization wall time (evaluations excluded) of the newest {MAX_RUNS} completed runs "
                    "at most, per dataset, model, optimizer and batch size"}


def throughput(session: Session) -> dict[str, Any]:
    """Seconds per backprop and per training sample of each (dataset, model, optimizer, batch size) this server
    has completed runs of: the median over those runs (cached for ``TTL_SECONDS``)."""
    with _lock:
        cached = _cache.get("all")
    if cached is None:
        cached = _measure(session)
        with _lock:
            _cache["all"] = cached
    return cached


def clear_cache() -> None:
    """Forget the cached measurement (tests)."""
    with _lock:
        _cache.clear()
