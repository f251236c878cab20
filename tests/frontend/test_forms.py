"""Tests for frontend.forms: preset state, request bodies, seed parsing, errors in words."""
import pytest

from frontend import forms
from frontend.forms import K, hp_key
from trainer.config import RunConfig
from trainer.registry import PRESETS, metadata

META = metadata({"fashion-mnist": True})


def test_default_state_covers_every_hyperparameter_with_its_default():
    state = forms.default_state(META)
    for o in META["optimizers"]:
        for h in o["hyperparameters"]:
            assert state[hp_key(o["name"], h["name"])] == h["default"]
    assert state[K.optimizers] == ["tr-rmsprop", "adam"]
    req = forms.build_request(META, state)
    assert req.kind == "comparison"
    assert all(o["hyperparameters"] == {} for o in req.payload["optimizers"])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_reproduce_the_paper_settings(name):
    preset = PRESETS[name]
    state = forms.preset_state(META, name)
    req = forms.build_request(META, state)
    p = req.payload
    assert req.kind == "comparison"
    assert p["dataset"] == preset["dataset"] and p["model"] == preset["model"]
    assert p["budget"] == {k: float(v) for k, v in preset["budget"].items()}
    assert p["batch_sizes"] == preset["batch_sizes"]
    assert [o["name"] for o in p["optimizers"]] == [o["name"] for o in preset["optimizers"]]
    for sent, wanted in zip(p["optimizers"], preset["optimizers"]):
        defaults = {h["name"]: h["default"] for h in next(o for o in META["optimizers"]
                                                           if o["name"] == sent["name"])["hyperparameters"]}
        expected = {k: v for k, v in wanted["hyperparameters"].items() if v != defaults[k]}
        assert sent["hyperparameters"] == pytest.approx(expected)
    # every run of the comparison is a valid RunConfig
    for o in p["optimizers"]:
        RunConfig.model_validate({"dataset": p["dataset"], "model": p["model"], "budget": p["budget"],
                                  "optimizer": o})
    assert state[K.name] == preset["label"]
    assert p["input_scaling"] == "unit"  # the paper's raw [0, 1] inputs


def test_input_scaling_choice_is_sent_only_when_not_the_default():
    state = forms.default_state(META)
    assert forms.input_scaling_options(META) == [forms.DEFAULT_SCALING, "unit", "standardize"]
    assert "input_scaling" not in forms.build_request(META, state).payload
    state[K.input_scaling] = "unit"
    payload = forms.build_request(META, state).payload
    assert payload["input_scaling"] == "unit"


def test_autoencoder_preset_carries_the_tr_settings():
    state = forms.preset_state(META, "paper-fmnist-autoencoder")
    assert state[hp_key("tr-uniform", "eta1")] == 1e-5
    assert state[hp_key("tr-rmsprop", "radius")] == 1e-3
    with pytest.raises(ValueError, match="unknown preset"):
        forms.preset_state(META, "nope")


def test_single_optimizer_and_seed_is_a_run_with_its_family_batch():
    state = forms.default_state(META)
    state.update({K.optimizers: ["tr-uniform"], K.seeds: "3", K.budget_kind: "backprops",
                  K.budget("backprops"): 500.0, K.train_subset: 1024, K.bs_second: 256,
                  hp_key("tr-uniform", "radius"): 0.1, hp_key("tr-uniform", "max_cg_iters"): 20})
    req = forms.build_request(META, state)
    assert req.kind == "run"
    assert req.payload["optimizer"] == {"name": "tr-uniform", "hyperparameters": {"radius": 0.1, "max_cg_iters": 20}}
    assert req.payload["budget"] == {"backprops": 500}
    assert req.payload["seed"] == 3 and req.payload["batch_size"] == 256 and req.payload["train_subset"] == 1024
    assert "test_subset" not in req.payload
    RunConfig.model_validate(req.payload)
    assert "1 run" in forms.summarize(req)


def test_comparison_body_and_summary():
    state = forms.default_state(META)
    state.update({K.optimizers: ["sgd", "tr-rmsprop"], K.seeds: "0-2", K.name: ""})
    req = forms.build_request(META, state)
    assert req.payload["seeds"] == [0, 1, 2]
    assert req.payload["name"] == "SGD vs TR RMSprop"
    assert "2 optimizer(s) × 3 seed(s) = 6 runs" in forms.summarize(req)


