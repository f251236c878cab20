"""Suite-wide hooks: the test process ends with pytest's own exit status, without native finalizers.

After the whole suite has passed and pytest has printed its summary, the interpreter's shutdown crashed once in CI
(``make test``: "Segmentation fault" after "790 passed"), from native threads that libraries leave behind in this
long process (torch, Ray's gRPC client, Chromium's driver). Nothing is tested at that point, so the process exits
right after pytest is done, with the status pytest decided (failures still fail the run).
"""
from __future__ import annotations

import os
import sys

import pytest

_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _status and os.environ.get("TRUSTLAB_TEST_NATIVE_EXIT") != "1":  # set it to debug the shutdown itself
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_status[-1])
