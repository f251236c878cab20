"""The GPU smoke script runs on the CPU too: every check passes and reports its figures."""
from __future__ import annotations

import json

import pytest

from scripts import gpu_smoke


@pytest.mark.slow
def test_every_check_passes_on_the_cpu(tmp_path) -> None:
    out = tmp_path / "smoke.json"
    assert gpu_smoke.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert result["failed"] == [] and set(checks) == set(gpu_smoke.CHECKS)
    assert checks["trainer"]["tr-rmsprop"]["status"] == "completed" and checks["trainer"]["adam"]["steps"] > 0
    assert checks["worker"]["status"] == "completed" and checks["worker"]["points"] == checks["worker"]["last_step"]
    assert checks["hvp"]["relative_error_vs_float64"] < 1e-3 and checks["hvp"]["hvp_ms"] > 0
    assert checks["host_syncs"]["cg"]["per_cg_iteration"] is None or checks["host_syncs"]["cg"]["per_cg_iteration"] <= 1
    assert checks["step_time"]["tr-rmsprop"]["over_adam_step"] > 0


def test_a_failing_check_is_reported_and_the_rest_still_run(monkeypatch) -> None:
    def broken(**_):
        raise RuntimeError("no device")

    monkeypatch.setitem(gpu_smoke.CHECKS, "hvp", broken)
    result = gpu_smoke.run_checks("cpu", quick=True, only=["env", "hvp", "checkpoint_resume"])
    assert result["failed"] == ["hvp"] and "no device" in result["checks"]["hvp"]["error"]
    assert result["checks"]["env"]["device"] == "cpu" and "skipped" in result["checks"]["checkpoint_resume"]
