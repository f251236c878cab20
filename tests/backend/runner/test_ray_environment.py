"""What the Ray executor hands its actors: only the settings a worker reads (an allowlist), never the API token."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from backend.settings import WORKER_SETTINGS, Settings

REPO = Path(__file__).resolve().parents[3]
# Worker code; every `settings.<name>` it reads must travel (or be node-local, or derived from one that does).
WORKER_MODULES = ("backend/runner/worker.py", "backend/limits.py")
NODE_LOCAL = {"pinned_gpu", "gpus"}  # a Ray node's own GPUs: Ray sets the actor's CUDA_VISIBLE_DEVICES
DERIVED = {"resolved_database_url": "database_url", "log_dir": "var_dir"}


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", data_dir=tmp_path / "data",
                    database_url="postgresql+psycopg://u:p@db.example/trustlab", api_token="s3cret-api-token",
                    allowed_hosts="dash.example", cors_origins="https://dash.example", torch_threads=3,
                    executor="ray", flush_records=7, download=False, trainer="tests.backend.fake_trainer:run")


def test_worker_environment_is_the_allowlist_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    env = settings.worker_environment()
    assert set(env) == {f"TRUSTLAB_{n.upper()}" for n in WORKER_SETTINGS} | {"PYTHONUNBUFFERED"}
    assert "s3cret-api-token" not in repr(env) and "TRUSTLAB_API_TOKEN" not in env
    assert "TRUSTLAB_ALLOWED_HOSTS" not in env and "TRUSTLAB_EXECUTOR" not in env
    for key in [k for k in os.environ if k.startswith("TRUSTLAB_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen = Settings(_env_file=None)  # what the actor's Settings() reads
    for name in WORKER_SETTINGS:
        assert getattr(seen, name) == (settings.resolved_database_url if name == "database_url"
                                       else getattr(settings, name)), name
    assert seen.token is None


def test_every_setting_worker_code_reads_is_on_the_allowlist() -> None:
    read = {m for path in WORKER_MODULES for m in re.findall(r"\bsettings\.([a-z_]+)", (REPO / path).read_text())}
    assert read, "the scan found no settings reads: update WORKER_MODULES"
    missing = {DERIVED.get(n, n) for n in read} - set(WORKER_SETTINGS) - NODE_LOCAL
    assert not missing, f"worker code reads {sorted(missing)}: add them to backend.settings.WORKER_SETTINGS"
    assert not {"api_token", "host", "allowed_hosts", "cors_origins"} & set(WORKER_SETTINGS)


def test_ray_executor_passes_actors_the_allowlist_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra)")
    from backend.runner import ray_executor

    monkeypatch.setenv("TRUSTLAB_API_TOKEN", "s3cret-from-the-environment")
    monkeypatch.setenv("TRUSTLAB_SOMETHING_ELSE", "api-only")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # no cluster: only the environment is checked
    executor = ray_executor.RayExecutor(_settings(tmp_path), engine=None)  # type: ignore[arg-type]
    assert {k for k in executor.env if k.startswith("TRUSTLAB_")} == {f"TRUSTLAB_{n.upper()}" for n in WORKER_SETTINGS}
    assert "s3cret" not in repr(executor.env) and "api-only" not in repr(executor.env)
    assert executor.env["PYTHONPATH"].split(":")[0] == str(REPO)
