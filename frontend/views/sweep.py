"""Sweep page: launch a hyperparameter sweep from a preset, watch it, see criterion vs hyperparameter, promote."""
from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.live_chart import PLOTLY_CONFIG
from frontend.results_charts import sweep_figure, sweep_heatmap_figure, sweep_parcoords_figure
from frontend.settings import get_settings
from frontend.sweep_form import CRITERIA, default_name, entry_label, sweep_request
from frontend.ui import PAGES, call, client, meta

settings = get_settings()
api = client()
st.title("Sweep")
st.caption("Tune every optimizer on a grid (ordinary runs, grouped), pick each one's winner by a stated "
           "criterion, then promote the winners to a comparison on fresh seeds: a fair comparison by construction.")

info = meta()
labels = {o["name"]: o["label"] for o in info["optimizers"]}
presets = {p["name"]: p for p in info.get("sweep_presets") or []}

with st.expander("New sweep", expanded=not call(api.list_sweeps)["items"]):
    if not presets:
        st.info("The API offers no sweep presets.")
    else:
        name = st.selectbox("Preset", list(presets), key="sw_preset", format_func=lambda n: presets[n]["label"])
        preset = presets[name]
        st.caption(preset.get("notes", ""))
        entries = [entry_label(e, labels) for e in preset["optimizers"]]
        st.session_state.setdefault("sw_entries", entries)
        st.multiselect("Optimizers to sweep", entries, key="sw_entries")
        c = st.columns(3)
        c[0].number_input("Step size from", min_value=1e-8, max_value=100.0, value=1e-4, format="%g", key="sw_low")
        c[1].number_input("to", min_value=1e-8, max_value=100.0, value=1.0, format="%g", key="sw_high")
        c[2].number_input("Points per decade", min_value=1, max_value=10, value=2, key="sw_per_decade",
                          help="2 = half decades: 1e-4, 3e-4, 1e-3, …")
        c = st.columns(4)
        kinds = ["epochs", "backprops", "seconds"]
        kind = c[0].radio("Budget", kinds, key="sw_budget_kind", horizontal=True)
        default_budget = float(preset["budget"].get(kind, 1.0 if kind == "epochs" else 1000.0))
        c[1].number_input(f"{kind} per run", min_value=0.001, max_value=1e9, value=default_budget, key="sw_budget")
        c[2].number_input("Training subset (0 = all)", min_value=0, max_value=10_000_000, value=0, key="sw_subset")
        c[3].text_input("Tuning seeds", value="0", key="sw_seeds")
        c = st.columns(3)
        crit = c[0].selectbox("Winner by", list(CRITERIA), key="sw_criterion", format_func=CRITERIA.get)
        c[1].number_input("Smooth: last k evals", min_value=1, max_value=100, value=3, key="sw_k")
        c[2].number_input("Loss target", min_value=0.0, max_value=1e6, value=0.0, key="sw_target",
                          disabled=crit != "backprops_to_target")
        st.text_input("Name", key="sw_name", placeholder=default_name(preset, st.session_state["sw_low"],
                                                                      st.session_state["sw_high"],
                                                                      st.session_state["sw_per_decade"]))
        if st.button("Launch sweep", key="sw_launch", type="primary", icon=":material/rocket_launch:"):
            state = {"entries": st.session_state["sw_entries"], "low": st.session_state["sw_low"],
                     "high": st.session_state["sw_high"], "per_decade": st.session_state["sw_per_decade"],
                     "budget_kind": kind, "budget": st.session_state["sw_budget"],
                     "train_subset": st.session_state["sw_subset"], "seeds": st.session_state["sw_seeds"],
                     "criterion": crit, "k": st.session_state["sw_k"], "target": st.session_state["sw_target"],
                     "name": st.session_state["sw_name"]}
            try:
                body = sweep_request(preset, state, labels)
            except ValueError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                created = call(api.create_sweep, body, stop=False)
                if created:
                    st.session_state["sw_selected"] = created["id"]
                    st.success(f"Sweep #{created['id']} queued: {len(created['run_ids'])} runs.",
                               icon=":material/check_circle:")

sweeps = {s["id"]: s for s in call(api.list_sweeps)["items"]}
if not sweeps:
    st.info("No sweeps yet: launch one above.", icon=":material/tune:")
    st.stop()
if st.session_state.get("sw_selected") not in sweeps:
    st.session_state["sw_selected"] = max(sweeps)
# the newest status of each sweep: the live view's (written by the fragment below) over the list's, which is only
# fetched when the whole page runs ("· queued" beside "6/6 runs finished" came from that older list)
LIVE = "sw_live_status"
live_status: dict[int, str] = st.session_state.setdefault(LIVE, {})


def _status(i: int) -> str:
    return live_status.get(i) or sweeps[i]["status"]


sid = st.selectbox("Sweep", sorted(sweeps, reverse=True), key="sw_selected",
                   format_func=lambda i: f"#{i} {sweeps[i]['name']} · {_status(i)}")
active_at_start = _status(sid) in ("queued", "running")


