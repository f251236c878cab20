"""Sweeps: grid generation, POST /api/sweeps (422 with nothing stored), the per-optimizer best with edge flags,
and promote → a comparison of the winners on fresh seeds."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.sweeps import SearchSpace, SweepOptimizer, edge_flags, log_grid
from backend.tables import Comparison, Run, Sweep, SweepRun
from tests.backend.conftest import wait_status
from tests.backend.test_api_results import write_evals

SWEEP = {"name": "tiny", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 30},
         "seeds": [0], "train_subset": 512, "eval_every": 5,
         "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1, 1.0]}}},
                        {"name": "sgd", "hyperparameters": {"momentum": 0.9}, "space": {"lr": {"values": [0.01, 0.1]}}},
                        {"name": "adam", "space": {"lr": {"low": 1e-4, "high": 1e-2, "per_decade": 1}}}]}


def test_log_grid_half_decades_and_bounds():
    assert log_grid(1e-4, 1.0, 2) == [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]
    assert log_grid(0.01, 1.0, 1) == [0.01, 0.1, 1.0]
    assert log_grid(0.5, 0.5, 4) == [0.5]
    with pytest.raises(ValueError, match="Invalid log range"):
        log_grid(1.0, 0.1, 2)
    with pytest.raises(ValueError, match="at most 50"):
        log_grid(1e-8, 1e8, 4)
    with pytest.raises(ValueError, match="at most 50"):  # a subnormal low: high / low overflowed (a 500 before)
        log_grid(5e-324, 1.0, 2)


def test_subnormal_log_range_is_a_422_naming_the_field(client: TestClient):
    """Found by the fuzz test: low = 5e-324 crashed the grid count with an OverflowError (500)."""
    body = {**SWEEP, "optimizers": [{"name": "adam", "space": {"lr": {"low": 5e-324, "high": 1.0}}}]}
    r = client.post("/api/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert "at most 50" in r.text and "space" in r.text
    with client.app.state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Sweep)).scalar() == 0


def test_default_space_is_lr_over_half_decades_and_tr_methods_are_sweepable():
    assert SweepOptimizer(name="adam").points()[:3] == [{"lr": 1e-4}, {"lr": 3e-4}, {"lr": 1e-3}]
    tr = SweepOptimizer(name="tr-rmsprop", space={"radius": {"values": [1e-4, 1e-3]}, "eta1": {"values": [0.01, 0.1]}})
    assert tr.points() == [{"radius": 1e-4, "eta1": 0.01}, {"radius": 1e-4, "eta1": 0.1},
                           {"radius": 1e-3, "eta1": 0.01}, {"radius": 1e-3, "eta1": 0.1}]
    with pytest.raises(ValueError, match="has no step size"):
        SweepOptimizer(name="tr-uniform")
    assert SearchSpace(values=[1, 1, 2]).grid() == [1, 2]


def test_edge_flags():
    space = {"lr": [0.01, 0.1, 1.0], "momentum": [0.9]}
    assert edge_flags(space, {"lr": 1.0, "momentum": 0.9}) == [
        "best lr is the largest tried (1): extend the grid upward"]
    assert "smallest tried (0.01)" in edge_flags(space, {"lr": 0.01})[0]
    assert edge_flags(space, {"lr": 0.1}) == []


def _count(client: TestClient) -> tuple[int, ...]:
    with client.app.state.sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Sweep, SweepRun, Run, Comparison))


@pytest.mark.parametrize("change,field,words", [
    ({"optimizers": [{"name": "sgd", "space": {"lr": {"values": []}}}]}, "optimizers", "empty grid"),
    ({"optimizers": [{"name": "sgd", "space": {"lr": {}}}]}, "optimizers", "empty grid"),
    ({"optimizers": [{"name": "sgd", "space": {"lr": {"low": 1e-6, "high": 1, "per_decade": 8}}}] * 11},
     "optimizers", "at most 500"),
    ({"optimizers": [{"name": "adam", "space": {k: {"values": [0.1 * i for i in range(1, 50)]} for k in
                                                ("lr", "beta1", "beta2", "eps", "weight_decay")}}]},
     "optimizers", "a sweep runs at most 500"),  # 49^5 points: refused before they are enumerated
    ({"optimizers": [{"name": "adam", "space": {"momentum": {"values": [0.9]}}}]}, "optimizers",
     "unknown hyperparameter 'momentum' for adam"),
    ({"optimizers": [{"name": "adam", "space": {"lr": {"values": [1000.0]}}}]}, "optimizers", "lr must be <= 100"),
    ({"criterion": {"kind": "backprops_to_target"}}, "criterion", "needs a target"),
    ({"seeds": [0, 0]}, "seeds", "distinct"),
    ({"model": "autoencoder", "dataset": "cifar10"}, None, "does not fit"),
])
def test_bad_sweeps_get_422_naming_the_field_and_store_nothing(client: TestClient, change, field, words) -> None:
    before = _count(client)
    r = client.post("/api/sweeps", json={**SWEEP, **change})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(words in d["msg"] for d in detail), detail
    if field:
        assert any(field in d["loc"] for d in detail), detail
    assert _count(client) == before


def test_sweep_runs_best_edge_flags_and_promote(client: TestClient) -> None:
    r = client.post("/api/sweeps", json=SWEEP)
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["run_ids"]) == 3 + 2 + 3
    runs = client.get(f"/api/comparisons/{created['comparison_id']}").json()["runs"]
    assert [r["label"] for r in runs[3:5]] == ["SGD+momentum lr=0.01 momentum=0.9 (seed 0)",
                                               "SGD+momentum lr=0.1 momentum=0.9 (seed 0)"]
    assert client.post(f"/api/sweeps/{created['id']}/promote").status_code == 409  # still queued
    final = {0.01: 0.9, 0.1: 0.5, 1.0: 0.3, 1e-4: 0.8, 1e-3: 0.4}  # final train loss by lr
    for run in runs:
        lr = run["config"]["optimizer"]["hyperparameters"]["lr"]
        if run["optimizer"] == "adam" and lr == 0.01:
            write_evals(client, run["id"], [2.0, float("nan")], status="diverged")
        else:
            write_evals(client, run["id"], [2.0, final[lr] + 0.1, final[lr]])
    view = client.get(f"/api/sweeps/{created['id']}").json()
    assert view["status"] == "finished" and view["runs_finished"] == 8
    sgd, mom, adam = view["optimizers"]
    assert sgd["best"]["hyperparameters"] == {"lr": 1.0}
    assert sgd["best"]["value"] == pytest.approx((2.0 + 0.4 + 0.3) / 3)  # smoothed final: mean of the last 3 evals
    assert sgd["edge_flags"] == ["best lr is the largest tried (1): extend the grid upward"]
    assert (sgd["label"], mom["label"]) == ("SGD", "SGD+momentum momentum=0.9")
    assert mom["best"]["hyperparameters"] == {"momentum": 0.9, "lr": 0.1}
    assert adam["best"]["hyperparameters"] == {"lr": 1e-3} and adam["edge_flags"] == []  # 0.01 diverged
    assert [p["note"] for p in adam["points"]] == [None, None, "diverged"]
    listing = client.get("/api/sweeps").json()
    assert listing["total"] == 1 and listing["items"][0]["runs_total"] == 8

    bad = client.post(f"/api/sweeps/{created['id']}/promote", json={"seeds": [0, 5]})
    assert bad.status_code == 422 and "tuning seeds" in bad.json()["detail"][0]["msg"]
    promoted = client.post(f"/api/sweeps/{created['id']}/promote",
                           json={"extra_optimizers": [{"name": "tr-rmsprop"}]})
    assert promoted.status_code == 201, promoted.text
    detail = client.get(f"/api/comparisons/{promoted.json()['id']}").json()
    assert sorted({r["seed"] for r in detail["runs"]}) == [1, 2, 3, 4, 5]  # 5 fresh seeds
    assert len(detail["runs"]) == 5 * 4
    first = [(r["optimizer"], r["config"]["optimizer"]["hyperparameters"].get("lr")) for r in detail["runs"][:4]]
    assert first[:3] == [("sgd", 1.0), ("sgd", 0.1), ("adam", 1e-3)] and first[3][0] == "tr-rmsprop"
    assert detail["runs"][1]["label"].startswith("SGD+momentum lr=0.1")
    assert all(r["config"]["budget"]["backprops"] == 30 and r["config"]["train_subset"] == 512
               for r in detail["runs"])
    assert client.get(f"/api/sweeps/{created['id']}").json()["promoted_comparison_id"] == promoted.json()["id"]


def test_accuracy_criterion_picks_the_highest_and_target_criterion_the_fewest_backprops(client: TestClient) -> None:
    body = {**SWEEP, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1, 1.0]}}}]}
    for criterion, expected in (({"kind": "final_test_accuracy"}, 0.01),
                                ({"kind": "backprops_to_target", "target": 0.75}, 0.1)):
        created = client.post("/api/sweeps", json={**body, "criterion": criterion}).json()
        runs = client.get(f"/api/comparisons/{created['comparison_id']}").json()["runs"]
        for run in runs:  # write_evals: test accuracy 0.9 - loss/10, evals 10 backprops apart
            lr = run["config"]["optimizer"]["hyperparameters"]["lr"]
            losses = {0.01: [2.0, 1.0, 0.1], 0.1: [2.0, 0.7, 0.6], 1.0: [2.0, 0.9, 0.5]}[lr]
            write_evals(client, run["id"], losses)
        best = client.get(f"/api/sweeps/{created['id']}").json()["optimizers"][0]["best"]
        assert best["point"] == {"lr": expected}, criterion
    # accuracy: the final loss 0.1 gives the highest accuracy; target 0.75: lr 0.1 reaches it at 10 backprops


def test_unknown_sweep_is_404(client: TestClient) -> None:
    assert client.get("/api/sweeps/12345").status_code == 404
    assert client.post("/api/sweeps/12345/promote").status_code == 404


def test_sweep_runs_train_in_real_workers(live_client: TestClient) -> None:
    """The sweep's runs are ordinary runs: the job runner trains them (fake trainer) and the sweep finds a best."""
    body = {**SWEEP, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1]}}}]}
    created = live_client.post("/api/sweeps", json=body).json()
    for rid in created["run_ids"]:
        wait_status(live_client, rid, ("completed",))
    view = live_client.get(f"/api/sweeps/{created['id']}").json()
    assert view["status"] == "finished" and view["optimizers"][0]["best"] is not None


