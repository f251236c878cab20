"""End to end: the real API under uvicorn, real worker processes and the real trainer on Fashion-MNIST."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests import processes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FINAL = ("completed", "diverged", "failed", "cancelled", "interrupted")
TINY = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"backprops": 50},
        "train_subset": 512, "eval_every": 10, "test_subset": 1000}
ENDLESS = {**TINY, "budget": {"seconds": 300}, "eval_every": 1000}
WAIT = 600.0  # ceiling of each poll for a run's progress: it returns as soon as the state is reached


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """``uvicorn backend.main:app`` in a subprocess on a free port with a temporary store.

    Made through the ``make_api`` fixture, whose teardown stops every process it started (the API's group, then
    any worker or fork server still carrying its ``TRUSTLAB_VAR_DIR``), whatever the test did.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "var" / "trustlab.db"
        self.marker = f"TRUSTLAB_VAR_DIR={root / 'var'}"
        self.proc: subprocess.Popen | None = None
        self.http: httpx.Client | None = None

    def start(self) -> "Api":
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTLAB_")}
        env.update(TRUSTLAB_VAR_DIR=str(self.root / "var"), TRUSTLAB_DATA_DIR=str(self.root / "data"),
                   TRUSTLAB_MAX_CONCURRENT_RUNS="2", TRUSTLAB_GPUS="", TRUSTLAB_POLL_INTERVAL="0.2",
                   TRUSTLAB_CANCEL_GRACE_SECONDS="5")
        log = self.root / "uvicorn.log"
        self.proc = processes.start([sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
                                     "--port", str(port)], env=env, cwd=REPO, log=log)
        url = f"http://127.0.0.1:{port}"
        processes.wait_http(url + "/api/health", self.proc, log)
        self.http = httpx.Client(base_url=url, timeout=processes.CLIENT_TIMEOUT)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the API's process group (SIGKILL: a crash, no shutdown hook runs) and wait until it is gone."""
        processes.stop(self.proc, sig)
        if self.http is not None:
            self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any = None, status: int = 201) -> Any:
        r = self.http.post(path, json=body)
        assert r.status_code == status, r.text
        return r.json()

    def wait(self, run_id: int, statuses: tuple[str, ...] = FINAL, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/api/runs/{run_id}")
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout} s"
            time.sleep(0.2)

    def wait_points(self, run_id: int, count: int = 5, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.get(f"/api/runs/{run_id}/metrics")["total"] < count:
            assert self.get(f"/api/runs/{run_id}")["status"] in ("queued", "running")
            assert time.monotonic() < deadline, f"run {run_id} logged fewer than {count} points in {timeout} s"
            time.sleep(0.2)

    def pid(self, run_id: int) -> int:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT pid FROM runs WHERE id=?", (run_id,)).fetchone()[0]


def _stop_all(servers: list[Api]) -> None:
    """Teardown: stop each API, then every process still carrying its store folder (orphaned workers, zygote)."""
    for server in servers:
        server.stop()
    for server in servers:
        processes.kill_marked(server.marker)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = Api(tmp_path_factory.mktemp("e2e"))
    try:
        yield server.start()
    finally:
        _stop_all([server])


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[[], Api]]:
    """``make_api()`` → a started API on ``tmp_path``'s store; all of them stopped at teardown."""
    servers: list[Api] = []

    def factory() -> Api:
        servers.append(Api(tmp_path))
        return servers[-1].start()

    try:
        yield factory
    finally:
        _stop_all(servers)


