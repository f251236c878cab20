"""Tests for frontend.charts: pure DataFrame -> Plotly figure builders."""
import numpy as np
import pandas as pd
import pytest

from frontend import charts, series
from tests.frontend.fakes import FakeApi, eval_points, metric_points
from frontend import geometry
from trainer.registry import OPTIMIZERS


def _runs(seeds=(0,), optimizers=("tr-rmsprop", "sgd")):
    api = FakeApi()
    runs = [api.add_run(o, seed=s) for o in optimizers for s in seeds]
    frames = {r["id"]: pd.DataFrame(metric_points(60, tr=r["optimizer"].startswith("tr-"))) for r in runs}
    evals = {r["id"]: pd.DataFrame(eval_points([0, 20, 40, 60], tr=r["optimizer"].startswith("tr-"))) for r in runs}
    return runs, frames, evals


def test_every_registry_optimizer_has_its_own_colour():
    colours = [charts.color_for(n) for n in OPTIMIZERS]
    assert len(set(colours)) == len(OPTIMIZERS)
    assert charts.color_for("unknown-opt") == charts.color_for("unknown-opt")


def test_curve_figure_colours_by_optimizer_and_keeps_zoom_key():
    runs, frames, _ = _runs()
    curves = series.build_curves(runs, frames, x="backprops", y="train_loss")
    fig = charts.curve_figure(curves, x_title="Backprops", y_title="loss", log_y=True, uirevision="cmp-1")
    assert fig.layout.uirevision == "cmp-1"
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text == "Backprops"
    by_name = {t.name: t for t in fig.data}
    assert by_name["TR RMSprop"].line.color == charts.OPTIMIZER_COLORS["tr-rmsprop"]
    assert by_name["SGD"].line.color == charts.OPTIMIZER_COLORS["sgd"]


def test_curve_figure_draws_bands_for_several_seeds():
    runs, frames, _ = _runs(seeds=(0, 1))
    curves = series.build_curves(runs, frames, x="step", y="train_loss")
    fig = charts.curve_figure(curves, x_title="Steps", y_title="loss", log_y=True)
    bands = [t for t in fig.data if t.fill == "toself"]
    lines = [t for t in fig.data if t.mode == "lines" and t.fill != "toself"]
    assert len(bands) == 2 and len(lines) == 2
    for band, line in zip(bands, lines):
        assert band.legendgroup == line.legendgroup and band.showlegend is False
        assert np.all(np.asarray(band.y) > 0)  # clipped for the log axis


def test_same_optimizer_twice_differs_by_dash():
    api = FakeApi()
    a, b = api.add_run("sgd", hyperparameters={"lr": 0.1}), api.add_run("sgd", hyperparameters={"lr": 0.01})
    frames = {r["id"]: pd.DataFrame(metric_points(10, tr=False)) for r in (a, b)}
    fig = charts.curve_figure(series.build_curves([a, b], frames, x="step", y="train_loss"), x_title="", y_title="")
    assert {t.line.dash for t in fig.data} == {"solid", "dash"}
    assert len({t.line.color for t in fig.data}) == 1


def test_empty_inputs_give_a_message_not_an_error():
    empty = series.build_curves([], {}, x="step", y="train_loss")
    fig = charts.curve_figure(empty, x_title="", y_title="")
    assert "No points yet" in fig.layout.annotations[0].text
    assert "No evaluations" in charts.eval_figure(empty, empty, x_title="").layout.annotations[0].text
    assert "trust-region" in charts.tr_internals_figure(series.tr_frame([], {}, x="step"), None,
                                                        x_title="").layout.annotations[0].text


def test_eval_figure_has_loss_and_accuracy_panels():
    runs, _, evals = _runs()
    loss = series.build_curves(runs, evals, x="epoch", y="test_loss")
    acc = series.build_curves(runs, evals, x="epoch", y="test_accuracy")
    fig = charts.eval_figure(loss, acc, x_title="Epochs")
    assert [a.text for a in fig.layout.annotations] == ["Test loss", "Test accuracy"]
    assert fig.layout.yaxis2.tickformat == ".0%"
    # one legend entry per optimizer, same colour in both panels
    assert sum(bool(t.showlegend) or t.showlegend is None for t in fig.data) == 2
    colours = {t.name: set() for t in fig.data}
    for t in fig.data:
        colours[t.name].add(t.line.color)
    assert all(len(c) == 1 for c in colours.values())
    only_loss = charts.eval_figure(loss, series.build_curves(runs, {}, x="epoch", y="test_accuracy"), x_title="")
    assert [a.text for a in only_loss.layout.annotations] == ["Test loss"]


