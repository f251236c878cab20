"""The data-path bench items (issue 12): figure goals, peer loggers, and the compare-load item on a small store."""
from __future__ import annotations

import pytest

from bench.table import FIGURE_BY_KEY, goal_met

ISSUE_12 = {"logging_overhead_ratio": 1.03, "tensorboard_overhead_ratio": None, "mlflow_overhead_ratio": None,
            "metrics_p95_ms": 50.0, "mlflow_bulk_interval_p95_ms": None, "compare_first_load_s_40_runs": 1.5,
            "compare_payload_mb_40_runs": 5.0, "compare_refresh_ms_40_runs": 300.0, "worker_start_s": 1.5}


def test_issue_12_figures_and_goals() -> None:
    from bench.run import ITEMS

    produced = {k for _, keys in ITEMS.values() for k in keys}
    for key, goal in ISSUE_12.items():
        assert key in produced and FIGURE_BY_KEY[key].goal == goal
    assert goal_met(FIGURE_BY_KEY["compare_payload_mb_40_runs"], 4.9) is True
    assert goal_met(FIGURE_BY_KEY["worker_start_s"], 1.6) is False


def test_numeric_fields_drop_text_none_and_non_finite() -> None:
    from bench.peers import numeric_fields

    assert numeric_fields({"step": 3, "train_loss": 0.5, "cg_exit": "boundary", "rho": None, "accepted": True,
                           "radius": float("nan")}) == {"train_loss": 0.5, "accepted": 1.0}


RECORD = {"step": 1, "backprops": 2, "epoch": 0.1, "wall_time": 0.01, "train_loss": 0.7, "cg_exit": "interior"}


def test_tensorboard_reporter_writes_events(tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="peers are installed from bench/requirements.txt")
    from bench.peers import TensorBoardReporter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rep = TensorBoardReporter(tmp_path)
    rep.on_step(RECORD)
    rep.on_step({**RECORD, "step": 2, "train_loss": 0.6})
    rep.on_finish({})
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [round(e.value, 6) for e in acc.Scalars("train/train_loss")] == [0.7, 0.6]


def test_mlflow_reporter_logs_into_a_local_sqlite_store(tmp_path) -> None:
    pytest.importorskip("mlflow", reason="peers are installed from bench/requirements.txt")
    from mlflow.tracking import MlflowClient

    from bench.peers import MlflowReporter

    rep = MlflowReporter(tmp_path)
    rep.on_step(RECORD)
    rep.on_eval({"step": 1, "test_loss": 0.9})
    run_id = rep.run.info.run_id
    rep.on_finish({})
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [m.value for m in client.get_metric_history(run_id, "train_loss")] == [0.7]
    assert [m.value for m in client.get_metric_history(run_id, "eval_test_loss")] == [0.9]


@pytest.mark.slow
def test_compare_load_item_on_a_small_comparison() -> None:
    from bench.compare_load import measure_compare_load

    values, reasons, details = measure_compare_load(seeds=2, steps=300, refreshes=1, new_steps=5)
    assert reasons == {} and details["runs"] == 4 and details["first_load_requests"] == 2
    assert values["compare_first_load_s_40_runs"] > 0 and values["compare_refresh_ms_40_runs"] > 0
    assert 0 < values["compare_payload_mb_40_runs"] < 1 and details["refresh_bytes"][0] > 0
