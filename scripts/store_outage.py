"""Measure a store outage ridden out: ``python -m scripts.store_outage [--outage 75] [--runs 2] [--port N]``.

Starts a throwaway PostgreSQL (bench.postgres), an API with the job runner (local executor, real trainer on a
tiny Fashion-MNIST run), launches ``--runs`` runs, stops PostgreSQL (``pg_ctl stop -m fast``) for ``--outage``
seconds once they train, starts it again and waits for the runs to end. Prints, per run: its final state,
steps trained (the trainer's summary), steps stored, gaps, and the API's answers during the outage
(status codes of /api/runs and the metrics routes). Goal: 0 points and 0 steps lost.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from sqlalchemy import func, select

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
from fastapi.testclient import TestClient  # noqa: E402

from backend.main import create_app  # noqa: E402
from backend.settings import Settings  # noqa: E402
from backend.tables import StepMetric  # noqa: E402
from bench.postgres import create_database, throwaway_cluster  # noqa: E402

RUN = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "batch_size": 32,
       "train_subset": 512, "test_subset": 256, "eval_train_size": 256, "eval_every": 5000}


def _stored(client: TestClient, run_id: int) -> tuple[int, int, int]:
    with client.app.state.engine.connect() as conn:
        row = conn.execute(select(func.count(), func.min(StepMetric.step), func.max(StepMetric.step))
                           .where(StepMetric.run_id == run_id)).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=75.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--runs", type=int, default=2, help="runs training through the outage")
    parser.add_argument("--port", type=int, default=None, help="PostgreSQL port (default: a free one)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="trustlab-outage-"))
    with throwaway_cluster(args.port) as cluster:
        url = create_database(cluster.url, "outage")
        settings = Settings(var_dir=tmp / "var", database_url=url, data_dir=tmp / "data", gpus="",
                            max_concurrent_runs=args.runs, torch_threads=1, warm_workers=0,
                            allowed_hosts="testserver", store_retry_max_seconds=2.0)
        with TestClient(create_app(settings)) as client:
            budget = {"seconds": args.outage + 30}
            ids = [client.post("/api/runs", json={**RUN, "seed": i, "budget": budget}).json()["id"]
                   for i in range(args.runs)]
            deadline = time.monotonic() + 300
            while any(_stored(client, i)[0] < 10 for i in ids):
                if time.monotonic() > deadline:
                    raise SystemExit("the runs did not start training within 300 s")
                time.sleep(0.2)
            cluster.stop("fast")
            t0 = time.monotonic()
            answers: collections.Counter[str] = collections.Counter()
            while time.monotonic() - t0 < args.outage:
                for path in ("/api/runs", f"/api/runs/{ids[0]}/metrics"):
                    r = client.get(path)
                    answers[f"GET {path.replace(str(ids[0]), '{id}')}: {r.status_code}"
                            f"{' Retry-After ' + r.headers['Retry-After'] if 'Retry-After' in r.headers else ''}"] += 1
                r = client.post("/api/metrics/batch", json={"runs": [{"id": ids[0]}]})
                answers[f"POST /api/metrics/batch: {r.status_code}"] += 1
                time.sleep(1.0)
            cluster.start()
            outage = time.monotonic() - t0
            deadline = time.monotonic() + 300
            runs = []
            for run_id in ids:
                while (run := client.get(f"/api/runs/{run_id}").json())["status"] in ("queued", "running"):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"run {run_id} did not end within 300 s of the store's return")
                    time.sleep(0.5)
                runs.append(run)
            report = {"outage_seconds": round(outage, 1), "answers_during_outage": dict(answers), "runs": []}
            for run in runs:
                count, first, last = _stored(client, run["id"])
                trained = int((run.get("summary") or {}).get("steps", 0))
                report["runs"].append({"id": run["id"], "status": run["status"], "error": run["error"],
                                       "steps_trained": trained, "points_stored": count,
                                       "gaps": (last - first + 1 - count) if count else 0,
                                       "steps_lost": trained - count})
    print(json.dumps(report, indent=2))
    return 0 if all(r["steps_lost"] == 0 and r["gaps"] == 0 and r["status"] == "completed"
                    for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
