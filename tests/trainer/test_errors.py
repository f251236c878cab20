"""Tests for trainer.errors: one formatting of validation errors for the CLI, the API, the UI and the example."""
from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from trainer.config import RunConfig
from trainer.errors import clean_message, error_lines, error_summary, field_path


def test_field_path_names_nested_fields_without_the_request_part():
    assert field_path(["body", "optimizers", 0, "hyperparameters"]) == "optimizers[0] › hyperparameters"
    assert field_path(["query", "max_points"]) == "max_points"
    assert field_path([0, "x"]) == "0 › x" and field_path([]) == ""


def test_messages_lose_pydantic_prefixes_and_non_dicts_pass_through():
    assert clean_message("Value error, lr must be > 0") == "lr must be > 0"
    assert clean_message("Assertion failed, no") == "no" and clean_message("plain") == "plain"
    assert error_lines([{"loc": ["body"], "msg": "Value error, set a budget"}, "odd", {"loc": ["a"]}]) == [
        "set a budget", "odd", "a: invalid value"]


def test_a_real_validation_error_reads_the_same_everywhere():
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate({"dataset": "fashion-mnist", "model": "mlp", "budget": {"epochs": -1},
                                  "optimizer": {"name": "sgd"}})
    lines = error_lines(info.value.errors())
    assert lines and lines[0].startswith("budget › epochs: ") and "Value error" not in lines[0]
    assert error_summary(info.value.errors()) == "; ".join(lines)
    from frontend.api_client import error_messages

    assert error_messages(info.value.errors()) == lines


def test_the_module_is_stdlib_only():
    code = "import sys, trainer.errors; bad = {'torch', 'numpy'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
