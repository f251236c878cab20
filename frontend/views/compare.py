"""Compare page: live loss, evaluation, trust-region internals and reconstructions for chosen runs."""
from __future__ import annotations

import time
from typing import Any, Mapping

import streamlit as st

from frontend import charts, deeplink, series
from frontend.api_client import ApiError
from frontend.images import upscale_png
from frontend.live import LiveData, chart_fields
from frontend.live_chart import live_plotly_chart
from frontend.results_panel import results_section
from frontend.settings import get_settings
from frontend.ui import PAGES, call, client, meta, run_title

settings = get_settings()
api = client()
st.title("Compare")

comparisons = sorted(call(api.list_comparisons)["items"], key=lambda c: -c["id"])
all_runs = sorted(call(api.list_runs, limit=500)["items"], key=lambda r: -r["id"])
if not comparisons and not all_runs:
    st.info("No runs yet. Launch a run or a comparison and its curves appear here while it trains.",
            icon=":material/monitoring:")
    st.page_link(PAGES["launch"], label="Go to Launch", icon=":material/rocket_launch:")
    st.stop()

DEFAULT_VIEW = {"axis": "backprops", "log": True, "log_x": False, "bands": True, "smoothing": 0.9}
_STATE_KEYS = {"axis": "cmp_axis", "log": "cmp_log", "log_x": "cmp_logx", "bands": "cmp_bands",
               "smoothing": "cmp_smooth", "tr_runs": "cmp_tr_runs"}

# A reloaded or pasted URL (one this session did not write) sets the view; a jump from the Runs page wins.
url_view = deeplink.parse_view(st.query_params.to_dict(), axes=series.X_AXES)
if st.query_params.to_dict() != st.session_state.get("_cmp_url_written"):
    if "comparison" in url_view:
        st.session_state["cmp_source"] = "Comparison"
        st.session_state["cmp_comparison"] = url_view["comparison"]
    elif "runs" in url_view:
        st.session_state["cmp_source"] = "Runs"
        st.session_state["cmp_runs"] = url_view["runs"]
    for name, key in _STATE_KEYS.items():
        if name in url_view:
            st.session_state[key] = url_view[name]
    if "xrange" in url_view:
        st.session_state["cmp_xrange"] = (url_view.get("axis", DEFAULT_VIEW["axis"]), url_view["xrange"])
for name in ("axis", "log", "log_x", "bands", "smoothing"):
    st.session_state.setdefault(_STATE_KEYS[name], DEFAULT_VIEW[name])


def _sync_url() -> None:
    """Write the current view into the URL (only what differs from the defaults)."""
    state = st.session_state
    source = state.get("cmp_source")
    view = {"comparison": state.get("cmp_comparison") if source == "Comparison" else None,
            "runs": state.get("cmp_runs") if source == "Runs" else None,
            **{name: state.get(key) for name, key in _STATE_KEYS.items()}}
    xr = state.get("cmp_xrange")
    if xr and xr[0] == state.get("cmp_axis"):
        view["xrange"] = xr[1]
    params = deeplink.format_view(view, DEFAULT_VIEW)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    state["_cmp_url_written"] = params


target = st.session_state.pop("compare_target", None)
if target and "comparison" in target:
    st.session_state["cmp_source"] = "Comparison"
    st.session_state["cmp_comparison"] = target["comparison"]
elif target and "runs" in target:
    st.session_state["cmp_source"] = "Runs"
    st.session_state["cmp_runs"] = list(target["runs"])
st.session_state.setdefault("cmp_source", "Comparison" if comparisons else "Runs")

top = st.columns([1, 4])
source = top[0].radio("Show", ["Comparison", "Runs"], key="cmp_source", horizontal=True)
if source == "Comparison":
    if not comparisons:
        top[1].info("No comparisons yet: pick runs instead, or launch several optimizers at once.")
        st.stop()
    by_id = {c["id"]: c for c in comparisons}
    if st.session_state.get("cmp_comparison") not in by_id:
        st.session_state["cmp_comparison"] = comparisons[0]["id"]
    cid = top[1].selectbox("Comparison", list(by_id), key="cmp_comparison",
                           format_func=lambda i: f"#{i} {by_id[i]['name']} · {len(by_id[i]['run_ids'])} runs")
    selection: tuple[Any, ...] = ("comparison", cid)