def test_mlp_and_autoencoder_runs_complete_with_metrics_evaluations_and_images(api: Api) -> None:
    autoencoder = {**TINY, "model": "autoencoder", "optimizer": {"name": "tr-uniform"}, "budget": {"backprops": 30},
                   "train_subset": 256, "test_subset": 256, "eval_every": 5}
    mlp_id = api.post("/api/runs", TINY)["id"]
    ae_id = api.post("/api/runs", autoencoder)["id"]
    assert api.get(f"/api/runs/{mlp_id}")["status"] in ("queued", "running")

    run = api.wait(mlp_id)
    assert run["status"] == "completed", run
    assert run["device"] == "cpu" and run["progress"] == 1.0 and run["summary"]["steps"] == 50
    metrics = api.get(f"/api/runs/{mlp_id}/metrics")
    losses = [p["train_loss"] for p in metrics["points"]]
    assert metrics["total"] == 50 and metrics["last_step"] == 50 and losses[-1] < losses[0]
    evals = api.get(f"/api/runs/{mlp_id}/evals")["points"]
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 40, 50]
    assert evals[-1]["test_accuracy"] > evals[0]["test_accuracy"]
    csv_text = api.http.get(f"/api/runs/{mlp_id}/export", params={"format": "csv"}).text
    assert len(csv_text.strip().splitlines()) == 51

    run = api.wait(ae_id)
    assert run["status"] == "completed", run
    listing = api.get(f"/api/runs/{ae_id}/reconstructions")
    assert listing["has_original"] and listing["steps"][0] == 0 and listing["steps"][-1] == run["last_step"]
    for name in ("latest", "original", str(listing["steps"][1])):
        png = api.http.get(f"/api/runs/{ae_id}/reconstructions/{name}.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    point = api.get(f"/api/runs/{ae_id}/metrics")["points"][0]
    assert point["radius"] is not None and point["cg_exit"] is not None and point["hvps"] >= 1


def test_comparison_of_two_optimizers_shares_the_start(api: Api) -> None:
    spec = {"name": "sgd vs adam", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 30},
            "seeds": [5], "train_subset": 512, "test_subset": 1000, "eval_every": 10,
            "optimizers": [{"name": "sgd"}, {"name": "adam"}]}
    created = api.post("/api/comparisons", spec)
    runs = [api.wait(run_id) for run_id in created["run_ids"]]
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert api.get(f"/api/comparisons/{created['id']}")["status"] == "completed"
    first_evals = [api.get(f"/api/runs/{r['id']}/evals")["points"][0] for r in runs]
    assert first_evals[0]["test_loss"] == first_evals[1]["test_loss"]  # same seed → same initial weights
    first_steps = [api.get(f"/api/runs/{r['id']}/metrics")["points"][0] for r in runs]
    assert first_steps[0]["train_loss"] == first_steps[1]["train_loss"]  # ... and the same first minibatch


def test_cancel_one_running_run_and_kill_9_another(api: Api) -> None:
    cancel_id, kill_id = api.post("/api/runs", ENDLESS)["id"], api.post("/api/runs", ENDLESS)["id"]
    api.wait_points(cancel_id)
    api.wait_points(kill_id)
    api.post(f"/api/runs/{cancel_id}/cancel", status=200)
    os.kill(api.pid(kill_id), signal.SIGKILL)
    cancelled = api.wait(cancel_id)
    assert cancelled["status"] == "cancelled", cancelled
    killed = api.wait(kill_id)
    assert killed["status"] == "failed" and "killed by signal 9" in killed["error"], killed
    for run_id in (cancel_id, kill_id):
        assert api.get(f"/api/runs/{run_id}/metrics")["total"] >= 5  # what was logged is kept


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return True


def test_restart_the_api_with_a_run_in_flight(make_api: Callable[[], Api]) -> None:
    first = make_api()
    run_id = first.post("/api/runs", ENDLESS)["id"]
    first.wait_points(run_id)
    worker_pid = first.pid(run_id)
    first.stop(signal.SIGKILL)  # a crash: no shutdown hook runs
    second = make_api()
    run = second.get(f"/api/runs/{run_id}")
    assert run["status"] == "interrupted", run
    logged = second.get(f"/api/runs/{run_id}/metrics")["total"]
    assert logged >= 5
    deadline = time.monotonic() + WAIT
    while not _gone(worker_pid):  # the orphaned worker notices and stops by itself
        assert time.monotonic() < deadline, f"orphaned worker still training after {WAIT} s"
        time.sleep(0.2)
    assert second.get(f"/api/runs/{run_id}")["status"] == "interrupted"
    assert second.get(f"/api/runs/{run_id}/metrics")["total"] >= logged
