"""Compact run records for the reproduction: one gzipped JSON per run (evaluations, selected step columns)."""
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from trainer.registry import is_trust_region
from trainer.reporting import ListReporter, clean_scalar

__all__ = ["RESULTS_DIR", "compact", "save_run", "load_run", "load_experiment", "STEP_FIELDS"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STEP_FIELDS = ("step", "backprops", "epoch", "wall_time", "train_loss", "radius", "cg_iterations", "cg_exit", "accepted",
               "rho")
TR_ONLY_FIELDS = ("radius", "cg_iterations", "cg_exit", "accepted", "rho")
_TR_STEP_EVERY = 1  # TR diagnostics (radius, CG iterations) are kept for every step
_FIRST_ORDER_STEP_EVERY = 20  # minibatch losses of first-order runs are only a sanity trace


def _round(x: Any, digits: int = 5) -> Any:
    """``clean_scalar(x)`` (non-finite → None), floats rounded to ``digits`` significant digits."""
    x = clean_scalar(x)
    return float(f"{x:.{digits}g}") if type(x) is float else x


def compact(spec: dict[str, Any], reporter: ListReporter, elapsed: float) -> dict[str, Any]:
    """The record saved for one run: config, summary, evaluations, thinned step columns, last images."""
    tr = is_trust_region(spec["config"]["optimizer"]["name"])
    every = _TR_STEP_EVERY if tr else _FIRST_ORDER_STEP_EVERY
    steps = [s for i, s in enumerate(reporter.steps) if i % every == 0 or i == len(reporter.steps) - 1]
    fields = [f for f in STEP_FIELDS if tr or f not in TR_ONLY_FIELDS]
    images = {}
    for step, kind, png in reporter.images:
        if kind == "original" or kind == "reconstruction":
            images[kind] = {"step": step, "png": base64.b64encode(png).decode("ascii")}  # keeps the last one
    summary = {k: (_round(v) if isinstance(v, float) else v) for k, v in (reporter.summary or {}).items()
               if k != "traceback"}
    return {
        **spec,
        "elapsed_seconds": round(elapsed, 2),
        "info": reporter.info,
        "summary": summary,
        "evals": [{k: _round(v) for k, v in e.items()} for e in reporter.evals],
        "steps": {f: [_round(s.get(f)) for s in steps] for f in fields},
        "images": images,
    }


def save_run(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(record, fh, separators=(",", ":"))
    tmp.replace(path)


def load_run(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def load_experiment(name: str, phase: str = "main", root: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every saved run of ``name`` in ``phase`` ("main" or "grid"), sorted by file name."""
    folder = root / name / phase
    return [load_run(p) for p in sorted(folder.glob("*.json.gz"))]
