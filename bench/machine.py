"""Where a figure was measured: CPU model and cores, torch version and threads, GPU name if any."""
from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["machine_info", "cpu_model", "code_version"]


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU model name from /proc/cpuinfo (or ``platform.processor()`` where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model", "cpu model", "Hardware"):
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def code_version() -> dict[str, Any]:
    """The git commit measured and the tracked source files (.py, requirements) that differed from it.

    Result files the benchmarks and the reproduction write themselves are not listed. None outside a checkout.
    """
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "modified_files": None}
    paths = [line[3:] for line in dirty]
    return {"git_commit": commit,
            "modified_files": [p for p in paths if p.endswith(".py") or p.endswith("requirements.txt")]}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """A JSON-able description of this machine and the device the figures ran on."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": _usable_cores(),
        "cpu_cores_total": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
        **code_version(),
    }
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        info["load_average"] = None
    if not torch.cuda.is_available():
        info["gpu_note"] = "no CUDA device visible to torch here; GPU figures: python -m bench.run --device cuda on one"
    else:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda_version"] = torch.version.cuda
    return info


def describe(info: dict[str, Any]) -> str:
    """One line: "AMD EPYC, 2 cores, torch 2.x (2 threads)" plus the GPU when the device is one."""
    threads = info["torch_threads"]
    text = (f"{info['cpu_model']}, {info['cpu_cores']} cores, torch {info['torch_version']} "
            f"({threads} torch thread{'s' if threads != 1 else ''})")
    if str(info.get("device", "cpu")).startswith("cuda") and info.get("gpu"):
        text += f", GPU {info['gpu']}"
    return text
