"""RunConfig and the registries refuse bad input with field-level messages."""
import pytest
from pydantic import ValidationError

from trainer.config import RunConfig
from trainer.registry import OPTIMIZERS, PRESETS, metadata, resolve_hyperparameters

BASE = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-rmsprop"}, "budget": {"epochs": 1}}


def _err(**over):
    cfg = {**BASE, **over}
    with pytest.raises(ValidationError) as e:
        RunConfig.model_validate(cfg)
    return str(e.value)


def test_defaults_follow_table_1():
    cfg = RunConfig.model_validate(BASE)
    h = cfg.optimizer.resolved()
    assert cfg.effective_batch_size == 512
    assert (h["radius"], h["max_radius"], h["eta1"], h["eta2"], h["gamma1"], h["gamma2"]) == (
        1e-4, 10.0, 0.01, 0.95, 1.1, 1.75)
    assert (h["krylov_tol"], h["max_cg_iters"], h["beta"], h["eps"], h["solver"]) == (0.1, 50, 0.8, 1e-10, "cg")
    assert resolve_hyperparameters("tr-uniform", {})["radius"] == 0.05
    assert resolve_hyperparameters("tr-adagrad", {})["gamma2"] == 1.5
    sgd = RunConfig.model_validate({**BASE, "optimizer": {"name": "sgd"}})
    assert sgd.effective_batch_size == 128


@pytest.mark.parametrize("over,needle", [
    ({"optimizer": {"name": "lbfgs"}}, "unknown optimizer 'lbfgs'"),
    ({"optimizer": {"name": "sgd", "hyperparameters": {"eta1": 0.1}}}, "unknown hyperparameter 'eta1' for sgd"),
    ({"optimizer": {"name": "sgd", "hyperparameters": {"lr": -1}}}, "lr must be > 0.0"),
    ({"optimizer": {"name": "tr-uniform", "hyperparameters": {"eta1": 0.99}}}, "eta1 (0.99) must not exceed eta2"),
    ({"optimizer": {"name": "tr-uniform", "hyperparameters": {"solver": "qr"}}}, "solver must be one of"),
    ({"optimizer": {"name": "tr-uniform", "hyperparameters": {"max_cg_iters": 2.5}}}, "must be an integer"),
    ({"model": "autoencoder", "dataset": "cifar10"}, "does not fit dataset 'cifar10'"),
    ({"model": "transformer"}, "unknown model 'transformer'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"budget": {}}, "set at least one budget"),
    ({"budget": {"epochs": -1}}, "greater than 0"),
    ({"batch_size": 0}, "greater than or equal to 1"),
    ({"device": "tpu"}, 'device must be "auto"'),
    ({"colour": "red"}, "Extra inputs are not permitted"),
    ({"seed": "abc"}, "valid integer"),
])
def test_bad_input_is_refused_with_message(over, needle):
    assert needle in _err(**over)


def test_metadata_lists_every_optimizer_with_family_and_ranges():
    meta = metadata({"fashion-mnist": True})
    names = [o["name"] for o in meta["optimizers"]]
    assert names == list(OPTIMIZERS)
    fam = {o["name"]: o["family"] for o in meta["optimizers"]}
    assert fam["adam"] == "first-order" and fam["tr-rmsprop"] == "second-order"
    tr = next(o for o in meta["optimizers"] if o["name"] == "tr-uniform")
    eta1 = next(h for h in tr["hyperparameters"] if h["name"] == "eta1")
    assert (eta1["default"], eta1["minimum"], eta1["maximum"]) == (0.01, 0.0, 1.0)
    assert next(d for d in meta["datasets"] if d["name"] == "fashion-mnist")["available"] is True


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name):
    p = PRESETS[name]
    for opt in p["optimizers"]:
        cfg = RunConfig.model_validate({"dataset": p["dataset"], "model": p["model"], "optimizer": opt,
                                        "budget": p["budget"], "input_scaling": p["input_scaling"]})
        assert cfg.input_scaling == "unit"  # the paper divides pixels by 255 and nothing more


