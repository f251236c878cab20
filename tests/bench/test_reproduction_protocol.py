"""reproduction: the experiments are valid sweeps and promotions, and the pipeline sweep → promote → results →
report runs end to end through the in-process API (fake trainer in real worker processes)."""
from __future__ import annotations

import json

import pytest

from backend.schemas import ComparisonOptimizer
from backend.sweeps import PromoteRequest, SweepCreate
from reproduction.protocol import chosen_from_sweep, open_lab, run_experiment
from reproduction.report import build_report, paired_findings
from reproduction.spec import EXPERIMENTS, LABELS, MLP, baseline_key, quick


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiments_are_valid_sweeps_and_promotions(name):
    e = EXPERIMENTS[name]
    body = SweepCreate.model_validate(e.sweep_body())
    first_order = [o for o in body.optimizers if "lr" in o.space]
    assert [o.points()[0]["lr"] for o in first_order] == [e.grid["low"]] * len(e.first_order)
    assert body.optimizers[1].hyperparameters == {"momentum": 0.9}  # SGD+momentum is a baseline of its own
    # equal tuning effort (protocol v3, issue 19): the TR methods are swept on Δ₀ × η₁, as many points each
    tr = [o for o in body.optimizers if "lr" not in o.space]
    assert [o.name for o in tr] == ["tr-uniform", "tr-adagrad", "tr-rmsprop"]
    assert {len(o.points()) for o in tr} == {len(first_order[0].points())} == {9}
    for o in tr:  # centred on the preset's values
        preset = {**e.tr_hyperparameters(o.name)}
        mid = o.points()[4]
        assert all(mid[k] == pytest.approx(preset.get(k, mid[k])) for k in ("radius", "eta1"))
    promote = PromoteRequest.model_validate(e.promote_body())
    assert not set(promote.seeds) & set(e.tuning_seeds)  # fresh seeds
    assert promote.extra_optimizers == []  # the TR winners come from the sweep
    assert all(isinstance(o, ComparisonOptimizer) for o in promote.extra_optimizers)
    assert len(e.seeds) >= 5  # issue 19: at least 5 paired seeds for any test
    assert {cfg.input_scaling for _, _, cfg, _ in body.run_configs()} == {"unit"}  # raw inputs, as the paper
    assert body.run_settings == {"input_scaling": "unit"}  # carried to the promoted comparison too
    assert {cfg.budget.backprops for _, _, cfg, _ in body.run_configs()} == {e.backprops}  # tuned on the full budget
    grid = body.optimizers[0].space["lr"].grid()  # half decades: low, 3·low, 10·low, ...
    assert [g / e.grid["low"] for g in grid[:3]] == pytest.approx([1, 3, 10])
    runs = len(body.run_configs()) + len(e.seeds) * (len(e.first_order) + 3)
    assert runs <= 120  # the run count of `make reproduce` (its time: see docs in reproduction/spec.py)


def test_baseline_keys_and_labels():
    assert baseline_key("sgd", {"lr": 0.1, "momentum": 0.9}) == "sgd-momentum"
    assert baseline_key("sgd", {"lr": 0.1, "momentum": 0.0}) == "sgd"
    assert baseline_key("tr-rmsprop", {}) == "tr-rmsprop"
    assert LABELS["sgd-momentum"] == "SGD+momentum"


def test_chosen_from_sweep_and_findings():
    view = {"optimizers": [{"name": "sgd", "hyperparameters": {"momentum": 0.9}, "label": "SGD+momentum",
                            "space": {"lr": [0.1, 1.0]}, "edge_flags": ["best lr is the largest tried (1): extend"],
                            "best": {"point": {"lr": 1.0}}, "points": [{"point": {"lr": 0.1}, "value": 0.5},
                                                                       {"point": {"lr": 1.0}, "value": 0.3}]}]}
    chosen = chosen_from_sweep(view)
    assert chosen["sgd-momentum"]["lr"] == 1.0 and chosen["sgd-momentum"]["losses"] == {"0.1": 0.5, "1.0": 0.3}
    res = {"reference": "TR uniform", "budget": {"note": "equal budgets in backprops: 40 per run"},
           "groups": [{"n": 3, "paired": []}, {"n": 3, "paired": [
               {"metric": "backprops_to_0.3", "target": 0.3, "axis": "backprops", "verdict": "better",
                "sentence": "A reaches it in fewer backprops."},
               {"metric": "wall_time_to_0.3", "target": 0.3, "axis": "wall_time", "verdict": "worse",
                "sentence": "A reaches it in more wall time."},
               {"metric": "final_test_loss", "target": None, "axis": None, "verdict": "better",
                "sentence": "A has a lower final test loss."},
               {"metric": "final_train_loss", "target": None, "axis": None, "verdict": None,
                "sentence": "not resolved with 3 seeds"}]}]}
    lines = paired_findings("MLP", res)
    assert lines[1:] == ["  - A reaches it in fewer backprops.", "  - 1 other comparison(s) not resolved (listed "
                                                                   "under the results table below)."]
    assert "no difference to TR uniform is resolved" in paired_findings("MLP", {**res, "groups": []})[1]