def test_tr_internals_share_the_x_axis_and_mark_rejections_and_exits():
    runs, frames, _ = _runs()
    tr_runs = [r for r in runs if r["optimizer"].startswith("tr-")]
    tr = series.tr_frame(tr_runs, frames, x="backprops")
    loss = series.build_curves(tr_runs, frames, x="backprops", y="train_loss")
    fig = charts.tr_internals_figure(tr, loss, x_title="Backprops", thresholds=(0.01, 0.95), uirevision="u")
    assert [a.text for a in fig.layout.annotations][:4] == [
        "Training loss", "Trust radius Δ", "ρ = actual / predicted decrease", "CG iterations per step (colour = exit)"]
    # one x axis for all four panels, so the unified hover and the spike line span them all
    assert {t.xaxis for t in fig.data} == {"x"} and fig.layout.hoversubplots == "axis"
    assert fig.layout.hovermode == "x unified" and fig.layout.xaxis.showspikes
    assert fig.layout.xaxis.anchor == "y4" and fig.layout.xaxis.title.text == "Backprops"
    assert all(fig.layout[f"yaxis{i}"].anchor == "x" for i in (2, 3, 4))
    assert not fig.layout.xaxis2.visible and not fig.layout.xaxis4.visible
    assert fig.layout.yaxis2.type == "log"
    names = [t.name for t in fig.data]
    assert "rejected step" in names
    rejected = [t for t in fig.data if t.name == "rejected step" and t.yaxis == "y3"][0]
    assert all(float(x) % 42 == 0 for x in rejected.x)  # steps 7, 14, ... at 6 backprops each
    exits = {t.name: t.marker.color for t in fig.data if t.yaxis == "y4"}
    assert exits["negative curvature"] == charts.EXIT_COLORS["negative_curvature"]
    assert exits["interior (tolerance met)"] == charts.EXIT_COLORS["interior"]
    rho = [t for t in fig.data if t.yaxis == "y3" and t.name == "TR RMSprop"][0]
    assert max(rho.y) <= 1.5 and min(rho.y) >= -0.5
    assert fig.layout.uirevision == "u"


