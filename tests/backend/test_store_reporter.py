"""StoreReporter's batched write path against a naive per-record reference: stored rows, block rollups, when rows
become visible, and what a crash loses."""
from __future__ import annotations

import enum
import math
import random
import threading
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend import store
from backend.rollup import BlockRollup
from backend.runner.worker import StoreReporter
from backend.tables import METRIC_COLUMNS, MetricBlock, Run
from tests.backend.conftest import MLP_RUN
from trainer.reporting import clean_scalar


class _Exit(enum.Enum):
    BOUNDARY = "boundary"


def _records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Step records with the value types a trainer may hand over: numpy and enum scalars, non-finite floats,
    missing TR fields, booleans."""
    rng = random.Random(seed)
    out = []
    for step in range(1, n + 1):
        loss: Any = 1.0 + rng.random()
        if step % 17 == 0:
            loss = np.float32(loss)
        if step % 29 == 0:
            loss = float("nan")
        rec: dict[str, Any] = {"step": step, "backprops": np.int64(2 * step) if step % 5 == 0 else 2 * step,
                               "gradients": step, "hvps": step, "forwards": 0, "epoch": step / 100,
                               "wall_time": step * 0.01, "train_loss": loss,
                               "grad_norm": float("inf") if step % 31 == 0 else rng.random(), "step_norm": None}
        if step % 2:
            rec.update({"radius": 0.1, "rho": np.float64(rng.random()), "cg_iterations": 3,
                        "cg_exit": _Exit.BOUNDARY, "accepted": bool(step % 3), "new_radius": 0.2})
        out.append(rec)
    return out


def _naive_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the store must hold: every field of every record through the one cleaning rule."""
    return [{name: clean_scalar(rec.get(name)) for name in METRIC_COLUMNS} for rec in records]


def _naive_blocks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roll, out = BlockRollup(), []
    for row in rows:
        out += roll.add(row["step"], row["train_loss"])
    last = roll.close()
    return out + ([last] if last else [])


def _stored(client: TestClient, run_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with client.app.state.engine.connect() as conn:
        rows = [p for chunk in store.iter_metrics(conn, run_id) for p in chunk]
        cols = [c for c in MetricBlock.__table__.columns if c.name != "run_id"]
        blocks = [dict(r._mapping) for r in conn.execute(select(*cols).where(MetricBlock.run_id == run_id)
                                                         .order_by(MetricBlock.block))]
    return rows, blocks


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _reporter(client: TestClient, **kw: Any) -> tuple[StoreReporter, int]:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    return StoreReporter(client.app.state.engine, run_id, threading.Event(), **kw), run_id


def test_stored_rows_and_blocks_match_a_per_record_reference(client: TestClient) -> None:
    records = _records(230)
    rep, run_id = _reporter(client, flush_seconds=3600, flush_records=70)  # batches of 70, a partial one at the end
    for rec in records:
        rep.on_step(rec)
    rep.finish_records()  # the buffered tail goes through the rollup before its last block is closed
    rows, blocks = _stored(client, run_id)
    want = _naive_rows(records)
    assert len(rows) == len(want) == 230
    for got, exp in zip(rows, want):
        assert got.keys() == exp.keys()
        assert all(type(got[k]) is type(exp[k]) and _same(got[k], exp[k]) for k in exp), (got, exp)
    assert rows[28]["train_loss"] is None and rows[30]["grad_norm"] is None and rows[0]["cg_exit"] == "boundary"
    assert rows[0]["accepted"] is True and rows[2]["accepted"] is False and rows[1]["accepted"] is None
    naive = [{k: v for k, v in b.items() if k != "run_id"} for b in _naive_blocks(want)]
    assert blocks == naive and len(blocks) == 8 and blocks[-1]["count"] == 230 - 7 * 32
    assert client.get(f"/api/runs/{run_id}").json()["last_step"] == 230 and rep.records_written == 230


def test_a_record_is_a_snapshot_taken_at_on_step(client: TestClient) -> None:
    rep, run_id = _reporter(client, flush_seconds=3600, flush_records=1000)
    rec = _records(1)[0]
    rep.on_step(rec)
    rec["train_loss"], rec["step"] = 99.0, 5  # a trainer reusing its dict must not change what was reported
    rep.finish_records()
    rows, _ = _stored(client, run_id)
    assert [r["step"] for r in rows] == [1] and rows[0]["train_loss"] == _naive_rows(_records(1))[0]["train_loss"]


def test_live_readers_see_each_batch_and_a_crash_loses_only_the_unwritten_buffer(client: TestClient) -> None:
    records = _records(40)
    rep, run_id = _reporter(client, flush_seconds=0.0, flush_records=1000)  # a deadline at every step
    for rec in records[:10]:
        rep.on_step(rec)
        page = client.get(f"/api/runs/{run_id}/metrics", params={"since_step": rec["step"] - 1}).json()
        assert [p["step"] for p in page["points"]] == [rec["step"]]  # visible as soon as on_step returns
    rep.flush_seconds = 3600.0
    rep.flush()
    for rec in records[10:25]:
        rep.on_step(rec)
    # the process dies here: what is stored is everything up to the last write, nothing after it
    rows, _ = _stored(client, run_id)
    assert [r["step"] for r in rows] == list(range(1, 11))
    rep.flush()
    rows, _ = _stored(client, run_id)
    assert [r["step"] for r in rows] == list(range(1, 26))


def test_an_evaluation_sent_again_replaces_the_stored_one(client: TestClient) -> None:
    rep, run_id = _reporter(client, flush_seconds=3600, flush_records=1000)
    ev = {"step": 5, "backprops": 10, "epoch": 0.5, "wall_time": 1.0, "train_loss": 2.0, "test_loss": 2.5,
          "train_accuracy": 0.25, "test_accuracy": np.float32(0.5)}
    rep.on_eval({**ev, "step": 0, "backprops": 0})
    rep.on_eval(ev)
    rep.flush()
    rep.on_eval({**ev, "test_loss": float("nan"), "test_accuracy": 0.75})  # the same step again, next batch
    rep.finish_records()
    points = client.get(f"/api/runs/{run_id}/evals").json()["points"]
    assert [p["step"] for p in points] == [0, 5]
    assert points[1]["test_loss"] is None and points[1]["test_accuracy"] == 0.75 and points[0]["backprops"] == 0


def test_on_start_stores_the_device_and_the_run_info_as_json(client: TestClient) -> None:
    rep, run_id = _reporter(client)
    info = {"device": "cpu", "num_parameters": np.int64(1234), "hyperparameters": {"lr": np.float32(0.5)},
            "task": "classification", "train_size": 60000}
    rep.on_start(info)
    with client.app.state.engine.connect() as conn:
        device, stored = conn.execute(select(Run.device, Run.info).where(Run.id == run_id)).one()
    assert device == "cpu" and stored == {"device": "cpu", "num_parameters": 1234, "hyperparameters": {"lr": 0.5},
                                          "task": "classification", "train_size": 60000}
    assert client.get(f"/api/runs/{run_id}").json()["device"] == "cpu"
