"""Smoke test of ``python -m bench.api_server_bench`` (small sizes), so the measurement script keeps working."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_benchmark_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.api_server_bench", "--points", "3000", "--queries", "3",
                          "--no-train"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "records/s" in out.stdout and out.stdout.count("GET metrics") == 4