def test_deleting_the_sweeps_runs_or_comparisons_keeps_the_store_consistent(client: TestClient) -> None:
    body = {**SWEEP, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1]}}}]}
    created = client.post("/api/sweeps", json=body).json()
    for rid in created["run_ids"]:
        write_evals(client, rid, [2.0, 0.5])
    assert client.delete(f"/api/runs/{created['run_ids'][0]}").status_code == 204  # an ordinary run
    view = client.get(f"/api/sweeps/{created['id']}").json()
    assert view["runs_total"] == 1 and view["optimizers"][0]["best"]["point"] == {"lr": 0.1}
    promoted = client.post(f"/api/sweeps/{created['id']}/promote", json={"n_seeds": 1}).json()
    for rid in promoted["run_ids"]:
        write_evals(client, rid, [2.0, 0.5])
    assert client.delete(f"/api/comparisons/{promoted['id']}").status_code == 204
    assert client.get(f"/api/sweeps/{created['id']}").json()["promoted_comparison_id"] is None
    assert client.delete(f"/api/comparisons/{created['comparison_id']}").status_code == 204  # the sweep goes too
    assert client.get(f"/api/sweeps/{created['id']}").status_code == 404
    assert _count(client) == (0, 0, 0, 0)


def test_run_settings_reach_every_run_and_the_promoted_comparison(client: TestClient) -> None:
    """Other RunConfig fields (e.g. input_scaling where it exists) pass through a sweep in one line."""
    body = {**SWEEP, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.1]}}}],
            "run_settings": {"grad_norm_every": 5}}
    created = client.post("/api/sweeps", json=body).json()
    run = client.get(f"/api/runs/{created['run_ids'][0]}").json()
    assert run["config"]["grad_norm_every"] == 5
    write_evals(client, created["run_ids"][0], [2.0, 0.5])
    promoted = client.post(f"/api/sweeps/{created['id']}/promote", json={"n_seeds": 2}).json()
    assert {client.get(f"/api/runs/{i}").json()["config"]["grad_norm_every"] for i in promoted["run_ids"]} == {5}
    before = _count(client)
    for settings, words in (({"seed": 3}, "may not set ['seed']"), ({"bogus": 1}, "bogus"),
                            ({"data_dir": "/etc"}, "may not set ['data_dir']")):
        r = client.post("/api/sweeps", json={**body, "run_settings": settings})
        assert r.status_code == 422 and any(words in d["msg"] for d in r.json()["detail"]), r.text
    assert _count(client) == before


