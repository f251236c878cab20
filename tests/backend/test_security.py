"""Security regressions of issue 8: client paths, non-finite and unbounded numbers, size caps, token, origin, Host."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.main import create_app
from backend.tables import Run
from tests.backend.conftest import MLP_RUN, make_settings, wait_status

REPO = Path(__file__).resolve().parents[2]


def _post(client: TestClient, body: bytes | str, path: str = "/api/runs", **headers: str):
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


# -- 1. data locations are server configuration -------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("data_dir", "/tmp/evil"), ("download", True)])
def test_data_dir_attack_is_refused_and_runs_nothing(live_client: TestClient, tmp_path: Path, field: str,
                                                     value: Any) -> None:
    evil = tmp_path / "evil" / "cifar-10-batches-py"
    evil.mkdir(parents=True)
    (evil / "data_batch_1").write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")  # a crafted pickle
    body = {**MLP_RUN, "dataset": "cifar10", field: str(evil.parent) if field == "data_dir" else value}
    r = live_client.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["body", field] and "Extra inputs are not permitted" in e["msg"] for e in r.json()["detail"])
    assert live_client.get("/api/runs").json()["total"] == 0


def test_stored_legacy_data_dir_is_ignored_by_the_worker(live_client: TestClient, tmp_path: Path) -> None:
    """A run queued by an older version with data_dir in its config trains with the server's data folder."""
    run_id = live_client.post("/api/runs", json={**MLP_RUN, "budget": {"backprops": 3}}).json()["id"]
    engine = live_client.app.state.engine
    with engine.begin() as conn:  # what an old API stored
        conn.execute(update(Run).where(Run.id == run_id).values(
            config={**live_client.get(f"/api/runs/{run_id}").json()["config"], "data_dir": str(tmp_path / "evil"),
                    "download": True}))
    run = wait_status(live_client, run_id, ("completed", "failed"))
    assert run["status"] == "completed", run["error"]


def test_dataset_missing_message_names_setting_not_paths(tmp_path: Path) -> None:
    import trainer
    from backend.limits import LimitedReporter
    from trainer.reporting import ListReporter

    got: dict[str, Any] = {}

    class Inner(ListReporter):
        def on_finish(self, summary: dict[str, Any]) -> None:
            got.update(summary)

    cfg = {**MLP_RUN, "dataset": "cifar10"}
    summary = trainer.run(cfg, LimitedReporter(Inner(), 4.0), data_dir=tmp_path / "nowhere", download=False)
    assert summary["status"] == "failed" and str(tmp_path) in summary["message"]  # the CLI sees paths
    assert got["status"] == "failed" and "traceback" not in got
    assert str(tmp_path) not in got["message"] and "/usr" not in got["message"]
    assert "cifar10" in got["message"] and "TRUSTLAB_DATA_DIR" in got["message"]


def test_client_messages_hide_paths_and_name_oom() -> None:
    from backend.limits import client_message

    assert "<server path>" in client_message("OSError: cannot open /srv/secret/data/x.bin", 4)
    oom = client_message("RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB", 4)
    assert oom.startswith("out of memory (limit 4 GB")


# -- 3, 4. non-finite and unbounded numbers -------------------------------------------------------------------

NONFINITE = {
    "budget.seconds Infinity": ('{"budget": {"seconds": Infinity}}', ["budget", "seconds"]),
    "budget.seconds 1e400": ('{"budget": {"seconds": 1e400}}', ["budget", "seconds"]),
    "budget.epochs NaN": ('{"budget": {"epochs": NaN}}', ["budget", "epochs"]),
    "lr -Infinity": ('{"optimizer": {"name": "sgd", "hyperparameters": {"lr": -Infinity}}}', ["optimizer"]),
    "guards NaN": ('{"guards": {"loss_factor": NaN}}', ["guards", "loss_factor"]),
    "backprops 1e30": ('{"budget": {"backprops": 1e30}}', ["budget", "backprops"]),
    "train_subset 1e30": ('{"train_subset": 1e30}', ["train_subset"]),
    "seconds a year": ('{"budget": {"seconds": 31536000}}', ["budget", "seconds"]),
}


