"""Measure the store: the worker's batch-writer throughput, logging overhead of a real run, metrics query latency.

Run ``python -m bench.api_server_bench [--points 200000] [--no-train]``; it uses a temporary SQLite store.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np

from backend.settings import Settings


class _Timed:
    """Wraps a reporter and adds up the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def _tr_record(step: int) -> dict[str, Any]:
    return {"step": step, "backprops": 3 * step, "gradients": step, "hvps": 2 * step, "forwards": step,
            "epoch": step / 117, "wall_time": step * 0.05, "train_loss": 1 / math.sqrt(step) + 0.01 * math.sin(step),
            "grad_norm": 1.0, "step_norm": 0.1, "radius": 0.05, "new_radius": 0.055, "rho": 0.97, "cg_iterations": 2,
            "cg_exit": "boundary", "accepted": True, "pred_decrease": 0.01, "actual_decrease": 0.0097,
            "step_norm_m": 0.05}


def _percentiles(samples: list[float]) -> str:
    p50, p95, top = np.percentile(np.asarray(samples, dtype=float) * 1000, [50, 95, 100])
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {top:.1f} ms"


def _serve(database_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """uvicorn with the API only (no job runner) on a free port; returns (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(database_url=database_url, scheduler=False)
    env = settings.child_environment(TRUSTLAB_SCHEDULER="false")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, cwd=str(Path(__file__).resolve().parent.parent))
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000, help="steps in the synthetic run (default 200000)")
    parser.add_argument("--queries", type=int, default=50, help="requests per latency figure (default 50)")
    parser.add_argument("--no-train", action="store_true", help="skip the real-training overhead measurement")
    args = parser.parse_args()

    from backend import store
    from backend.runner import lifecycle
    from backend.db import make_engine, make_session_factory, migrate
    from backend.runner.worker import StoreReporter
    from trainer.config import RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        migrate(engine)
        sessions = make_session_factory(engine)

        def new_run(body: dict[str, Any]) -> tuple[int, RunConfig]:
            config = RunConfig.model_validate(body)
            with sessions() as session:
                run = store.create_run(session, config)
                session.commit()
            lifecycle.claim(engine, run.id)
            return run.id, config

        # 1. The worker's batch writer: StoreReporter.on_step fed as fast as Python can (defaults 0.5 s / 500).
        run_id, _ = new_run({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-uniform"},
                             "budget": {"backprops": 3 * args.points}})
        reporter = StoreReporter(engine, run_id, threading.Event())
        records = [_tr_record(s) for s in range(1, args.points + 1)]
        t0 = time.perf_counter()
        for record in records:
            reporter.on_step(record)
        reporter.finish_records()
        elapsed = time.perf_counter() - t0
        print(f"batch writer: {args.points} TR step records in {elapsed:.2f} s = {args.points / elapsed:,.0f} records/s "
              f"({reporter.flush_time:.2f} s inside database writes; {1e6 * elapsed / args.points:.1f} us per on_step)")
        del records
        gc.collect()
        gc.freeze()  # as the API process does after startup (backend.main)

        # 2a. Server work per request, as CPU time of this thread (immune to other processes on a busy machine).
        from pydantic_core import to_json

        for max_points in (2000, 500):
            wall, cpu = [], []
            for _ in range(args.queries):
                w0, c0 = time.perf_counter(), time.thread_time()
                with engine.connect() as conn:
                    to_json(store.metrics_page(conn, run_id, since_step=None, max_points=max_points))
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
            print(f"metrics query + JSON in-process (full range, max_points={max_points}): CPU {_percentiles(cpu)}; "
                  f"wall {_percentiles(wall)}")

        # 2b. Metrics latency: a separate API process (uvicorn), requests over loopback HTTP with keep-alive
        # (stdlib http.client: a light client, so the figures are the server's, not the client's parsing).
        proc, base = _serve(url, Path(tmp) / "uvicorn.log")
        host, port = base.rsplit("/", 1)[1].split(":")
        try:
            http = HTTPConnection(host, int(port), timeout=30)
            deadline = time.monotonic() + 30
            while True:
                try:
                    http.request("GET", "/api/meta")  # also waits for the startup warm-up (torch import)
                    if http.getresponse().status == 200:
                        break
                except OSError:
                    http.close()
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit((Path(tmp) / "uvicorn.log").read_text())
                time.sleep(0.1)
            http.close()  # the answer above was not read to the end
            time.sleep(1.0)
            for label, query in (("full range, max_points=2000", "max_points=2000"),
                                 ("full range, max_points=500", "max_points=500"),
                                 ("last 10% via since_step, max_points=2000",
                                  f"since_step={int(args.points * 0.9)}&max_points=2000"),
                                 ("live poll, since_step = last - 20", f"since_step={args.points - 20}")):
                path = f"/api/runs/{run_id}/metrics?{query}"
                samples = []
                for i in range(args.queries + 1):
                    t0 = time.perf_counter()
                    http.request("GET", path)
                    response = http.getresponse()
                    body = response.read()
                    if i:  # the first one warms up
                        samples.append(time.perf_counter() - t0)
                    assert response.status == 200, body[:300]
                points = len(json.loads(body)["points"])
                print(f"GET metrics ({label}), {args.points} points stored: {_percentiles(samples)}; "
                      f"{points} points returned")
            http.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        # 3. A real run: the share of optimization time spent in the reporter (tiny MLP steps: the worst case).
        if not args.no_train:
            from trainer import run as train

            run2, config = new_run({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"},
                                    "budget": {"epochs": 1}, "eval_every": 100000, "test_subset": 1000})
            timed = _Timed(StoreReporter(engine, run2, threading.Event()))
            t0 = time.perf_counter()
            summary = train(config, timed)
            total = time.perf_counter() - t0
            print(f"real run (Fashion-MNIST MLP, SGD, 1 epoch = {summary['steps']} steps; {summary['wall_time']:.2f} s "
                  f"optimizing, {total:.2f} s in all): {timed.seconds * 1000:.0f} ms inside the reporter = "
                  f"{100 * timed.seconds / summary['wall_time']:.2f}% of the optimization time")
        engine.dispose()


if __name__ == "__main__":
    main()
