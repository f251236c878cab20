"""The metrics query (block rollups, SQL joins, plain driver rows) against a naive pure-Python reference.

Runs are written by the worker's StoreReporter: a TR run with rejected steps, loss spikes and non-finite losses
(stored as null), and a first-order run (TR columns null), completed or still live (the open block not stored).
"""
from __future__ import annotations

import json
import math
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic_core import to_json
from sqlalchemy import update

from backend import store
from backend.deps import MAX_ID
from backend.main import create_app
from backend.rollup import block_of
from backend.runner.worker import StoreReporter
from backend.tables import BLOCK_SIZE, METRIC_COLUMNS, Run
from tests.backend.conftest import MLP_RUN, make_settings
from tests.backend.test_postgres import pg_url, postgres  # noqa: F401 - fixtures: a throwaway PostgreSQL
from trainer.downsample import minmax_indices

N_STEPS = 3000


def _records(n: int, *, tr: bool, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for step in range(1, n + 1):
        loss: float = 2.0 * math.exp(-step / 900) + 0.05 * rng.random()
        if rng.random() < 0.01:
            loss *= 8.0  # a spike
        if rng.random() < 0.004:
            loss = rng.choice([math.nan, math.inf])  # stored as null
        rec = {"step": step, "backprops": 2 * step, "gradients": step, "hvps": step if tr else 0, "forwards": 0,
               "epoch": step / 100, "wall_time": step * 0.01, "train_loss": loss,
               "grad_norm": 1.0 / step if step % 3 else None, "step_norm": 0.1}
        if tr:
            rec.update({"radius": 0.1 * rng.random(), "new_radius": 0.1, "rho": rng.random(),
                        "cg_iterations": rng.randint(1, 9), "cg_exit": rng.choice(["boundary", "converged"]),
                        "accepted": rng.random() >= 0.1, "pred_decrease": 1e-3, "actual_decrease": 9e-4,
                        "step_norm_m": 0.05})
        out.append(rec)
    # every step of one 32-step block has a non-finite loss: the block has no min or max
    for rec in out[10 * BLOCK_SIZE:11 * BLOCK_SIZE]:
        rec["train_loss"] = math.nan
    return out


def _write(client: TestClient, records: list[dict[str, Any]], *, complete: bool) -> int:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    engine = client.app.state.engine
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(status="running"))
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=3600, flush_records=700)
    rep.on_start({"device": "cpu"})
    for rec in records:
        rep.on_step(rec)
    if complete:
        rep.finish_records()
    else:
        rep.flush()  # a live run: the open block is not stored yet
    return run_id