@pytest.mark.parametrize("patch,loc", NONFINITE.values(), ids=NONFINITE.keys())
def test_nonfinite_and_huge_numbers_are_422_naming_the_field(client: TestClient, patch: str, loc: list) -> None:
    base = json.dumps({k: v for k, v in MLP_RUN.items() if k not in json.loads(patch.replace("NaN", "0")
                                                                               .replace("-Infinity", "0")
                                                                               .replace("Infinity", "0")
                                                                               .replace("1e400", "0"))})
    body = base[:-1] + ", " + patch[1:]
    r = _post(client, body)
    assert r.status_code == 422, r.text
    assert any(e["loc"][1:1 + len(loc)] == loc for e in r.json()["detail"]), r.json()
    assert client.get("/api/runs").json()["total"] == 0


@pytest.mark.parametrize("field,size", [("train_subset", 60000), ("test_subset", 10000), ("eval_train_size", 60000)])
def test_subset_larger_than_dataset_states_its_size(client: TestClient, field: str, size: int) -> None:
    assert client.post("/api/runs", json={**MLP_RUN, field: size}).status_code == 201
    r = client.post("/api/runs", json={**MLP_RUN, field: size + 1})
    assert r.status_code == 422 and f"the {size}" in r.text and "fashion-mnist" in r.text, r.text