else:
    run_by_id = {r["id"]: r for r in all_runs}
    st.session_state["cmp_runs"] = [i for i in st.session_state.get("cmp_runs", [all_runs[0]["id"]]) if i in run_by_id]
    ids = top[1].multiselect("Runs", list(run_by_id), key="cmp_runs",
                             format_func=lambda i: run_title(run_by_id[i]))
    if not ids:
        st.info("Pick one or more runs.")
        st.stop()
    selection = ("runs", tuple(sorted(ids)))


def current_runs() -> list[dict[str, Any]]:
    """Fresh statuses for the selection (one request for a comparison)."""
    if selection[0] == "comparison":
        return list(call(api.get_comparison, selection[1]).get("runs") or [])
    return [call(api.get_run, i) for i in selection[1]]


# one row that wraps on narrow windows (fixed columns cut the x-axis choices and the toggle labels at 800 px)
controls = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
axis = controls.segmented_control("x-axis", list(series.X_AXES), key="cmp_axis", required=True,
                                  width="content") or "backprops"
log_y = controls.toggle("Log scale", key="cmp_log", width="content")
# a zoom range is in the axis' own units (log10 on a log axis): it does not carry over a switch of scale
log_x = controls.toggle("Log x", key="cmp_logx", width="content", help="Logarithmic x axis (the cost axis).",
                        on_change=lambda: st.session_state.pop("cmp_xrange", None))
bands = controls.toggle("Mean ± std", key="cmp_bands", help="Aggregate seeds of the same setting.", width="content")
smoothing = controls.slider("Smoothing", 0.0, 0.99, key="cmp_smooth", step=0.01, width=260,
                               help="Debiased exponential moving average of the training loss by distance along "
                                    "the x-axis: the weight applies per 1/300 of the axis, the same window for "
                                    "every run however often it logs (0 = raw). Evaluation curves are never "
                                    "smoothed.")

x_col, x_title = series.X_AXES[axis]
_sync_url()
stores: dict[Any, LiveData] = st.session_state.setdefault("live_stores", {})
store = stores.setdefault(selection, LiveData(max_points=settings.max_points))
models = {m["name"]: m for m in meta()["models"]}
order = {o["name"]: i for i, o in enumerate(meta()["optimizers"])}
opt_labels = {o["name"]: o["label"] for o in meta()["optimizers"]}
runs0 = current_runs()
active_at_start = any(series.is_active(r) for r in runs0)

with st.expander("Detail for an x-range", icon=":material/zoom_in:"):
    st.caption("Each run keeps a bounded, downsampled history. Zooming in a chart stays in the browser, so enter "
               f"the range you look at ({x_title}) to load it at full resolution.")
    zoom_cols = st.columns([2, 2, 1.2])
    zoom_lo = zoom_cols[0].number_input("From", key="cmp_zoom_lo", value=0.0, format="%g")
    zoom_hi = zoom_cols[1].number_input("To", key="cmp_zoom_hi", value=0.0, format="%g")
    if zoom_cols[2].button("Load detail", key="cmp_zoom_go", icon=":material/download:"):
        try:
            got = call(store.zoom, api, [r["id"] for r in runs0], x=x_col, lo=zoom_lo, hi=zoom_hi)
            st.caption(f"Loaded {got:,} points in [{zoom_lo:g}, {zoom_hi:g}].")
        except ValueError as exc:
            st.error(str(exc), icon=":material/error:")


def _etas(runs: list[Mapping[str, Any]]) -> dict[int, float | None]:
    """ETA per running run from the progress seen on this page (see series.eta_seconds)."""
    now = time.time()
    history: dict[int, list[tuple[float, float]]] = st.session_state.setdefault("cmp_progress_history", {})
    out = {}
    for r in runs:
        if r.get("status") == "running":
            samples = history.setdefault(r["id"], [])
            samples.append((now, float(r.get("progress") or 0.0)))
            del samples[:-120]
            out[r["id"]] = series.eta_seconds(r, samples, now)
    return out


STATUS_ROWS = 20  # rows of the status table shown without scrolling


