"""Tests for frontend.live: one batched, incremental request per refresh; bounded history; zoom re-query."""
import numpy as np
import pandas as pd
import pytest

from frontend.live import LiveData, chart_fields, columns_frame
from frontend.series import append_points, bound_rows
from tests.frontend.fakes import FakeApi, eval_points, metric_points


def test_refresh_fetches_only_new_points_and_stops_after_terminal():
    api = FakeApi()
    run = api.add_run("tr-rmsprop", status="running", steps=30)
    queued = api.add_run("adam", status="queued")
    live = LiveData(max_points=100)
    assert live.refresh(api, [run, queued]) == 30 + 2  # 30 steps, evals at steps 0 and 20
    assert api.calls == [("metrics_batch", ((run["id"], None),))]  # queued runs are skipped
    api.points[run["id"]] += metric_points(10, tr=True, start=31)
    api.eval_records[run["id"]] += eval_points([40], tr=True)
    api.calls.clear()
    assert live.refresh(api, [run]) == 11
    assert api.calls == [("metrics_batch", ((run["id"], 30),))]
    assert live.metrics[run["id"]]["step"].tolist() == list(range(1, 41))
    assert live.evals[run["id"]]["step"].tolist() == [0, 20, 40]
    assert live.last_step(run["id"]) == 40
    run["status"] = "completed"
    live.refresh(api, [run])  # one last fetch after the run ended ...
    api.calls.clear()
    assert live.refresh(api, [run]) == 0  # ... then nothing
    assert api.calls == [] and live.is_done(run["id"])


def test_only_the_charted_fields_are_fetched_and_a_new_axis_refetches():
    api = FakeApi()
    tr, sgd = api.add_run("tr-uniform", status="completed", steps=20), api.add_run("sgd", status="completed", steps=20)
    live = LiveData(max_points=100)
    live.refresh(api, [tr, sgd], fields=lambda r: chart_fields(r, "backprops"))
    assert set(live.metrics[sgd["id"]].columns) == {"step", "backprops", "train_loss"}
    assert {"radius", "rho", "accepted"} <= set(live.metrics[tr["id"]].columns)
    api.calls.clear()
    live.refresh(api, [tr, sgd], fields=lambda r: chart_fields(r, "backprops"))
    assert api.calls == []  # both done, same fields
    live.refresh(api, [tr, sgd], fields=lambda r: chart_fields(r, "epoch"))
    assert api.calls == [("metrics_batch", ((tr["id"], None), (sgd["id"], None)))]
    assert "epoch" in live.metrics[sgd["id"]].columns and len(live.metrics[sgd["id"]]) == 20


def test_history_is_bounded_and_keeps_spikes_and_rejections():
    api = FakeApi()
    run = api.add_run("tr-rmsprop", status="running", steps=0)
    live = LiveData(max_points=50, history_points=200)
    seen = 0
    for _tick in range(30):  # 30 refreshes of 40 new points: 1200 steps in all
        pts = metric_points(40, tr=True, start=seen + 1)
        for p in pts:
            if p["step"] == 333:
                p["train_loss"] = 1e3
        api.points[run["id"]] += pts
        seen += 40
        live.refresh(api, [run])
        assert len(live.metrics[run["id"]]) <= 200
    df = live.metrics[run["id"]]
    steps = df["step"].tolist()
    assert steps == sorted(set(steps)) and steps[-1] == 1200 and steps[0] == 1
    assert 333 in steps  # the spike survives every thinning
    rejected = df.loc[df["accepted"] == False, "step"].tolist()  # noqa: E712
    assert len(rejected) >= 10 and rejected[0] < 100 and rejected[-1] > 1100  # rejections kept, spread over the run
    assert live.last_step(run["id"]) == 1200


