"""Comparison requests carry the run-level switches (input scaling, autoencoder loss, warm start) into every run."""
import pytest
from pydantic import ValidationError

from backend.domain import run_label
from backend.schemas import ComparisonCreate


def _comparison(**over):
    body = {"name": "c", "dataset": "fashion-mnist", "model": "mlp", "budget": {"epochs": 1}, "seeds": [0],
            "optimizers": [{"name": "tr-adagrad"}, {"name": "adam"}], **over}
    return ComparisonCreate.model_validate(body)


def test_input_scaling_reaches_every_run_and_its_label():
    runs = _comparison(input_scaling="unit").run_configs()
    assert [c.input_scaling for c, _ in runs] == ["unit", "unit"]
    assert all("inputs=unit" in label for _, label in runs)
    default = _comparison().run_configs()
    assert [c.input_scaling for c, _ in default] == ["standardize", "standardize"]
    assert all("inputs=" not in label for _, label in default)  # the default is not spelled out


def test_warm_start_applies_to_trust_region_runs_only():
    runs = _comparison(warm_start_epochs=0.25).run_configs()
    by_name = {c.optimizer.name: (c, label) for c, label in runs}
    assert by_name["tr-adagrad"][0].warm_start_epochs == 0.25 and "warm=0.25ep" in by_name["tr-adagrad"][1]
    assert by_name["adam"][0].warm_start_epochs == 0 and "warm" not in by_name["adam"][1]


def test_bad_switches_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="input_scaling"):
        _comparison(model="autoencoder", input_scaling="standardize")
    with pytest.raises(ValidationError, match="autoencoder_loss"):
        _comparison(autoencoder_loss="mse")
    with pytest.raises(ValidationError, match="warm_start_epochs"):
        _comparison(warm_start_epochs=-1)


def test_run_label_lists_variants_after_hyperparameters():
    assert run_label("sgd", {"lr": 0.05}, 3, variants=["inputs=unit"]) == "SGD lr=0.05 inputs=unit (seed 3)"
    assert run_label("sgd", {}, 0) == "SGD (seed 0)"


def test_the_store_does_not_import_the_api_models():
    import ast
    from pathlib import Path

    import backend.store

    tree = ast.parse(Path(backend.store.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "backend.schemas" not in modules and "backend.domain" in modules
