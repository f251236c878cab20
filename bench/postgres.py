"""A throwaway PostgreSQL cluster (initdb + pg_ctl on a free loopback port) for tests and benchmarks."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["pg_bin", "throwaway_postgres", "throwaway_cluster", "PostgresCluster", "create_database",
           "PostgresUnavailable"]

_BIN = Path("/usr/lib/postgresql")


class PostgresUnavailable(RuntimeError):
    """No server binaries, or the cluster would not start (the message says which)."""


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(_BIN.glob(f"*/bin/{name}")) if _BIN.is_dir() else []
    return str(versions[-1]) if versions else None


@dataclass
class PostgresCluster:
    """A running throwaway cluster: ``url`` (server URL without database name), ``stop`` and ``start`` again on
    the same port (for outage tests)."""

    url: str
    port: int
    root: Path
    pg_ctl: str
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                        f"-k {self.root} -p {self.port} -h 127.0.0.1 -c fsync=off", "start"], check=True,
                       capture_output=True, cwd=self.root)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode`` (fast: disconnect clients, immediate: no shutdown checkpoint)."""
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"], check=True,
                       capture_output=True, cwd=self.root)


@contextlib.contextmanager
def throwaway_cluster(port: int | None = None) -> Iterator[PostgresCluster]:
    """A running cluster (user ``trustlab``, trust auth) on ``port`` (default: a free one); removed after."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="trustlab-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        if not shutil.which("runuser"):
            raise PostgresUnavailable("running as root without runuser")
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(root, "nobody")
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cluster = PostgresCluster(url=f"postgresql+psycopg://trustlab@127.0.0.1:{port}", port=port, root=root,
                              pg_ctl=pg_ctl, as_user=as_user)
    try:
        subprocess.run([*as_user, initdb, "-D", str(cluster.data), "-A", "trust", "-U", "trustlab"], check=True,
                       capture_output=True, cwd=root)
        cluster.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-300:]}") from None
    try:
        yield cluster
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(cluster.data), "-m", "immediate", "stop"], capture_output=True,
                       cwd=root)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres(port: int | None = None) -> Iterator[str]:
    """Yields a server URL without database name (user ``trustlab``, trust auth); removes everything after."""
    with throwaway_cluster(port) as cluster:
        yield cluster.url


def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE ``name`` (letters, digits, underscores) on the server; returns its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"Invalid database name: {name!r}")
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return f"{server_url}/{name}"