def _stored_blocks(rows: list[dict[str, Any]], complete: bool) -> list[dict[str, Any]]:
    """Per-block (first, last, min-loss step, max-loss step) computed naively; a live run's open block is absent."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(block_of(r["step"]), []).append(r)
    last_step = rows[-1]["step"]
    out = []
    for b, members in sorted(groups.items()):
        if not complete and b == block_of(last_step) and last_step % BLOCK_SIZE:
            continue
        finite = [r for r in members if r["train_loss"] is not None]
        lo = min(finite, key=lambda r: r["train_loss"]) if finite else members[0]  # first of equal values
        hi = max(finite, key=lambda r: r["train_loss"]) if finite else members[0]
        out.append({"first": members[0]["step"], "last": members[-1]["step"], "min": lo, "max": hi})
    return out


def _naive_spread(rejected: list[int], cap: int) -> list[int]:
    if len(rejected) <= cap:
        return rejected
    targets = np.unique(np.linspace(rejected[0], rejected[-1], cap).round().astype(np.int64))
    return sorted({next(r for r in rejected if r >= t) for t in targets})


def _loss(row: dict[str, Any]) -> float:
    return math.nan if row["train_loss"] is None else row["train_loss"]


def _naive_page(rows: list[dict[str, Any]], blocks: list[dict[str, Any]], since: int | None, until: int | None,
                max_points: int, fields: tuple[str, ...], layout: str) -> dict[str, Any]:
    lower = -1 if since is None else since
    inside = [r for r in rows if r["step"] > lower and (until is None or r["step"] <= until)]
    last_step = rows[-1]["step"] if rows else None
    full = [b for b in blocks if b["first"] > lower and (until is None or b["last"] <= until)]
    total, downsampled, chosen = len(inside), False, inside
    if inside and (4 * len(full) >= max_points or len(inside) > max_points):
        if 4 * len(full) >= max_points:
            head = [r for r in inside if r["step"] < full[0]["first"]]
            tail = [r for r in inside if r["step"] > full[-1]["last"]]
            mid: list[tuple[int, float]] = [] if head else [(full[0]["first"], math.nan)]
            for b in full:
                for r in sorted((b["min"], b["max"]), key=lambda r: r["step"]):
                    mid.append((r["step"], _loss(r)))
            if not tail:
                mid.append((full[-1]["last"], math.nan))
            mid = [m for i, m in enumerate(mid) if i == 0 or m[0] != mid[i - 1][0]]
            candidates = [(r["step"], _loss(r)) for r in head] + mid + [(r["step"], _loss(r)) for r in tail]
        else:
            candidates = [(r["step"], _loss(r)) for r in inside]
        rejected = _naive_spread([r["step"] for r in inside if r["accepted"] is False],
                                 max_points // 4) if max_points >= 8 else []
        losses = np.array([c[1] for c in candidates], dtype=np.float64)
        keep = {candidates[i][0] for i in minmax_indices(losses, max_points - len(rejected))} | set(rejected)
        chosen = [r for r in inside if r["step"] in keep]
        downsampled = len(chosen) < total
    if not inside:
        chosen = []
    body: dict[str, Any]
    if layout == "rows":
        body = {"points": [{f: r[f] for f in fields} for r in chosen]}
    else:
        body = {"fields": list(fields), "columns": {f: [r[f] for r in chosen] for f in fields}}
    return {**body, "last_step": last_step, "total": total, "downsampled": downsampled}


def _all_rows(client: TestClient, run_id: int) -> list[dict[str, Any]]:
    with client.app.state.engine.connect() as conn:  # SQLAlchemy-typed rows (booleans as bool), step order
        return [p for chunk in store.iter_metrics(conn, run_id) for p in chunk]


@pytest.mark.parametrize("tr, complete", [(True, True), (False, True), (True, False)])
def test_metrics_pages_match_a_naive_reference(client: TestClient, tr: bool, complete: bool) -> None:
    n = N_STEPS if complete else N_STEPS - 7  # a live run whose last block is open
    run_id = _write(client, _records(n, tr=tr, seed=3), complete=complete)
    rows = _all_rows(client, run_id)
    assert len(rows) == n
    blocks = _stored_blocks(rows, complete)
    field_sets = (METRIC_COLUMNS, ("step", "train_loss", "accepted", "cg_exit", "rho"))
    checked = 0
    with client.app.state.engine.connect() as conn:
        for since in (None, 0, 31, 32, 33, 1000, n - 40, MAX_ID - 1):
            for until in (None, 64, 1500, n - 1, MAX_ID):
                for max_points in (2, 7, 8, 40, 150, 372, 373, 1000, 5000):
                    for fields, layout in ((field_sets[0], "rows"), (field_sets[1], "columns")):
                        got = json.loads(to_json(store.metrics_page(conn, run_id, since_step=since, until_step=until,
                                                                    max_points=max_points, fields=fields,
                                                                    layout=layout)))
                        want = _naive_page(rows, blocks, since, until, max_points, fields, layout)
                        assert got == want, (since, until, max_points, layout)
                        checked += 1
    assert checked == 8 * 5 * 9 * 2
    # through HTTP: the default (row-wise, every field) page, with booleans as JSON booleans, nulls, no NaN
    r = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 300})
    assert r.status_code == 200 and b"NaN" not in r.content and b"Infinity" not in r.content
    page = r.json()
    assert page == _naive_page(rows, blocks, None, None, 300, METRIC_COLUMNS, "rows")
    assert page["downsampled"] and 0 < len(page["points"]) <= 300
    accepted = {p["accepted"] for p in page["points"]}
    assert accepted == ({True, False} if tr else {None})
    if not tr:
        assert all(p["rho"] is None and p["cg_exit"] is None for p in page["points"])
    if tr:
        rejected = [r["step"] for r in rows if r["accepted"] is False]
        shown = [p["step"] for p in page["points"] if p["accepted"] is False]
        assert set(_naive_spread(rejected, 300 // 4)) <= set(shown)  # rejections survive downsampling, spread


@pytest.mark.slow
def test_metrics_pages_match_the_reference_on_postgres(pg_url: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture imported above
    """The same pages on a throwaway PostgreSQL (unnest instead of json_each, native booleans), with extreme bounds."""
    with TestClient(create_app(make_settings(tmp_path, database_url=pg_url))) as client:
        run_id = _write(client, _records(N_STEPS, tr=True, seed=5), complete=True)
        rows = _all_rows(client, run_id)
        blocks = _stored_blocks(rows, True)
        for since, until in ((None, None), (33, 1500), (N_STEPS - 40, MAX_ID), (MAX_ID - 1, None), (None, 0)):
            for max_points in (8, 150, 1000, 100_000):
                r = client.get(f"/api/runs/{run_id}/metrics", params={
                    "max_points": max_points, **({} if since is None else {"since_step": since}),
                    **({} if until is None else {"until_step": until})})
                assert r.status_code == 200, r.text
                assert r.json() == _naive_page(rows, blocks, since, until, max_points, METRIC_COLUMNS, "rows")
