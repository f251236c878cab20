"""Resource limits of runs: the worker's memory cap (RLIMIT_AS), an up-front memory estimate, client-safe messages."""
from __future__ import annotations

import re
import resource
import sys
import traceback
from functools import cache
from typing import Any

from trainer.config import RunConfig
from trainer.registry import DATASETS, OPTIMIZERS

__all__ = ["model_footprint", "estimate_bytes", "check_fits", "apply_memory_limit",
           "oom_message", "hide_paths", "client_message", "LimitedReporter", "prepare_worker", "worker_error"]

GIB = 2**30


@cache
def model_footprint(model: str, dataset: str) -> tuple[int, int]:
    """(parameters, floats output by the leaf modules for one sample) of ``model`` on ``dataset``.

    Measured once per pair by building the registry's model on torch's meta device (no memory, no data), so
    every registered model is covered without a hand-kept table.
    """
    import torch

    from trainer.models import build_model

    with torch.device("meta"):
        net = build_model(model, dataset).eval()  # eval: BatchNorm accepts a single sample
        floats = 0

        def count(_module: Any, _inputs: Any, output: Any) -> None:
            nonlocal floats
            if isinstance(output, torch.Tensor):
                floats += output.numel()

        hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
        try:
            net(torch.empty(1, *DATASETS[dataset].shape))
        finally:
            for h in hooks:
                h.remove()
    return sum(p.numel() for p in net.parameters()), floats


_RUNTIME_BYTES = 0.4 * GIB  # the Python + torch process itself


def estimate_bytes(config: RunConfig) -> int:
    """A lower-end estimate of a run's peak memory in bytes (float32).

    weights, gradient and optimizer state (4 x parameters first-order, 10 x for TR: graph-carrying gradient,
    Hessian-vector products, Krylov vectors, norm matrix); saved activations of one minibatch (2 x the
    forward outputs first-order, 4 x for TR's double backward); the dataset held in memory; the runtime.
    """
    n_params, n_floats = model_footprint(config.model, config.dataset)
    tr = OPTIMIZERS[config.optimizer.name].family == "second-order"
    params = n_params * (10 if tr else 4)
    activations = config.effective_batch_size * n_floats * (4 if tr else 2)
    info = DATASETS[config.dataset]
    pixels = info.shape[0] * info.shape[1] * info.shape[2]
    samples = (config.train_subset or info.train_size) + (config.test_subset or info.test_size)
    return int(4 * (params + activations + samples * pixels) + _RUNTIME_BYTES)


def check_fits(config: RunConfig, limit_gb: float) -> None:
    """Raise ``ValueError`` when the run clearly cannot fit in ``limit_gb`` (the worker's memory limit)."""
    need = estimate_bytes(config)
    if need > limit_gb * GIB:
        raise ValueError(
            f"this run needs about {need / GIB:.1f} GB of memory ({config.model} on {config.dataset}, batch "
            f"{config.effective_batch_size}, {config.optimizer.name}) but a worker may use {limit_gb:g} GB "
            "(setting TRUSTLAB_WORKER_MEMORY_GB); use a smaller batch_size or train_subset")


def apply_memory_limit(limit_gb: float, device: str) -> int | None:
    """Cap this process's address space (RLIMIT_AS) at ``limit_gb``; returns the bytes set, or None.

    Skipped for CUDA devices: the CUDA runtime reserves far more address space than it uses. A run that
    needs more then fails at its next allocation (MemoryError / "can't allocate memory") within seconds,
    instead of taking the machine's memory.
    """
    if device.startswith("cuda"):
        return None
    limit = int(limit_gb * GIB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


_OOM = re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|out of memory|std::bad_alloc",
                  re.IGNORECASE)
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")


def oom_message(message: str, limit_gb: float) -> str | None:
    """``"out of memory (limit N GB)"`` when ``message`` is an allocation failure, else None."""
    if _OOM.search(message):
        return f"out of memory (limit {limit_gb:g} GB, setting TRUSTLAB_WORKER_MEMORY_GB); use a smaller batch_size"
    return None


def hide_paths(text: str) -> str:
    """``text`` with every absolute path replaced by ``<server path>`` (client-facing messages)."""
    return _PATH.sub("<server path>", text)


def client_message(message: str, limit_gb: float) -> str:
    """A failure message fit for API clients: allocation failures named as such, server paths removed."""
    return oom_message(message, limit_gb) or hide_paths(message)[:2000]


class LimitedReporter:
    """Wraps the worker's reporter: the final summary gets a client-safe message and no traceback.

    The traceback and the full message (with paths) go to the worker's log (stderr) instead.
    """

    def __init__(self, inner: Any, limit_gb: float) -> None:
        self._inner, self._limit_gb = inner, limit_gb
        # The per-step calls bound once (``__getattr__`` would look them up again at every step).
        self.on_step, self.should_stop = inner.on_step, inner.should_stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def on_finish(self, summary: dict[str, Any]) -> None:
        summary = dict(summary)
        tb = summary.pop("traceback", None)
        public = summary.pop("public_message", None)
        message = str(summary.get("message") or "")
        if tb or public:
            print(f"run ended: {message}\n{tb or ''}", file=sys.stderr, flush=True)
        if summary.get("status") == "failed":
            summary["message"] = public or client_message(message, self._limit_gb)
        self._inner.on_finish(summary)


def prepare_worker(settings: Any, config: RunConfig, reporter: Any) -> LimitedReporter:
    """The worker's one call before training: cap memory, wrap the reporter."""
    device = config.device
    if settings.pinned_gpu is not None:
        device = "cuda"
    elif device == "auto":
        from backend.runner.devices import detect_gpus

        device = "cuda" if detect_gpus(settings.gpus) else "cpu"
    apply_memory_limit(settings.worker_memory_gb, device)
    return LimitedReporter(reporter, settings.worker_memory_gb)


def worker_error(exc: BaseException, limit_gb: float) -> str:
    """The stored error of a worker exception (client-safe); the traceback goes to stderr."""
    traceback.print_exc()
    text = f"{type(exc).__name__}: {exc}"
    return oom_message(text, limit_gb) or f"worker error: {hide_paths(text)[:2000]}"
