"""bench.ray_cluster: the head's ``ray start`` arguments pass Ray's own checks whether or not grpcio is installed.

A fresh machine (plain ``ray`` from requirements-ray.txt, no grpcio) failed every Ray test: the cluster named a
Ray Client server port, which Ray refuses without grpcio. A machine that once installed the bench extras had
grpcio and hid it. This runs Ray's real ``ray start`` command up to the point where it would start the node, in
a subprocess with grpcio made unimportable (or a stand-in importable), so either machine is checked here.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ray_cluster import ray_available

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, sys
mode = sys.argv[1]
if mode == "without-grpc":
    sys.modules["grpc"] = None  # `import grpc` raises ImportError, as on a machine without grpcio
else:
    import types
    sys.modules["grpc"] = types.ModuleType("grpc")  # importable: Ray's dependency check passes
import ray._private.node
import ray._private.parameter
from ray.scripts.scripts import start
from bench.ray_cluster import LocalRayCluster

seen = {}
class Reached(Exception):
    pass
def node(ray_params, *args, **kwargs):
    seen["client_port"] = ray_params.ray_client_server_port
    raise Reached()
ray._private.node.Node = node
cluster = LocalRayCluster()
try:
    start.main(args=cluster.head_args(), standalone_mode=False)
except Reached:
    print(json.dumps({"reached": True, **seen, "port_base": cluster.port_base}))
except Exception as exc:
    print(json.dumps({"reached": False, "error": f"{type(exc).__name__}: {exc}"}))
"""


@pytest.mark.skipif(not ray_available(), reason="Ray is not installed (optional extra)")
@pytest.mark.parametrize("mode", ["without-grpc", "with-grpc"])
def test_head_arguments_pass_ray_start_checks(mode: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
                                           "RAY_USAGE_STATS_ENABLED": "0"})
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["reached"], result  # before the fix: "ValueError: Ray Client requires pip package `ray[client]`"
    if mode == "without-grpc":
        assert result["client_port"] is None  # no Ray Client server at all
    else:
        assert result["client_port"] == result["port_base"] + 3  # in this cluster's range, not Ray's default 10001
