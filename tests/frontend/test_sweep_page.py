"""AppTest: the Sweep page launches a sweep from a preset, shows criterion vs step size with the winner and edge
warnings, and promotes the winners (with the TR methods) to a comparison."""
from __future__ import annotations

import pytest

from frontend.sweep_form import entry_label, sweep_request
from tests.frontend.conftest import figures, texts
from trainer.registry import OPTIMIZERS, SWEEP_PRESETS

LABELS = {n: o.label for n, o in OPTIMIZERS.items()}


def _view(status="finished"):
    def entry(i, name, fixed, label, values):
        pts = [{"point": {"lr": lr}, "values": [v], "value": v, "note": None, "run_ids": [10 * i + j],
                "statuses": ["completed"], "seeds": [0]} for j, (lr, v) in enumerate(values)]
        best_lr, best_v = min(values, key=lambda t: t[1])
        return {"index": i, "name": name, "label": label, "hyperparameters": fixed, "batch_size": None,
                "space": {"lr": [lr for lr, _ in values]}, "points": pts, "finished": True, "message": None,
                "best": {"point": {"lr": best_lr}, "hyperparameters": {**fixed, "lr": best_lr}, "value": best_v,
                         "run_ids": []},
                "edge_flags": ["best lr is the largest tried (1): extend the grid upward"] if best_lr == 1.0 else []}
    return {"id": 1, "name": "grid", "comparison_id": 1, "promoted_comparison_id": None, "status": status,
            "runs_total": 6, "runs_finished": 6 if status == "finished" else 2,
            "criterion": {"kind": "final_train_loss", "k": 3, "target": None, "label": "smoothed final train loss",
                          "better": "lower"},
            "spec": {}, "optimizers": [entry(0, "sgd", {}, "SGD", [(0.01, 0.9), (0.1, 0.5), (1.0, 0.3)]),
                                       entry(1, "adam", {}, "Adam", [(1e-4, 0.6), (1e-3, 0.4), (1e-2, 0.5)])]}


def test_sweep_request_from_the_paper_preset():
    preset = SWEEP_PRESETS["paper-fmnist-mlp-grid"]
    entries = [entry_label(e, LABELS) for e in preset["optimizers"]]
    assert entries == ["SGD", "SGD+momentum (momentum=0.9)", "Adagrad", "RMSprop", "Adam", "TR uniform", "TR Adagrad",
                       "TR RMSprop"]
    # equal tuning effort (issue 19): every method gets 9 configurations, the TR methods Δ₀ × η₁ (3 × 3)
    from backend.sweeps import SweepOptimizer
    sizes = [len(SweepOptimizer.model_validate({k: v for k, v in e.items() if k != "label"}).points())
             for e in preset["optimizers"]]
    assert sizes == [9] * 8 and preset["promote_with"] == []
    tr = SweepOptimizer.model_validate({k: v for k, v in preset["optimizers"][-1].items() if k != "label"})
    assert {tuple(sorted(p.items())) for p in tr.points()} >= {(("eta1", 0.01), ("radius", 1e-4))}  # Table 1
    body = sweep_request(preset, {"entries": entries[:2], "low": 0.01, "high": 1.0, "per_decade": 1,
                                  "budget_kind": "backprops", "budget": 200, "train_subset": 512, "seeds": "0, 1",
                                  "criterion": "final_train_loss", "k": 3, "target": 0, "name": "t"}, LABELS)
    assert body["optimizers"][1] == {"name": "sgd", "hyperparameters": {"momentum": 0.9},
                                     "space": {"lr": {"low": 0.01, "high": 1.0, "per_decade": 1}}}
    assert body["seeds"] == [0, 1] and body["budget"] == {"backprops": 200} and body["train_subset"] == 512
    from backend.sweeps import SweepCreate
    assert len(SweepCreate.model_validate(body).run_configs()) == 2 * 2 * 3


def test_launch_a_sweep_from_the_form(api, open_page):
    at = open_page("sweep")
    assert not at.exception
    assert "No sweeps yet" in texts(at.info)
    at.multiselect(key="sw_entries").set_value(["SGD", "Adam"]).run()
    at.number_input(key="sw_low").set_value(0.01).run()
    at.radio(key="sw_budget_kind").set_value("backprops").run()
    at.number_input(key="sw_budget").set_value(100.0).run()
    at.button(key="sw_launch").click().run()
    assert not at.exception
    spec = next(c[1] for c in api.calls if c[0] == "create_sweep")
    assert [o["name"] for o in spec["optimizers"]] == ["sgd", "adam"]
    assert spec["optimizers"][0]["space"]["lr"] == {"low": 0.01, "high": 1.0, "per_decade": 2}
    assert "Sweep #1 queued: 10 runs" in texts(at.success)  # 5 half-decade step sizes x 2 optimizers


def test_bad_form_is_explained(api, open_page):
    at = open_page("sweep")
    at.multiselect(key="sw_entries").set_value([]).run()
    at.button(key="sw_launch").click().run()
    assert "Pick at least one optimizer" in texts(at.error)
    assert not any(c[0] == "create_sweep" for c in api.calls)


