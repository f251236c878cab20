"""Tests for trainer.reporting: the typed record shapes match what the trainer reports; one cleaning rule."""
from __future__ import annotations

import enum
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer
from trainer.reporting import (TR_TRACE_FIELDS, EvalRecord, ListReporter, StepRecord, StepTrace, Summary,
                               clean_json, clean_scalar)


@pytest.mark.parametrize("opt", ["sgd", "tr-uniform"])
def test_the_trainer_s_records_are_exactly_the_typed_shapes(fake_mnist_dir, opt):
    rep = ListReporter()
    cfg = {"dataset": "mnist", "model": "mlp", "optimizer": {"name": opt}, "budget": {"backprops": 12},
           "train_subset": 64, "test_subset": 32, "batch_size": 16, "eval_every": 4, "device": "cpu",
           "grad_norm_every": 2}
    summary = trainer.run(cfg, rep, data_dir=fake_mnist_dir, download=False)
    assert summary["status"] == "completed", summary["message"]
    for rec in rep.steps:  # extra="forbid": a key the types do not name fails here
        StepRecord.model_validate(rec)
    for rec in rep.evals:
        EvalRecord.model_validate(rec)
    Summary.model_validate(summary)
    tr = [r for r in rep.steps if r["cg_exit"] is not None] if opt.startswith("tr") else []
    assert bool(tr) == opt.startswith("tr")  # TR runs fill the StepTrace fields, first-order runs leave them out


def test_trace_fields_are_part_of_the_step_record_and_the_api_derives_from_them():
    from backend.schemas import EvalPoint, MetricPoint

    assert set(TR_TRACE_FIELDS) == set(StepTrace.model_fields) <= set(StepRecord.model_fields)
    assert list(MetricPoint.model_fields) == list(StepRecord.model_fields)
    assert list(EvalPoint.model_fields) == list(EvalRecord.model_fields)
    assert issubclass(MetricPoint, StepRecord) and issubclass(EvalPoint, EvalRecord)


class _Color(enum.Enum):
    RED = "red"


def _naive(value):
    """Reference: what JSON may hold, written the long way."""
    if isinstance(value, dict):
        return {str(k): _naive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_naive(v) for v in value]
    if isinstance(value, enum.Enum):
        return _naive(value.value)
    if isinstance(value, (np.generic, torch.Tensor)):
        return _naive(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def test_cleaning_matches_a_naive_reference():
    value = {"a": float("nan"), 1: [np.float32(2.5), np.int64(3), (float("inf"), -float("inf"))],
             "t": torch.tensor(0.25), "e": _Color.RED, "b": np.bool_(True), "o": object.__new__(_Color),
             "n": None, "s": "x", "i": True}
    value.pop("o")
    out = clean_json(value)
    assert out == _naive(value)
    assert type(out["b"]) is bool and type(out[str(1)][1]) is int
    assert clean_scalar(float("nan")) is None and clean_scalar(1.5) == 1.5 and clean_scalar(np.float64("inf")) is None
    assert clean_scalar(Path("/x")) == "/x"