def test_eval_every_accepts_steps_backprops_or_epochs_and_defaults_to_50_evaluations():
    assert RunConfig.model_validate({**BASE, "eval_every": 7}).eval_schedule() == ("step", 7.0)  # old form
    assert RunConfig.model_validate({**BASE, "eval_every": {"epochs": 0.1}}).eval_schedule() == ("epoch", 0.1)
    assert RunConfig.model_validate({**BASE, "eval_every": {"backprops": 500}}).eval_schedule() == ("backprops", 500)
    assert RunConfig.model_validate({**BASE, "budget": {"epochs": 2}}).eval_schedule() == ("epoch", 0.04)
    assert RunConfig.model_validate({**BASE, "budget": {"backprops": 10_000}}).eval_schedule() == ("backprops", 200)
    assert RunConfig.model_validate({**BASE, "budget": {"seconds": 60}}).eval_schedule() == ("step", 50)
    again = RunConfig.model_validate(RunConfig.model_validate({**BASE, "eval_every": {"epochs": 0.5}}).model_dump())
    assert again.eval_schedule() == ("epoch", 0.5)


@pytest.mark.parametrize("value,needle", [
    ({"epochs": 0.1, "steps": 3}, "exactly one of steps, backprops or epochs"),
    ({}, "exactly one of steps, backprops or epochs"),
    ({"epochs": -1}, "greater than 0"),
    ({"epochs": float("nan")}, "eval_every"),
    (0, "Invalid eval_every: 0"),
    ({"minutes": 3}, "Extra inputs are not permitted"),
])
def test_bad_eval_every_is_refused(value, needle):
    assert needle in _err(eval_every=value)


def _run_cfg(**over):
    return RunConfig.model_validate({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-adagrad"},
                                     "budget": {"epochs": 1}, **over})


def test_input_scaling_default_is_per_task_and_stored():
    assert _run_cfg().input_scaling == "standardize"
    assert _run_cfg().model_dump()["input_scaling"] == "standardize"  # recorded in every stored config
    ae = _run_cfg(model="autoencoder")
    assert ae.input_scaling == "unit" and ae.variants() == []
    unit = _run_cfg(input_scaling="unit")
    assert unit.variants() == ["inputs=unit"]
    assert RunConfig.model_validate(unit.model_dump()) == unit


@pytest.mark.parametrize("over,needle", [
    ({"model": "autoencoder", "input_scaling": "standardize"}, "Invalid input_scaling"),
    ({"input_scaling": "raw"}, "input_scaling"),
    ({"autoencoder_loss": "mse"}, "Invalid autoencoder_loss"),
    ({"model": "autoencoder", "autoencoder_loss": "l1"}, "autoencoder_loss"),
    ({"optimizer": {"name": "adam"}, "warm_start_epochs": 1}, "Invalid warm_start_epochs"),
    ({"warm_start_epochs": -1}, "warm_start_epochs"),
    ({"warm_start_epochs": float("inf")}, "warm_start_epochs"),
])
def test_variant_switches_refuse_bad_values(over, needle):
    with pytest.raises(ValueError, match=needle):
        _run_cfg(**over)


def test_variants_off_by_default_and_labelled_when_on():
    cfg = _run_cfg(model="autoencoder")
    assert cfg.autoencoder_loss == "bce" and cfg.warm_start_epochs == 0
    on = _run_cfg(model="autoencoder", autoencoder_loss="mse", warm_start_epochs=0.5)
    assert on.variants() == ["loss=mse", "warm=0.5ep"]


def test_metadata_offers_input_scalings_and_losses():
    meta = metadata()
    assert [s["name"] for s in meta["input_scalings"]] == ["unit", "standardize"]
    assert [s["name"] for s in meta["autoencoder_losses"]] == ["bce", "mse"]


def test_convergence_and_l2_are_bounded_and_recorded():
    base = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"}, "budget": {"epochs": 1}}
    cfg = RunConfig.model_validate(base)
    assert cfg.converged.enabled and cfg.converged.loss_floor == 1e-8 and cfg.converged.grad_norm_ratio == 1e-7
    assert cfg.l2 == 0.0 and cfg.variants() == []
    stored = RunConfig.model_validate({**base, "l2": 1e-4, "converged": {"loss_floor": None, "patience": 5}})
    assert stored.model_dump()["l2"] == 1e-4 and stored.model_dump()["converged"]["loss_floor"] is None
    assert "l2=0.0001" in stored.variants()
    for bad in ({"l2": -1.0}, {"l2": 2.0}, {"converged": {"grad_norm_ratio": 0}}, {"converged": {"patience": 0}},
                {"converged": {"loss_floor": -1}}, {"converged": {"unknown": 1}}):
        with pytest.raises(ValueError):
            RunConfig.model_validate({**base, **bad})
