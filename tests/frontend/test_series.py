"""Tests for frontend.series: merging, downsampling, smoothing, seed bands, tables."""
import numpy as np
import pandas as pd
import pytest

from frontend import series
from tests.frontend.fakes import FakeApi, metric_points


def test_append_points_merges_in_step_order_without_duplicates():
    df = series.append_points(None, [{"step": 2, "v": 2.0}, {"step": 1, "v": 1.0}])
    df = series.append_points(df, [{"step": 2, "v": 20.0}, {"step": 3, "v": 3.0}])
    assert df["step"].tolist() == [1, 2, 3]
    assert df["v"].tolist() == [1.0, 20.0, 3.0]
    assert series.append_points(df, []) is df
    assert series.append_points(None, []).empty
    with pytest.raises(ValueError, match="step"):
        series.append_points(None, [{"x": 1}])


def test_downsample_keeps_ends_and_spikes():
    y = np.ones(10_000)
    y[1234] = 100.0
    y[8765] = -50.0
    idx = series.downsample_minmax(y, 200)
    assert len(idx) <= 202
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert 1234 in idx and 8765 in idx
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(series.downsample_minmax(np.arange(5.0), 10), np.arange(5))
    with_nan = np.full(1000, np.nan)
    assert len(series.downsample_minmax(with_nan, 50)) > 0
    with pytest.raises(ValueError):
        series.downsample_minmax(y, 2)


def test_ema_matches_a_naive_debiased_average():
    y = np.array([1.0, 3.0, np.nan, 2.0, 5.0])
    out = series.ema(y, 0.5)
    # naive reference
    vals, ref = [], []
    for v in y:
        if np.isnan(v):
            ref.append(np.nan)
            continue
        vals.append(v)
        w = np.array([0.5 ** (len(vals) - 1 - i) for i in range(len(vals))])
        ref.append(float(np.sum(w * np.array(vals)) / np.sum(w)))
    np.testing.assert_allclose(out, ref)
    np.testing.assert_array_equal(series.ema(y, 0.0), y)
    with pytest.raises(ValueError, match="smoothing"):
        series.ema(y, 1.0)


def _runs_with_frames(seeds=(0,), optimizers=("tr-rmsprop", "adam"), steps=100):
    api = FakeApi()
    runs, frames = [], {}
    for opt in optimizers:
        for s in seeds:
            r = api.add_run(opt, seed=s, steps=steps)
            runs.append(r)
            pts = metric_points(steps, tr=opt.startswith("tr-"), scale=1.0 + 0.1 * s)
            frames[r["id"]] = pd.DataFrame(pts)
    return runs, frames


def test_build_curves_single_seed_one_curve_per_optimizer():
    runs, frames = _runs_with_frames()
    curves = series.build_curves(runs, frames, x="backprops", y="train_loss")
    assert list(curves.columns) == ["series", "label", "optimizer", "x", "y", "lo", "hi", "seeds", "config"]
    assert set(curves["label"]) == {"TR RMSprop", "Adam"}
    assert curves["lo"].isna().all()
    adam = curves[curves["optimizer"] == "adam"]
    assert adam["x"].tolist() == list(range(1, 101))


def test_build_curves_aggregates_seeds_into_mean_and_std():
    runs, frames = _runs_with_frames(seeds=(0, 1, 2), optimizers=("sgd",))
    curves = series.build_curves(runs, frames, x="step", y="train_loss", max_points=50)
    assert curves["series"].nunique() == 1
    assert "3 seeds" in curves["label"].iloc[0]
    stack = np.stack([frames[r["id"]]["train_loss"].to_numpy() for r in runs])
    first = curves.iloc[0]
    assert first["x"] == 1
    assert first["y"] == pytest.approx(stack[:, 0].mean())
    assert first["hi"] - first["y"] == pytest.approx(stack[:, 0].std())
    assert len(curves) == 50
    separate = series.build_curves(runs, frames, x="step", y="train_loss", aggregate=False)
    assert separate["series"].nunique() == 3 and separate["lo"].isna().all()


def test_build_curves_smoothing_and_missing_data():
    runs, frames = _runs_with_frames(optimizers=("adam",))
    raw = series.build_curves(runs, frames, x="step", y="train_loss")
    smooth = series.build_curves(runs, frames, x="step", y="train_loss", smoothing=0.9)
    assert smooth["y"].iloc[-1] > raw["y"].iloc[-1]  # lags behind a decreasing curve
    assert series.build_curves(runs, {}, x="step", y="train_loss").empty
    assert series.build_curves(runs, frames, x="step", y="test_accuracy").empty