def _status_section(runs: list[Mapping[str, Any]]) -> None:
    table = series.runs_table(runs, etas=_etas(runs))[["id", "run", "status", "progress", "ETA", "device",
                                                        "started"]]
    if not table["ETA"].astype(bool).any():
        table = table.drop(columns="ETA")
    short = series.compact_labels(runs, opt_labels)
    table["run"] = [short[i] for i in table["id"]]
    # the full configuration of each run: the charts' hover shows only the short label and the value
    by_id = {r["id"]: r for r in runs}
    table["settings"] = [series.describe_config(by_id[i], opt_labels) for i in table["id"]]
    # every run in view up to STATUS_ROWS (a 7-optimizer comparison hid a run behind a scroll at 260 px)
    st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * min(len(table), STATUS_ROWS),
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                            max_value=1.0, format="percent"),
                                "id": st.column_config.NumberColumn("id", format="#%d", width="small"),
                                "settings": st.column_config.TextColumn(
                                    "settings", help="the run's full configuration", width="large")})
    for r in runs:
        if r.get("status") in ("failed", "diverged", "interrupted") and r.get("error"):
            st.error(f"{run_title(r)} {r['status']}: {r['error']}", icon=":material/error:")
        elif r.get("status") == "diverged":
            st.warning(f"{run_title(r)} diverged (the training loss became non-finite).", icon=":material/warning:")
    if len(runs) > 1:
        with st.expander("Configuration: what differs between these runs"):
            diff = series.config_diff(runs, opt_labels)
            if diff.shape[1] > 2:
                st.dataframe(diff, hide_index=True, width="stretch",
                             column_config={"id": st.column_config.NumberColumn("id", format="#%d", width="small")})
            else:
                st.caption("These runs share every setting.")


def _reconstructions(runs: list[Mapping[str, Any]]) -> None:
    seeds = sorted({r.get("seed", 0) for r in runs})
    if len(seeds) > 1:
        seed = st.selectbox("Seed shown", seeds, key="cmp_recon_seed")
        runs = [r for r in runs if r.get("seed", 0) == seed]
    runs = sorted(runs, key=lambda r: (order.get(r.get("optimizer"), 99), r["id"]))
    listings = {r["id"]: store.reconstructions.get(r["id"]) or {} for r in runs}
    budgets = sorted({b for li in listings.values() for b in li.get("backprops") or []})
    if not budgets:
        st.caption("No reconstructions yet: they are saved at every evaluation.")
        return
    latest = st.toggle("Latest evaluation", value=True, key="cmp_recon_latest")
    budget = None
    if not latest and len(budgets) > 1:
        budget = st.select_slider("At a budget of (backprops)", options=budgets, value=budgets[-1],
                                  key="cmp_recon_budget", format_func=lambda b: f"{b:,.0f}")
    headers = series.compact_labels(runs, opt_labels)
    cols = st.columns(len(runs) + 1)
    source = next((r for r in runs if listings[r["id"]].get("has_original")), None)
    with cols[0]:
        st.markdown("**Original**")
        if source is not None:
            st.image(upscale_png(store.image(api, source["id"], "original"), 2))
    for col, r in zip(cols[1:], runs):
        li = listings[r["id"]]
        step = series.pick_reconstruction(li.get("steps") or [], li.get("backprops") or [], budget)
        with col:
            st.markdown(f"**{headers[r['id']]}**")
            if step is None:
                st.caption("none within this budget")
                continue
            try:
                st.image(upscale_png(store.image(api, r["id"], step), 2))
            except ApiError as exc:
                st.caption("; ".join(exc.messages))


def _tr_section(tr_runs: list[Mapping[str, Any]], uirev: str) -> None:
    """Radius, ρ and CG iterations of the chosen TR runs (one seed each by default)."""
    first_seed = min(r.get("seed", 0) for r in tr_runs)
    by_id = {r["id"]: r for r in tr_runs}
    if st.session_state.get("cmp_tr_runs") is None or not set(st.session_state["cmp_tr_runs"]) <= set(by_id):
        st.session_state["cmp_tr_runs"] = [r["id"] for r in tr_runs if r.get("seed", 0) == first_seed]
        _sync_url()
    short = series.compact_labels(tr_runs, opt_labels)
    chosen = st.multiselect("TR runs", list(by_id), key="cmp_tr_runs", format_func=lambda i: f"#{i} {short[i]}",
                            on_change=_sync_url)
    picked = [by_id[i] for i in chosen]
    tr = series.tr_frame(picked, store.metrics, x=x_col, max_points=settings.plot_points, optimizer_labels=opt_labels)
    if tr.empty and any(series.is_active(r) for r in picked):
        st.info("Waiting for the trust-region runs to take their first steps…", icon=":material/hourglass_top:")
        return
    tr_loss = series.build_curves(picked, store.metrics, x=x_col, y="train_loss", smoothing=smoothing,
                                  max_points=settings.plot_points, aggregate=False, optimizer_labels=opt_labels)
    live_plotly_chart(_zoom(charts.tr_internals_figure(tr, tr_loss, x_title=x_title, log_y=log_y, uirevision=uirev,
                                                       thresholds=series.tr_thresholds(picked), log_x=log_x)),
                      key="chart_tr", on_xrange=_on_zoom)


