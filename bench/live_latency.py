"""Item 5: from a record reported inside a worker to its appearance through the API.

A real run (TR RMSprop on the Fashion-MNIST MLP, 8 s of optimization) is launched with ``POST /api/runs``; the
API's scheduler starts the worker, whose training function is ``bench.hooks:timed_run`` (the trainer plus a
timestamp per ``on_step`` call, written to a file at the end). Meanwhile a client polls
``GET /api/runs/{id}/metrics?since_step=<last seen>`` every 20 ms and notes when each step first appears.
Latency of a step = first seen − reported (one clock: same machine). The store settings are the defaults
(records flushed every 0.5 s or 500 records).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from backend.runner.states import TERMINAL_STATES, RunState
from bench.harness import ApiServer, bench_environment, temp_dir
from bench.hooks import TIMING_DIR_ENV
from bench.timing import median, percentile

__all__ = ["measure_live_latency", "latencies"]

FINAL = frozenset(TERMINAL_STATES)


def latencies(reported: dict[int, float], seen: dict[int, float]) -> list[float]:
    """seen − reported for every step present in both (seconds)."""
    return [seen[s] - reported[s] for s in sorted(reported) if s in seen]


def measure_live_latency(*, device: str = "cpu", seconds: float = 8.0, poll: float = 0.02) -> tuple[dict, dict, dict]:
    with temp_dir() as d:
        tmp = Path(d)
        timing_dir = tmp / "timings"
        timing_dir.mkdir()
        env = bench_environment(tmp, TRUSTLAB_TRAINER="bench.hooks:timed_run", **{TIMING_DIR_ENV: str(timing_dir)})
        config = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-rmsprop"},
                  "budget": {"seconds": seconds}, "device": device}
        seen: dict[int, float] = {}
        with ApiServer(tmp, env=env) as api, httpx.Client(base_url=api.url, timeout=30.0) as client:
            t_post = time.time()
            r = client.post("/api/runs", json=config)
            r.raise_for_status()
            run_id = r.json()["id"]
            last = -1
            status = RunState.QUEUED
            next_status = 0.0
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                body = client.get(f"/api/runs/{run_id}/metrics",
                                  params={"since_step": last, "max_points": 100_000}).json()  # the API's cap
                now = time.time()
                for p in body["points"]:
                    seen.setdefault(p["step"], now)
                if body["points"]:
                    last = max(last, body["points"][-1]["step"])
                if time.monotonic() >= next_status:
                    run = client.get(f"/api/runs/{run_id}").json()
                    if status in FINAL and not body["points"]:
                        break
                    status = run["status"]
                    next_status = time.monotonic() + 0.5
                time.sleep(poll)
            else:
                raise RuntimeError(f"run {run_id} did not finish in time (status {status})")
            if status != RunState.COMPLETED:
                raise RuntimeError(f"run {run_id} ended {status}: {run.get('error')}")
        files = list(timing_dir.glob("*.json"))
        if len(files) != 1:
            raise RuntimeError(f"expected one timing file from the worker, found {len(files)}")
        t = json.loads(files[0].read_text())
    reported = {int(s): float(ts) for s, ts in t["step_times"]}
    lat = latencies(reported, seen)
    if not lat:
        raise RuntimeError("no step was both reported and seen")
    details: dict[str, Any] = {
        "run": "tr-rmsprop, F-MNIST MLP, batch 512, " + f"{seconds:g} s budget", "poll_interval_s": poll,
        "steps_reported": len(reported), "steps_seen": len(seen),
        "median_s": median(lat), "p95_s": percentile(lat, 95), "max_s": max(lat), "min_s": min(lat),
        "post_to_first_record_s": min(reported.values()) - t_post,
        "post_to_first_visible_s": min(seen.values()) - t_post,
    }
    return {"live_latency_s": details["p95_s"]}, {}, details
