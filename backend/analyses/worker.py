"""Analysis worker: ``python -m backend.analyses.worker ANALYSIS_ID`` computes one Hessian analysis in its own process.

It replays the run from its stored RunConfig and seed up to the last checkpoint (runs store no weights;
``trainer.analysis.checkpoints``), then at each checkpoint computes the dense Hessian of the training loss
on a fixed batch (the first ``batch_size`` training samples) and its mass shares against the random
baselines (``trainer.analysis.hessian``), storing the results after every checkpoint. The replayed
minibatch losses are compared with the recorded ones, so a replay that drifted (a run trained on a GPU)
is reported rather than silently analysed. SIGTERM, or the API process going away, ends it as "failed".
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from sqlalchemy import Engine, select

from backend.analyses import store
from backend.tables import StepMetric

__all__ = ["main", "run_analysis", "overall_match", "REPLAY_TOLERANCE"]

REPLAY_TOLERANCE = 1e-5  # relative difference of a replayed minibatch loss from the recorded one


def _recorded_losses(engine: Engine, run_id: int, steps: list[int]) -> dict[int, float | None]:
    with engine.connect() as conn:
        rows = conn.execute(select(StepMetric.step, StepMetric.train_loss)
                            .where(StepMetric.run_id == run_id, StepMetric.step.in_(steps))).all()
    return {int(r.step): r.train_loss for r in rows}


def _matches(recorded: float | None, replayed: float | None) -> bool | None:
    if recorded is None or replayed is None:
        return None
    if not (math.isfinite(recorded) and math.isfinite(replayed)):
        return False
    return abs(recorded - replayed) <= REPLAY_TOLERANCE * max(1.0, abs(recorded))


def overall_match(so_far: bool | None, match: bool | None) -> bool | None:
    """The analysis's ``replay_matches`` after one more checkpoint: null while nothing was compared (step 0 has no
    recorded loss), false once any compared checkpoint differs, else true."""
    if so_far is False or match is False:
        return False
    return True if (so_far or match) else None


def _checked(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` if it is strict JSON (no NaN/inf: the store and clients could not read them), else ValueError."""
    try:
        json.dumps(result, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"the analysis produced a non-finite number ({exc}); choose earlier checkpoints") from exc
    return result


def run_analysis(engine: Engine, analysis_id: int, job: dict[str, Any], *, data_dir: str,
                 should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Compute the analysis ``job`` (from ``store.claim``) and return its result; saves progress as it goes."""
    from trainer.analysis.checkpoints import replay_checkpoints
    from trainer.analysis.hessian import (analyse_hessian, check_size, layer_blocks, ols_simulated_shares,
                                          random_rotations)
    from trainer.config import RunConfig

    params, run_id = job["params"], job["run_id"]
    steps = [int(s) for s in params["checkpoint_steps"]]
    t0 = time.perf_counter()
    config = RunConfig.model_validate(job["config"])
    replay = replay_checkpoints(config, steps, data_dir=data_dir, max_backprops=job.get("last_backprops") or None,
                                should_stop=should_stop)
    recorded = _recorded_losses(engine, run_id, steps)
    batch = min(int(params["batch_size"]), replay.data.train_size)
    x, y = replay.data.train_x[:batch], replay.data.train_y[:batch]
    last = max(steps) or 1
    result: dict[str, Any] = {"num_parameters": None, "batch_size": batch, "batch": f"the first {batch} training samples",
                              "device": "cpu", "checkpoints": [], "replay_matches": None}
    rotations = None  # the same Haar draws for every checkpoint: drawing them costs as much as the Hessian
    ols = None  # the simulated OLS baseline depends only on the batch size and the blocks: once per analysis
    for step in steps:
        if should_stop():
            raise InterruptedError("analysis stopped on request")
        replay.model.load_state_dict(replay.states[step])
        if rotations is None:
            n = sum(p.numel() for p in replay.model.parameters() if p.requires_grad)
            check_size(n)
            rotations = random_rotations(n, int(params["random_draws"]), seed=0)
            ols = ols_simulated_shares(layer_blocks(replay.model), batch, seed=0)
        out = analyse_hessian(replay.model, replay.loss_fn, x, y, heatmap_size=int(params["heatmap_size"]),
                              rotations=rotations, ols_simulated=ols)
        match = _matches(recorded.get(step), replay.losses.get(step))
        result["replay_matches"] = overall_match(result["replay_matches"], match)
        result["num_parameters"] = out["num_parameters"]
        result["blocks"] = out["blocks"]
        result["checkpoints"].append({
            "step": step, "fraction": step / last, "recorded_minibatch_loss": recorded.get(step),
            "replayed_minibatch_loss": replay.losses.get(step), "replay_matches": match,
            **{k: v for k, v in out.items() if k not in ("num_parameters", "blocks")}})
        result["seconds"] = time.perf_counter() - t0
        store.save_progress(engine, analysis_id, _checked(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Analyse ``argv[0]``. Exit codes: 0 done (any final status) or nothing to do, 1 worker error, 2 usage."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m backend.analyses.worker ANALYSIS_ID", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    analysis_id, parent_pid = int(args[0]), os.getppid()

    from backend.db import make_engine
    from backend.settings import Settings

    settings = Settings()
    engine = make_engine(settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    orphaned = lambda: os.getppid() != parent_pid  # noqa: E731 - the API process went away
    try:
        job = store.claim(engine, analysis_id, os.getpid())
        if job is None:
            print(f"analysis {analysis_id} is not waiting to run; nothing to do", file=sys.stderr)
            return 0
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        try:
            result = run_analysis(engine, analysis_id, job, data_dir=str(settings.data_dir),
                                  should_stop=lambda: stop.is_set() or orphaned())
        except InterruptedError:
            why = "the API process went away" if orphaned() else "stopped on request (the API shut down)"
            store.finish(engine, analysis_id, "failed", f"interrupted: {why}; launch the analysis again")
            return 0
        except (ValueError, RuntimeError) as exc:  # the run cannot be replayed or analysed: say why
            store.finish(engine, analysis_id, "failed", f"{type(exc).__name__}: {exc}")
            return 0
        store.finish(engine, analysis_id, "completed", None, _checked(result))
        return 0
    except Exception as exc:  # noqa: BLE001 - the analysis must not stay "running"
        traceback.print_exc()
        try:
            store.finish(engine, analysis_id, "failed", f"worker error: {type(exc).__name__}: {exc}")
        except Exception as store_exc:  # noqa: BLE001 - store unreachable: say so on stderr (the log)
            print(f"analysis worker {analysis_id}: could not record the failure: {store_exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
