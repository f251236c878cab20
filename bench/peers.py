"""Peer loggers for the side-by-side overhead figures: the same step records to TensorBoard or MLflow.

Installed for the benchmark only (``pip install -r bench/requirements.txt``); each reporter is a trainer
``Reporter`` that writes every numeric field of every step and evaluation record, as a user of that tool
would (TensorBoard: one ``add_scalar`` per field; MLflow: one ``log_metrics`` call per record, synchronous,
into a local SQLite tracking store: no server, no network).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

__all__ = ["PEERS", "TensorBoardReporter", "MlflowReporter", "peer_unavailable", "numeric_fields"]


def numeric_fields(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers (bools as 0/1), without ``step``."""
    out = {}
    for k, v in record.items():
        if k == "step" or v is None or isinstance(v, str):
            continue
        v = float(v)
        if math.isfinite(v):
            out[k] = v
    return out


class TensorBoardReporter:
    """``torch.utils.tensorboard.SummaryWriter``: one scalar per numeric field per record."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_step(self, record: dict[str, Any]) -> None:
        for k, v in numeric_fields(record).items():
            self.writer.add_scalar(f"train/{k}", v, record["step"])

    def on_eval(self, record: dict[str, Any]) -> None:
        for k, v in numeric_fields(record).items():
            self.writer.add_scalar(f"eval/{k}", v, record["step"])

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        pass

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.writer.close()

    def should_stop(self) -> bool:
        return False


class MlflowReporter:
    """MLflow tracking into ``sqlite:///<dir>/mlflow.db``: one synchronous ``log_metrics`` call per record."""

    def __init__(self, log_dir: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        log_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{log_dir / 'mlflow.db'}")
        self.run = mlflow.start_run()

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_step(self, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics(numeric_fields(record), step=int(record["step"]))

    def on_eval(self, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics({f"eval_{k}": v for k, v in numeric_fields(record).items()}, step=int(record["step"]))

    def on_images(self, step: int, kind: str, png: bytes) -> None:
        pass

    def on_finish(self, summary: dict[str, Any]) -> None:
        self.mlflow.end_run()

    def should_stop(self) -> bool:
        return False


PEERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "tensorboard": ("torch.utils.tensorboard", TensorBoardReporter),
    "mlflow": ("mlflow", MlflowReporter),
}


def peer_unavailable(name: str) -> str | None:
    """Why peer ``name`` cannot run here (not installed), or None."""
    import importlib

    module = PEERS[name][0]
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - reported as the figure's reason
        return (f"{module} not importable ({type(exc).__name__}: {exc}); "
                "install the peers with pip install -r bench/requirements.txt")
    return None
