"""trainer.identity.group_key: runs of one setting share it whatever their seed; any other difference splits."""
from __future__ import annotations

from trainer.config import RunConfig
from trainer.identity import IDENTITY_EXCLUDED, group_key, group_key_of_stored, identity_config

BASE = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-uniform"}, "budget": {"epochs": 1}}


def key(**change) -> str:
    return group_key(RunConfig.model_validate({**BASE, **change}))


def test_seeds_share_a_key_and_resolved_defaults_are_the_same_setting():
    assert key(seed=0) == key(seed=7) == key(num_reconstructions=3)  # seed and display-only fields left out
    from trainer.registry import OPTIMIZERS
    defaults = OPTIMIZERS["tr-uniform"].defaults()
    assert key(optimizer={"name": "tr-uniform", "hyperparameters": {"radius": defaults["radius"]}}) == key()
    assert key(batch_size=512) == key()  # the TR default batch, spelled out
    assert "seed" not in identity_config(RunConfig.model_validate(BASE)) and "seed" in IDENTITY_EXCLUDED


def test_any_other_difference_is_another_group():
    """Issue 19's cases: different experiments, datasets, input scalings, budgets are never one group."""
    keys = {key(), key(dataset="mnist"), key(input_scaling="unit"), key(budget={"epochs": 2}),
            key(train_subset=512), key(optimizer={"name": "tr-uniform", "hyperparameters": {"eta1": 0.1}}),
            key(eval_every={"backprops": 100}), key(optimizer={"name": "tr-adagrad"})}
    assert len(keys) == 8


def test_stored_configs_give_the_same_key_and_unknown_ones_still_group():
    from backend.domain import stored_config

    cfg = RunConfig.model_validate({**BASE, "seed": 3})
    assert group_key_of_stored(stored_config(cfg)) == group_key(cfg)
    gone = {**stored_config(cfg), "optimizer": {"name": "no-longer-registered", "hyperparameters": {}}}
    a, b = group_key_of_stored({**gone, "seed": 1}), group_key_of_stored({**gone, "seed": 2})
    assert a == b and a.startswith("x") and len(a) == 16