def test_series_labels_disambiguate_hyperparameters():
    api = FakeApi()
    a = api.add_run("sgd", hyperparameters={"lr": 0.1})
    b = api.add_run("sgd", hyperparameters={"lr": 0.01})
    c = api.add_run("sgd", seed=1, hyperparameters={"lr": 0.01})
    groups = series.group_runs([a, b, c])
    assert len(groups) == 2
    frames = {r["id"]: pd.DataFrame(metric_points(10, tr=False)) for r in (a, b, c)}
    labels = set(series.build_curves([a, b, c], frames, x="step", y="train_loss")["label"])
    assert any("lr=0.1" in s for s in labels) and any("lr=0.01" in s for s in labels)


def test_tr_frame_only_tr_runs_and_thinning_keeps_rejections():
    runs, frames = _runs_with_frames(steps=3000)
    tr = series.tr_frame(runs, frames, x="backprops", max_points=400)
    assert set(tr["optimizer"]) == {"tr-rmsprop"}
    assert len(tr) < 1000
    full = frames[runs[0]["id"]]
    n_rejected = int((full["accepted"] == False).sum())  # noqa: E712
    assert int((tr["accepted"] == False).sum()) >= min(n_rejected, 100)  # noqa: E712
    assert {"radius", "rho", "cg_iterations", "cg_exit", "accepted"} <= set(tr.columns)
    assert series.tr_frame([r for r in runs if r["optimizer"] == "adam"], frames, x="step").empty


def test_runs_table_and_budget_text():
    api = FakeApi()
    api.add_run("adam", status="failed", error="CUDA out of memory")
    api.add_run("tr-uniform", status="queued", progress=0.0)
    table = series.runs_table(list(api.runs.values()), {})
    assert table["id"].tolist() == [2, 1]
    assert table.loc[1, "error"] == "CUDA out of memory"
    assert table.loc[0, "started"] == "waiting"
    assert table.loc[1, "budget"] == "1 epochs"
    assert series.format_budget({"backprops": 5000, "seconds": 30}) == "5000 backprops or 30 s"


def test_pick_reconstruction_and_thresholds():
    assert series.pick_reconstruction([0, 50, 100], [0, 300, 600], None) == 100
    assert series.pick_reconstruction([0, 50, 100], [0, 300, 600], 400) == 50
    assert series.pick_reconstruction([50], [300], 10) is None
    assert series.pick_reconstruction([], [], None) is None
    api = FakeApi()
    a = api.add_run("tr-uniform")
    b = api.add_run("tr-rmsprop", hyperparameters={"eta1": 1e-5, "eta2": 0.9})
    assert series.tr_thresholds([a]) == (0.01, 0.95)
    assert series.tr_thresholds([b]) == (1e-5, 0.9)
    assert series.tr_thresholds([a, b]) is None


def test_compact_labels_name_the_optimizer_and_only_what_differs():
    api = FakeApi()
    a = api.add_run("sgd", hyperparameters={"lr": 0.05})
    b = api.add_run("adam")
    c = api.add_run("adam", hyperparameters={"lr": 0.01})
    a["label"] = "SGD lr=0.05 (seed 0)"
    c["label"] = "Adam lr=0.01 (seed 0)"
    labels = series.compact_labels([a, b, c], {"sgd": "SGD", "adam": "Adam"})
    assert labels == {a["id"]: "SGD", b["id"]: "Adam", c["id"]: "Adam lr=0.01"}


def test_ema_x_matches_a_naive_reference_and_ema_on_a_regular_grid():
    x = np.array([0.0, 1.0, 3.0, 3.5, 7.0, 8.0])
    y = np.array([1.0, 3.0, np.nan, 2.0, 5.0, 4.0])
    w, unit = 0.6, 2.0
    ref = []
    for i in range(len(x)):  # naive: point j weighs (1 - d_j) * prod of later decays up to i
        if np.isnan(y[i]):
            ref.append(np.nan)
            continue
        ok = [j for j in range(i + 1) if not np.isnan(y[j])]
        d = {j: (w if k == 0 else w ** ((x[j] - x[ok[k - 1]]) / unit)) for k, j in enumerate(ok)}
        wt = [(1 - d[j]) * np.prod([d[k] for k in ok if j < k <= i]) for j in ok]
        ref.append(float(np.dot(wt, y[ok]) / np.sum(wt)))
    np.testing.assert_allclose(series.ema_x(x, y, w, unit), ref)
    grid, full = np.arange(6.0), np.array([1.0, 3.0, 4.0, 2.0, 5.0, 4.0])
    np.testing.assert_allclose(series.ema_x(grid, full, w, 1.0), series.ema(full, w))
    with pytest.raises(ValueError, match="smoothing unit"):
        series.ema_x(x, y, w, 0.0)