def test_a_point_without_a_result_is_marked_rerun_and_promote_refuses_until_it_has_one(client: TestClient) -> None:
    body = {**SWEEP, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1]}}}]}
    created = client.post("/api/sweeps", json=body).json()
    sweep, (done, cut) = created["id"], created["run_ids"]
    write_evals(client, done, [2.0, 1.0, 0.9])
    write_evals(client, cut, [2.0, 1.5], status="interrupted")  # the API restarted under it
    view = client.get(f"/api/sweeps/{sweep}").json()
    points = view["optimizers"][0]["points"]
    assert [p["needs_rerun"] for p in points] == [False, True] and points[1]["note"].startswith("no result")
    assert view["runs_to_rerun"] == 1 and client.get("/api/sweeps").json()["items"][0]["runs_to_rerun"] == 1
    refused = client.post(f"/api/sweeps/{sweep}/promote")  # once promoted lr=0.01 as if the grid were complete
    assert refused.status_code == 409 and "lr=0.1" in refused.text and f"/api/sweeps/{sweep}/rerun" in refused.text
    anyway = client.post(f"/api/sweeps/{sweep}/promote", json={"allow_missing": True, "n_seeds": 1})
    assert anyway.status_code == 201, anyway.text

    r = client.post(f"/api/sweeps/{sweep}/rerun")
    assert r.status_code == 201, r.text
    (fresh,), replaced = r.json()["run_ids"], r.json()["replaced_run_ids"]
    assert replaced == [cut]
    old, new = client.get(f"/api/runs/{cut}").json(), client.get(f"/api/runs/{fresh}").json()
    assert old["status"] == "interrupted" and new["status"] == "queued"  # the old run and its data are kept
    assert new["config"] == old["config"] and new["label"] == old["label"]
    point = client.get(f"/api/sweeps/{sweep}").json()["optimizers"][0]["points"][1]
    assert point["run_ids"] == [fresh] and not point["needs_rerun"] and point["note"] == "running"
    assert client.post(f"/api/sweeps/{sweep}/rerun").status_code == 409  # nothing left to re-run
    assert client.post(f"/api/sweeps/{sweep}/promote").status_code == 409  # still queued
    write_evals(client, fresh, [2.0, 0.5, 0.4])
    promoted = client.post(f"/api/sweeps/{sweep}/promote", json={"n_seeds": 1})
    assert promoted.status_code == 201, promoted.text
    runs = client.get(f"/api/comparisons/{promoted.json()['id']}").json()["runs"]
    assert [r["config"]["optimizer"]["hyperparameters"]["lr"] for r in runs] == [0.1]  # the re-run point won


