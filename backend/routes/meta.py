"""Health and metadata routes: what optimizers, models, datasets and presets this lab offers."""
from __future__ import annotations

import threading
import time
from typing import Any

import anyio
from cachetools import TTLCache
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import text

from backend import throughput as measured
from backend.deps import SessionDep, SettingsDep
from backend.runner.states import states_metadata
from backend.schemas import Health
from trainer.registry import DATASETS, metadata

router = APIRouter(tags=["meta"])

_AVAILABILITY_TTL = 30.0
# data folder -> {dataset: available}; a few entries (one data folder per process in practice), 30 s each
_availability: TTLCache[str, dict[str, bool]] = TTLCache(maxsize=8, ttl=_AVAILABILITY_TTL, timer=time.monotonic)
_availability_lock = threading.Lock()  # cachetools caches are not thread-safe; routes run on a thread pool


def dataset_availability(data_dir: str) -> dict[str, bool]:
    """Which datasets are on this machine (cached for 30 s; the check imports the trainer's data module)."""
    with _availability_lock:
        value = _availability.get(data_dir)
    if value is None:
        from trainer.data import dataset_available

        value = {name: dataset_available(name, data_dir) for name in DATASETS}
        with _availability_lock:
            _availability[data_dir] = value
    return dict(value)


# Health checks get their own two threads: a flood of slow requests on the shared thread pool never delays them.
_HEALTH_THREADS = anyio.CapacityLimiter(2)


def _store_check(engine) -> None:  # noqa: ANN001 - an Engine
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get("/health", response_model=Health, summary="Liveness and store check (no token needed)",
            responses={503: {"description": "the run store is unreachable or busy"}})
async def health(request: Request) -> dict[str, str]:
    try:
        await anyio.to_thread.run_sync(_store_check, request.app.state.health_engine, limiter=_HEALTH_THREADS)
    except Exception as exc:  # noqa: BLE001 - report an unreachable store as 503, not 500
        raise HTTPException(503, f"run store unreachable: {type(exc).__name__}") from None
    return {"status": "ok"}


@router.get("/meta", summary="Optimizers, models, datasets (with availability), presets and run states")
def meta(settings: SettingsDep) -> dict[str, Any]:
    return {**metadata(dataset_availability(str(settings.data_dir))), "run_states": states_metadata()}


@router.get("/throughput", summary="This server's measured speed per setting (from completed runs), for estimates")
def throughput(session: SessionDep) -> dict[str, Any]:
    return measured.throughput(session)
