"""Settings from TRUSTLAB_* variables and the run-slot plan (GPUs, CPU cores, threads)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.runner import devices
from backend.runner.devices import detect_gpus, plan_slots
from backend.settings import Settings


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRUSTLAB_DATABASE_URL", "postgresql+psycopg://u:p@db/trustlab")
    monkeypatch.setenv("TRUSTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRUSTLAB_MAX_CONCURRENT_RUNS", "3")
    s = Settings()
    assert s.resolved_database_url == "postgresql+psycopg://u:p@db/trustlab"
    assert s.data_dir == tmp_path and s.max_concurrent_runs == 3
    env = s.child_environment(OMP_NUM_THREADS="2", TRUSTLAB_PINNED_GPU=None)
    assert env["TRUSTLAB_DATABASE_URL"] == s.resolved_database_url and env["OMP_NUM_THREADS"] == "2"
    assert "TRUSTLAB_PINNED_GPU" not in env


def test_sqlite_paths_become_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRUSTLAB_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings(var_dir="v").resolved_database_url == f"sqlite:///{tmp_path}/v/trustlab.db"
    assert Settings(database_url="sqlite:///x/y.db").resolved_database_url == f"sqlite:///{tmp_path}/x/y.db"


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrent_runs"):
        Settings(max_concurrent_runs=0)


def test_slot_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_count", lambda: 2)
    cpu = plan_slots(Settings(gpus="", max_concurrent_runs=None, torch_threads=None))
    assert cpu.limit == 2 and cpu.slots == (None, None) and cpu.torch_threads == 1
    monkeypatch.setattr(devices, "cpu_count", lambda: 16)
    gpu = plan_slots(Settings(gpus="0,1", max_concurrent_runs=None, torch_threads=None))
    assert gpu.slots == ("0", "1") and gpu.torch_threads == 8
    more = plan_slots(Settings(gpus="0,1", max_concurrent_runs=3, torch_threads=None))
    assert more.slots == ("0", "1", "0")
    assert plan_slots(Settings(gpus="", max_concurrent_runs=None, torch_threads=None)).limit == 4


def test_detect_gpus() -> None:
    assert detect_gpus("") == [] and detect_gpus("-1") == [] and detect_gpus("2, 3") == ["2", "3"]
    assert isinstance(detect_gpus(None), list)  # nvidia-smi or not, never raises


def test_the_default_data_folder_is_the_trainer_s(monkeypatch):
    from backend.settings import Settings
    from trainer import cli, loop
    from trainer.data import DEFAULT_DATA_DIR

    monkeypatch.delenv("TRUSTLAB_DATA_DIR", raising=False)
    assert Settings(_env_file=None).data_dir == Path(DEFAULT_DATA_DIR) == Path("data")
    assert loop.DEFAULT_DATA_DIR is DEFAULT_DATA_DIR and cli.DEFAULT_DATA_DIR is DEFAULT_DATA_DIR


def test_is_loopback_covers_ipv4_mapped_ipv6() -> None:
    """A dual-stack socket reports a local IPv4 client as ::ffff:127.0.0.1: that is loopback too."""
    from backend.settings import is_loopback

    for host in ("localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "[::FFFF:127.0.0.2]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "::ffff:0.0.0.0", "example.org", ""):
        assert not is_loopback(host), host
