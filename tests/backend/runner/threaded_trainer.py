"""A training function whose module starts a thread when imported (the fake trainer otherwise): a zygote that
loads it must refuse to fork, since forking a threaded process is unsafe."""
from __future__ import annotations

import threading

from tests.backend.fake_trainer import run

__all__ = ["run"]

_IDLE = threading.Event()
threading.Thread(target=_IDLE.wait, name="import-time-thread", daemon=True).start()
