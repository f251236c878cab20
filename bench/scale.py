"""Item ``scale``: 50 tiny runs through each executor (local: CPU runs forked by its zygote; Ray: a loopback cluster).

Each executor gets its own API (in-process, job runner on) with the torch-free fake trainer
(``tests.backend.fake_trainer``: 20 steps, no sleeping), so what is measured is the runner itself:
queue → claim → process or actor start → records → final state. Both use PostgreSQL (a throwaway
cluster; Ray requires it) and 2 run slots (Ray: 2 CPUs). Figures: throughput (runs per minute, first
POST to last final state), the runner's overhead per run (started_at → finished_at, median; the trainer
itself takes milliseconds), and a check that all 50 completed and none is left queued or running.
"""
from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from backend.runner.states import RunState
from bench.postgres import create_database, throwaway_postgres
from bench.ray_cluster import LocalRayCluster, ray_available

__all__ = ["measure_scale"]

_RUN = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"backprops": 20},
        "eval_every": 1000}


def _created(response: Any) -> int:
    """The new run's id; a refused launch stops the measurement with the API's answer."""
    if response.status_code != 201:
        raise RuntimeError(f"POST /api/runs -> {response.status_code}: {response.text[:500]}")
    return response.json()["id"]


def _through(settings_kw: dict[str, Any], runs: int) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

    from backend.main import create_app
    from backend.settings import Settings

    with tempfile.TemporaryDirectory(prefix="trustlab-scale-") as tmp:
        settings = Settings(var_dir=Path(tmp) / "var", data_dir=Path(tmp) / "data", scheduler=True, gpus="",
                            max_concurrent_runs=2, poll_interval=0.1, flush_seconds=0.1,
                            trainer="tests.backend.fake_trainer:run", warm_datasets="", **settings_kw)
        # a loopback Host: the API's request gate accepts its own names only
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            time.sleep(3.0)  # let the executor settle (warm pool started, Ray connected)
            t0 = time.monotonic()
            ids = [_created(client.post("/api/runs", json={**_RUN, "seed": i % 100})) for i in range(runs)]
            deadline = t0 + 600
            while time.monotonic() < deadline:
                active = client.get("/api/runs", params={"status": "queued,running", "limit": 1}).json()["total"]
                if active == 0:
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - t0
            items = client.get("/api/runs", params={"limit": 500}).json()["items"]  # the API's page cap
    by_id = {r["id"]: r for r in items}
    states = [by_id[i]["status"] if i in by_id else "lost" for i in ids]
    from datetime import datetime

    def seconds(a: str, b: str) -> float:
        return (datetime.fromisoformat(b.rstrip("Z")) - datetime.fromisoformat(a.rstrip("Z"))).total_seconds()

    per_run = [seconds(by_id[i]["started_at"], by_id[i]["finished_at"]) for i in ids
               if i in by_id and by_id[i]["started_at"] and by_id[i]["finished_at"]]
    return {"runs": runs, "elapsed_s": round(elapsed, 2), "runs_per_minute": round(runs / elapsed * 60, 1),
            "overhead_per_run_median_s": round(statistics.median(per_run), 3) if per_run else None,
            "completed": states.count(RunState.COMPLETED), "left_active": sum(s in ("queued", "running") for s in states),
            "lost": states.count("lost")}


def measure_scale(*, runs: int = 50, executors: tuple[str, ...] = ("local", "ray")) -> tuple[dict, dict, dict]:
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    details: dict[str, Any] = {}
    with throwaway_postgres() as server:
        for kind in executors:
            url = create_database(server, f"scale_{kind}")
            if kind == "local":
                details[kind] = _through({"database_url": url}, runs)
            elif not ray_available():
                reasons[f"scale_{kind}_runs_per_minute"] = "Ray not installed (pip install -r requirements-ray.txt)"
                continue
            else:
                with LocalRayCluster(gcs_port=6392, port_base=20600) as cluster:
                    details[kind] = _through({"database_url": url, "executor": "ray", "ray_address": cluster.address,
                                              "ray_node_ip": cluster.head_ip, "ray_namespace": f"scale_{kind}"}, runs)
            d = details[kind]
            values[f"scale_{kind}_runs_per_minute"] = d["runs_per_minute"]
            values[f"scale_{kind}_overhead_per_run_s"] = d["overhead_per_run_median_s"]
            if d["completed"] != runs:
                reasons[f"scale_{kind}_runs_per_minute"] = f"only {d['completed']} of {runs} completed: {d}"
    return values, reasons, details


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    kinds = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("local", "ray")
    print(json.dumps(measure_scale(runs=n, executors=kinds), indent=1))