def test_geometry_figure_draws_regions_iterates_and_minimizer():
    p = geometry.PROBLEMS["ill-conditioned"]
    ts = [geometry.run_method(m, p, lr=p.gd_lr if m in ("gd", "tr-uniform") else p.adagrad_lr, steps=10)
          for m in geometry.METHODS]
    fig = charts.geometry_figure(p, ts, every=2)
    assert [a.text for a in fig.layout.annotations] == [t.label for t in ts]
    stars = [t for t in fig.data if t.type == "scatter" and t.marker.symbol == "star"]
    assert len(stars) == 4 and stars[0].x[0] == 1.0
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 4
    paths = [t for t in fig.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert len(paths) == 4 and len(paths[0].x) == 11
    # regions: ceil(10 / 2) outlines per method
    outlines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines" and t.line.dash is None and len(t.x) == 97]
    assert len(outlines) == 4 * 5
    assert fig.layout.yaxis.scaleanchor == "x"
    assert "Pick at least one" in charts.geometry_figure(p, []).layout.annotations[0].text


def test_log_ticks_label_decades_only_for_wide_ranges():
    short = charts.log_ticks([0.3, 0.5, 0.9])
    assert short["tickvals"] == pytest.approx([0.3, 0.5, 0.7, 1.0])
    assert short["ticktext"][0] == "0.3"
    assert charts.log_ticks([0.15, 2.5])["ticktext"] == ["0.2", "0.5", "1", "2"]
    assert charts.log_ticks([1e-8, 1.0]) == {"dtick": 2, "exponentformat": "power"}
    assert charts.log_ticks([1e-3, 1.0, np.nan, -1.0]) == {"dtick": 1, "exponentformat": "power"}
    assert charts.log_ticks([]) == {}


def test_bands_are_lines_only_without_stray_markers():
    """Band traces without mode= get Plotly's default markers (coloured dots matching no legend entry)."""
    runs, _, evals = _runs(seeds=(0, 1))
    loss = series.build_curves(runs, evals, x="backprops", y="test_loss")
    fig = charts.eval_figure(loss, series.build_curves(runs, evals, x="backprops", y="test_accuracy"),
                             x_title="Backprops", log_y=True)
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 4 and all(t.mode == "lines" for t in bands)
    assert all(t.mode is not None for t in fig.data)


def test_one_evaluation_per_run_still_reads_correctly():
    """Only the step-0 evaluation: points visible, no negative x, two distinct well-spaced loss ticks."""
    runs, _, _ = _runs()
    one = {r["id"]: pd.DataFrame(eval_points([0], tr=r["optimizer"].startswith("tr-"))) for r in runs}
    loss = series.build_curves(runs, one, x="backprops", y="test_loss")
    acc = series.build_curves(runs, one, x="backprops", y="test_accuracy")
    fig = charts.eval_figure(loss, acc, x_title="Backprops", log_y=True)
    assert all("markers" in t.mode for t in fig.data)
    for ax in (fig.layout.xaxis, fig.layout.xaxis2):
        assert ax.rangemode == "nonnegative" and ax.range[0] >= 0 and ax.range[1] > ax.range[0]
    y = fig.layout.yaxis
    assert y.type == "log" and len(y.tickvals) >= 2 and len(set(y.ticktext)) == len(y.ticktext)
    assert y.range[0] <= np.log10(min(loss["y"])) and y.range[1] >= np.log10(max(loss["y"]))
    gaps = np.diff(np.log10(y.tickvals)) / (y.range[1] - y.range[0])
    assert gaps.min() > 0.15  # ticks at least 15% of the axis apart: labels cannot overlap
    curves = charts.curve_figure(series.build_curves(runs, one, x="epoch", y="test_loss"), x_title="", y_title="")
    assert curves.layout.xaxis.range[0] == 0


def test_tr_internals_key_is_complete_and_runs_are_told_apart():
    """Marker shape per run appears in the legend, overlapping runs are translucent with their own shapes,
    and the CG panel lists every exit reason (not only those seen so far)."""
    api = FakeApi()
    runs = [api.add_run("tr-uniform", seed=s) for s in (0, 1)]
    frames = {r["id"]: pd.DataFrame(metric_points(40, tr=True)) for r in runs}
    tr = series.tr_frame(runs, frames, x="step")
    fig = charts.tr_internals_figure(tr, None, x_title="Steps")
    key = {t.name for t in fig.data if t.showlegend and t.legendgroup and t.legendgroup.startswith("exit-")}
    assert key == {"CG exit: interior (tolerance met)", "CG exit: boundary (‖s‖_M = Δ)",
                   "CG exit: negative curvature", "CG exit: iteration cap"}
    per_run = [t for t in fig.data if t.showlegend and t.legendgroup and t.legendgroup.startswith("tr")]
    assert [t.name for t in per_run] == ["TR uniform (seed 0)", "TR uniform (seed 1)"]
    assert per_run[0].marker.symbol != per_run[1].marker.symbol and per_run[0].line.dash != per_run[1].line.dash
    rho = [t for t in fig.data if t.yaxis == "y2" and t.mode == "markers" and t.name != "rejected step"]
    assert {t.marker.symbol for t in rho} == {per_run[0].marker.symbol, per_run[1].marker.symbol}
    assert all(t.marker.opacity < 0.7 for t in rho)
    cg = [t for t in fig.data if t.yaxis == "y3" and len(t.x) and t.x[0] is not None]
    assert {t.marker.symbol for t in cg} == {per_run[0].marker.symbol, per_run[1].marker.symbol}


def test_colours_come_from_the_api_and_match_the_reproduction_plots(monkeypatch):
    from reproduction.plots import COLORS
    from trainer.registry import OPTIMIZERS, metadata

    published = {o["name"]: o["color"] for o in metadata()["optimizers"]}
    assert published == {n: o.color for n, o in OPTIMIZERS.items()}
    assert len(set(published.values())) == len(published)  # one colour each
    for name, colour in published.items():
        assert charts.color_for(name) == colour == COLORS[name]
    assert COLORS["sgd-momentum"] not in published.values()
    monkeypatch.setattr(charts, "OPTIMIZER_COLORS", {})
    charts.adopt_colors([{"name": "adam", "color": "#000001"}, {"name": "sgd"}, "junk"])
    assert charts.OPTIMIZER_COLORS == {"adam": "#000001"} and charts.color_for("adam") == "#000001"


def test_hover_shows_the_short_label_and_value_only():
    """The unified hover box listed every run's full hyperparameter dump: wider than the plot, covering the
    curves. Now each line is the series' short label (the trace name) and its value."""
    api = FakeApi()
    runs = [api.add_run("tr-uniform", hyperparameters={"eta1": 1e-5, "eta2": 0.9, "gamma2": 1.25, "radius": 1e-3}),
            api.add_run("sgd", hyperparameters={"lr": 0.1}), api.add_run("sgd", hyperparameters={"lr": 0.01})]
    frames = {r["id"]: pd.DataFrame(metric_points(30, tr=r["optimizer"].startswith("tr-"))) for r in runs}
    curves = series.build_curves(runs, frames, x="backprops", y="train_loss")
    fig = charts.curve_figure(curves, x_title="Backprops", y_title="loss")
    lines = [t for t in fig.data if t.fill != "toself"]
    assert {t.name for t in lines} == {"TR uniform", "SGD lr=0.1", "SGD lr=0.01"}
    assert {t.hovertemplate for t in lines} == {"%{y:.4g}"}
    assert fig.layout.hovermode == "x unified" and fig.layout.xaxis.showspikes


def test_tr_internals_list_each_run_once_in_the_legend():
    """With the loss panel on top, each optimizer was listed twice (its loss curve and its dash/marker key)."""
    api = FakeApi()
    runs = [api.add_run(o) for o in ("tr-uniform", "tr-adagrad", "tr-rmsprop")]
    frames = {r["id"]: pd.DataFrame(metric_points(40, tr=True)) for r in runs}
    tr = series.tr_frame(runs, frames, x="step")
    loss = series.build_curves(runs, frames, x="step", y="train_loss", aggregate=False)
    fig = charts.tr_internals_figure(tr, loss, x_title="Steps")
    entries = [t.name for t in fig.data if t.showlegend is not False and not t.name.startswith("CG exit")
               and t.name != "rejected step"]
    assert sorted(entries) == ["TR Adagrad", "TR RMSprop", "TR uniform"]
    loss_lines = [t for t in fig.data if t.yaxis in (None, "y") and t.fill != "toself"]
    key = {t.name: t.legendgroup for t in fig.data if t.showlegend and t.legendgroup.startswith("tr")}
    assert {t.name: t.legendgroup for t in loss_lines} == key  # clicking the entry hides the loss curve too


def test_log_tick_labels_keep_apart_on_small_panels():
    """A test loss from 0.45 to 2.2 got 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.5, 2 (labels overlapping on a 200 px panel);
    the TR-internals loss panel (about 170 px) labelled each of five decades."""
    ticks = charts.log_ticks([0.45, 2.2])
    logs = np.log10(ticks["tickvals"])
    assert 2 <= len(logs) <= 6 and np.diff(logs).min() >= 0.15 * np.log10(2.2 / 0.45)
    assert 1.0 in ticks["tickvals"]
    assert charts.log_ticks([1e-5, 1.0], max_labels=4)["dtick"] == 2
    api = FakeApi()
    runs = [api.add_run("tr-uniform")]
    frames = {r["id"]: pd.DataFrame(metric_points(40, tr=True)) for r in runs}
    loss = series.build_curves(runs, frames, x="step", y="train_loss")
    loss["y"] = np.geomspace(1.0, 1e-5, len(loss))
    fig = charts.tr_internals_figure(series.tr_frame(runs, frames, x="step"), loss, x_title="Steps", log_y=True)
    assert fig.layout.yaxis.dtick == 2