def test_openapi_states_bounds_enums_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    budget = schemas["Budget"]["properties"]
    assert budget["seconds"]["anyOf"][0]["maximum"] == 30 * 24 * 3600
    assert budget["backprops"]["anyOf"][0]["maximum"] == 10**12
    run = schemas["RunConfig"]["properties"]
    assert run["dataset"]["enum"] == ["fashion-mnist", "mnist", "cifar10"]
    assert "resnet18" in run["model"]["enum"]
    assert "tr-rmsprop" in schemas["OptimizerConfig"]["properties"]["name"]["enum"]
    status = schemas["RunOut"]["properties"]["status"]  # the RunState enum, as a shared component
    assert "interrupted" in schemas[status["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert run["train_subset"]["anyOf"][0]["maximum"] >= 60000
    post = spec["paths"]["/api/runs"]["post"]["responses"]
    assert {"401", "403", "413", "415", "422", "429", "503"} <= set(post)
    assert {"404", "409"} <= set(spec["paths"]["/api/runs/{run_id}"]["delete"]["responses"])


# -- 5. size caps ---------------------------------------------------------------------------------------------

def test_body_over_the_cap_is_413_and_stores_nothing(client: TestClient) -> None:
    big = json.dumps({**MLP_RUN, "optimizer": {"name": "sgd", "hyperparameters": {"x" * 2_000_000: 1}}})
    r = _post(client, big)
    assert r.status_code == 413 and "TRUSTLAB_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams in
        yield big[:1000].encode()
        yield big[1000:].encode()

    r = client.post("/api/runs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/runs").json()["total"] == 0


@pytest.mark.parametrize("url", ["/api/runs?limit=1000", "/api/comparisons?limit=501",
                                 "/api/runs/1/metrics?max_points=1000000"])
def test_page_sizes_are_capped(client: TestClient, url: str) -> None:
    client.post("/api/runs", json=MLP_RUN)
    assert client.get(url).status_code == 422


def test_long_strings_are_refused(client: TestClient) -> None:
    body = {"name": "n" * 201, "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 5},
            "optimizers": [{"name": "sgd"}]}
    assert client.post("/api/comparisons", json=body).status_code == 422
    assert client.post("/api/runs", json={**MLP_RUN, "device": "cuda:" + "1" * 100}).status_code == 422


# -- 6. token, origin, Host, content type ---------------------------------------------------------------------

@pytest.fixture
def token_client(tmp_path: Path):
    with TestClient(create_app(make_settings(tmp_path, api_token="s3cret-token"))) as c:
        yield c


def test_token_required_when_set(token_client: TestClient) -> None:
    assert token_client.get("/api/health").status_code == 200  # health stays open
    r = token_client.get("/api/runs")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert token_client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = {"Authorization": "Bearer s3cret-token"}
    assert token_client.get("/api/runs", headers=ok).status_code == 200
    assert token_client.post("/api/runs", json=MLP_RUN).status_code == 401
    assert token_client.post("/api/runs", json=MLP_RUN, headers=ok).status_code == 201


def test_ui_client_sends_the_session_token_only(token_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI holds no token of its own (a TRUSTLAB_API_TOKEN in its environment is ignored): each signed-in
    session's client forwards that session's token (frontend/signin.py, frontend.ui.client)."""
    import httpx

    from frontend import api_client, settings as ui_settings

    monkeypatch.setenv("TRUSTLAB_API_TOKEN", "s3cret-token")
    ui_settings.get_settings.cache_clear()
    api_client.set_client(None)
    try:
        seen: list[str | None] = []

        def handler(request):  # noqa: ANN001
            seen.append(request.headers.get("authorization"))
            auth = request.headers.get("authorization")
            r = token_client.get(str(request.url.path), headers={"Authorization": auth} if auth else {})
            return httpx.Response(r.status_code, content=r.content, headers={"content-type": "application/json"})

        client = api_client.get_client()
        client._http._transport = httpx.MockTransport(handler)
        with pytest.raises(api_client.ApiError) as refused:
            client.list_runs()
        assert refused.value.status_code == 401
        assert client.with_token("s3cret-token").list_runs()["total"] == 0
        assert client.auth() == {"required": True, "user": None}
        assert seen == [None, "Bearer s3cret-token", None]
    finally:
        ui_settings.get_settings.cache_clear()
        api_client.set_client(None)


def test_cross_origin_form_post_is_refused(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    form = {"content-type": "application/x-www-form-urlencoded", "origin": "http://evil.example"}
    r = client.post(f"/api/runs/{run_id}/cancel", content=b"x=1", headers=form)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post(f"/api/runs/{run_id}/cancel", headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    r = client.delete(f"/api/runs/{run_id}", headers={"origin": "null"})
    assert r.status_code == 403
    r = client.post(f"/api/runs/{run_id}/cancel", content=b"x=1",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"
    same = client.post(f"/api/runs/{run_id}/cancel", headers={"origin": "http://testserver"})
    assert same.status_code == 200 and same.json()["status"] == "cancelled"


def test_cors_allow_list(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, cors_origins="http://ui.lab"))) as c:
        ok = c.post("/api/runs", json=MLP_RUN, headers={"origin": "http://ui.lab"})
        assert ok.status_code == 201 and ok.headers["access-control-allow-origin"] == "http://ui.lab"
        assert c.post("/api/runs", json=MLP_RUN, headers={"origin": "http://other.lab"}).status_code == 403


def test_host_header_is_checked(client: TestClient) -> None:
    r = client.get("/api/runs", headers={"host": "attacker.example:8000"})
    assert r.status_code == 400 and "TRUSTLAB_ALLOWED_HOSTS" in r.json()["detail"]
    assert client.get("/api/runs", headers={"host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/api/runs", headers={"host": "localhost"}).status_code == 200


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "TRUSTLAB_HOST": "0.0.0.0", "TRUSTLAB_PORT": "8197", "TRUSTLAB_VAR_DIR": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    env.pop("TRUSTLAB_API_TOKEN", None)
    out = subprocess.run([sys.executable, "-m", "backend.serve"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and "TRUSTLAB_API_TOKEN" in out.stderr, out.stderr
    with pytest.raises(ValueError, match="TRUSTLAB_API_TOKEN"):
        with TestClient(create_app(make_settings(tmp_path, host="0.0.0.0"))):
            pass
    with TestClient(create_app(make_settings(tmp_path, host="0.0.0.0", api_token="t"))) as c:  # with a token: starts
        assert c.get("/api/runs", headers={"Authorization": "Bearer t"}).status_code == 200


# -- 7. quotas and memory -------------------------------------------------------------------------------------

def test_queue_quota_and_runs_per_comparison(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_queued_runs=2, max_runs_per_comparison=3))) as c:
        body = {"name": "c", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 5},
                "seeds": [0, 1], "optimizers": [{"name": "sgd"}, {"name": "adam"}]}
        r = c.post("/api/comparisons", json=body)
        assert r.status_code == 422 and "at most 3" in r.text and "TRUSTLAB_MAX_RUNS_PER_COMPARISON" in r.text
        assert c.post("/api/runs", json=MLP_RUN).status_code == 201
        assert c.post("/api/runs", json=MLP_RUN).status_code == 201
        r = c.post("/api/runs", json=MLP_RUN)
        assert r.status_code == 429 and r.headers["retry-after"] and "TRUSTLAB_MAX_QUEUED_RUNS" in r.text
        assert c.get("/api/runs").json()["total"] == 2


def test_run_that_cannot_fit_is_refused_up_front(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, worker_memory_gb=8))) as c:
        r = c.post("/api/runs", json={**MLP_RUN, "model": "resnet18", "batch_size": 65536, "device": "cpu"})
        assert r.status_code == 422 and "TRUSTLAB_WORKER_MEMORY_GB" in r.text and "8 GB" in r.text, r.text
        assert c.post("/api/runs", json={**MLP_RUN, "model": "resnet18", "batch_size": 128}).status_code == 201


def test_worker_out_of_memory_fails_fast_with_the_limit(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, scheduler=True, worker_memory_gb=1.5))) as c:
        run_id = c.post("/api/runs", json={**MLP_RUN, "seed": 671, "device": "cpu"}).json()["id"]
        run = wait_status(c, run_id, ("failed", "completed"), timeout=30)
    assert run["status"] == "failed" and run["error"].startswith("out of memory (limit 1.5 GB"), run


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_real_trainer_out_of_memory_ends_failed_with_the_limit(tmp_path: Path) -> None:
    """ResNet18 at batch 16384 under a 4.5 GB limit: the real trainer in a real worker fails within seconds."""
    from backend.db import make_engine, make_session_factory, migrate
    from backend.store import create_run
    from trainer.config import RunConfig

    settings = make_settings(tmp_path, worker_memory_gb=4.5, trainer="trainer:run")
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        run_id = create_run(session, RunConfig.model_validate(
            {**MLP_RUN, "model": "resnet18", "batch_size": 16384, "train_subset": 16384, "test_subset": 100,
             "device": "cpu"})).id
        session.commit()
    env = settings.child_environment(PYTHONPATH=str(REPO), TRUSTLAB_GPUS="")
    out = subprocess.run([sys.executable, "-m", "backend.runner.worker", str(run_id)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    with engine.connect() as conn:
        status, error = conn.execute(Run.__table__.select().with_only_columns(Run.status, Run.error)
                                     .where(Run.id == run_id)).one()
    engine.dispose()
    assert status == "failed" and error.startswith("out of memory (limit 4.5 GB"), (status, error, out.stderr[-1000:])


# -- 8. owner-only files --------------------------------------------------------------------------------------

def test_store_and_logs_are_owner_only(live_client: TestClient) -> None:
    settings = live_client.app.state.settings
    run_id = live_client.post("/api/runs", json={**MLP_RUN, "budget": {"backprops": 3}}).json()["id"]
    wait_status(live_client, run_id, ("completed",))
    db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(db) == 0o600 and mode(db.parent) == 0o700
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if extra.exists():
            assert mode(extra) == 0o600, extra
    assert mode(settings.log_dir) == 0o700
    logs = list(settings.log_dir.iterdir())
    assert logs and all(mode(p) == 0o600 for p in logs)


# -- 2. no hang when the store connections are taken --------------------------------------------------------------

def test_pool_exhausted_is_503_with_retry_after_not_a_hang(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, pool_size=1, pool_timeout_seconds=0.2))) as c:
        engine = c.app.state.engine
        held = [engine.connect(), engine.connect()]  # pool 1 + overflow 1: all taken
        try:
            r = c.get("/api/runs")
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert c.get("/api/health").status_code == 200  # health has its own connection
        finally:
            for conn in held:
                conn.close()
        assert c.get("/api/runs").status_code == 200


def test_requests_beyond_the_slots_wait_then_get_503(tmp_path: Path) -> None:
    import asyncio

    from backend.security import RequestGate

    release = asyncio.Event()

    async def slow_app(scope, receive, send):  # noqa: ANN001 - ASGI
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = RequestGate(slow_app, make_settings(tmp_path, pool_size=1, queue_seconds=0.2))

    async def request(path: str) -> int:
        sent: list[dict] = []

        async def send(message):  # noqa: ANN001
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"host", b"127.0.0.1:8000")],
                 "server": ("127.0.0.1", 8000)}
        await gate(scope, receive, send)
        return sent[0]["status"]

    async def scenario() -> list[int]:
        tasks = [asyncio.create_task(request("/api/runs")) for _ in range(3)]  # 2 slots (2 x pool_size)
        third = await asyncio.wait_for(asyncio.shield(tasks[2]), 5)
        release.set()
        return [await tasks[0], await tasks[1], third]

    assert asyncio.run(scenario()) == [200, 200, 503]


def test_run_errors_shown_to_clients_hide_server_paths(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    with client.app.state.engine.begin() as conn:  # what the job runner stores for a crashed worker
        conn.execute(update(Run).where(Run.id == run_id).values(
            status="failed", summary={"traceback": "File /srv/app/x.py", "steps": 0},
            error="worker process exited with code 1\n--- last lines of the worker log (/srv/var/logs/run-1.log) ---"))
    for run in (client.get(f"/api/runs/{run_id}").json(), client.get("/api/runs").json()["items"][0]):
        assert "/srv" not in run["error"] and "<server path>" in run["error"]
        assert run["summary"] == {"steps": 0}
