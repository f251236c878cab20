"""Load benchmark (issue 8): concurrent clients poll incremental and full metrics while runs train.

A real API (uvicorn, SQLite file, real worker processes with the real trainer) on loopback; ``clients``
asyncio/httpx clients each loop: GET metrics?since_step=<last seen> (incremental poll, what the UI does every
refresh, 1.5 s by default) and every fifth time the full downsampled page, then wait ``interval`` seconds
(default 0.5: each client polls three times as often as the UI). Bounded: ``seconds`` of polling, per-request timeout.
Reports p50/p95/p99 latency of both kinds and error counts (transport errors, 5xx, 503 "busy").

Usage: python -m bench.load [--clients 100] [--runs 4] [--seconds 60] [--interval 0.5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import ApiServer, bench_environment

__all__ = ["measure_load", "main"]

_RUN = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "batch_size": 32,
        "eval_every": 200, "device": "cpu"}


_TIMEOUT_S = 30.0  # a request slower than this counts as an error (ReadTimeout), not as a latency


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def _client(http: httpx.AsyncClient, run_ids: list[int], deadline: float, out: dict[str, Any], k: int,
                  interval: float) -> None:
    since: dict[int, int] = {}
    i = k
    while time.monotonic() < deadline:
        run_id = run_ids[i % len(run_ids)]
        full = i % 5 == 0
        params = {"max_points": 2000} if full else {"since_step": since.get(run_id, -1), "max_points": 2000}
        t0 = time.perf_counter()
        try:
            r = await http.get(f"/api/runs/{run_id}/metrics", params=params)
        except httpx.HTTPError as exc:  # counted, and named in the details (a timeout, a refused connection...)
            out["errors"] += 1
            out["error_kinds"][type(exc).__name__] = out["error_kinds"].get(type(exc).__name__, 0) + 1
        else:
            ms = 1000 * (time.perf_counter() - t0)
            if r.status_code == 200:
                out["full" if full else "incremental"].append(ms)
                last = r.json().get("last_step")
                if last is not None and not full:
                    since[run_id] = last
            else:
                out["errors"] += 1
                kind = f"HTTP {r.status_code}"
                out["error_kinds"][kind] = out["error_kinds"].get(kind, 0) + 1
                out["5xx"] += r.status_code >= 500
                out["503"] += r.status_code == 503
        i += 1
        await asyncio.sleep(interval)


async def _poll(url: str, run_ids: list[int], clients: int, seconds: float, interval: float) -> dict[str, Any]:
    out: dict[str, Any] = {"incremental": [], "full": [], "errors": 0, "5xx": 0, "503": 0, "error_kinds": {}}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=_TIMEOUT_S, limits=limits) as http:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_client(http, run_ids, deadline, out, k, interval) for k in range(clients)))
    return out


def measure_load(*, clients: int = 100, runs: int = 4, seconds: float = 60.0, interval: float = 0.5,
                 trainer: str = "trainer:run") -> tuple[dict, dict, dict]:
    """(values, reasons, details) as bench/run.py expects; keys load_incremental_p99_ms, load_errors, load_5xx...

    ``trainer``: the training function of the workers (tests use a fake one).
    """
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = bench_environment(tmp, TRUSTLAB_MAX_CONCURRENT_RUNS=str(runs), TRUSTLAB_TRAINER=trainer)
        with ApiServer(tmp, env=env) as api, httpx.Client(base_url=api.url, timeout=30.0) as client:
            run_ids = []
            for seed in range(runs):
                r = client.post("/api/runs", json={**_RUN, "seed": seed, "budget": {"seconds": seconds + 60}})
                r.raise_for_status()
                run_ids.append(r.json()["id"])
            t0 = time.monotonic()
            while any(client.get(f"/api/runs/{i}").json()["status"] == "queued" for i in run_ids):
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("runs did not start within 60 s")
                time.sleep(0.5)
            out = asyncio.run(_poll(api.url, run_ids, clients, seconds, interval))
            statuses = [client.get(f"/api/runs/{i}").json()["status"] for i in run_ids]
            for i in run_ids:
                client.post(f"/api/runs/{i}/cancel")
    inc, full = out["incremental"], out["full"]
    values = {"load_incremental_p50_ms": _pct(inc, 50), "load_incremental_p95_ms": _pct(inc, 95),
              "load_incremental_p99_ms": _pct(inc, 99), "load_full_p50_ms": _pct(full, 50),
              "load_full_p95_ms": _pct(full, 95), "load_full_p99_ms": _pct(full, 99),
              "load_errors": float(out["errors"]), "load_5xx": float(out["5xx"])}
    details = {"clients": clients, "runs": runs, "seconds": seconds, "interval_s": interval,
               "requests": len(inc) + len(full) + out["errors"],
               "busy_503": out["503"], "error_kinds": out["error_kinds"], "run_statuses_during_load": statuses,
               "client_timeout_s": _TIMEOUT_S}
    return values, {}, details


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=0.5, help="seconds each client waits between polls")
    args = p.parse_args(argv)
    values, _, details = measure_load(clients=args.clients, runs=args.runs, seconds=args.seconds,
                                      interval=args.interval)
    print(json.dumps({**values, **details}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