def test_winners_edge_flags_and_promote(api, open_page):
    api.add_sweep(_view())
    at = open_page("sweep")
    assert not at.exception
    sgd, adam = figures(at)[:2]
    assert sgd["layout"]["xaxis"]["type"] == "log"
    winner = next(t for t in sgd["data"] if t["name"] == "winner")
    assert winner["x"] == [1.0] and winner["y"] == [0.3]
    assert "SGD: best lr is the largest tried (1): extend the grid upward" in texts(at.warning)
    # the preset tunes the TR methods itself (equal tuning effort): nothing is added untuned by default
    assert at.multiselect(key="sw_extras").value == []
    at.multiselect(key="sw_extras").set_value(["tr-uniform"]).run()
    at.button(key="sw_promote").click().run()
    call = next(c[1] for c in api.calls if c[0] == "promote_sweep")
    assert call == (1, {"n_seeds": 5, "extra_optimizers": [{"name": "tr-uniform"}]})
    assert "Comparison #1 queued with 15 runs" in texts(at.success)
    at.run()  # the next run (a live tick, or the rerun after the sweep ends) keeps the confirmation
    assert "Comparison #1 queued with 15 runs" in texts(at.success)
    assert at.button(key="sw_open").label == "Open comparison #1 on Compare"


def test_promote_waits_for_a_running_sweep(api, open_page):
    api.add_sweep(_view(status="running"))
    at = open_page("sweep")
    assert at.button(key="sw_promote").disabled
    assert "2/6 runs finished" in at.get("progress")[0].proto.text


def test_points_without_a_result_are_named_rerun_and_hold_back_promote(api, open_page):
    view = _view()
    cut = view["optimizers"][1]["points"][2]
    cut.update(value=None, values=[None], statuses=["interrupted"], needs_rerun=True,
               note="no result (interrupted): re-run it")
    api.add_sweep(view)
    at = open_page("sweep")
    assert not at.exception
    assert any("1 grid point(s) have no result" in w and "Adam lr=0.01" in w for w in texts_list(at.warning))
    assert at.button(key="sw_promote").disabled  # until re-run, or "promote anyway"
    at.checkbox(key="sw_allow_missing").check().run()
    at.button(key="sw_promote").click().run()
    assert next(c[1] for c in api.calls if c[0] == "promote_sweep")[1]["allow_missing"] is True
    at.button(key="sw_rerun").click().run()
    assert ("rerun_sweep", 1) in api.calls and "Re-running 1 run(s)." in texts(at.success)
    assert not any("have no result" in w for w in texts_list(at.warning))


def texts_list(elements) -> list[str]:
    return [e.value for e in elements]


def test_the_selector_shows_the_sweeps_current_status(api, open_page, monkeypatch):
    """The selector said "· queued" beside "6/6 runs finished": its label came from the sweep list fetched when the
    page started, the progress from the live view. A list that lags behind the view must not win."""
    api.add_sweep(_view(status="finished"))
    stale = {**api.sweeps[1], "status": "queued", "runs_finished": 0}
    monkeypatch.setattr(api, "list_sweeps", lambda: {"items": [stale], "total": 1})
    at = open_page("sweep")
    assert not at.exception
    box = at.selectbox(key="sw_selected")
    assert box.format_func(box.value) == "#1 grid · finished"
    assert "6/6 runs finished · finished" in at.get("progress")[0].proto.text


def test_the_default_sweep_name_names_the_grid_chosen():
    """The default name was the preset's label, "... (half decades 1e-4..1)", whatever grid the form set."""
    preset = SWEEP_PRESETS["paper-fmnist-mlp-grid"]
    state = {"entries": ["SGD"], "low": 1e-3, "high": 0.1, "per_decade": 2, "budget_kind": "epochs", "budget": 1,
             "train_subset": 0, "seeds": "0", "criterion": "final_train_loss", "k": 3, "target": 0, "name": ""}
    name = sweep_request(preset, state, LABELS)["name"]
    assert name == "Fashion-MNIST MLP: equal tuning (half decades 0.001..0.1)"
    assert "1e-4" not in name
    assert sweep_request(preset, {**state, "per_decade": 1}, LABELS)["name"].endswith("(decades 0.001..0.1)")
    assert sweep_request(preset, {**state, "name": "mine"}, LABELS)["name"] == "mine"


def test_a_two_hyperparameter_sweep_gets_parallel_coordinates(api, open_page):
    """Sweeps over more than one hyperparameter showed only the criterion against the first one."""
    view = _view()
    sgd = view["optimizers"][0]
    grid = [(lr, m) for lr in (0.01, 0.1) for m in (0.0, 0.9)]
    sgd["space"] = {"lr": [0.01, 0.1], "momentum": [0.0, 0.9]}
    sgd["points"] = [{"point": {"lr": lr, "momentum": m}, "values": [lr + m], "value": lr + m, "note": None,
                      "run_ids": [i], "statuses": ["completed"], "seeds": [0]} for i, (lr, m) in enumerate(grid)]
    api.add_sweep(view)
    at = open_page("sweep")
    assert not at.exception
    par = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "parcoords"]
    assert len(par) == 1  # only the two-hyperparameter entry
    dims = par[0]["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["lr", "momentum", "smoothed final train loss"]
    assert dims[0]["ticktext"] == ["0.01", "0.1"]  # log axis, labelled in values
    assert dims[2]["values"] == pytest.approx([lr + m for lr, m in grid])
    heat = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap"]
    assert len(heat) == 1
    cells = heat[0]["data"][0]
    assert cells["x"] == ["0.01", "0.1"] and cells["y"] == ["0", "0.9"]
    assert [v for row in cells["z"] for v in row] == pytest.approx([0.01, 0.1, 0.91, 1.0])  # rows: momentum