def test_smoothing_is_by_x_distance_so_sparse_runs_do_not_lag():
    """A TR run with 16 points per epoch and a first-order one with 600 on the same falling curve: the same
    smoothing must leave them close, not the sparse one far behind (per-point EMA: 1.35 vs 0.9 raw)."""
    api = FakeApi()
    dense, sparse = api.add_run("sgd"), api.add_run("tr-uniform")
    curve = lambda e: 0.9 + 2.0 * np.exp(-3 * e)  # noqa: E731
    xd, xs = np.linspace(0, 2, 1200), np.linspace(0, 2, 32)
    frames = {dense["id"]: pd.DataFrame({"epoch": xd, "train_loss": curve(xd)}),
              sparse["id"]: pd.DataFrame({"epoch": xs, "train_loss": curve(xs)})}
    out = series.build_curves([dense, sparse], frames, x="epoch", y="train_loss", smoothing=0.9)
    end = out.groupby("optimizer")["y"].last()
    assert abs(end["tr-uniform"] - end["sgd"]) < 0.01
    assert end["tr-uniform"] - curve(2.0) < 0.02  # and neither is far from the raw value
    per_point_gap = series.ema(curve(xs), 0.9)[-1] - series.ema(curve(xd), 0.9)[-1]
    assert per_point_gap > 0.05  # what the old per-point smoothing did: the sparse run lagged behind


def test_labels_are_short_with_the_full_config_in_hover_and_a_diff_table():
    """Preset runs were labelled "TR uniform eta1=1e-05 eta2=0.9 gamma2=1.25 radius=0.001": too long."""
    api = FakeApi()
    preset = {"eta1": 1e-5, "eta2": 0.9, "gamma2": 1.25, "radius": 1e-3}
    tr = [api.add_run("tr-uniform", seed=s, hyperparameters=preset) for s in (0, 1)]
    for r in tr:
        r["label"] = f"TR uniform eta1=1e-05 eta2=0.9 gamma2=1.25 radius=0.001 (seed {r['seed']})"
    sgd_a = api.add_run("sgd", hyperparameters={"lr": 0.1})
    sgd_b = api.add_run("sgd", hyperparameters={"lr": 0.01})
    adam = api.add_run("adam", hyperparameters={"lr": 0.001})
    runs = [*tr, sgd_a, sgd_b, adam]
    frames = {r["id"]: pd.DataFrame(metric_points(10, tr=r["optimizer"].startswith("tr-"))) for r in runs}
    curves = series.build_curves(runs, frames, x="step", y="train_loss")
    assert set(curves["label"]) == {"TR uniform (mean ± std, 2 seeds)", "SGD lr=0.1", "SGD lr=0.01", "Adam"}
    tr_config = curves[curves["optimizer"] == "tr-uniform"]["config"].iloc[0]
    assert "eta1=1e-05 eta2=0.9 gamma2=1.25 radius=0.001" in tr_config and "seeds 0, 1" in tr_config
    assert series.compact_labels(runs, {"sgd": "SGD", "tr-uniform": "TR uniform", "adam": "Adam"})[sgd_b["id"]] \
        == "SGD lr=0.01"
    diff = series.config_diff([tr[0], sgd_a, sgd_b])
    assert list(diff.columns) == ["id", "run", "optimizer", "eta1", "eta2", "gamma2", "radius", "lr"]
    assert diff["lr"].tolist() == ["—", "0.1", "0.01"] and diff["eta1"].tolist() == ["1e-05", "—", "—"]
    assert "seed" not in series.config_diff([sgd_a, sgd_b]).columns
    assert list(series.config_diff(tr).columns) == ["id", "run", "seed"]


def test_eta_from_the_recent_rate_else_the_average_since_start():
    from datetime import datetime

    run = {"status": "running", "progress": 0.5, "started_at": "2026-01-02T10:00:00Z"}
    start = datetime.fromisoformat("2026-01-02T10:00:00+00:00").timestamp()
    assert series.eta_seconds(run, [], start + 100) == pytest.approx(100)  # 50% in 100 s: 100 s to go
    # recently twice as fast: 10% in the last 10 s -> 50% left takes 50 s
    history = [(start + 90, 0.4), (start + 95, 0.45), (start + 100, 0.5)]
    assert series.eta_seconds(run, history, start + 100) == pytest.approx(50)
    stale = [(start - 1000, 0.0), (start + 100, 0.5)]  # older than the window: falls back to the average
    assert series.eta_seconds(run, stale, start + 100) == pytest.approx(100)
    assert series.eta_seconds({**run, "status": "queued"}, history, start + 100) is None
    assert series.eta_seconds({**run, "progress": 0.0}, [], start + 100) is None
    assert series.format_duration(3725) == "1 h 2 min" and series.format_duration(65) == "1 min 05 s"


