"""`make run` in a terminal: Ctrl-C stops API and UI cleanly (the old 'kill 0' trap recursed until bash
crashed with "Segmentation fault")."""
from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(fd: int, seconds: float, until: tuple[bytes, ...] = ()) -> bytes:
    out, end = b"", time.time() + seconds
    while time.time() < end and not all(u in out for u in until or (b"\0",)):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
    return out


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_ctrl_c_stops_make_run_cleanly(tmp_path):
    api_port, ui_port = _free_port(), _free_port()
    pid, fd = pty.fork()
    if pid == 0:  # the child: `make run` on a terminal, with this interpreter's environment and a temporary store
        os.chdir(ROOT)
        os.environ.update({"TRUSTLAB_DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TRUSTLAB_VAR_DIR": str(tmp_path)})
        os.execvp("make", ["make", "-s", "-o", "venv", "run", f"VENV={sys.prefix}", f"API_PORT={api_port}",
                           f"UI_PORT={ui_port}"])
    try:
        started = _read(fd, 90, until=(b"Application startup complete", b"You can now view"))
        assert b"Application startup complete" in started, started.decode(errors="replace")[-2000:]
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to the foreground process group
        stopped = _read(fd, 30)
        deadline = time.time() + 30
        while time.time() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.2)
        text = (started + stopped).decode(errors="replace")
        assert "Segmentation fault" not in text, text[-2000:]
        assert text.count("Stopping...") <= 3, text[-2000:]  # not a storm of signals
        assert b"Application shutdown complete" in stopped
        for port in (api_port, ui_port):  # both servers are gone
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        try:  # whatever is left of the make session (its process group), e.g. after a failed assertion
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)
