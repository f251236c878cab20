"""Tests for trainer.hyperparameters: one pydantic model per optimizer validates, documents and yields the schema."""
from __future__ import annotations

import inspect
import math

import pytest
import torch
from pydantic import BaseModel

from trainer import hyperparameters as hp
from trainer.hyperparameters import TR_HYPERPARAMETERS, TR_NORM_DEFAULTS, TrustRegionHyperparameters
from trainer.optim.trust_region import TR_DEFAULTS, TrustRegion, tr_defaults
from trainer.registry import OPTIMIZERS, metadata, resolve_hyperparameters


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_has_a_strict_pydantic_model(name):
    model = OPTIMIZERS[name].hyperparameters
    assert issubclass(model, hp.Hyperparameters) and issubclass(model, BaseModel)
    assert model.model_config["extra"] == "forbid" and model.model_config["allow_inf_nan"] is False
    for field_name, f in model.model_fields.items():
        assert f.description, f"{name}.{field_name} has no description"
    assert resolve_hyperparameters(name, {}) == model().model_dump() == OPTIMIZERS[name].defaults()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_meta_list_equals_the_model_schema(name):
    """Each published entry is the model's JSON schema property, renamed; nothing is kept on the side."""
    props = OPTIMIZERS[name].hyperparameters.model_json_schema()["properties"]
    listed = next(o for o in metadata()["optimizers"] if o["name"] == name)["hyperparameters"]
    assert [h["name"] for h in listed] == list(props)
    types = {"number": "float", "integer": "int", "string": "str", "boolean": "bool"}
    for h in listed:
        p = props[h["name"]]
        assert list(h) == ["name", "type", "default", "description", "minimum", "maximum", "exclusive_minimum",
                           "choices"]
        assert h["type"] == types[p["type"]] and h["default"] == p["default"] and h["description"] == p["description"]
        assert h["maximum"] == p.get("maximum") and h["choices"] == p.get("enum")
        assert h["exclusive_minimum"] == ("exclusiveMinimum" in p)
        assert h["minimum"] == p.get("exclusiveMinimum", p.get("minimum"))
        if h["type"] in ("float", "int"):  # every number is bounded on both sides
            assert h["minimum"] is not None and h["maximum"] is not None, h["name"]


def test_meta_list_keeps_the_shape_the_launch_form_reads():
    tr = {h["name"]: h for h in next(o for o in metadata()["optimizers"] if o["name"] == "tr-rmsprop")["hyperparameters"]}
    assert tr["radius"] == {"name": "radius", "type": "float", "default": 1e-4,
                            "description": "initial trust radius Δ₀ (in M-units)", "minimum": 0.0, "maximum": 1e6,
                            "exclusive_minimum": True, "choices": None}
    assert tr["gamma2"]["default"] == 1.75 and tr["gamma2"]["minimum"] == 1.0 and tr["gamma2"]["exclusive_minimum"]
    assert tr["max_cg_iters"]["type"] == "int" and (tr["max_cg_iters"]["minimum"], tr["max_cg_iters"]["maximum"]) == (
        1, 10000)
    assert tr["solver"]["type"] == "str" and tr["solver"]["choices"] == ["cg", "lanczos"]
    sgd = {h["name"]: h for h in next(o for o in metadata()["optimizers"] if o["name"] == "sgd")["hyperparameters"]}
    assert sgd["nesterov"]["type"] == "bool" and sgd["nesterov"]["default"] is False


@pytest.mark.parametrize("name,given,needle", [
    ("sgd", {"lr": 0.0}, "lr must be > 0.0, got 0.0"),
    ("sgd", {"lr": 101.0}, "lr must be <= 100.0, got 101.0"),
    ("sgd", {"lr": math.inf}, "lr must be finite"),
    ("sgd", {"lr": math.nan}, "lr must be finite"),
    ("sgd", {"lr": "0.1"}, "lr must be a number, got '0.1'"),
    ("sgd", {"lr": True}, "lr must be a number, got True"),
    ("sgd", {"nesterov": 1}, "nesterov must be true or false, got 1"),
    ("sgd", {"nesterov": True}, "nesterov requires momentum > 0 for sgd"),
    ("adam", {"beta3": 0.9}, "unknown hyperparameter 'beta3' for adam; allowed: ['lr', 'beta1', 'beta2', 'eps',"),
    ("rmsprop", {"momentum": -0.1}, "momentum must be >= 0.0, got -0.1"),
    ("tr-uniform", {"gamma2": 1.0}, "gamma2 must be > 1.0, got 1.0"),
    ("tr-adagrad", {"max_cg_iters": 2.5}, "max_cg_iters must be an integer, got 2.5"),
    ("tr-adagrad", {"max_cg_iters": 0}, "max_cg_iters must be >= 1, got 0"),
    ("tr-rmsprop", {"solver": "qr"}, "solver must be one of ['cg', 'lanczos'], got 'qr'"),
    ("tr-rmsprop", {"norm_update": "never"}, "norm_update must be one of ['every', 'accepted']"),
    ("tr-uniform", {"radius": 20.0}, "radius (20.0) must not exceed max_radius (10.0)"),
])
def test_a_bad_value_is_refused_naming_the_field(name, given, needle):
    with pytest.raises(ValueError) as e:
        resolve_hyperparameters(name, given)
    assert needle in str(e.value)