def test_filter_runs_by_fields_tags_and_text():
    api = FakeApi()
    a = api.add_run("sgd", status="completed")
    b = api.add_run("tr-uniform", status="running", model="autoencoder")
    c = api.add_run("adam", status="failed")
    a["tags"], b["tags"] = ["baseline"], ["baseline", "fig3"]
    c["note"] = "out of memory on the GPU"
    runs = [a, b, c]
    ids = lambda rs: [r["id"] for r in rs]  # noqa: E731
    assert ids(series.filter_runs(runs, {"status": ["completed", "running"]})) == [a["id"], b["id"]]
    assert ids(series.filter_runs(runs, {"tag": ["fig3"]})) == [b["id"]]
    assert ids(series.filter_runs(runs, {"model": ["mlp"], "optimizer": ["adam", "sgd"]})) == [a["id"], c["id"]]
    assert ids(series.filter_runs(runs, {"status": []}, "MEMORY")) == [c["id"]]
    assert ids(series.filter_runs(runs, {}, f"#{b['id']}")) == [b["id"]]
    with pytest.raises(ValueError, match="Invalid filter"):
        series.filter_runs(runs, {"colour": ["red"]})


def test_results_column_and_finals_table_mean_std_by_setting():
    api = FakeApi()
    runs = [api.add_run("sgd", seed=s) for s in (0, 1, 2)] + [api.add_run("adam"), api.add_run("adam", seed=1,
                                                                                               status="running")]
    runs.append(api.add_run("adam", seed=2, status="cancelled"))
    for r, acc, loss in zip(runs, (0.8, 0.82, 0.84, 0.9, None, 0.5), (0.5, 0.45, 0.4, 0.3, None, 1.0)):
        r["summary"] = {"final_test_accuracy": acc, "final_test_loss": loss} if acc else None
    table = series.runs_table(runs)
    assert table.set_index("id").loc[runs[0]["id"], "test acc"] == 0.8
    assert pd.isna(table.set_index("id").loc[runs[4]["id"], "test acc"])
    finals = series.finals_table(runs).set_index("setting")
    assert finals.loc["SGD", "n"] == 3 and finals.loc["SGD", "seeds"] == "0, 1, 2"
    assert finals.loc["SGD", "test acc mean"] == pytest.approx(0.82)
    assert finals.loc["SGD", "test acc std"] == pytest.approx(np.std([0.8, 0.82, 0.84], ddof=1))
    # the running one waits; the cancelled one's last evaluation is not a final result
    assert finals.loc["Adam", "n"] == 1 and pd.isna(finals.loc["Adam", "test acc std"])


def test_chart_data_csv_has_every_drawn_point():
    import io

    runs, frames = _runs_with_frames(seeds=(0, 1), optimizers=("sgd",), steps=20)
    curves = series.build_curves(runs, frames, x="step", y="train_loss")
    text = series.chart_data_csv({"training loss": curves, "test loss": curves.iloc[0:0]}, x_name="step")
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == ["chart", "series", "seeds", "step", "y", "lo", "hi"]
    assert len(back) == len(curves) and set(back["chart"]) == {"training loss"}
    np.testing.assert_allclose(back["y"], curves["y"])
    assert series.chart_data_csv({}, x_name="epoch").startswith("chart,series,seeds,epoch")


def test_with_x_derives_backprops_plus_a_third_of_forwards():
    import pandas as pd

    from frontend.series import FORWARD_COST, X_AXES, with_x

    assert X_AXES["backprops + forwards"][0] == "cost" and FORWARD_COST == 1 / 3
    m = pd.DataFrame({"step": [1, 2, 3], "backprops": [6, 12, 18], "forwards": [1, 2, 3]})
    np.testing.assert_allclose(with_x(m, "cost")["cost"], [6 + 1 / 3, 12 + 2 / 3, 19])
    ev = pd.DataFrame({"step": [0, 2], "backprops": [0, 12], "test_loss": [2.0, 1.0]})
    np.testing.assert_allclose(with_x(ev, "cost", m)["cost"], [0.0, 12 + 2 / 3])
    assert "cost" not in with_x(ev, "cost").columns  # nothing to derive it from: left for the caller to skip
    assert with_x(m, "backprops") is m


