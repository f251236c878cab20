"""Tests for frontend.api_client against an httpx mock transport (no server)."""
import json
import socket

import httpx
import pytest

from frontend.api_client import ApiClient, ApiError, ApiUnreachable, error_messages, get_client, set_client
from frontend.settings import Settings


def _client(handler) -> ApiClient:
    return ApiClient("http://api.test:8000/", transport=httpx.MockTransport(handler))


def test_routes_paths_params_and_bodies():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params),
                     json.loads(request.content) if request.content else None))
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith(".png"):
            return httpx.Response(200, content=b"\x89PNG")
        return httpx.Response(200, json={"ok": True, "points": []})

    c = _client(handler)
    c.health()
    c.meta()
    c.list_runs(status="running", comparison_id=3)
    c.get_run(7)
    c.create_run({"dataset": "fashion-mnist"})
    c.cancel_run(7)
    c.delete_run(7)
    c.metrics(7, since_step=120, max_points=500)
    c.metrics(7)
    c.evals(7, since_step=5)
    c.reconstructions(7)
    assert c.reconstruction_png(7, "original") == b"\x89PNG"
    c.reconstruction_png(7, 40)
    c.create_comparison({"name": "x"})
    c.list_comparisons()
    c.get_comparison(2)
    c.delete_comparison(2)
    assert seen == [
        ("GET", "/api/health", {}, None),
        ("GET", "/api/meta", {}, None),
        ("GET", "/api/runs", {"status": "running", "comparison_id": "3", "limit": "200", "offset": "0"}, None),
        ("GET", "/api/runs/7", {}, None),
        ("POST", "/api/runs", {}, {"dataset": "fashion-mnist"}),
        ("POST", "/api/runs/7/cancel", {}, None),
        ("DELETE", "/api/runs/7", {}, None),
        ("GET", "/api/runs/7/metrics", {"since_step": "120", "max_points": "500"}, None),
        ("GET", "/api/runs/7/metrics", {}, None),
        ("GET", "/api/runs/7/evals", {"since_step": "5"}, None),
        ("GET", "/api/runs/7/reconstructions", {}, None),
        ("GET", "/api/runs/7/reconstructions/original.png", {}, None),
        ("GET", "/api/runs/7/reconstructions/40.png", {}, None),
        ("POST", "/api/comparisons", {}, {"name": "x"}),
        ("GET", "/api/comparisons", {}, None),
        ("GET", "/api/comparisons/2", {}, None),
        ("DELETE", "/api/comparisons/2", {}, None),
    ]


def test_422_details_become_sentences():
    detail = [
        {"loc": ["body", "optimizers", 0, "hyperparameters"], "msg": "Value error, lr must be > 0.0, got 0.0",
         "type": "value_error"},
        {"loc": ["body", "budget", "epochs"], "msg": "Input should be greater than 0", "type": "greater_than"},
    ]
    c = _client(lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ApiError) as info:
        c.create_comparison({})
    assert info.value.status_code == 422
    assert info.value.messages == ["optimizers[0] › hyperparameters: lr must be > 0.0, got 0.0",
                                   "budget › epochs: Input should be greater than 0"]
    assert "lr must be > 0.0" in str(info.value)