@pytest.mark.slow
def test_pipeline_end_to_end_with_the_fake_trainer(tmp_path):
    exp = quick(MLP)
    logs: list[str] = []
    with open_lab(tmp_path / "lab", data_dir=tmp_path, workers=4, trainer="tests.backend.fake_trainer:run") as c:
        summary = run_experiment(c, exp, tmp_path, log=logs.append, poll=0.3)
    assert summary["sweep_runs"] == 4 + 3 * 2 and summary["comparison_runs"] == 3 * (2 + 3)  # TR swept too
    assert summary["side_runs"] == 3 * (1 + 3 + 2)  # GLTR, standardised inputs, equal wall time
    assert summary["statuses"] == {"completed": 15 + 18}
    folder = tmp_path / "mlp"
    chosen = json.loads((folder / "chosen_lr.json").read_text())
    assert set(chosen) == {"sgd", "sgd-momentum"} and chosen["sgd"]["grid"] == [0.01, 0.1]
    assert len(list((folder / "grid").glob("*.json.gz"))) == 10 and len(list((folder / "main").glob("*.json.gz"))) == 15
    chosen_tr = json.loads((folder / "chosen_tr.json").read_text())
    assert set(chosen_tr) == {"tr-uniform", "tr-adagrad", "tr-rmsprop"}
    assert all(len(c["losses"]) == 2 and set(c["point"]) == {"radius"} for c in chosen_tr.values())
    res = json.loads((folder / "results.json").read_text())
    assert res["reference"].startswith("TR uniform") and {g["n"] for g in res["groups"]} == {3}
    report = build_report(tmp_path, names=["mlp"], out_dir=tmp_path).read_text()
    assert "Paired statistics" in report and "SGD+momentum" in report and "Edge checks" in report
    assert "TR methods, Δ₀ (radius) × η₁ (eta1)" in report and "TR search (the same sweep)" in report
    for phase, n in (("gltr", 3), ("standardised", 9), ("wall", 6)):
        assert len(list((folder / phase).glob("*.json.gz"))) == n
    sides = json.loads((folder / "sides.json").read_text())
    assert sides["wall"]["results"]["budget"]["axis"] == "wall time (s)"
    assert "CG vs GLTR (same stopping rule)" in report and "standardised vs raw inputs" in report
    assert "equal wall-time budgets" in report and "Per-seed values" in report
    assert "in less wall time" not in report and "in more wall time" not in report


def test_best_optimizers_pick_the_lowest_final_loss_with_short_hyperparameters():
    from reproduction.protocol import best_optimizers
    from trainer.registry import OPTIMIZERS

    eta1 = OPTIMIZERS["tr-rmsprop"].defaults()["eta1"]
    res = {"groups": [{"group": g, "group_key": f"k-{g}", "optimizer": o, "final_train_loss": {"mean": m}}
                      for g, o, m in (
        ("TR uniform", "tr-uniform", 0.3), ("TR RMSprop radius=0.001", "tr-rmsprop", 0.2),
        ("TR Adagrad", "tr-adagrad", None), ("SGD lr=0.1", "sgd", 0.4), ("Adam lr=0.001", "adam", 0.35))]}
    runs = [{"label": f"{g} (seed 1)", "group_key": f"k-{g}", "config": {"optimizer": {"name": o, "hyperparameters": h}}}
            for g, o, h in (
        ("TR uniform", "tr-uniform", {}), ("TR RMSprop radius=0.001", "tr-rmsprop", {"radius": 1e-3, "eta1": eta1}),
        ("TR Adagrad", "tr-adagrad", {}), ("SGD lr=0.1", "sgd", {"lr": 0.1}), ("Adam lr=0.001", "adam", {"lr": 1e-3}))]
    tr, fo = best_optimizers(res, runs)
    assert tr == {"name": "tr-rmsprop", "hyperparameters": {"radius": 1e-3}}  # defaults dropped
    assert fo == {"name": "adam", "hyperparameters": {"lr": 1e-3}}
    assert best_optimizers({"groups": res["groups"][:3]}, runs) == (tr, None)


def test_edge_flags_become_cautions_in_the_findings():
    from reproduction.report import edge_cautions

    chosen = {"sgd": {"lr": 1.0, "edge_flags": ["best lr is the largest tried (1): extend the grid upward"]},
              "adagrad": {"lr": 0.01, "edge_flags": []}}
    lines = edge_cautions("Autoencoder", chosen)
    assert lines == ["- **Caution (Autoencoder): SGD — best lr is the largest tried (1): extend the grid upward.** "
                     "Its tuned value is on the edge of the grid; a better one may lie outside it, so the "
                     "comparisons above may understate this method."]
    assert edge_cautions("MLP", {"adagrad": chosen["adagrad"]}) == []