def test_results_of_a_promoted_sweep_show_each_rows_tuning_budget(client) -> None:
    """Issue 19 §5: the results table says how many configurations each row's setting was picked from and the
    grid's edges; a method added untuned says so."""
    from tests.backend.test_api_results import write_evals

    body = {"name": "tune", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40}, "seeds": [0],
            "train_subset": 512, "criterion": {"kind": "final_train_loss", "k": 1},
            "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.01, 0.1, 1.0]}}},
                           {"name": "tr-uniform", "space": {"radius": {"values": [0.005, 0.05]},
                                                            "eta1": {"values": [0.001, 0.01]}}}]}
    sweep = client.post("/api/sweeps", json=body).json()
    for run_id in sweep["run_ids"]:
        write_evals(client, run_id, [2.0, 1.0])
    promoted = client.post(f"/api/sweeps/{sweep['id']}/promote", json={"n_seeds": 1,
                                                                      "extra_optimizers": [{"name": "adam"}]})
    assert promoted.status_code in (200, 201), promoted.text
    res = client.get(f"/api/comparisons/{promoted.json()['id']}/results").json()
    tuning = {g["optimizer"]: g["tuning"] for g in res["groups"]}
    assert tuning["sgd"]["configurations"] == 3 and tuning["sgd"]["space"] == {"lr": [0.01, 1.0]}
    assert tuning["tr-uniform"]["configurations"] == 4 and tuning["tr-uniform"]["space"]["radius"] == [0.005, 0.05]
    assert tuning["adam"] == {"configurations": 1, "tuned": False, "sweep_id": None, "space": {},
                              "note": "not tuned here: 1 configuration (fixed values)"}
    md = client.get(f"/api/comparisons/{promoted.json()['id']}/results", params={"format": "markdown"}).text
    assert "tuning budget" in md and "3 configurations × 1 tuning seed(s) (lr 0.01..1)" in md


def test_a_sweep_can_evaluate_every_run_at_the_same_backprops(client) -> None:
    """Issue 19 §4: {"backprops": N} gives TR and first-order runs the same evaluation points (one resolution)."""
    body = {"name": "cadence", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 40},
            "train_subset": 512, "eval_every": {"backprops": 20},
            "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.1]}}},
                           {"name": "tr-uniform", "space": {"eta1": {"values": [0.01]}}}]}
    r = client.post("/api/sweeps", json=body)
    assert r.status_code == 201, r.text
    configs = [client.get(f"/api/runs/{i}").json()["config"] for i in r.json()["run_ids"]]
    assert all(c["eval_every"] == {"steps": None, "backprops": 20, "epochs": None} for c in configs)
    bad = client.post("/api/sweeps", json={**body, "eval_every": {"backprops": 0}})
    assert bad.status_code == 422 and "eval_every" in str(bad.json()["detail"][0]["loc"])