def _promote(view: dict[str, Any]) -> None:
    st.subheader("Promote the winners")
    preset = next(iter(presets.values()), {})
    c = st.columns([1, 3])
    n = c[0].number_input("Fresh seeds", min_value=1, max_value=50, value=5, key="sw_n_seeds")
    extra_default = [o for o in preset.get("promote_with", []) if o in labels]
    extras = c[1].multiselect("Also compare", list(labels), default=extra_default, key="sw_extras",
                              format_func=labels.get, help="e.g. the trust-region methods at their defaults")
    missing = sum(p.get("needs_rerun", False) for o in view["optimizers"] for p in o["points"])
    anyway = missing and st.checkbox(f"Promote anyway, without the {missing} point(s) that have no result",
                                     key="sw_allow_missing", help="their winner may be missing")
    ready = view["status"] not in ("queued", "running") and all(o["best"] for o in view["optimizers"]) \
        and (not missing or anyway)
    if st.button("Promote winners", key="sw_promote", type="primary", disabled=not ready,
                 icon=":material/trending_up:"):
        body = {"n_seeds": int(n), "extra_optimizers": [{"name": e} for e in extras]}
        out = call(api.promote_sweep, view["id"], {**body, "allow_missing": True} if missing else body, stop=False)
        if out:
            # Kept in the session, not only drawn in this run: the live fragment's tick or the rerun that follows
            # the sweep's end can start another run right after the click and would otherwise wipe the message.
            st.session_state["sw_promoted"] = {"sweep": view["id"], "comparison": out["id"],
                                               "runs": len(out["run_ids"])}
    flash = st.session_state.get("sw_promoted")
    if flash and flash["sweep"] == view["id"]:
        st.success(f"Comparison #{flash['comparison']} queued with {flash['runs']} runs.",
                   icon=":material/check_circle:")
        view = {**view, "promoted_comparison_id": flash["comparison"]}
    promoted = view.get("promoted_comparison_id")
    if promoted and st.button(f"Open comparison #{promoted} on Compare", key="sw_open", icon=":material/monitoring:"):
        st.session_state["compare_target"] = {"comparison": promoted}
        st.switch_page(PAGES["compare"])


def _point_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def _rerun(view: dict[str, Any]) -> None:
    """Grid points without a result (a tuning run interrupted, cancelled or failed): named, with a re-run button."""
    unrun = [f"{o['label']} {_point_text(p['point'])}" for o in view["optimizers"] for p in o["points"]
             if p.get("needs_rerun")]
    if not unrun:
        return
    st.warning(f"{len(unrun)} grid point(s) have no result (a tuning run was interrupted, cancelled or failed): "
               f"{'; '.join(unrun[:10])}{' …' if len(unrun) > 10 else ''}. The winner may be among them: re-run "
               "them before promoting.", icon=":material/report:")
    if st.button(f"Re-run {len(unrun)} point(s)", key="sw_rerun", icon=":material/replay:"):
        out = call(api.rerun_sweep, view["id"], stop=False)
        if out:
            st.session_state["sw_reran"] = {"sweep": view["id"], "runs": len(out["run_ids"])}
            st.rerun()


def _show() -> None:
    view = call(api.get_sweep, sid)
    shown = _status(sid)
    live_status[sid] = view["status"]
    if view["status"] != shown:
        st.rerun()  # the selector and the page around this fragment show the new status too
    reran = st.session_state.get("sw_reran")
    if reran and reran["sweep"] == view["id"]:
        st.success(f"Re-running {reran['runs']} run(s).", icon=":material/replay:")
    done, total = view["runs_finished"], view["runs_total"]
    st.progress(done / total if total else 0.0, text=f"{done}/{total} runs finished · {view['status']} · winner by "
                f"{view['criterion']['label']}")
    rows = []
    cols = st.columns(2)
    for i, entry in enumerate(view["optimizers"]):
        with cols[i % 2]:
            st.plotly_chart(sweep_figure(entry, criterion_label=view["criterion"]["label"]),
                            key=f"sw_chart_{entry['index']}", config=PLOTLY_CONFIG)
            if len(entry.get("space") or {}) == 2:  # two hyperparameters: the grid as a heatmap
                st.plotly_chart(sweep_heatmap_figure(entry, criterion_label=view["criterion"]["label"]),
                                key=f"sw_heatmap_{entry['index']}", config=PLOTLY_CONFIG)
            if len(entry.get("space") or {}) > 1:  # several hyperparameters: every grid point on parallel axes
                st.plotly_chart(sweep_parcoords_figure(entry, criterion_label=view["criterion"]["label"]),
                                key=f"sw_parcoords_{entry['index']}", config=PLOTLY_CONFIG)
            for flag in entry["edge_flags"]:
                st.warning(f"{entry['label']}: {flag}", icon=":material/open_in_full:")
            if entry.get("message"):
                st.error(f"{entry['label']}: {entry['message']}", icon=":material/error:")
        best = entry["best"]
        rows.append({"optimizer": entry["label"], "winner": ", ".join(f"{k}={v:g}" if isinstance(v, float)
                                                                       else f"{k}={v}" for k, v in best["point"].items())
                     if best else "—", "criterion": best["value"] if best else None,
                     "finished": entry["finished"]})
    st.dataframe(rows, hide_index=True, key="sw_winners")
    _rerun(view)
    st.caption(f"The sweep's runs are comparison #{view['comparison_id']} (live curves on Compare).")
    _promote(view)


st.fragment(run_every=settings.refresh_seconds if active_at_start else None)(_show)()
