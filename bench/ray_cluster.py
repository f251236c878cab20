"""A throwaway Ray cluster on loopback addresses for tests, benchmarks and the two-node check.

``LocalRayCluster`` runs ``ray start --head --block`` (and optionally more ``ray start --address ... --block``
nodes) in their own process groups, with token authentication (a fresh token, exported to this process so
``ray.init`` can connect), bounded CPUs, no dashboard, and fixed ports. Ray turns 127.0.0.1 into the host's
network address, so nodes use other loopback addresses (127.0.0.2, 127.0.0.3, ...), which it keeps.
Stopping sends SIGTERM to each process group, then SIGKILL: only what this object started is touched.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Bounded: Ray's default object store takes 30% of RAM in /dev/shm; runs pass no objects through it.
OBJECT_STORE_BYTES = 100 * 2**20

__all__ = ["LocalRayCluster", "ray_available"]


_TOKEN = secrets.token_hex(24)


def ray_available() -> bool:
    """Ray is installed (checked without importing it: Ray reads its auth token when first used)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


class LocalRayCluster:
    """Args: gcs_port (6390), head_ip ("127.0.0.2"), head_cpus (2), port_base (20000: node i uses port_base + 100 i ...)."""

    def __init__(self, *, gcs_port: int = 6390, head_ip: str = "127.0.0.2", head_cpus: int = 2,
                 port_base: int = 20000) -> None:
        self.gcs_port, self.head_ip, self.head_cpus, self.port_base = gcs_port, head_ip, head_cpus, port_base
        self.address = f"{head_ip}:{gcs_port}"
        self.token = _TOKEN  # Ray reads the token once per process: every cluster of this process shares it
        self.root = Path(tempfile.mkdtemp(prefix="trustlab-ray-"))
        self.procs: list[subprocess.Popen] = []
        self._saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")}

    @property
    def env(self) -> dict[str, str]:
        """What every Ray process of this cluster and every client needs (token authentication)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}

    def _ports(self, index: int) -> list[str]:
        b = self.port_base + 100 * index
        return [f"--node-manager-port={b + 1}", f"--object-manager-port={b + 2}", f"--min-worker-port={b + 20}",
                f"--max-worker-port={b + 99}", f"--dashboard-agent-listen-port={b + 4}",
                f"--dashboard-agent-grpc-port={b + 7}", f"--metrics-export-port={b + 5}",
                f"--runtime-env-agent-port={b + 6}"]

    def _start(self, args: list[str], name: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.procs.append(subprocess.Popen([_ray_cli(), "start", *args, "--disable-usage-stats", "--block"],
                                           env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))

    def head_args(self) -> list[str]:
        """The ``ray start`` arguments of the head node (without ``--block``)."""
        return ["--head", f"--node-ip-address={self.head_ip}", f"--port={self.gcs_port}",
                f"--num-cpus={self.head_cpus}", "--num-gpus=0", "--include-dashboard=false",
                f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={self.root / 't'}",
                *self._client_server_args(), *self._ports(0)]

    def _client_server_args(self) -> list[str]:
        """Ray starts a Ray Client server only when grpcio is importable (on port 10001 unless told): then keep it in
        this cluster's port range. Without grpcio (requirements-ray.txt brings none), naming a port makes ``ray
        start`` fail ("Ray Client requires pip package ray[client]"), so name none. Same check as Ray's."""
        try:
            import grpc  # noqa: F401
        except ImportError:
            return []
        return [f"--ray-client-server-port={self.port_base + 3}"]

    def start(self, timeout: float = 120.0) -> "LocalRayCluster":
        os.environ.update(self.env)
        self._start(self.head_args(), "head")
        self._wait_port(self.head_ip, self.gcs_port, timeout)
        return self

    def add_node(self, ip: str, *, cpus: int = 1, resources: str | None = None, timeout: float = 120.0) -> None:
        """Another node (on loopback address ``ip``) joining the head; ``resources``: JSON of custom resources."""
        index = len(self.procs)
        self._start([f"--address={self.address}", f"--node-ip-address={ip}", f"--num-cpus={cpus}", "--num-gpus=0",
                     f"--object-store-memory={OBJECT_STORE_BYTES}", *(["--resources", resources] if resources else []), *self._ports(index)], f"node{index}")

    def kill_node(self, index: int) -> None:
        """SIGKILL every process of node ``index`` (1 = the first added node): a machine that died."""
        os.killpg(self.procs[index].pid, signal.SIGKILL)
        self.procs[index].wait(timeout=30)

    def _wait_port(self, host: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray start --head exited: {self.log_tail('head')}")
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex((host, port)) == 0:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray head did not listen on {host}:{port} within {timeout} s: {self.log_tail('head')}")

    def log_tail(self, name: str, n: int = 1500) -> str:
        try:
            return (self.root / f"{name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: raylet, GCS and workers left behind
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        self.procs.clear()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
