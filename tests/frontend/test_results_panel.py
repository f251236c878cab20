"""The Compare page's results section (AppTest) and its pure builders: table, verdicts, downloads, paired chart."""
from __future__ import annotations

import pytest

from backend import stats
import pandas as pd

from frontend.results_charts import (paired_difference_figure, results_frame, results_view, sweep_figure,
                                     verdict_lists)
from frontend.results_panel import parse_targets
from tests.frontend.conftest import figures, texts


def _results_table(at):
    """The results table among the page's tables (the one with a verdict column)."""
    return next(d.value for d in at.dataframe if "verdict" in d.value.columns)


def _comparison(api, seeds=tuple(range(8))):
    runs = [api.add_run(o, seed=s, steps=100) for s in seeds for o in ("tr-rmsprop", "adam")]
    return api.add_comparison("paired", runs)


def test_results_table_verdicts_and_paired_chart(api, open_page):
    _comparison(api)
    at = open_page("compare")
    assert not at.exception
    assert at.selectbox(key="res_reference").value == "TR RMSprop"  # a TR method is the default reference
    table = _results_table(at)
    assert list(table["optimizer"]) == ["TR RMSprop", "Adam"] and list(table["seeds"]) == [8, 8]
    # identical final losses: interval [0, 0], inside the margin
    assert list(table["verdict"]) == ["reference", "no practical difference"]
    at.text_input(key="res_targets").set_value("0.05").run()
    table = _results_table(at)
    assert list(table["reached ≤0.05"]) == ["8/8", "8/8"]
    # the fake's TR runs spend 6 backprops per step, Adam 1: Adam reaches 0.05 at 40 backprops, TR at 240, on every
    # seed; the difference (200) exceeds the resolution (TR's bracket: 120 backprops), so it is a verdict
    assert "Adam reaches train loss ≤ 0.05 in fewer backprops than TR RMSprop" in texts(at.success)
    paired = figures(at)[-1]
    assert any("Adam − TR RMSprop (n = 8 seeds)" == t.get("name") for t in paired["data"])
    assert paired["layout"]["xaxis"]["title"]["text"].startswith("Backprops")
    assert ("comparison_results", (1, "TR RMSprop", "markdown")) in api.calls
    at.button_group(key="cmp_axis").set_value("epochs").run()
    assert "epoch to ≤0.05" in _results_table(at).columns
    assert figures(at)[-1]["layout"]["xaxis"]["title"]["text"] == "Epochs"
    at.button_group(key="cmp_axis").set_value("steps").run()  # not a cost axis: backprops instead, said so
    assert not at.exception and "backprops to ≤0.05" in _results_table(at).columns
    assert "shown against backprops" in texts(at.caption)


def test_bad_targets_are_explained(api, open_page):
    _comparison(api)
    at = open_page("compare")
    at.text_input(key="res_targets").set_value("0.5, abc").run()
    assert "Invalid loss target 'abc'" in texts(at.warning)
    assert not at.exception


def test_parse_targets():
    assert parse_targets("0.5, 0.3;0.2") == [0.5, 0.3, 0.2]
    assert parse_targets("") == []
    for bad in ("-1", "inf", "nan", "x"):
        with pytest.raises(ValueError, match="Invalid loss target"):
            parse_targets(bad)


