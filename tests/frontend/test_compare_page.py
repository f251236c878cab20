"""AppTest: the Compare page draws loss, evaluation, TR internals and reconstructions from the API's points."""
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import APP, figures, texts
from tests.frontend.fakes import eval_points, metric_points


def _names(fig):
    return [t.get("name") for t in fig["data"]]


def test_empty_state(api, open_page):
    at = open_page("compare")
    assert not at.exception
    assert "No runs yet" in texts(at.info)


def test_comparison_charts_with_consistent_colours(api, open_page):
    a = api.add_run("tr-rmsprop", steps=120)
    b = api.add_run("adam", steps=120)
    api.add_comparison("fmnist mlp", [a, b])
    at = open_page("compare")
    assert not at.exception
    loss, evals, tr = figures(at)[:3]  # then the paired-difference chart of the results section
    assert {"TR RMSprop", "Adam"} <= set(_names(loss))
    assert loss["layout"]["xaxis"]["title"]["text"].startswith("Backprops")
    assert loss["layout"]["yaxis"]["type"] == "log"
    colour = {t["name"]: t["line"]["color"] for t in loss["data"]}
    for fig in (evals, tr):
        for t in fig["data"]:
            if t.get("name") in colour and "line" in t:
                assert t["line"]["color"] == colour[t["name"]]
    assert [a["text"] for a in evals["layout"]["annotations"]] == ["Test loss", "Test accuracy"]
    assert "rejected step" in _names(tr)
    assert at.dataframe[0].value["status"].tolist() == ["completed", "completed"]
    assert "uirevision" in loss["layout"]


