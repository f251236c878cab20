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


def test_regex_and_input_should_messages_read_as_words():
    """Tag and train_subset errors reached users as pydantic's "String should match pattern '^[A-Za-z0-9]...'" and
    "Input should be greater than or equal to 1"."""
    from backend.schemas import AnnotationPatch

    with pytest.raises(ValidationError) as info:
        AnnotationPatch.model_validate({"tags": ["has space"]})
    line, = error_lines(info.value.errors())
    assert line == ("tags[0]: 'has space' is not allowed here: use only letters, digits and _ . : + / - (no spaces), "
                    "starting with a letter or a digit")
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate({"dataset": "fashion-mnist", "model": "mlp", "budget": {"epochs": 1},
                                  "optimizer": {"name": "sgd"}, "train_subset": 0, "batch_size": 0})
    lines = error_lines(info.value.errors())
    assert "train_subset: must be at least 1, got 0" in lines and "batch_size: must be at least 1, got 0" in lines
    assert not any("should" in line or "^" in line for line in lines)
    # without the context pydantic gives, the message stays as it is
    assert error_lines([{"loc": ["x"], "msg": "Input should be greater than 0", "type": "greater_than"}]) == [
        "x: Input should be greater than 0"]