def _zoom(fig: Any) -> Any:
    """Apply the x range from the URL / the last zoom (on this x-axis) to a figure."""
    xr = st.session_state.get("cmp_xrange")
    if xr and xr[0] == axis and fig.data:
        fig.update_xaxes(range=list(xr[1]), autorange=False)
    return fig


def _on_zoom(xrange: list[float] | None) -> None:
    """The user zoomed (or autoscaled) a chart: remember it for the other charts and the URL."""
    if xrange is None:
        st.session_state.pop("cmp_xrange", None)
    else:
        st.session_state["cmp_xrange"] = (st.session_state.get("cmp_axis"), xrange)
    _sync_url()


def _render(runs: list[dict[str, Any]]) -> None:
    _status_section(runs)
    if not any(store.metrics.get(r["id"]) is not None for r in runs):
        waiting = any(series.is_active(r) for r in runs)
        st.info("Waiting for the first training steps…" if waiting else "These runs recorded no steps.",
                icon=":material/hourglass_top:" if waiting else ":material/info:")
        return
    uirev = f"{selection}-{axis}-{log_y}-{log_x}"
    loss = series.build_curves(runs, store.metrics, x=x_col, y="train_loss", smoothing=smoothing,
                               max_points=settings.plot_points, aggregate=bands, optimizer_labels=opt_labels)
    st.subheader("Training loss")
    live_plotly_chart(_zoom(charts.curve_figure(loss, x_title=x_title, y_title="minibatch loss", log_y=log_y,
                                                uirevision=uirev, log_x=log_x)), key="chart_loss", on_xrange=_on_zoom)
    # evaluation curves are never smoothed: each point is a full evaluation, not a noisy minibatch
    test_loss = series.build_curves(runs, store.evals, x=x_col, y="test_loss", max_points=settings.plot_points,
                                    aggregate=bands, smoothing=0.0, optimizer_labels=opt_labels, reference=store.metrics)
    test_acc = series.build_curves(runs, store.evals, x=x_col, y="test_accuracy", max_points=settings.plot_points,
                                   aggregate=bands, smoothing=0.0, optimizer_labels=opt_labels, reference=store.metrics)
    st.subheader("Evaluation")
    live_plotly_chart(_zoom(charts.eval_figure(test_loss, test_acc, x_title=x_title, log_y=log_y,
                                               uirevision=uirev, log_x=log_x)), key="chart_eval", on_xrange=_on_zoom)

    st.download_button("Download chart data (CSV)", key="cmp_download",
                       data=lambda: series.chart_data_csv({"training loss": loss, "test loss": test_loss,
                                                           "test accuracy": test_acc}, x_name=x_col),
                       file_name=f"trustlab-{selection[0]}-{'-'.join(map(str, selection[1:]))}-{x_col}.csv"
                       .replace(" ", "").replace("(", "").replace(")", "").replace(",", "-"),
                       mime="text/csv", icon=":material/download:", on_click="ignore",
                       help="The curves as drawn (smoothed, downsampled, seed means ± std), one row per point. "
                            "A run's raw records: Runs page → select it → Metrics CSV / JSON.")

    tr_runs = [r for r in runs if series.is_trust_region(r)]
    if tr_runs:
        st.subheader("Trust-region internals")
        _tr_section(tr_runs, uirev)

    recon = [r for r in runs if models.get((r.get("config") or {}).get("model"), {}).get("task") == "reconstruction"]
    if recon:
        st.subheader("Reconstructions")
        _reconstructions(recon)


def _tick() -> None:
    runs = current_runs()
    has_recon = any(models.get((r.get("config") or {}).get("model"), {}).get("task") == "reconstruction"
                    for r in runs)
    call(store.refresh, api, runs, reconstructions=has_recon, fields=lambda r: chart_fields(r, x_col))
    _render(runs)
    if active_at_start and not any(series.is_active(r) for r in runs):
        st.rerun()  # everything finished: one full rerun turns the polling off


live = st.fragment(run_every=settings.refresh_seconds if active_at_start else None)(_tick)
live()
if selection[0] == "comparison":  # results table, verdicts, exports and paired chart (issue 9)
    results_section(selection[1], x_col=x_col, x_title=x_title, labels=series.group_labels(runs0, opt_labels))
