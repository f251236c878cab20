"""GET /api/comparisons/{id}/results: the results table from stored runs, its exports and its bad-input answers."""
from __future__ import annotations

import threading

import pytest

from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.tables import Run
from backend.runner.worker import StoreReporter, finish_run

SPEC = {"name": "paired", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40},
        "seeds": list(range(8)), "train_subset": 512,
        "optimizers": [{"name": "sgd", "hyperparameters": {"lr": 0.05}}, {"name": "adam"}]}


def write_evals(client: TestClient, run_id: int, losses: list[float], status: str = "completed") -> None:
    """Store evaluations (every 10 backprops) for a queued run as its worker would, then finish it."""
    engine = client.app.state.engine
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(status="running"))
    rep = StoreReporter(engine, run_id, threading.Event(), flush_seconds=60, flush_records=1000)
    rep.on_start({"device": "cpu"})
    for i, loss in enumerate(losses):
        rep.on_eval({"step": i, "backprops": 10 * i, "epoch": i / 10, "wall_time": 0.5 * i, "train_loss": loss,
                     "test_loss": loss + 0.1, "train_accuracy": 0.5, "test_accuracy": 0.9 - loss / 10})
    rep.flush()
    rep.finish_records()
    finish_run(engine, run_id, status, None if status == "completed" else "stopped for the test", {"status": status})


def make_comparison(client: TestClient) -> dict:
    created = client.post("/api/comparisons", json=SPEC).json()
    runs = client.get(f"/api/comparisons/{created['id']}").json()["runs"]
    for r in runs:  # adam reaches 0.5 at 10 backprops on every seed, sgd at 30
        losses = [2.0, 0.4, 0.3, 0.2] if r["optimizer"] == "adam" else [2.0, 1.0, 0.8, 0.5 - 0.01 * r["seed"]]
        write_evals(client, r["id"], losses)
    return created


def test_results_pair_by_seed_and_give_verdicts(client: TestClient) -> None:
    cid = make_comparison(client)["id"]
    r = client.get(f"/api/comparisons/{cid}/results", params={"reference": "sgd", "targets": [0.5], "k": 1})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["reference"] == "SGD lr=0.05" and res["budget"]["axis"] == "backprops" and res["budget"]["equal"]
    adam = next(g for g in res["groups"] if g["group"] == "Adam")
    assert adam["n"] == 8 and [p["seed"] for p in adam["per_seed"]] == list(range(8))
    assert adam["final_train_loss"] == {"mean": pytest.approx(0.2), "std": pytest.approx(0.0), "n": 8}
    assert adam["targets"][0]["reached"] == 8 and adam["targets"][0]["backprops"]["mean"] == 10
    assert adam["group_key"] != res["reference_key"] and adam["repeated_seeds"] == []
    to_target = next(p for p in adam["paired"] if p["metric"] == "backprops_to_0.5")
    assert to_target["mean_diff"] == -20 and to_target["verdict"] == "better" and to_target["resolution"] == 10
    # 3 finals + 3 axes × 1 target, Holm-adjusted: 6 × 2/2^8 ≤ 0.05
    assert to_target["family_size"] == 6 and to_target["p_adjusted"] == pytest.approx(6 * 2 / 256)
    final = next(p for p in adam["paired"] if p["metric"] == "final_train_loss")
    assert final["mean_diff"] == pytest.approx(0.2 - (0.5 - 0.035))  # seeds 0..7: 0.5 - 0.01 s
    assert final["verdict"] == "better" and final["level"] == 0.95
    assert any("Adam reaches train loss ≤ 0.5 in fewer backprops than SGD lr=0.05" in v for v in res["verdicts"])


def test_csv_and_markdown_exports(client: TestClient) -> None:
    cid = make_comparison(client)["id"]
    csv_r = client.get(f"/api/comparisons/{cid}/results", params={"format": "csv", "targets": [0.5]})
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_r.headers["content-disposition"]
    lines = csv_r.text.splitlines()
    assert lines[0].split(",")[:4] == ["group", "seed", "run_id", "status"] and len(lines) == 17
    md = client.get(f"/api/comparisons/{cid}/results", params={"format": "markdown", "targets": [0.5]}).text
    assert md.startswith("| optimizer | seeds |") and "[8/8 reached, resolution 10]" in md
    assert "exact sign-flip permutation test" in md and "Holm" in md and "None" not in md


