"""Column-wise metrics, field selection, zoom ranges and the batched endpoint, with bad input."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from backend import store
from tests.backend.conftest import MLP_RUN, record_run


def _run(client: TestClient, steps: int, optimizer: str = "sgd", **kw) -> int:
    run_id = client.post("/api/runs", json={**MLP_RUN, "optimizer": {"name": optimizer}}).json()["id"]
    record_run(client, run_id, steps=steps, **kw)
    return run_id


def test_columns_match_rows_and_fields_select(client: TestClient) -> None:
    rid = _run(client, 3000, tr=True, rejected=frozenset({5, 1500}), spike={777: 50.0})
    for params in ({"max_points": 100000}, {"max_points": 300}, {"max_points": 300, "since_step": 2000}):
        rows = client.get(f"/api/runs/{rid}/metrics", params=params).json()
        cols = client.get(f"/api/runs/{rid}/metrics", params={**params, "format": "columns"}).json()
        assert cols["fields"][0] == "step" and len(cols["fields"]) == 19
        assert {k: rows[k] for k in ("last_step", "total", "downsampled")} == \
               {k: cols[k] for k in ("last_step", "total", "downsampled")}
        rebuilt = [dict(zip(cols["fields"], values)) for values in zip(*(cols["columns"][f] for f in cols["fields"]))]
        assert rebuilt == rows["points"]
    sel = client.get(f"/api/runs/{rid}/metrics", params={"format": "columns", "max_points": 300,
                                                         "fields": "train_loss,backprops"}).json()
    assert sel["fields"] == ["step", "backprops", "train_loss"] and set(sel["columns"]) == set(sel["fields"])
    assert {777, 5, 1500, 1, 3000} <= set(sel["columns"]["step"]) and len(sel["columns"]["step"]) <= 300
    repeated = client.get(f"/api/runs/{rid}/metrics?fields=rho&fields=accepted&format=columns&since_step=2990").json()
    assert repeated["fields"] == ["step", "rho", "accepted"] and repeated["columns"]["step"] == list(range(2991, 3001))
    rows = client.get(f"/api/runs/{rid}/metrics", params={"fields": "radius", "since_step": 2998}).json()
    assert rows["points"] == [{"step": 2999, "radius": 0.1}, {"step": 3000, "radius": 0.1}]


def test_until_step_zooms_into_a_range(client: TestClient) -> None:
    rid = _run(client, 6000, spike={2500: 80.0})
    page = client.get(f"/api/runs/{rid}/metrics", params={"since_step": 1999, "until_step": 3000,
                                                           "max_points": 200, "format": "columns"}).json()
    steps = page["columns"]["step"]
    assert page["total"] == 1001 and page["downsampled"] and steps[0] == 2000 and steps[-1] == 3000
    assert 2500 in steps and len(steps) <= 200 and steps == sorted(steps)
    whole = client.get(f"/api/runs/{rid}/metrics", params={"since_step": 2099, "until_step": 2150}).json()
    assert [p["step"] for p in whole["points"]] == list(range(2100, 2151)) and not whole["downsampled"]


@pytest.mark.parametrize("query, needle", [
    ("fields=train_loss,bogus", "bogus"),
    ("fields=" + "x" * 1200, "1000 characters"),
    ("format=csv", "rows"),
    ("max_points=nan", "valid integer"),
    ("since_step=inf", "valid integer"),
    ("until_step=-5", "greater than or equal to 0"),
])
def test_metrics_bad_queries_are_422_naming_the_field(client: TestClient, query: str, needle: str) -> None:
    rid = _run(client, 5)
    r = client.get(f"/api/runs/{rid}/metrics?{query}")
    assert r.status_code == 422 and needle in r.text, r.text
    assert query.split("=")[0] in str(r.json()["detail"][0]["loc"])


def test_batch_for_explicit_runs_sends_only_new_points(client: TestClient) -> None:
    a, b = _run(client, 100, evals=(50, 100)), _run(client, 40, tr=True)
    body = {"runs": [{"id": a, "since_step": 90, "eval_since_step": 50},
                     {"id": b, "fields": ["train_loss", "rho"]}], "fields": ["train_loss"], "max_points": 20}
    out = client.post("/api/metrics/batch", json=body).json()["runs"]
    by_id = {r["id"]: r for r in out}
    assert by_id[a]["columns"]["step"] == list(range(91, 101)) and by_id[a]["fields"] == ["step", "train_loss"]
    assert by_id[a]["evals"]["columns"]["step"] == [100] and by_id[a]["status"] == "completed"
    assert by_id[b]["total"] == 40 and by_id[b]["downsampled"] and len(by_id[b]["columns"]["step"]) <= 20
    assert by_id[b]["last_step"] == 40 and by_id[b]["evals"]["columns"]["step"] == []
    assert by_id[b]["fields"] == ["step", "train_loss", "rho"] and by_id[b]["columns"]["rho"][0] == 0.9
    single = client.get(f"/api/runs/{b}/metrics", params={"max_points": 20, "fields": "train_loss,rho",
                                                           "format": "columns"}).json()
    assert single["columns"] == by_id[b]["columns"]  # the same downsampling as the single-run route
    none = client.post("/api/metrics/batch", json={"runs": [{"id": a}], "evals": False}).json()["runs"][0]
    assert "evals" not in none or none["evals"] is None


def test_batch_for_a_comparison(client: TestClient) -> None:
    comp = client.post("/api/comparisons", json={"name": "c", "dataset": "fashion-mnist", "model": "mlp",
                                                 "budget": {"backprops": 5}, "seeds": [0, 1],
                                                 "optimizers": [{"name": "sgd"}, {"name": "adam"}]}).json()
    ids = comp["run_ids"]
    record_run(client, ids[0], steps=30)
    record_run(client, ids[1], steps=10, status=None)
    out = client.post("/api/metrics/batch", json={"comparison_id": comp["id"], "runs": [{"id": ids[0], "since_step": 25}],
                                                  "fields": ["epoch"]}).json()["runs"]
    assert [r["id"] for r in out] == ids
    assert out[0]["columns"]["step"] == [26, 27, 28, 29, 30] and out[1]["columns"]["step"] == list(range(1, 11))
    assert out[1]["status"] == "running" and out[2]["status"] == "queued" and out[2]["last_step"] is None
    other = _run(client, 3)
    r = client.post("/api/metrics/batch", json={"comparison_id": comp["id"], "runs": [{"id": other}]})
    assert r.status_code == 422 and str(other) in r.text
    assert client.post("/api/metrics/batch", json={"comparison_id": 999}).status_code == 404


@pytest.mark.parametrize("body, needle", [
    ({}, "comparison_id or a non-empty runs list"),
    ({"runs": [{"id": i} for i in range(201)]}, "at most 200"),
    ({"runs": [{"id": 1}, {"id": 1}]}, "each run once"),
    ({"runs": [{"id": 1}], "fields": ["loss"]}, "loss"),
    ({"runs": [{"id": 1, "fields": ["step", "nope"]}]}, "nope"),
    ({"runs": [{"id": 1}], "max_points": float("nan")}, "max_points"),
    ({"runs": [{"id": 1, "since_step": float("inf")}]}, "since_step"),
    ({"runs": [{"id": 1}], "max_points": 1}, "greater than or equal to 2"),
    ({"runs": [{"id": i} for i in range(1, 101)], "max_points": 100000}, "exceeds"),
    ({"runs": [{"id": 1, "path": "/etc"}]}, "Extra inputs"),
])
def test_batch_bad_bodies_are_422_and_name_the_problem(client: TestClient, body: dict, needle: str) -> None:
    _run(client, 3)
    import json as _json
    r = client.post("/api/metrics/batch", content=_json.dumps(body, allow_nan=True),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and needle in r.text, r.text


def test_batch_unknown_run_is_404_naming_it(client: TestClient) -> None:
    rid = _run(client, 3)
    r = client.post("/api/metrics/batch", json={"runs": [{"id": rid}, {"id": 4242}]})
    assert r.status_code == 404 and "4242" in r.text


def _naive_spread(rejected: list[int], cap: int) -> list[int]:
    """All when at most cap; else for each of cap targets evenly spaced from the first to the last rejection,
    the first rejection at or after it."""
    if len(rejected) <= cap:
        return rejected
    targets = np.unique(np.linspace(rejected[0], rejected[-1], cap).round().astype(np.int64))
    return sorted({next(r for r in rejected if r >= t) for t in targets})


@pytest.mark.parametrize("n, cap, gap", [(1, 5, 3), (5, 5, 3), (29, 10, 3), (100, 7, 3), (1000, 250, 3), (3, 2, 3),
                                         (300, 40, 1)])
def test_rejected_steps_spread_in_sql_matches_a_naive_reference(client: TestClient, n: int, cap: int,
                                                                gap: int) -> None:
    rng = np.random.default_rng(n)
    rejected = sorted(set((2 + np.cumsum(rng.integers(1, 2 * gap + 1, size=n))).tolist()))
    rid = _run(client, rejected[-1] + 5, tr=True, rejected=frozenset(rejected))
    lo, hi = rejected[len(rejected) // 3], rejected[-1] - 1  # a zoomed range: since_step < step <= until_step
    with client.app.state.engine.connect() as conn:
        got = store._rejected_steps(conn, rid, -1, None, cap=cap)
        window = store._rejected_steps(conn, rid, lo, hi, cap=cap)
    want = _naive_spread(rejected, cap)
    assert got == want and len(got) <= cap and got[0] == rejected[0] and got[-1] == rejected[-1]
    assert window == _naive_spread([r for r in rejected if lo < r <= hi], cap)
    if len(rejected) > cap and gap > 1:
        assert len(got) >= cap * 0.6  # evenly spread rejections: most targets find a distinct one


def test_kept_rows_join_matches_the_in_list_lookup(client: TestClient) -> None:
    rid = _run(client, 2000, tr=True)
    steps = list(range(1, 2001, 7)) + [2000]
    with client.app.state.engine.connect() as conn:
        joined = store._rows_at(conn, rid, steps, store.METRIC_COLUMNS)
    plain = create_engine(str(client.app.state.engine.url))
    with plain.connect() as conn:
        conn.dialect.name = "unknown"  # no table-valued helper: the IN-list fallback
        fallback = store._rows_at(conn, rid, steps, store.METRIC_COLUMNS)
    plain.dispose()
    assert [r[0] for r in joined] == sorted(set(steps)) and [tuple(r) for r in joined] == [tuple(r) for r in fallback]


def test_the_ui_data_code_against_the_real_api(client: TestClient) -> None:
    """frontend.live + frontend.api_client over this API: one batched request per refresh, new points only."""
    from frontend.api_client import ApiClient
    from frontend.live import LiveData, chart_fields

    tr = _run(client, 500, "tr-uniform", tr=True, status=None, rejected=frozenset({250}))
    sgd = _run(client, 300, status=None)
    api = ApiClient("http://testserver")
    api._http = client  # the TestClient is an httpx.Client bound to the app
    runs = [client.get(f"/api/runs/{i}").json() for i in (tr, sgd)]
    live = LiveData(max_points=100)
    live.refresh(api, runs, fields=lambda r: chart_fields(r, "epoch"))
    assert live.requests == 1 and live.last_step(tr) == 500 and live.last_step(sgd) == 300
    assert set(live.metrics[sgd].columns) == {"step", "epoch", "train_loss"} and len(live.metrics[sgd]) <= 100
    assert 250 in live.metrics[tr]["step"].tolist() and "radius" in live.metrics[tr].columns
    want = client.get(f"/api/runs/{sgd}/metrics", params={"max_points": 100, "fields": "epoch,train_loss"}).json()
    assert live.metrics[sgd]["step"].tolist() == [p["step"] for p in want["points"]]
    record_run(client, sgd, steps=0, status="completed")
    runs = [client.get(f"/api/runs/{i}").json() for i in (tr, sgd)]
    assert live.refresh(api, runs, fields=lambda r: chart_fields(r, "epoch")) == 0 and live.requests == 2
    assert live.is_done(sgd) and not live.is_done(tr)
