"""Backend settings from ``TRUSTLAB_*`` environment variables: the only reader of os.environ in the backend."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "cpu_count"]


def cpu_count() -> int:
    """CPU cores this process may use (respects affinity masks and container cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Configuration of the API process and its workers.

    Every field is read from ``TRUSTLAB_<FIELD>`` (e.g. ``TRUSTLAB_DATABASE_URL``). Workers receive the
    resolved values through their environment, so API and workers always agree.
    """

    model_config = SettingsConfigDict(env_prefix="TRUSTLAB_", extra="ignore", populate_by_name=True)

    var_dir: Path = Field(default=Path("var"), description="folder for the default SQLite store and worker logs")
    database_url: str | None = Field(
        default=None, description="any SQLAlchemy URL; default sqlite:///<var_dir>/trustlab.db")
    data_dir: Path = Field(default=Path("data"), description="dataset folder handed to the trainer")
    max_concurrent_runs: int | None = Field(
        default=None, ge=1, le=1024, description="runs training at once; default one per GPU, else per core (max 4)")
    gpus: str | None = Field(
        default=None, validation_alias=AliasChoices("TRUSTLAB_GPUS", "CUDA_VISIBLE_DEVICES"),
        description='GPU ids to spread runs over, e.g. "0,1"; default: CUDA_VISIBLE_DEVICES, else nvidia-smi')
    torch_threads: int | None = Field(default=None, ge=1, le=1024,
                                      description="torch threads per worker; default cores / concurrent runs")
    scheduler: bool = Field(default=True, description="run the job scheduler in this process (off: API only)")
    poll_interval: float = Field(default=0.5, gt=0, le=60, description="scheduler tick in seconds")
    cancel_grace_seconds: float = Field(default=10.0, ge=0, le=3600,
                                        description="SIGTERM → SIGKILL delay when cancelling a run")
    flush_seconds: float = Field(default=0.5, gt=0, le=60, description="worker: flush buffered records this often")
    flush_records: int = Field(default=500, ge=1, le=1_000_000, description="worker: or when this many are buffered")
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0, description="SQLite busy timeout")
    trainer: str = Field(default="trainer:run", description='training function "module:function" (tests swap it)')
    pinned_gpu: str | None = Field(default=None, description="set by the scheduler for a worker: its GPU id")
    executor: Literal["local", "ray"] = Field(
        default="local", description="where runs execute: local worker processes, or a Ray cluster (needs PostgreSQL)")
    warm_workers: int = Field(default=2, ge=0, le=64,
                              description="local executor: idle pre-started workers kept ready (0: cold start)")
    warm_datasets: str = Field(default="fashion-mnist",
                               description='datasets a warm worker decodes in advance, comma-separated ("" none)')
    ray_address: str | None = Field(default=None, description='Ray cluster to join, e.g. "127.0.0.1:6379"; '
                                                              "default: the cluster ray start made on this host")
    ray_node_ip: str | None = Field(default=None, max_length=64,
                                    description="this host's address in the Ray cluster, e.g. 127.0.0.2 for a "
                                                "loopback-only cluster; default: Ray's own guess")
    ray_run_resources: str | None = Field(default=None, max_length=1000,
                                          description='extra Ray resources every run requests, JSON, e.g. '
                                                      '{"trainer_node": 1} (places runs on nodes that offer it)')
    ray_namespace: str = Field(default="trustlab", min_length=1, max_length=64,
                               description="Ray namespace of the run actors (one per trustlab deployment)")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: str | None) -> str | None:
        return None if v is None else v.strip()

    @property
    def resolved_database_url(self) -> str:
        """The store URL; relative SQLite paths are made absolute so workers in any cwd agree."""
        if self.database_url is None:
            return f"sqlite:///{(self.var_dir / 'trustlab.db').resolve()}"
        url = self.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            path, sep, query = url[len(prefix):].partition("?")
            return f"{prefix}{Path(path).resolve()}{sep}{query}"
        return url

    @property
    def log_dir(self) -> Path:
        return self.var_dir.resolve() / "logs"

    def child_environment(self, **overrides: str | None) -> dict[str, str]:
        """The environment for a worker process: ours plus resolved settings and ``overrides`` (None removes)."""
        env = dict(os.environ)
        env.update({
            "TRUSTLAB_DATABASE_URL": self.resolved_database_url,
            "TRUSTLAB_DATA_DIR": str(self.data_dir.resolve()),
            "TRUSTLAB_VAR_DIR": str(self.var_dir.resolve()),
            "TRUSTLAB_FLUSH_SECONDS": str(self.flush_seconds),
            "TRUSTLAB_FLUSH_RECORDS": str(self.flush_records),
            "TRUSTLAB_SQLITE_BUSY_TIMEOUT_MS": str(self.sqlite_busy_timeout_ms),
            "TRUSTLAB_TRAINER": self.trainer,
            "TRUSTLAB_WARM_DATASETS": self.warm_datasets,
            "PYTHONUNBUFFERED": "1",
        })
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
