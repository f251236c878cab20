"""A throwaway trustlab backend for benchmarks: a temp store, uvicorn on a free port, worker environment."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from trainer.data import DEFAULT_DATA_DIR

__all__ = ["REPO_ROOT", "bench_environment", "free_port", "ApiServer", "open_store", "insert_run"]

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_DATA_DIR = REPO_ROOT / DEFAULT_DATA_DIR  # the trainer's default data folder, under the repository root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for API and worker processes: a SQLite store in ``tmp``, the repository's data folder."""
    env = dict(os.environ)
    env.update({
        "TRUSTLAB_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "TRUSTLAB_DATA_DIR": str(REPO_DATA_DIR),
        "TRUSTLAB_VAR_DIR": str(tmp / "var"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def open_store(tmp: Path) -> Any:
    """An engine on the bench store, migrated to the newest schema."""
    from backend.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    migrate(engine)
    return engine


def insert_run(engine: Any, config: dict[str, Any], *, status: str = "queued") -> int:
    """Create a run through the store module (as POST /api/runs does), claimed when ``status`` is running;
    returns its id."""
    if status not in ("queued", "running"):
        raise ValueError(f"Invalid initial status for a bench run: {status!r}; use queued or running")
    from backend.db import make_session_factory
    from backend.runner import lifecycle
    from backend.runner.states import RunState
    from backend.store import create_run
    from trainer.config import RunConfig

    with make_session_factory(engine)() as session:
        run = create_run(session, RunConfig.model_validate(config))
        session.commit()
        run_id = int(run.id)
    if status == RunState.RUNNING and not lifecycle.claim(engine, run_id):
        raise RuntimeError(f"could not claim run {run_id}")
    return run_id


class ApiServer:
    """``uvicorn backend.main:app`` in a subprocess on a free port; a context manager."""

    def __init__(self, tmp: Path, *, env: dict[str, str] | None = None, startup_timeout: float = 300.0,
                 port: int | None = None, keep_alive_seconds: float | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or bench_environment(tmp)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "uvicorn.log"
        self.keep_alive_seconds = keep_alive_seconds  # uvicorn's default (5 s) races a client's pooled connections

    def __enter__(self) -> "ApiServer":
        self._out = self.log.open("wb")
        keep_alive = [] if self.keep_alive_seconds is None else ["--timeout-keep-alive", f"{self.keep_alive_seconds:g}"]
        self.proc = subprocess.Popen(  # its own process group: __exit__ stops the group, whatever happened
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", "--no-access-log", *keep_alive],
            cwd=str(REPO_ROOT), env=self.env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the API did not answer within {self.startup_timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL: what is left of the group after the grace
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
        self._out.close()


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="trustlab-bench-")