def test_x_axis_log_and_smoothing_controls(api, open_page):
    a = api.add_run("sgd", steps=100)
    api.add_comparison("one", [a])
    at = open_page("compare")
    raw_last = figures(at)[0]["data"][0]["y"][-1]
    at.button_group(key="cmp_axis").set_value("epochs").run()
    at.toggle(key="cmp_log").set_value(False).run()
    fig = figures(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"] == "Epochs"
    assert fig["layout"]["yaxis"]["type"] == "linear"
    at.slider(key="cmp_smooth").set_value(0.0).run()
    assert figures(at)[0]["data"][0]["y"][-1] < raw_last  # less smoothing follows the decreasing loss


def test_several_seeds_draw_mean_and_std_bands(api, open_page):
    runs = [api.add_run("tr-uniform", seed=s, steps=60) for s in (0, 1, 2)]
    api.add_comparison("seeds", runs)
    at = open_page("compare")
    loss = figures(at)[0]
    assert any(t.get("fill") == "toself" for t in loss["data"])
    assert any("mean ± std, 3 seeds" in (t.get("name") or "") for t in loss["data"])
    at.toggle(key="cmp_bands").set_value(False).run()
    assert not any(t.get("fill") == "toself" for t in figures(at)[0]["data"])
    # TR internals default to one seed
    assert at.multiselect(key="cmp_tr_runs").value == [runs[0]["id"]]


def test_live_update_fetches_only_new_points(api, open_page):
    a = api.add_run("tr-adagrad", status="running", steps=40)
    b = api.add_run("sgd", status="running", steps=40)
    api.add_comparison("live", [a, b])
    at = open_page("compare")
    assert len(figures(at)[0]["data"][0]["x"]) == 40
    api.points[a["id"]] += metric_points(20, tr=True, start=41)
    api.eval_records[a["id"]] += eval_points([60], tr=True)
    api.calls.clear()
    at.run()
    batches = [c for c in api.calls if c[0] == "metrics_batch"]
    assert batches == [("metrics_batch", ((a["id"], 40), (b["id"], 40)))]  # one request per refresh, new points only
    assert not any(c[0] in ("metrics", "evals") for c in api.calls)
    tr_loss = [t for t in figures(at)[0]["data"] if t["name"] == "TR Adagrad"][0]
    assert len(tr_loss["x"]) == 60


def test_waiting_and_failed_runs_are_explained(api, open_page):
    q = api.add_run("tr-rmsprop", status="queued")
    f = api.add_run("adam", status="failed", error="CUDA error: out of memory; use device cpu")
    api.add_comparison("troubled", [q, f])
    at = open_page("compare")
    assert "#2 Adam (seed 0) failed: CUDA error: out of memory" in texts(at.error)
    assert "Waiting for the first training steps" in texts(at.info)


def test_reconstruction_grid_original_then_one_column_per_run(api, open_page):
    runs = [api.add_run(o, steps=40, model="autoencoder") for o in ("tr-rmsprop", "sgd", "tr-uniform", "adagrad")]
    api.add_comparison("ae", runs)
    at = open_page("compare")
    assert not at.exception
    assert "Reconstructions" in texts(at.subheader)
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert headers == ["**Original**", "**SGD**", "**Adagrad**", "**TR uniform**", "**TR RMSprop**"]
    assert len(at.get("image")) == 5
    assert ("reconstruction_png", (runs[0]["id"], 40)) in api.calls
    at.toggle(key="cmp_recon_latest").set_value(False).run()
    at.select_slider(key="cmp_recon_budget").set_value(20).run()  # 20 backprops: SGD/Adagrad step 20, TR step 0
    assert ("reconstruction_png", (runs[1]["id"], 20)) in api.calls
    assert ("reconstruction_png", (runs[0]["id"], 0)) in api.calls


def test_pick_individual_runs(api, open_page):
    a = api.add_run("adam", steps=30)
    api.add_run("sgd", steps=30)
    at = open_page("compare")
    assert at.radio(key="cmp_source").value == "Runs"
    assert at.multiselect(key="cmp_runs").value == [2]
    at.multiselect(key="cmp_runs").set_value([a["id"], 2]).run()
    assert {"Adam", "SGD"} <= set(_names(figures(at)[0]))


def test_live_charts_keep_their_identity_across_updates(api, open_page):
    a = api.add_run("tr-uniform", status="running", steps=30)
    api.add_comparison("live", [a])
    at = open_page("compare")
    ids = [e.proto.id for e in at.get("bidi_component")]
    assert len(ids) == 3
    api.points[a["id"]] += metric_points(10, tr=True, start=31)
    at.run()
    assert [e.proto.id for e in at.get("bidi_component")] == ids  # same element: Plotly.react keeps the zoom
    assert figures(at)[0]["layout"]["uirevision"]


def test_queued_tr_runs_are_waited_for_not_called_missing(api, open_page):
    a = api.add_run("sgd", status="running", steps=30, model="autoencoder", hyperparameters={"lr": 0.05})
    b = api.add_run("tr-rmsprop", status="queued", model="autoencoder")
    api.add_comparison("ae", [a, b])
    at = open_page("compare")
    assert "Waiting for the trust-region runs" in texts(at.info)
    assert at.multiselect(key="cmp_tr_runs").value == [b["id"]]
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert headers == ["**Original**", "**SGD**", "**TR RMSprop**"]  # short headers, not the full run labels


def test_without_static_serving_the_charts_fall_back_to_st_plotly_chart(api, open_page, monkeypatch):
    monkeypatch.setattr("frontend.live_chart.static_serving", lambda: False)
    a = api.add_run("tr-uniform", steps=30)
    api.add_comparison("plain", [a])
    at = open_page("compare")
    assert len(at.get("plotly_chart")) == 3 and not at.get("bidi_component")
    assert {"TR uniform"} <= set(_names(figures(at)[0]))


def test_short_labels_config_diff_and_raw_evaluations(api, open_page):
    preset = {"eta1": 1e-5, "eta2": 0.9, "gamma2": 1.25, "radius": 1e-3}
    a = api.add_run("tr-uniform", steps=60, hyperparameters=preset)
    a["label"] = "TR uniform eta1=1e-05 eta2=0.9 gamma2=1.25 radius=0.001 (seed 0)"
    b = api.add_run("sgd", steps=60, hyperparameters={"lr": 0.1})
    c = api.add_run("sgd", steps=60, hyperparameters={"lr": 0.01})
    api.add_comparison("labels", [a, b, c])
    at = open_page("compare")
    loss, evals = figures(at)[:2]
    assert set(_names(loss)) == {"TR uniform", "SGD lr=0.1", "SGD lr=0.01"}
    tr = [t for t in loss["data"] if t["name"] == "TR uniform"][0]
    assert "eta1" not in tr["hovertemplate"]  # the hover stays short; the full setting is in the status table
    status = at.dataframe[0].value.set_index("id")
    assert "eta1=1e-05 eta2=0.9 gamma2=1.25 radius=0.001" in status.loc[a["id"], "settings"]
    diff = at.dataframe[1].value
    assert {"optimizer", "lr", "eta1"} <= set(diff.columns) and diff["run"].tolist()[0] == "TR uniform"
    raw = [e["test_loss"] for e in api.eval_records[a["id"]]]
    tr_eval = [t for t in evals["data"] if t["name"] == "TR uniform" and t.get("yaxis", "y") == "y"][0]
    assert tr_eval["y"] == raw  # smoothing (default 0.9) leaves evaluations alone


def test_backprops_plus_forwards_axis(api, open_page):
    a = api.add_run("tr-rmsprop", steps=60)
    b = api.add_run("adam", steps=60)
    api.add_comparison("cost", [a, b])
    at = open_page("compare")
    at.button_group(key="cmp_axis").set_value("backprops + forwards").run()
    assert not at.exception
    loss, evals, tr = figures(at)[:3]
    assert "⅓ backprop" in loss["layout"]["xaxis"]["title"]["text"]
    tr_curve = next(t for t in loss["data"] if t.get("name") == "TR RMSprop")
    assert max(tr_curve["x"]) > 6 * 60  # backprops (6 per fake TR step) plus a third of the forwards
    assert any(len(t.get("x") or []) for t in evals["data"])  # evaluations placed on the derived axis too


def test_detail_for_an_x_range_requeries_that_range(api, open_page):
    a = api.add_run("sgd", steps=100)
    api.add_comparison("zoom", [a])
    at = open_page("compare")
    api.calls.clear()
    at.number_input(key="cmp_zoom_lo").set_value(20.0)
    at.number_input(key="cmp_zoom_hi").set_value(40.0)
    at.button(key="cmp_zoom_go").click().run()
    assert not at.exception
    assert [c for c in api.calls if c[0] == "metrics"] == [("metrics", (a["id"], 18))]  # from the step before 20
    assert any("Loaded" in c.value for c in at.caption)
    at.number_input(key="cmp_zoom_lo").set_value(50.0)
    at.number_input(key="cmp_zoom_hi").set_value(10.0)
    at.button(key="cmp_zoom_go").click().run()
    assert "Invalid x-range" in " ".join(e.value for e in at.error)


def test_deep_link_restores_the_view_and_the_url_follows_the_controls(api, open_page):
    runs = [api.add_run(o, seed=s, steps=60) for o in ("tr-uniform", "sgd") for s in (0, 1)]
    api.add_comparison("first", runs[:2])
    api.add_comparison("second", runs)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.query_params.update({"cmp": "1", "x": "epochs", "log": "0", "bands": "0", "smooth": "0.3",
                            "tr": str(runs[0]["id"]), "xr": "0,0.5"})
    at.switch_page("views/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="cmp_comparison").value == 1  # not the newest, which is the default
    assert at.button_group(key="cmp_axis").value == "epochs"
    assert at.toggle(key="cmp_log").value is False and at.toggle(key="cmp_bands").value is False
    assert at.slider(key="cmp_smooth").value == 0.3
    assert at.multiselect(key="cmp_tr_runs").value == [runs[0]["id"]]
    loss = figures(at)[0]
    assert loss["layout"]["xaxis"]["title"]["text"] == "Epochs" and loss["layout"]["yaxis"]["type"] == "linear"
    assert loss["layout"]["xaxis"]["range"] == [0, 0.5]
    at.toggle(key="cmp_log").set_value(True).run()
    at.slider(key="cmp_smooth").set_value(0.5).run()
    params = {k: at.query_params[k] for k in at.query_params}
    flat = {k: v[-1] if isinstance(v, list) else v for k, v in params.items()}
    assert flat["cmp"] == "1" and flat["x"] == "epochs" and flat["smooth"] == "0.5" and "log" not in flat
    assert flat["xr"] == "0,0.5" and flat["tr"] == str(runs[0]["id"])


def test_a_malformed_deep_link_falls_back_to_defaults(api, open_page):
    a = api.add_run("sgd", steps=30)
    api.add_comparison("one", [a])
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.query_params.update({"cmp": "99999", "x": "parsecs", "smooth": "nan", "xr": "5,1", "runs": "1;drop"})
    at.switch_page("views/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="cmp_comparison").value == 1
    assert at.button_group(key="cmp_axis").value == "backprops" and at.slider(key="cmp_smooth").value == 0.9


def test_chart_data_download_is_offered(api, open_page):
    a = api.add_run("sgd", steps=30)
    api.add_comparison("one", [a])
    at = open_page("compare")
    assert "Download chart data (CSV)" in [b.proto.label for b in at.get("download_button")]


def test_runs_mode_groups_by_the_api_group_key_issue_19(api, open_page):
    """Issue 19, as a new user tried it in Runs mode: 4 TR-uniform runs from two experiments (two of them seed 0)
    are two groups of 2 seeds, not "4 seeds"; SGD on MNIST and on Fashion-MNIST are two curves; Adam with raw and
    with standardised inputs are two curves."""
    tr = [api.add_run("tr-uniform", seed=s, steps=40) for s in (0, 1)]
    tr += [api.add_run("tr-uniform", seed=s, steps=40, train_subset=512) for s in (0, 2)]
    sgd = [api.add_run("sgd", steps=40, dataset="mnist"), api.add_run("sgd", steps=40)]
    adam = [api.add_run("adam", steps=40), api.add_run("adam", steps=40, input_scaling="unit")]
    at = open_page("compare")
    assert at.radio(key="cmp_source").value == "Runs"
    at.multiselect(key="cmp_runs").set_value([r["id"] for r in tr + sgd + adam]).run()
    assert not at.exception
    names = [n for n in _names(figures(at)[0]) if n]
    bands = [n for n in names if "mean ± std" in n and not n.endswith(") ± std")]  # the lines, not their bands
    assert len(bands) == 2 and all("2 seeds" in n for n in bands) and not any("4 seeds" in n for n in names)
    assert len([n for n in names if n.startswith("SGD")]) == 2
    assert len([n for n in names if n.startswith("Adam")]) == 2


def test_status_table_shows_every_run_of_a_seven_optimizer_comparison(api, open_page, monkeypatch):
    """The status table was capped at 260 px: a 7-run comparison hid its last run behind a scroll."""
    import streamlit

    heights = []
    real = streamlit.dataframe

    def recording(data, *args, **kwargs):
        heights.append((len(getattr(data, "data", data)), kwargs.get("height")))  # a Styler holds its frame in .data
        return real(data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "dataframe", recording)
    runs = [api.add_run(o, steps=20) for o in ("tr-uniform", "tr-adagrad", "tr-rmsprop", "sgd", "adagrad", "rmsprop",
                                               "adam")]
    api.add_comparison("paper", runs)
    at = open_page("compare")
    assert not at.exception
    rows, height = heights[0]
    assert rows == 7 and height >= 38 + 35 * 7


def test_log_x_axis_on_every_chart_and_in_the_link(api, open_page):
    """Only the y axis could be logarithmic."""
    a, b = api.add_run("tr-uniform", steps=40), api.add_run("adam", steps=40)
    api.add_comparison("logx", [a, b])
    at = open_page("compare")
    assert all(f["layout"]["xaxis"].get("type") != "log" for f in figures(at)[:3])
    at.toggle(key="cmp_logx").set_value(True).run()
    assert not at.exception
    loss, evals, tr = figures(at)[:3]
    assert loss["layout"]["xaxis"]["type"] == "log" and evals["layout"]["xaxis"]["type"] == "log"
    assert evals["layout"]["xaxis2"]["type"] == "log" and tr["layout"]["xaxis"]["type"] == "log"
    assert at.query_params.get("logx") in ("1", ["1"])
