"""Tests for frontend.live: incremental fetching with since_step."""
from frontend.live import LiveData
from tests.frontend.fakes import FakeApi, eval_points, metric_points


def test_refresh_fetches_only_new_points_and_stops_after_terminal():
    api = FakeApi()
    run = api.add_run("tr-rmsprop", status="running", steps=30)
    queued = api.add_run("adam", status="queued")
    live = LiveData(max_points=100)
    assert live.refresh(api, [run, queued]) == 30 + 2  # 30 steps, evals at steps 0 and 20
    assert ("metrics", (run["id"], None)) in api.calls
    assert not any(c == ("metrics", (queued["id"], None)) for c in api.calls)  # queued runs are skipped
    api.points[run["id"]] += metric_points(10, tr=True, start=31)
    api.eval_records[run["id"]] += eval_points([40], tr=True)
    api.calls.clear()
    assert live.refresh(api, [run]) == 11
    assert api.calls == [("metrics", (run["id"], 30)), ("evals", (run["id"], 20))]
    assert live.metrics[run["id"]]["step"].tolist() == list(range(1, 41))
    assert live.last_step(run["id"]) == 40
    run["status"] = "completed"
    live.refresh(api, [run])  # one last fetch after the run ended ...
    api.calls.clear()
    assert live.refresh(api, [run]) == 0  # ... then nothing
    assert api.calls == [] and live.is_done(run["id"])


def test_reconstruction_listing_and_images_are_cached():
    api = FakeApi()
    run = api.add_run("tr-uniform", status="completed", steps=40, model="autoencoder")
    live = LiveData()
    live.refresh(api, [run], reconstructions=True)
    assert live.reconstructions[run["id"]]["steps"] == [0, 20, 40]
    a = live.image(api, run["id"], "original")
    b = live.image(api, run["id"], "original")
    assert a is b and sum(c[0] == "reconstruction_png" for c in api.calls) == 1