def test_parse_seeds():
    assert forms.parse_seeds("0, 1,2") == [0, 1, 2]
    assert forms.parse_seeds("3 4 3") == [3, 4]
    assert forms.parse_seeds("0-3") == [0, 1, 2, 3]
    for bad in ("", "a", "-1", "5-2"):
        with pytest.raises(ValueError, match="seed"):
            forms.parse_seeds(bad)


def test_build_request_refuses_no_optimizer():
    state = forms.default_state(META)
    state[K.optimizers] = []
    with pytest.raises(ValueError, match="at least one optimizer"):
        forms.build_request(META, state)


def test_explain_errors_names_the_optimizer():
    state = forms.default_state(META)
    state[K.optimizers] = ["sgd", "tr-rmsprop"]
    req = forms.build_request(META, state)
    detail = [{"loc": ["body", "optimizers", 1, "hyperparameters"], "msg": "Value error, radius must be > 0.0",
               "type": "value_error"},
              {"loc": ["body", "budget"], "msg": "Value error, set at least one budget", "type": "value_error"}]
    assert forms.explain_errors(detail, req) == ["TR RMSprop › hyperparameters: radius must be > 0.0",
                                                 "budget: set at least one budget"]
    assert forms.explain_errors("run 4 not found", req) == ["run 4 not found"]
    single = forms.build_request(META, {**state, K.optimizers: ["adam"]})
    assert forms.explain_errors([{"loc": ["body", "optimizer", "hyperparameters"], "msg": "bad lr"}], single) == [
        "Adam › hyperparameters: bad lr"]


def test_eval_every_units_and_default():
    assert forms.eval_every_value("auto", 3) is None
    assert forms.eval_every_value("epochs", 0.25) == {"epochs": 0.25}
    assert forms.eval_every_value("backprops", 2000.0) == {"backprops": 2000}
    assert forms.eval_every_value("steps", 50.0) == 50
    for unit, value, needle in [("steps", 0.5, "whole number"), ("epochs", -1, "positive"),
                                ("epochs", float("nan"), "positive"), ("hours", 1, "choose one of")]:
        with pytest.raises(ValueError, match=needle):
            forms.eval_every_value(unit, value)
    meta = metadata({"fashion-mnist": True, "mnist": False})
    body = forms.build_request(meta, forms.default_state(meta)).payload
    assert "eval_every" not in body  # the API's default: ~50 evaluations per run


def test_dataset_problem_says_why_and_how():
    meta = metadata({"fashion-mnist": True, "mnist": False})
    assert forms.dataset_problem(meta, "fashion-mnist") is None
    assert forms.dataset_problem(meta, "cifar10") is None  # unknown availability: let the API decide
    text = forms.dataset_problem(meta, "mnist")
    assert text.startswith("MNIST is not in the API's data directory") and ". Go online once" in text


def test_estimate_durations_per_budget_kind():
    measured = {"items": [{"dataset": "fashion-mnist", "model": "mlp", "optimizer": "sgd", "batch_size": 64,
                           "runs": 4, "seconds_per_backprop": 0.002, "seconds_per_sample": 1e-5}]}
    state = forms.default_state(META)
    state.update({K.optimizers: ["sgd"], K.dataset: "fashion-mnist", K.model: "mlp", K.bs_first: 128,
                  K.budget_kind: "backprops", K.budget("backprops"): 1000})
    (e,) = forms.estimate_durations(META, forms.build_request(META, state), measured)
    assert e.seconds == pytest.approx(1000 * 0.002 * 128 / 64) and e.runs_measured == 4  # scaled by batch size
    state.update({K.budget_kind: "epochs", K.budget("epochs"): 2.0, K.train_subset: 1000})
    (e,) = forms.estimate_durations(META, forms.build_request(META, state), measured)
    assert e.seconds == pytest.approx(2 * 1000 * 1e-5)
    state.update({K.budget_kind: "seconds", K.budget("seconds"): 90.0})
    assert forms.estimate_durations(META, forms.build_request(META, state), measured)[0].seconds == 90.0
    state.update({K.optimizers: ["adam"], K.budget_kind: "backprops"})
    assert forms.estimate_durations(META, forms.build_request(META, state), measured)[0].seconds is None
