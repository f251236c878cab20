"""The API process never imports torch (hundreds of MB and seconds per process): importing the app and serving
every route, run, comparison and sweep creation included (their memory check measures models), leaves it out.

Checked in a fresh interpreter with an import hook that records who first imports torch.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, sys, tempfile, traceback
from pathlib import Path

first = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if (name == "torch" or name.startswith("torch.")) and not first:
            first.append("".join(traceback.format_stack(limit=25)))
        return None  # the import goes ahead: the routes must still work
sys.meta_path.insert(0, Watch())

from fastapi.testclient import TestClient
from backend.main import create_app
from tests.backend.conftest import MLP_RUN, make_settings

tmp = Path(tempfile.mkdtemp())
statuses = {}
with TestClient(create_app(make_settings(tmp, worker_memory_gb=8)), raise_server_exceptions=False) as c:
    def hit(method, url, **kw):
        r = c.request(method, url, **kw)
        statuses[f"{method} {url}"] = r.status_code
        return r
    run = hit("POST", "/api/runs", json={**MLP_RUN, "optimizer": {"name": "tr-uniform"}}).json()["id"]
    hit("POST", "/api/runs", json={**MLP_RUN, "model": "autoencoder"})
    big = c.request("POST", "/api/runs", json={**MLP_RUN, "model": "resnet18", "batch_size": 65536, "device": "cpu"})
    statuses["too big"] = [big.status_code, "TRUSTLAB_WORKER_MEMORY_GB" in big.text]  # measured out of process
    cmp = hit("POST", "/api/comparisons", json={"name": "c", "dataset": "fashion-mnist", "model": "mlp",
              "budget": {"backprops": 10}, "seeds": [0], "optimizers": [{"name": "sgd"}]}).json()["id"]
    sweep = hit("POST", "/api/sweeps", json={"name": "s", "dataset": "fashion-mnist", "model": "mlp",
                "budget": {"backprops": 10}, "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.1]}}}]}
                ).json()["id"]
    ids = {"run_id": run, "comparison_id": cmp, "sweep_id": sweep, "analysis_id": 1, "step": 0}
    for path, ops in c.app.openapi()["paths"].items():
        if "get" in ops:
            hit("GET", path.format(**ids))
    hit("PATCH", f"/api/runs/{run}", json={"note": "n"})
    hit("PATCH", f"/api/comparisons/{cmp}", json={"tags": ["t"]})
    hit("POST", "/api/metrics/batch", json={"runs": [{"id": run}]})
    hit("POST", f"/api/runs/{run}/analyses/hessian", json={"steps": [0]})
    hit("POST", f"/api/sweeps/{sweep}/promote")
    hit("POST", f"/api/sweeps/{sweep}/rerun")
    hit("POST", f"/api/runs/{run}/cancel")
    hit("DELETE", f"/api/runs/{run}")
    hit("DELETE", f"/api/comparisons/{cmp}")
print(json.dumps({"torch": first[0] if first else None, "in_modules": "torch" in sys.modules, "statuses": statuses}))
"""


def test_the_api_process_never_imports_torch(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["statuses"].pop("too big") == [422, True]  # the memory check still measures the model
    errors = {k: v for k, v in result["statuses"].items() if v >= 500}
    assert not errors, (errors, out.stderr[-3000:])
    assert len(result["statuses"]) >= 25, result["statuses"]
    assert result["statuses"]["POST /api/runs"] == 201 and result["statuses"]["POST /api/sweeps"] == 201
    assert result["torch"] is None and not result["in_modules"], f"torch imported by:\n{result['torch']}"
