"""Compare page at scale: first load, payload and one live refresh of a 40-run x 7,000-step comparison, through the
UI's own data code (``frontend.api_client.ApiClient`` + ``frontend.live.LiveData``, as the Compare page calls them).

A comparison of 40 runs (20 seeds x TR RMSprop and Adam) is written through the worker's ``StoreReporter``
(TR-shaped records with 10% rejected steps for the TR runs) into a fresh SQLite store and left running; then
``uvicorn backend.main:app`` serves it. First load: ``get_comparison`` + ``LiveData.refresh`` with the fields the
loss and TR charts need (x-axis backprops), from an empty cache, timed wall-clock; the payload is the bytes of
every response body of that load. Refresh: 10 new steps are written to every run, then ``get_comparison`` +
``LiveData.refresh`` again (one batched request), ``refreshes`` times; the median is the headline.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ApiServer, bench_environment, open_store, temp_dir
from bench.metrics_query import synthetic_records
from bench.timing import median, percentile
from trainer.registry import is_trust_region

__all__ = ["measure_compare_load"]


class _CountingTransport(httpx.HTTPTransport):
    """Counts response body bytes (what crosses the wire after decoding)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.bytes += len(response.content)
        return response


def _first_order(record: dict[str, Any]) -> dict[str, Any]:
    tr_only = ("radius", "new_radius", "rho", "cg_iterations", "cg_exit", "accepted", "pred_decrease",
               "actual_decrease", "step_norm_m", "hvps")
    return {k: v for k, v in record.items() if k not in tr_only}


def _fill(engine: Any, seeds: int, steps: int) -> tuple[int, list[int], list[Any]]:
    from backend.db import make_session_factory
    from backend.schemas import ComparisonCreate
    from backend.store import create_comparison
    from backend.tables import Run, utcnow
    from backend.runner.worker import StoreReporter
    from sqlalchemy import update

    body = ComparisonCreate(name="bench 40 runs", dataset="fashion-mnist", model="mlp", budget={"epochs": 100},
                            seeds=list(range(seeds)), optimizers=[{"name": "tr-rmsprop"}, {"name": "adam"}])
    with make_session_factory(engine)() as session:
        comparison, runs = create_comparison(session, body)
        session.commit()
        cid, ids, optimizers = comparison.id, [r.id for r in runs], [r.optimizer for r in runs]
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id.in_(ids)).values(status="running", started_at=utcnow()))
    reporters = []
    for i, (rid, opt) in enumerate(zip(ids, optimizers)):
        rep = StoreReporter(engine, rid, threading.Event(), flush_seconds=60, flush_records=5000)
        rep.on_start({"device": "cpu"})
        shape = (lambda r: r) if is_trust_region(opt) else _first_order
        for rec in synthetic_records(steps, seed=i):
            rep.on_step(shape(rec))
        rep.flush()
        reporters.append((rep, shape, i))
    return cid, ids, reporters


def measure_compare_load(*, seeds: int = 20, steps: int = 7000, refreshes: int = 5,
                         new_steps: int = 10) -> tuple[dict, dict, dict]:
    from frontend.api_client import ApiClient
    from frontend.live import LiveData, chart_fields
    from frontend.settings import Settings

    settings = Settings()
    with temp_dir() as d:
        tmp = Path(d)
        engine = open_store(tmp)
        t0 = time.perf_counter()
        cid, ids, reporters = _fill(engine, seeds, steps)
        fill_seconds = time.perf_counter() - t0
        with ApiServer(tmp, env=bench_environment(tmp, TRUSTLAB_SCHEDULER="false")) as server:
            transport = _CountingTransport()
            api = ApiClient(server.url, timeout=60.0, transport=transport)
            fields = lambda run: chart_fields(run, "backprops")  # noqa: E731 - what the Compare page asks for
            warm = LiveData(max_points=settings.max_points)  # warm the API process (imports, page cache)
            warm.refresh(api, api.get_comparison(cid)["runs"], fields=fields)
            transport.bytes = 0
            live = LiveData(max_points=settings.max_points)
            t0 = time.perf_counter()
            runs = api.get_comparison(cid)["runs"]
            live.refresh(api, runs, fields=fields)
            first_load = time.perf_counter() - t0
            payload = transport.bytes
            rows_after_load = sum(len(df) for df in live.metrics.values())
            ticks, tick_bytes = [], []
            for k in range(refreshes):
                for rep, shape, i in reporters:
                    start = steps + k * new_steps
                    for rec in synthetic_records(start + new_steps, seed=i):
                        if rec["step"] > start:
                            rep.on_step(shape(rec))
                    rep.flush()
                transport.bytes = 0
                t0 = time.perf_counter()
                runs = api.get_comparison(cid)["runs"]
                new = live.refresh(api, runs, fields=fields)
                ticks.append(time.perf_counter() - t0)
                tick_bytes.append(transport.bytes)
                if new != len(ids) * new_steps:
                    raise RuntimeError(f"refresh brought {new} points, expected {len(ids) * new_steps}")
            api.close()
        engine.dispose()
    details = {
        "runs": len(ids), "steps_per_run": steps, "fill_seconds": fill_seconds, "max_points": settings.max_points,
        "first_load_seconds": first_load, "first_load_bytes": payload, "first_load_requests": 2,
        "cached_rows_after_load": rows_after_load, "refresh_ms": [t * 1e3 for t in ticks],
        "refresh_p95_ms": percentile(ticks, 95) * 1e3, "refresh_bytes": tick_bytes,
        "what": "get_comparison + LiveData.refresh (one POST /api/metrics/batch), x-axis backprops, fields the "
                "loss and TR charts draw; httpx keep-alive client on the same machine",
    }
    return ({"compare_first_load_s_40_runs": first_load, "compare_payload_mb_40_runs": payload / 1e6,
             "compare_refresh_ms_40_runs": median(ticks) * 1e3}, {}, details)