def test_pure_builders():
    runs = [{"group": g, "optimizer": o, "seed": s, "status": "completed", "budget": {"epochs": 1},
             "evals": [{"backprops": 0, "epoch": 0, "wall_time": 0, "train_loss": 2.0},
                       {"backprops": 100, "epoch": 1, "wall_time": 1, "train_loss": loss + 0.01 * s}]}
            for g, o, loss in (("TR uniform", "tr-uniform", 0.5), ("SGD+momentum", "sgd", 0.3)) for s in range(8)]
    res = stats.results(runs, reference="TR uniform", targets=[1.0], n_boot=500)
    frame = results_frame(res)
    assert frame.loc[1, "verdict"] == "better" and frame.loc[1, "backprops to ≤1"] == 100
    assert frame.loc[1, "Δ final loss vs ref"] == pytest.approx(-0.2 / 2)  # k=3 over (2.0, loss): mean of both
    resolved, unresolved = verdict_lists(res)
    assert any("SGD+momentum has a lower smoothed final train loss" in s for s in resolved)
    fig = paired_difference_figure(stats.paired_curves(runs, reference="TR uniform", n_boot=100), x_title="x")
    assert fig.data[0].fill == "toself" and fig.data[1].name.startswith("SGD+momentum − TR uniform")
    few = paired_difference_figure(stats.paired_curves([r for r in runs if r["seed"] < 3], reference="TR uniform"),
                                   x_title="x")
    assert len(few.data) == 1 and few.data[0].name.endswith("(n = 3 seeds, no band: needs ≥ 5 seeds)")
    entry = {"name": "sgd", "label": "SGD", "space": {"lr": [0.01, 0.1, 1.0]}, "best": {"point": {"lr": 1.0},
             "value": 0.3}, "points": [{"point": {"lr": lr}, "values": [v], "value": v, "note": None}
                                       for lr, v in ((0.01, 0.9), (0.1, 0.5), (1.0, 0.3))]}
    fig = sweep_figure(entry, criterion_label="loss")
    assert fig.layout.xaxis.type == "log" and fig.data[-1].name == "winner" and fig.data[-1].x == (1.0,)


def test_verdicts_follow_the_axis():
    res = {"groups": [{"paired": [{"axis": None, "verdict": "better", "sentence": "final"},
                                  {"axis": "backprops", "verdict": "better", "sentence": "bp"},
                                  {"axis": "wall_time", "verdict": None, "sentence": "wall"}]}]}
    assert verdict_lists(res) == (["final", "bp"], ["wall"])
    assert verdict_lists(res, axis="backprops") == (["final", "bp"], [])
    assert verdict_lists(res, axis="wall_time") == (["final"], ["wall"])


def test_one_seed_shows_dashes_and_needs_five_seeds_never_none(api, open_page):
    """Issue 19 §7: with one seed no std 0 and no interval; runs not started are pending; no literal None."""
    runs = [api.add_run(o, seed=0, steps=100) for o in ("tr-rmsprop", "adam")]
    runs.append(api.add_run("sgd", seed=0, status="queued"))
    api.add_comparison("one seed", runs)
    at = open_page("compare")
    assert not at.exception
    table = _results_table(at)
    adam = table.set_index("optimizer").loc["Adam"]
    assert adam["interval"] == "needs ≥ 5 seeds" and adam["verdict"] == "descriptive only (needs ≥ 5 seeds)"
    assert pd.isna(adam["final train loss std"])  # no std from one seed (shown "—")
    sgd = table.set_index("optimizer").loc["SGD"]
    assert sgd["verdict"] == "pending" and sgd["interval"] == "pending" and sgd["note"] == "pending"
    shown = results_view(results_frame(api.comparison_results(1, reference="TR RMSprop"))).to_html()
    assert "None" not in shown and "nan" not in shown and "—" in shown


def test_results_table_paired_chart_and_verdicts_use_the_charts_compact_labels(api, open_page):
    """The paper preset's runs are labelled "... inputs=unit (seed N)" by the API, a setting every run shares: the
    results table, the reference choice, the verdicts and the paired chart said "TR RMSprop inputs=unit" where
    the charts say "TR RMSprop"."""
    runs = [api.add_run(o, seed=s, steps=100) for s in (0, 1, 2) for o in ("tr-rmsprop", "adam")]
    for r in runs:
        r["label"] = r["label"].replace(" (seed", " inputs=unit (seed")
    api.add_comparison("paper", runs)
    at = open_page("compare")
    assert not at.exception
    table = _results_table(at)
    assert list(table["optimizer"]) == ["TR RMSprop", "Adam"]
    at.text_input(key="res_targets").set_value("0.1").run()
    shown = texts(at.success) + texts(at.info) + " ".join(m.value for m in at.markdown)
    # 3 seeds: descriptive only (issue 19's rules), and the sentences name the groups by their compact labels
    assert "Adam vs TR RMSprop, backprops to train loss ≤ 0.1: descriptive only" in shown
    assert "inputs=unit" not in shown
    paired = figures(at)[-1]
    assert [t["name"] for t in paired["data"] if t.get("showlegend") is not False] == [
        "Adam − TR RMSprop (n = 3 seeds, no band: needs ≥ 5 seeds)"]
    ref = at.selectbox(key="res_reference")
    assert ref.value == "TR RMSprop inputs=unit" and ref.format_func(ref.value) == "TR RMSprop"