def test_404_and_409_details_and_non_json_errors():
    c = _client(lambda r: httpx.Response(409, json={"detail": "run 3 is running; cancel it first"}))
    with pytest.raises(ApiError, match="cancel it first") as info:
        c.delete_run(3)
    assert info.value.messages == ["run 3 is running; cancel it first"]
    c = _client(lambda r: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(ApiError, match="Bad Gateway"):
        c.health()
    assert error_messages(None) == ["the API refused the request without saying why"]
    assert error_messages(["plain"]) == ["plain"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    c = ApiClient(url, timeout=2)
    with pytest.raises(ApiUnreachable) as info:
        c.health()
    assert info.value.url == url
    assert url in str(info.value) and "TRUSTLAB_API_URL" in str(info.value)

    def slow(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ApiUnreachable, match="timed out"):
        _client(slow).meta()


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("TRUSTLAB_API_URL", "http://elsewhere:9000")
    monkeypatch.setenv("TRUSTLAB_DATABASE_URL", "sqlite:///x.db")  # the backend's; ignored here
    s = Settings()
    assert s.api_url == "http://elsewhere:9000"
    assert s.refresh_seconds <= 2


def test_get_client_is_built_from_settings_and_replaceable():
    set_client(None)
    c = get_client()
    assert isinstance(c, ApiClient) and get_client() is c
    stub = object()
    set_client(stub)
    assert get_client() is stub
    set_client(None)


def test_column_wise_metrics_and_the_batched_request():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params),
                     json.loads(request.content) if request.content else None))
        return httpx.Response(200, json={"runs": []})

    c = _client(handler)
    c.metrics(7, since_step=10, until_step=99, fields=["train_loss", "rho"], columns=True, max_points=50)
    c.metrics_batch([{"id": 3, "since_step": 40, "eval_since_step": None}, {"id": 4, "fields": ["epoch"]}],
                    fields=["train_loss"], max_points=500)
    c.metrics_batch([], comparison_id=9, evals=False)
    assert seen == [
        ("GET", "/api/runs/7/metrics", {"since_step": "10", "max_points": "50", "until_step": "99",
                                        "fields": "train_loss,rho", "format": "columns"}, None),
        ("POST", "/api/metrics/batch", {}, {"runs": [{"id": 3, "since_step": 40}, {"id": 4, "fields": ["epoch"]}],
                                            "max_points": 500, "evals": True, "fields": ["train_loss"]}),
        ("POST", "/api/metrics/batch", {}, {"runs": [], "max_points": 2000, "evals": False, "comparison_id": 9}),
    ]


def test_annotation_and_export_routes():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params),
                     json.loads(request.content) if request.content else None))
        if "export" in request.url.path:
            return httpx.Response(200, content=b"step,test_loss\n")
        return httpx.Response(200, json={"id": 7})

    c = _client(handler)
    c.annotate_run(7, tags=["a", "b"])
    c.annotate_run(7, note="")
    c.annotate_comparison(2, tags=[], note="n")
    assert c.export_evals_csv(7) == b"step,test_loss\n"
    assert seen == [
        ("PATCH", "/api/runs/7", {}, {"tags": ["a", "b"]}),
        ("PATCH", "/api/runs/7", {}, {"note": ""}),
        ("PATCH", "/api/comparisons/2", {}, {"tags": [], "note": "n"}),
        ("GET", "/api/runs/7/export", {"format": "csv", "table": "evals"}, None),
    ]


def test_results_and_sweep_routes():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, str(request.url.query, "ascii"),
                     json.loads(request.content) if request.content else None))
        if request.url.params.get("format") == "csv":
            return httpx.Response(200, text="group,seed\n", headers={"content-type": "text/csv"})
        return httpx.Response(200, json={"ok": True})

    c = _client(handler)
    assert c.comparison_results(3, reference="adam", targets=[0.5, 0.3], k=2) == {"ok": True}
    assert c.comparison_results(3, fmt="csv") == "group,seed\n"
    c.paired_curves(3, reference="adam", axis="epoch")
    c.create_sweep({"name": "s"})
    c.list_sweeps()
    c.get_sweep(4)
    c.promote_sweep(4, {"n_seeds": 5})
    assert seen[0][:3] == ("GET", "/api/comparisons/3/results",
                           "reference=adam&targets=0.5&targets=0.3&k=2&format=json")
    assert seen[2][:3] == ("GET", "/api/comparisons/3/paired-curves", "reference=adam&axis=epoch")
    assert [(m, p, b) for m, p, _, b in seen[3:]] == [
        ("POST", "/api/sweeps", {"name": "s"}), ("GET", "/api/sweeps", None), ("GET", "/api/sweeps/4", None),
        ("POST", "/api/sweeps/4/promote", {"n_seeds": 5})]