def test_every_error_is_reported_at_once_and_good_values_are_coerced():
    with pytest.raises(ValueError) as e:
        resolve_hyperparameters("adam", {"lr": -1, "beta1": 2.0})
    assert "lr must be > 0.0" in str(e.value) and "beta1 must be <= 1.0" in str(e.value)
    h = resolve_hyperparameters("tr-uniform", {"max_cg_iters": 20.0, "radius": 1})
    assert h["max_cg_iters"] == 20 and type(h["max_cg_iters"]) is int
    assert h["radius"] == 1.0 and type(h["radius"]) is float


def test_trust_region_signature_defaults_are_the_registry_s():
    """Explicit keyword arguments, as torch.optim; their defaults are tr-uniform's model's (one source), except the
    per-norm ones (TR_NORM_DEFAULTS), whose default is None: resolved per norm."""
    params = inspect.signature(TrustRegion.__init__).parameters
    per_norm = set().union(*TR_NORM_DEFAULTS.values())
    assert per_norm == {"radius", "gamma2"}
    for key, value in TR_DEFAULTS.items():
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY, key
        assert params[key].default == (None if key in per_norm else value), key
    opt = TrustRegion([torch.nn.Parameter(torch.zeros(2))], radius=0.2, solver="lanczos")
    assert opt.param_groups[0]["radius"] == 0.2 and opt.param_groups[0]["solver"] == "lanczos"
    assert opt.param_groups[0]["gamma2"] == TR_DEFAULTS["gamma2"]


@pytest.mark.parametrize("norm", ["uniform", "adagrad", "rmsprop"])
def test_trust_region_defaults_depend_on_the_norm_as_the_registry_s(norm):
    """TrustRegion(norm=...) built directly gets the same defaults as the registry's tr-<norm> (one table)."""
    opt = TrustRegion([torch.nn.Parameter(torch.zeros(2))], norm=norm)
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    registry = OPTIMIZERS[f"tr-{norm}"].defaults()
    assert group == {"norm": norm, **registry}
    assert group == tr_defaults(norm)
    assert {k: group[k] for k in TR_NORM_DEFAULTS[norm]} == TR_NORM_DEFAULTS[norm]


def test_rmsprop_defaults_are_table_1_s_and_explicit_values_still_win():
    opt = TrustRegion([torch.nn.Parameter(torch.zeros(2))], norm="rmsprop")
    assert opt.param_groups[0]["radius"] == 1e-4 and opt.param_groups[0]["gamma2"] == 1.75
    assert opt.radius == 1e-4
    opt = TrustRegion([torch.nn.Parameter(torch.zeros(2))], norm="rmsprop", radius=0.05, gamma2=1.5)
    assert opt.param_groups[0]["radius"] == 0.05 and opt.param_groups[0]["gamma2"] == 1.5
    uniform = TrustRegion([torch.nn.Parameter(torch.zeros(2))], norm="uniform")
    assert uniform.param_groups[0]["radius"] == 0.05 and uniform.param_groups[0]["gamma2"] == 1.5


def test_per_norm_models_are_the_base_overlaid_with_the_table():
    base = TrustRegionHyperparameters().model_dump()
    for norm, model in TR_HYPERPARAMETERS.items():
        assert model().model_dump() == {**base, **TR_NORM_DEFAULTS[norm]}, norm


@pytest.mark.parametrize("kwargs,match", [
    ({"radius": math.nan}, "Invalid trust radius"),
    ({"max_radius": math.inf}, "Invalid max radius"),
    ({"gamma1": 0.5}, "Invalid gamma1"),
    ({"krylov_tol": 0.0}, "Invalid krylov_tol"),
    ({"theta": -1.0}, "Invalid theta"),
    ({"max_cg_iters": 2.5}, "Invalid max_cg_iters"),
    ({"norm_update": "never"}, "Invalid norm_update"),
    ({"noise_floor": "sometimes"}, "Invalid noise_floor"),
    ({"noise_floor_ulps": -1.0}, "Invalid noise_floor_ulps"),
])
def test_trust_region_refuses_bad_options_as_torch_optim_does(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrustRegion([torch.nn.Parameter(torch.zeros(2))], **kwargs)
