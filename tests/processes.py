"""Processes a test starts (API servers, UIs): their own process group, polled readiness, and a teardown that
stops every process they started, even when the test failed half way.

A server's workers and fork server run in sessions of their own (so a cancelled run's group can be signalled),
out of reach of the server's group: :func:`kill_marked` finds them by an environment entry only this test's
processes carry (e.g. ``TRUSTLAB_VAR_DIR=<the test's folder>``, which every worker inherits).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx

__all__ = ["start", "stop", "kill_marked", "wait_http", "STARTUP_SECONDS", "CLIENT_TIMEOUT"]

STARTUP_SECONDS = 300.0  # ceiling for a server to answer (imports torch; on a box with load ~20 it took > 30 s)
CLIENT_TIMEOUT = 120.0  # HTTP read timeout of test clients: a loaded box answers slowly, not never


def start(cmd: list[str], *, env: dict[str, str], cwd: Path | str, log: Path) -> subprocess.Popen:
    """``cmd`` in a new session (its own process group), output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, grace: float = 60.0) -> None:
    """Send ``sig`` to ``proc``'s whole group; after ``grace`` seconds SIGKILL the group. Returns once it exited."""
    if proc is None:
        return
    if proc.poll() is None:
        _signal_group(proc, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # stragglers of the group, and the leader if it ignored sig
    proc.wait()


def _marked(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def kill_marked(marker: str, grace: float = 30.0) -> list[int]:
    """SIGTERM every process whose environment holds the entry ``marker`` ("NAME=value"), SIGKILL those left
    after ``grace`` seconds. Returns the pids found (a test may assert that none were)."""
    found = _marked(marker.encode())
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _marked(marker.encode()):
        time.sleep(0.2)
    for pid in _marked(marker.encode()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = STARTUP_SECONDS,
              ready: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200) -> None:
    """Poll ``url`` until ``ready``; fail at once if ``proc`` exited, or after ``timeout`` seconds (the process
    is then stopped, so a failed start leaves nothing running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready(httpx.get(url, timeout=10)):
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{url}: no answer within {timeout:g} s:\n{_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""
