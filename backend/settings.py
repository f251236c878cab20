"""Backend settings from ``TRUSTLAB_*`` environment variables: the only reader of os.environ in the backend."""
from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trainer.data import DEFAULT_DATA_DIR

__all__ = ["Settings", "get_settings", "cpu_count", "total_memory_gb", "is_loopback", "LOOPBACK_NAMES",
           "WORKER_SETTINGS"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# The settings a training worker reads (backend.runner.worker, the store reporter, limits): all that
# Settings.worker_environment hands to a worker on another machine. Add a field here when worker code
# starts reading it; never a secret.
WORKER_SETTINGS = ("database_url", "data_dir", "var_dir", "download", "flush_seconds", "flush_records",
                   "sqlite_busy_timeout_ms", "trainer", "warm_datasets", "worker_memory_gb", "torch_threads",
                   "store_outage_seconds", "store_buffer_mb", "store_retry_max_seconds")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, brackets allowed) is this machine's loopback interface only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # An IPv4-mapped IPv6 address (::ffff:127.0.0.1, what a dual-stack socket reports for a local IPv4
    # client) is loopback exactly when the IPv4 address it maps is.
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def total_memory_gb() -> float:
    """Physical memory of this machine in GiB (Linux sysconf; 8 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        return 8.0


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
    data_dir: Path = Field(default=Path(DEFAULT_DATA_DIR), description="dataset folder handed to the trainer (server only)")
    download: bool = Field(default=True, description="let torchvision download a missing dataset when online")
    host: str = Field(default="127.0.0.1", max_length=255,
                      description="address the API binds to (python -m backend.serve, make run); anything but "
                                  "loopback requires api_token")
    port: int = Field(default=8000, ge=1, le=65535, description="port the API binds to")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token required on every route but /api/health (required when host is "
                                  "not loopback; optional on loopback, and enforced when set)")
    allowed_hosts: str = Field(default="", max_length=4096,
                               description="extra Host header names accepted, comma-separated (loopback names and "
                                           "host are always accepted); * accepts any")
    users_file: Path | None = Field(
        default=None, description="named users (JSON, managed with `python -m backend.users`): each has a role "
                                  "(admin or member) and a hashed token; set: every route but /api/health and "
                                  "/api/auth needs a user's token (or api_token)")
    api_token_user: str = Field(default="admin", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$",
                                description="the name (an admin) that api_token signs in as")
    local_user: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$",
                            description="owner of what is created while no credentials are configured (open "
                                        "loopback API); this user counts as an admin")
    default_owner: str = Field(default="admin", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$",
                               description="owner given to rows that existed before owners (migration 0007)")
    max_queued_runs_per_user: int = Field(default=500, ge=1, le=1_000_000,
                                          description="most queued runs of one user (besides max_queued_runs)")
    cors_origins: str = Field(default="", max_length=4096,
                              description="origins allowed to call the API from a browser (CORS), comma-separated; "
                                          "default none")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000_000, description="largest request body")
    max_queued_runs: int = Field(default=1000, ge=1, le=1_000_000, description="most runs waiting in the queue")
    max_runs_per_comparison: int = Field(default=200, ge=1, le=5000,
                                         description="most runs one comparison (or sweep) may create")
    worker_memory_gb: float = Field(
        default_factory=lambda: round(max(1.0, 0.75 * total_memory_gb()), 1), gt=0, le=1_000_000,
        description="address-space limit of a worker process (RLIMIT_AS) in GiB, and the budget of the up-front "
                    "memory estimate; default 75% of physical memory")
    pool_timeout_seconds: float = Field(default=3.0, gt=0, le=60,
                                        description="wait this long for a free store connection, then answer 503")
    pool_size: int = Field(default=20, ge=1, le=1000,
                           description="store connections kept open by the API (as many again may overflow); "
                                       "at most 2 x pool_size requests are served at once")
    queue_seconds: float = Field(default=10.0, gt=0, le=600,
                                 description="a request waits this long for a free slot, then gets 503")
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
    store_outage_seconds: float = Field(
        default=300.0, gt=0, le=86_400,
        description="worker: ride out a store outage this long (records buffered in memory, writes retried); "
                    "past it the run stops and ends failed with \"store unreachable for N s\"")
    store_buffer_mb: float = Field(default=256.0, gt=0, le=65_536,
                                   description="worker: most memory (MiB) of records buffered during a store outage; "
                                               "past it the run stops as for store_outage_seconds")
    store_retry_max_seconds: float = Field(
        default=5.0, gt=0, le=300,
        description="longest wait between two tries to reach the store during an outage (the wait doubles from "
                    "flush_seconds up to this); also the Retry-After of the API's 503 answers")
    trainer: str = Field(default="trainer:run", description='training function "module:function" (tests swap it)')
    pinned_gpu: str | None = Field(default=None, description="set by the scheduler for a worker: its GPU id")
    executor: Literal["local", "ray"] = Field(
        default="local", description="where runs execute: local worker processes, or a Ray cluster (needs PostgreSQL)")
    warm_workers: int = Field(default=2, ge=0, le=64,
                              description="local executor: idle pre-started workers kept ready (0: cold start)")
    zygote: bool = Field(default=True,
                         description="local executor: fork CPU runs' worker processes from one pre-warmed fork "
                                     "server (torch imported, datasets decoded) instead of starting interpreters; "
                                     "off: warm pool / cold start")
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
    def host_names(self) -> set[str]:
        """Host header names accepted (lower case, no port): loopback names, ``host`` and ``allowed_hosts``."""
        names = {*LOOPBACK_NAMES, "[::1]", self.host.strip().lower()}
        names.update(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())
        return names

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def token(self) -> str | None:
        value = self.api_token.get_secret_value() if self.api_token is not None else ""
        return value or None

    @property
    def auth_required(self) -> bool:
        """Whether clients must sign in: a token or a users file is configured."""
        return self.token is not None or self.users_file is not None

    def check_bind(self) -> None:
        """Refuse a non-loopback ``host`` without credentials (raises ValueError saying what to set)."""
        if not is_loopback(self.host) and not self.auth_required:
            raise ValueError(f"Invalid configuration: the API would listen on {self.host!r}, which is reachable from "
                             "other machines, without authentication. Add users (`python -m backend.users add NAME --admin` "
                             "with TRUSTLAB_USERS_FILE set) or set TRUSTLAB_API_TOKEN to a long random "
                             "secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or bind "
                             "to 127.0.0.1.")

    @property
    def log_dir(self) -> Path:
        return self.var_dir.resolve() / "logs"

    def worker_environment(self) -> dict[str, str]:
        """Only the resolved settings a training worker reads (:data:`WORKER_SETTINGS`), as ``TRUSTLAB_*`` variables.

        For workers on other machines (Ray actors): no secret (the API token), nothing the API alone uses.
        """
        env: dict[str, str] = {}
        for name in WORKER_SETTINGS:
            value = self.resolved_database_url if name == "database_url" else getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):  # pragma: no cover - guarded by a test on WORKER_SETTINGS
                raise ValueError(f"Invalid WORKER_SETTINGS: {name} is a secret and must not reach workers")
            env[f"TRUSTLAB_{name.upper()}"] = (str(value.resolve()) if isinstance(value, Path)
                                               else ("1" if value else "0") if isinstance(value, bool) else str(value))
        env["PYTHONUNBUFFERED"] = "1"
        return env

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
            "TRUSTLAB_STORE_OUTAGE_SECONDS": str(self.store_outage_seconds),
            "TRUSTLAB_STORE_BUFFER_MB": str(self.store_buffer_mb),
            "TRUSTLAB_STORE_RETRY_MAX_SECONDS": str(self.store_retry_max_seconds),
            "TRUSTLAB_TRAINER": self.trainer,
            "TRUSTLAB_WARM_DATASETS": self.warm_datasets,
            "TRUSTLAB_DOWNLOAD": "1" if self.download else "0",
            "TRUSTLAB_WORKER_MEMORY_GB": str(self.worker_memory_gb),
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
