"""GPU smoke check: the trainer, the worker, HVPs, host syncs and TR-vs-Adam step time on one device.

Run on a machine with an NVIDIA GPU (``python -m scripts.gpu_smoke``, default device ``cuda`` when available) or on
the CPU (``--device cpu``; the tests do, with ``--quick``). Every check runs on generated Fashion-MNIST-shaped data
written into a temporary data folder, so the script needs no dataset and no network. It prints one JSON document
and writes it to ``--out`` (default ``$OUT/gpu_smoke.json`` when ``OUT`` is set). A check that raises is recorded
with its error and the script goes on; the exit status is 1 when any check failed.

Checks:
    env: torch / CUDA versions and the device's name.
    trainer: ``trainer.run`` of TR RMSprop and Adam on the device, to their budget.
    worker: a run stored through the API (SQLite, no scheduler) and trained by ``backend.runner.worker.train_run``
        in this process, as a worker process would: final state and stored points.
    hvp: the graph-reusing HVP on the device against a float64 CPU reference; its time against a gradient's.
    host_syncs: tensor → host conversions per TR step on the device path (fit over CG iterations; goal ≤ 1 per
        iteration plus a constant).
    step_time: median TR step (each norm) and Adam step time on the device (synchronised).
    checkpoint_resume: recorded as skipped until run checkpoints exist (issue 22).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["main", "run_checks"]


def _write_idx(path: Path, array: np.ndarray) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def write_fake_fashion_mnist(data_dir: Path, *, train: int = 1024, test: int = 256, seed: int = 0) -> None:
    """Fashion-MNIST-shaped idx files (class-dependent blobs, so a run can learn) in torchvision's raw layout."""
    rng = np.random.default_rng(seed)
    raw = data_dir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    centres = rng.uniform(4, 24, size=(10, 2))
    yy, xx = np.mgrid[0:28, 0:28]

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=n)
        cy, cx = centres[labels, 0][:, None, None], centres[labels, 1][:, None, None]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
        noisy = np.clip(255 * blob + rng.normal(0, 20, size=(n, 28, 28)), 0, 255)
        return noisy.astype(np.uint8), labels.astype(np.uint8)

    for prefix, n in (("train", train), ("t10k", test)):
        x, y = images(n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", y)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_env(device: str, **_: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                           "cuda": torch.version.cuda, "device": device}
    if device.startswith("cuda"):
        out["device_name"] = torch.cuda.get_device_name(torch.device(device))
        out["capability"] = list(torch.cuda.get_device_capability(torch.device(device)))
    return out


def _run_config(optimizer: str, device: str, backprops: int) -> dict[str, Any]:
    return {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": optimizer},
            "budget": {"backprops": backprops}, "train_subset": 1024, "test_subset": 256, "eval_train_size": 256,
            "eval_every": {"backprops": max(1, backprops // 2)}, "device": device, "seed": 0}


def check_trainer(device: str, data_dir: Path, quick: bool, **_: Any) -> dict[str, Any]:
    from trainer import run
    from trainer.reporting import ListReporter

    out: dict[str, Any] = {}
    for name in ("tr-rmsprop", "adam"):
        reporter = ListReporter()
        t0 = time.perf_counter()
        summary = run(_run_config(name, device, 60 if quick else 400), reporter, data_dir=data_dir, download=False)
        out[name] = {"status": str(summary["status"]), "message": summary.get("message", ""),
                     "steps": summary["steps"], "backprops": summary["backprops"],
                     "final_train_loss": reporter.steps[-1]["train_loss"] if reporter.steps else None,
                     "seconds": round(time.perf_counter() - t0, 3)}
        if out[name]["status"] != "completed":
            raise RuntimeError(f"{name} on {device} ended {out[name]['status']}: {out[name]['message']}")
    return out


def check_worker(device: str, data_dir: Path, quick: bool, **_: Any) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

    from backend.main import create_app
    from backend.runner import worker
    from backend.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="trustlab-smoke-"))
    settings = Settings(var_dir=root / "var", database_url=f"sqlite:///{root / 'var' / 'smoke.db'}",
                        data_dir=data_dir, scheduler=False, download=False, allowed_hosts="testserver")
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/runs", json=_run_config("tr-adagrad", device, 40 if quick else 300))
        if created.status_code != 201:
            raise RuntimeError(f"POST /api/runs answered {created.status_code}: {created.text}")
        run_id = created.json()["id"]
        t0 = time.perf_counter()
        code = worker.train_run(run_id, settings, threading.Event(), parent_pid=None)
        seconds = time.perf_counter() - t0
        run = client.get(f"/api/runs/{run_id}").json()
        points = client.get(f"/api/runs/{run_id}/metrics?max_points=100000").json()["points"]
    result = {"exit_code": code, "status": run["status"], "message": run.get("error") or run.get("message"),
              "last_step": run.get("last_step"), "points": len(points), "seconds": round(seconds, 3)}
    if code != 0 or run["status"] != "completed" or len(points) != run.get("last_step"):
        raise RuntimeError(f"worker run on {device}: {result}")
    return result


def check_hvp(device: str, quick: bool, **_: Any) -> dict[str, Any]:
    import torch

    from trainer.models import build_model, loss_function
    from trainer.optim.hvp import GradientWithHVP

    torch.manual_seed(0)
    model64 = build_model("mlp", "fashion-mnist").double()
    model = build_model("mlp", "fashion-mnist").to(device)
    model.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    loss_fn = loss_function("mlp")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(512, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (512,), generator=gen)
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=gen)

    ref = GradientWithHVP(loss_fn(model64(x.double()), x.double(), y), list(model64.parameters()))
    hv_ref = ref.hvp(v.double())
    xd, yd, vd = x.to(device), y.to(device), v.to(device)
    op = GradientWithHVP(loss_fn(model(xd), xd, yd), list(model.parameters()))
    hv = op.hvp(vd).double().cpu()
    rel = float((hv - hv_ref).norm() / hv_ref.norm())

    reps = 5 if quick else 30
    grad_t, hvp_t = [], []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        op = GradientWithHVP(loss_fn(model(xd), xd, yd), list(model.parameters()))
        _sync(device)
        t1 = time.perf_counter()
        op.hvp(vd)
        _sync(device)
        grad_t.append(t1 - t0)
        hvp_t.append(time.perf_counter() - t1)
        op.release()
    g, h = statistics.median(grad_t), statistics.median(hvp_t)
    result = {"relative_error_vs_float64": rel, "gradient_ms": round(1e3 * g, 4), "hvp_ms": round(1e3 * h, 4),
              "hvp_over_gradient": round(h / g, 3)}
    if not rel < 1e-3:
        raise RuntimeError(f"HVP on {device} disagrees with the float64 reference: relative error {rel:.3g}")
    return result


def check_host_syncs(device: str, quick: bool, **_: Any) -> dict[str, Any]:
    from bench.syncs import measure_tr_host_syncs

    out: dict[str, Any] = {}
    for solver in ("cg", "lanczos"):
        m = measure_tr_host_syncs("tr-adagrad", steps=6 if quick else 30, solver=solver, device=device)
        out[solver] = {k: m[k] for k in ("per_cg_iteration", "constant_per_step", "max_excess_over_iterations",
                                         "cg_iterations")}
        slope = m["per_cg_iteration"]
        if slope is not None and slope > 1.0 + 1e-9:
            raise RuntimeError(f"{solver}: {slope:.3f} host syncs per CG iteration on {device} (goal ≤ 1)")
    return out


def check_step_time(device: str, quick: bool, **_: Any) -> dict[str, Any]:
    import torch

    from trainer.models import build_model, loss_function
    from trainer.optim.factory import build_optimizer

    loss_fn = loss_function("mlp")
    gen = torch.Generator().manual_seed(2)
    steps = 5 if quick else 40
    out: dict[str, Any] = {}
    for name, batch in (("tr-uniform", 512), ("tr-adagrad", 512), ("tr-rmsprop", 512), ("adam", 128)):
        torch.manual_seed(0)
        model = build_model("mlp", "fashion-mnist").to(device)
        opt = build_optimizer(name, list(model.parameters()))
        times: list[float] = []
        iters: list[int] = []
        for _ in range(steps + 2):
            x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
            y = torch.randint(0, 10, (batch,), generator=gen).to(device)

            def closure(model: torch.nn.Module = model, x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                return loss_fn(model(x), x, y)

            _sync(device)
            t0 = time.perf_counter()
            if name.startswith("tr-"):
                opt.step(closure)
                iters.append(int(opt.last_trace["cg_iterations"]))
            else:
                opt.zero_grad(set_to_none=True)
                closure().backward()
                opt.step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        ms = 1e3 * statistics.median(times[2:])  # the first two steps warm up kernels and caches
        out[name] = {"batch": batch, "median_step_ms": round(ms, 4)}
        if iters:
            out[name]["mean_cg_iterations"] = round(statistics.fmean(iters[2:]), 2)
    adam = out["adam"]["median_step_ms"]
    for name in ("tr-uniform", "tr-adagrad", "tr-rmsprop"):
        out[name]["over_adam_step"] = round(out[name]["median_step_ms"] / adam, 2)
    return out


def check_checkpoint_resume(**_: Any) -> dict[str, Any]:
    return {"skipped": "runs have no checkpoints yet (issue 22); this check is added with them"}


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "env": check_env, "trainer": check_trainer, "worker": check_worker, "hvp": check_hvp,
    "host_syncs": check_host_syncs, "step_time": check_step_time, "checkpoint_resume": check_checkpoint_resume}


def run_checks(device: str, *, quick: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Run the checks (all, or ``only``) on ``device``; each result is its figures or ``{"error", "traceback"}``."""
    data_dir = Path(tempfile.mkdtemp(prefix="trustlab-smoke-data-"))
    write_fake_fashion_mnist(data_dir)
    results: dict[str, Any] = {"device": device, "quick": quick, "checks": {}}
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            results["checks"][name] = check(device=device, data_dir=data_dir, quick=quick)
        except Exception as exc:  # noqa: BLE001 - one failed check is reported and the others still run
            results["checks"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()[-4000:]}
        results["checks"][name]["check_seconds"] = round(time.perf_counter() - t0, 3)
    results["failed"] = sorted(n for n, r in results["checks"].items() if "error" in r)
    return results


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="few steps and repetitions (the CPU test)")
    parser.add_argument("--only", action="append", choices=sorted(CHECKS), help="run only these checks")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) / "gpu_smoke.json"
                        if os.environ.get("OUT") else None)
    args = parser.parse_args(argv)
    results = run_checks(args.device, quick=args.quick, only=args.only)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
