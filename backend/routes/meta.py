"""Health and metadata routes: what optimizers, models, datasets and presets this lab offers."""
from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import text

from backend.deps import SettingsDep
from backend.runner.states import states_metadata
from backend.schemas import Health
from trainer.registry import DATASETS, metadata

router = APIRouter(tags=["meta"])

_AVAILABILITY_TTL = 30.0
_availability: dict[str, Any] = {"at": -1e9, "key": None, "value": {}}


def dataset_availability(data_dir: str) -> dict[str, bool]:
    """Which datasets are on this machine (cached for 30 s; the check imports the trainer's data module)."""
    now = time.monotonic()
    if _availability["key"] != data_dir or now - _availability["at"] > _AVAILABILITY_TTL:
        from trainer.data import dataset_available

        _availability.update(at=now, key=data_dir,
                             value={name: dataset_available(name, data_dir) for name in DATASETS})
    return dict(_availability["value"])


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