def test_zoom_requeries_the_range_at_full_resolution_and_keeps_it():
    api = FakeApi()
    run = api.add_run("sgd", status="running", steps=1000)
    live = LiveData(max_points=60, history_points=100)
    live.refresh(api, [run], fields=lambda r: chart_fields(r, "backprops"))
    api.points[run["id"]] += metric_points(200, tr=False, start=1001)
    live.refresh(api, [run], fields=lambda r: chart_fields(r, "backprops"))  # 1200 rows > 100: thinned
    assert len(live.metrics[run["id"]]) <= 100
    df = live.metrics[run["id"]]
    lo, hi = float(df["backprops"].iloc[10]), float(df["backprops"].iloc[14])
    api.calls.clear()
    assert live.zoom(api, [run["id"]], x="backprops", lo=lo, hi=hi) > 0
    assert api.calls == [("metrics", (run["id"], int(df["step"].iloc[9]) - 1))]
    s0, s1 = live.zoomed[run["id"]]
    zoomed = live.metrics[run["id"]]
    inside = zoomed[(zoomed["step"] >= s0) & (zoomed["step"] <= s1)]["step"].tolist()
    assert inside == list(range(s0, s1 + 1))  # every step of the range (the fake does not downsample)
    api.points[run["id"]] += metric_points(300, tr=False, start=1201)
    live.refresh(api, [run], fields=lambda r: chart_fields(r, "backprops"))
    kept = live.metrics[run["id"]]["step"].tolist()
    assert set(range(s0, s1 + 1)) <= set(kept)  # thinning keeps the zoomed range
    with pytest.raises(ValueError, match="Invalid x-range"):
        live.zoom(api, [run["id"]], x="backprops", lo=float("nan"), hi=1.0)


def test_append_points_fast_path_and_overlap():
    a = append_points(None, pd.DataFrame({"step": [1, 2, 3], "v": [1.0, 2.0, 3.0]}))
    b = append_points(a, pd.DataFrame({"step": [4, 5], "v": [4.0, 5.0]}))
    assert b["step"].tolist() == [1, 2, 3, 4, 5]
    c = append_points(b, [{"step": 5, "v": 50.0}, {"step": 2, "v": 20.0}])  # overlap: newest wins
    assert c["step"].tolist() == [1, 2, 3, 4, 5] and c["v"].tolist() == [1.0, 20.0, 3.0, 4.0, 50.0]


def test_bound_rows_against_a_naive_reference():
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000)
    df = pd.DataFrame({"step": np.arange(1, 1001), "train_loss": y, "accepted": [i % 97 != 0 for i in range(1000)]})
    out = bound_rows(df, 100)
    kept = set(out["step"])
    # naive: per bucket of the min/max downsampler, its smallest and largest loss survive
    edges = np.linspace(1, 999, (100 - 2) // 2 + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        seg = y[lo:hi]
        assert lo + 1 + int(np.argmin(seg)) in kept and lo + 1 + int(np.argmax(seg)) in kept
    assert {1, 1000} <= kept and {i + 1 for i in range(0, 1000, 97)} <= kept
    assert len(out) <= 100 + 11 and out["step"].is_monotonic_increasing


def test_columns_frame():
    assert columns_frame(None) is None and columns_frame({"fields": ["step"], "columns": {"step": []}}) is None
    df = columns_frame({"fields": ["step", "x"], "columns": {"step": [1, 2], "x": [None, 0.5]}})
    assert df["step"].tolist() == [1, 2] and np.isnan(df["x"].iloc[0])


def test_reconstruction_listing_and_images_are_cached():
    api = FakeApi()
    run = api.add_run("tr-uniform", status="completed", steps=40, model="autoencoder")
    live = LiveData()
    live.refresh(api, [run], reconstructions=True)
    assert live.reconstructions[run["id"]]["steps"] == [0, 20, 40]
    a = live.image(api, run["id"], "original")
    b = live.image(api, run["id"], "original")
    assert a is b and sum(c[0] == "reconstruction_png" for c in api.calls) == 1


def test_chart_fields_fetch_what_a_derived_x_axis_needs():
    """The "backprops + forwards" axis is computed in the UI: its source fields must be fetched, not "cost"."""
    from frontend.live import chart_fields

    fields = chart_fields({"optimizer": "tr-rmsprop"}, "cost")
    assert {"backprops", "forwards", "train_loss", "step"} <= set(fields) and "cost" not in fields
    assert chart_fields({"optimizer": "adam"}, "epoch")[:3] == ("step", "epoch", "train_loss")