def test_trust_region_runs_are_told_by_the_family_the_api_gives():
    assert series.is_trust_region({"optimizer": "tr-uniform", "family": "second-order"})
    assert not series.is_trust_region({"optimizer": "adam", "family": "first-order"})
    # a renamed TR method is still one: the name is not consulted
    assert series.is_trust_region({"optimizer": "my-newton", "family": "second-order"})
    assert not series.is_trust_region({"optimizer": "tr-uniform"})


def test_the_ui_thins_exactly_as_the_api_does():
    from trainer.downsample import minmax_indices

    rng = np.random.default_rng(3)
    y = rng.normal(size=5000)
    y[rng.integers(0, 5000, 50)] = np.nan
    for m in (4, 7, 100, 999):
        np.testing.assert_array_equal(series.downsample_minmax(y, m), minmax_indices(y, m))


def test_ema_matches_the_naive_debiased_loop():
    def naive(y, w):
        out, acc, norm = np.full(len(y), np.nan), 0.0, 0.0
        for i, v in enumerate(y):
            if np.isnan(v):
                continue
            acc, norm = w * acc + (1 - w) * v, w * norm + (1 - w)
            out[i] = acc / norm
        return out

    rng = np.random.default_rng(7)
    y = rng.normal(size=400)
    y[[0, 5, 6, 100, 399]] = np.nan
    for w in (0.3, 0.9, 0.99):
        np.testing.assert_allclose(series.ema(y, w), naive(y, w), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_groups_are_the_api_group_key_issue_19_cases():
    """Issue 19, tried as a new user: runs of different experiments, datasets or input scalings are never one
    curve; a repeated seed is drawn apart, not averaged as another seed; a band stops at the shortest run."""
    api = FakeApi()
    # 4 TR-uniform runs from two experiments (two of them seed 0)
    a = [api.add_run("tr-uniform", seed=s) for s in (0, 1)]
    b = [api.add_run("tr-uniform", seed=s, train_subset=512) for s in (0, 2)]
    # SGD on MNIST and on Fashion-MNIST; Adam with standardised and with raw inputs
    sgd = [api.add_run("sgd", dataset="mnist"), api.add_run("sgd")]
    adam = [api.add_run("adam"), api.add_run("adam", input_scaling="unit")]
    runs = [*a, *b, *sgd, *adam]
    groups = series.group_runs(runs)
    assert len(groups) == 2 + 2 + 2
    assert series.series_key(a[0]) == a[0]["group_key"] == series.series_key(a[1])
    frames = {r["id"]: pd.DataFrame(metric_points(10 if r is not a[1] else 6, tr=True)) for r in runs}
    curves = series.build_curves(runs, frames, x="step", y="train_loss")
    tr_labels = sorted(set(curves[curves["optimizer"] == "tr-uniform"]["label"]))
    assert len(tr_labels) == 2 and all("2 seeds" in lab for lab in tr_labels)
    assert any("cut at the shortest run" in lab for lab in tr_labels)  # a[1] ends at step 6
    assert curves[curves["optimizer"] == "tr-uniform"]["x"].max() == 10  # group b runs to 10
    assert curves[curves["optimizer"] == "sgd"]["series"].nunique() == 2
    assert curves[curves["optimizer"] == "adam"]["series"].nunique() == 2
    # the same setting and seed twice: 2 distinct seeds in the band, the repeat drawn on its own and flagged
    again = api.add_run("tr-uniform", seed=0)
    frames[again["id"]] = pd.DataFrame(metric_points(10, tr=True, scale=3.0))
    curves = series.build_curves([*a, again], frames, x="step", y="train_loss")
    labels = set(curves["label"])
    assert any("2 seeds" in lab for lab in labels) and not any("3 seeds" in lab for lab in labels)
    assert any(f"seed 0 repeated, run {again['id']}" in lab for lab in labels)
    finals = [dict(r, summary={"final_test_accuracy": 0.5, "final_test_loss": 1.0}) for r in (*a, again)]
    assert series.finals_table(finals)["n"].tolist() == [2]


def test_relabel_replaces_longest_group_names_first_and_once():
    labels = {"TR uniform inputs=unit": "TR uniform", "SGD lr=0.1 inputs=unit": "SGD lr=0.1", "Adam": "Adam"}
    text = "SGD lr=0.1 inputs=unit vs TR uniform inputs=unit: not resolved"
    assert series.relabel(text, labels) == "SGD lr=0.1 vs TR uniform: not resolved"
    assert series.relabel("no names here", {}) == "no names here"