def test_stopped_run_is_censored_not_slower(client: TestClient) -> None:
    created = client.post("/api/comparisons", json=SPEC).json()
    runs = client.get(f"/api/comparisons/{created['id']}").json()["runs"]
    for r in runs:
        if r["optimizer"] == "adam" and r["seed"] == 2:
            write_evals(client, r["id"], [2.0, 1.5], status="cancelled")
        else:
            write_evals(client, r["id"], [2.0, 0.4] if r["optimizer"] == "adam" else [2.0, 1.0, 0.8, 0.45])
    res = client.get(f"/api/comparisons/{created['id']}/results", params={"targets": [0.5], "reference": "sgd"}).json()
    adam = next(g for g in res["groups"] if g["group"] == "Adam")
    assert adam["targets"][0]["reached"] == 7 and adam["statuses"] == {"cancelled": 1, "completed": 7}
    pair = next(p for p in adam["paired"] if p["metric"] == "backprops_to_0.5")
    # stopped at 10 backprops, before SGD reached the target at 30: the pair's order is unknown, so no verdict
    assert pair["verdict"] is None and "not resolved with 7 seeds" in pair["sentence"]
    assert "order is unknown" in pair["sentence"]


def test_bad_queries_get_422_naming_the_field(client: TestClient) -> None:
    cid = make_comparison(client)["id"]
    for params, field in (({"reference": "nope"}, "reference"), ({"targets": ["inf"]}, "targets"),
                          ({"targets": [-1]}, "targets"), ({"targets": list(range(1, 12))}, "targets"),
                          ({"k": 0}, "k"), ({"level": 1.0}, "level"), ({"format": "xlsx"}, "format"),
                          ({"reference": "x" * 301}, "reference")):
        r = client.get(f"/api/comparisons/{cid}/results", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["detail"][0]["loc"] == ["query", field]
    assert client.get("/api/comparisons/999/results").status_code == 404


def test_paired_curves_endpoint(client: TestClient) -> None:
    cid = make_comparison(client)["id"]
    r = client.get(f"/api/comparisons/{cid}/paired-curves", params={"reference": "sgd", "points": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    (adam,) = body["groups"]
    assert body["reference"] == "SGD lr=0.05" and adam["group"] == "Adam" and adam["n"] == 8
    assert adam["x"] == [0.0, 10.0, 20.0, 30.0]
    # adam − sgd at backprops 10: 0.4 − 1.0 on every seed
    assert adam["mean"][1] == pytest.approx(-0.6) and adam["lo"][1] == pytest.approx(-0.6)
    assert client.get(f"/api/comparisons/{cid}/paired-curves", params={"axis": "steps"}).status_code == 422
    assert client.get(f"/api/comparisons/{cid}/paired-curves", params={"reference": "x"}).status_code == 422


def test_groups_are_the_group_key_input_scaling_makes_two_groups(client: TestClient) -> None:
    """Issue 19: runs that differ only in input_scaling are two groups in the API (and carry their key)."""
    spec = {**SPEC, "seeds": [0, 1], "optimizers": [{"name": "adam"}]}
    a = client.post("/api/comparisons", json={**spec, "name": "std"}).json()
    b = client.post("/api/comparisons", json={**spec, "name": "raw", "input_scaling": "unit"}).json()
    runs_a = client.get(f"/api/comparisons/{a['id']}").json()["runs"]
    runs_b = client.get(f"/api/comparisons/{b['id']}").json()["runs"]
    assert len({r["group_key"] for r in runs_a}) == 1 and len({r["group_key"] for r in runs_b}) == 1
    assert runs_a[0]["group_key"] != runs_b[0]["group_key"]
    assert client.get(f"/api/runs/{runs_a[0]['id']}").json()["group_key"] == runs_a[0]["group_key"]
