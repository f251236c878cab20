"""Packaging: the pinned requirements files are the single source of the pins, pyproject.toml's extras read
exactly those files, the runtime set (``make run``, the container image) carries no test tool and no benchmark
peer, the compose file starts every service the safe way, and the ``trustlab`` console script dispatches."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from backend import cli

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Tools that only the tests use, and the peers that only `make bench` measures: never in the runtime set.
TEST_TOOLS = {"pytest", "pytest-timeout", "playwright", "schemathesis", "hypothesis"}
BENCH_PEERS = {"tensorboard", "mlflow", "mlflow-skinny"}
EXTRA_FILES = {"ray": "requirements-ray.txt", "repro": "reproduction/requirements.txt",
               "bench": "bench/requirements.txt", "dev": "requirements-dev.txt"}


def _requirements(path: str) -> list[Requirement]:
    """The requirements of one file, as setuptools' ``file:`` directive reads it (a comment is ignored)."""
    out = []
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def _names(path: str) -> set[str]:
    return {canonicalize_name(r.name) for r in _requirements(path)}


def _all_requirement_files() -> set[str]:
    found = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("requirements*.txt")}
    found |= {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/requirements.txt")}
    return found


def test_every_requirement_is_pinned_exactly():
    for path in _all_requirement_files():
        for req in _requirements(path):
            specs = list(req.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{path}: pin {req} exactly (name==version)"


def test_runtime_requirements_carry_no_test_tools_and_no_bench_peers():
    runtime = _names("requirements.txt")
    assert {"torch", "fastapi", "streamlit"} <= runtime  # the file read is the runtime list
    dev, bench = _names("requirements-dev.txt"), _names("bench/requirements.txt")
    assert TEST_TOOLS <= dev, f"the test tools belong in requirements-dev.txt: {sorted(TEST_TOOLS - dev)}"
    assert BENCH_PEERS & bench, "bench/requirements.txt lists the benchmark peers"
    leaked = runtime & (TEST_TOOLS | dev | BENCH_PEERS | bench)
    assert not leaked, f"runtime requirements.txt must not carry {sorted(leaked)}"
    # the reproduction report's plotting and templating are an extra too, not part of the product
    assert not runtime & _names("reproduction/requirements.txt")


def test_no_package_is_pinned_in_two_files():
    seen: dict[str, str] = {}
    for path in sorted(_all_requirement_files()):
        for name in _names(path):
            assert name not in seen, f"{name} is pinned in both {seen[name]} and {path}: keep one pin"
            seen[name] = path


def test_pyproject_reads_its_dependencies_and_extras_from_the_requirement_files():
    project = PYPROJECT["project"]
    assert set(project["dynamic"]) == {"dependencies", "optional-dependencies"}
    assert "dependencies" not in project and "optional-dependencies" not in project  # no second copy of the pins
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    extras = {name: spec["file"] for name, spec in dynamic["optional-dependencies"].items()}
    assert extras == {name: [path] for name, path in EXTRA_FILES.items()}
    used = {"requirements.txt", *EXTRA_FILES.values()}
    assert _all_requirement_files() == used, "every requirements file is the runtime list or one extra"


def test_the_venv_cache_key_covers_every_requirements_file():
    out = subprocess.run(["make", "-s", "print-req-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == _all_requirement_files()


def _pip_installs(target: str, tmp_path: Path) -> list[str]:
    """The pip install command lines that ``make TARGET`` would run into a virtualenv that does not exist yet."""
    out = subprocess.run(["make", "-n", target, f"VENV={tmp_path}/venv"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return [line for line in out.stdout.splitlines() if "pip install" in line]


def test_make_run_installs_the_runtime_only_and_make_test_adds_the_test_extras(tmp_path):
    run = _pip_installs("run", tmp_path)
    assert run and all(line.split("-r ")[1:] == ["requirements.txt"] for line in run), run
    test = " ".join(_pip_installs("test", tmp_path))
    for path in ("requirements.txt", "requirements-dev.txt", "requirements-ray.txt", "reproduction/requirements.txt"):
        assert f"-r {path}" in test
    assert "bench/requirements.txt" not in test  # the benchmark peers only for `make bench`


def test_the_image_installs_the_runtime_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("-r requirements.txt" in line for line in installs)
    for path in ("requirements-dev.txt", "bench/requirements.txt", "reproduction/requirements.txt"):
        assert path not in dockerfile
    assert "\nUSER trustlab" in dockerfile  # runs as a non-root user
    for arg in ("BASE_IMAGE", "TORCH_VARIANT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        assert f"ARG {arg}" in dockerfile
    assert "id=ca" in dockerfile  # the build's CA file (a build secret)
    # TORCH_VARIANT=cpu installs the torch/torchvision pins that this pattern finds first, from the CPU index
    assert "grep -E '^(torch|torchvision)==' requirements.txt" in dockerfile
    assert sorted(r.name for r in _requirements("requirements.txt") if r.name in ("torch", "torchvision")) == [
        "torch", "torchvision"]
    assert all(line.startswith(("torch==", "torchvision==")) for line in
               (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch"))


def _compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_compose_reads_without_any_variable_set():
    # `${VAR:?message}` fails every compose command (ps, logs, down too) while VAR is unset; the checks are made
    # when a service starts instead (backend.serve refuses a bind without a token, the Ray services their token)
    for name in ("docker-compose.yml", "compose.gpu.yml"):
        assert ":?" not in (ROOT / name).read_text(), name


def test_compose_services_start_the_safe_way_with_their_own_health_checks():
    services = _compose()["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} needs its own health check (the image's is the API's)"
        assert "deploy" not in service, f"{name}: GPU reservations belong in compose.gpu.yml (CPU hosts start)"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"
    apis = [n for n, s in services.items() if "backend.serve" in " ".join(s.get("command", []))]
    assert sorted(apis) == ["api", "api-cluster"]
    for name in apis:
        env = services[name]["environment"]
        assert env["TRUSTLAB_API_TOKEN"] and env["TRUSTLAB_ALLOWED_HOSTS"] == name
        assert "uvicorn" not in " ".join(services[name]["command"])  # never around backend.serve's refusal
    for name in ("ui", "ui-cluster"):
        env = services[name]["environment"]
        assert env["TRUSTLAB_API_URL"].startswith("http://api") and env["TRUSTLAB_UI_ALLOWED_HOSTS"]
        # the UI's Host / Origin check lives in frontend.serve (plain `streamlit run` skips it), and the UI holds
        # no token: each browser session signs in with its own
        assert services[name]["command"][:3] == ["python", "-m", "frontend.serve"]
        assert "TRUSTLAB_API_TOKEN" not in env
    assert services["ray-worker"]["healthcheck"] != services["api"]["healthcheck"]


def test_gpu_override_reserves_gpus_and_builds_cuda_wheels():
    base, gpu = _compose()["services"], _compose("compose.gpu.yml")["services"]
    for name in ("api", "ray-worker"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    for name in base:
        if "build" in base[name]:  # services sharing an image build the same variant
            assert gpu[name]["build"]["args"]["TORCH_VARIANT"] == "cuda", name


def test_console_script_points_at_the_dispatcher():
    assert PYPROJECT["project"]["scripts"] == {"trustlab": "backend.cli:main"}
    assert set(cli.COMMANDS) == {"train", "serve", "users"}


def test_dispatcher_runs_the_trainer_cli(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    assert "--optimizer" in capsys.readouterr().out  # the trainer's own argument parser answered


def test_dispatcher_refuses_unknown_commands_and_stray_arguments(capsys):
    assert cli.main([]) == 2 and "usage: trustlab" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["launch"]) == 2 and "unknown command 'launch'" in capsys.readouterr().err
    assert cli.main(["serve", "--port", "1"]) == 2 and "takes no arguments" in capsys.readouterr().err


def test_dispatcher_names_a_command_this_installation_lacks(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "users", ("backend.no_such_module", True, "named users"))
    assert cli.main(["users", "list"]) == 2
    assert "no backend.no_such_module module" in capsys.readouterr().err


def test_dispatcher_serve_reaches_backend_serve_refusal():
    # a non-loopback bind without a token: backend.serve's own refusal, through `trustlab serve`
    env = {"PATH": "/usr/bin:/bin", "TRUSTLAB_HOST": "0.0.0.0", "TRUSTLAB_PORT": "9"}
    out = subprocess.run([sys.executable, "-m", "backend.cli", "serve"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "trustlab API not started" in out.stderr
