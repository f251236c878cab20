"""Runs page: every run and comparison with status and progress; cancel, delete, open in Compare."""
from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import series
from frontend.api_client import ApiError, ApiUnreachable
from frontend.settings import get_settings
from frontend.ui import PAGES, call, client, run_title, show_api_error

api = client()
st.title("Runs")

first = call(api.list_runs, limit=500)
if not first["items"]:
    st.info("No runs yet. Launch one (or a comparison of several optimizers) and it shows up here.",
            icon=":material/inbox:")
    st.page_link(PAGES["launch"], label="Go to Launch", icon=":material/rocket_launch:")
    st.stop()
active_at_start = any(series.is_active(r) for r in first["items"])


def _act(action: str, ids: list[int], what: str) -> None:
    """Cancel or delete runs / comparisons; report each outcome in words."""
    done, problems = [], []
    fn = {"cancel": api.cancel_run, "delete": api.delete_run, "delete-comparison": api.delete_comparison}[action]
    for i in ids:
        try:
            fn(i)
            done.append(i)
        except ApiError as exc:
            problems.append(f"{what} #{i}: " + "; ".join(exc.messages))
        except ApiUnreachable as exc:
            show_api_error(exc)
            return
    verb = {"cancel": "Cancel requested for", "delete": "Deleted", "delete-comparison": "Deleted"}[action]
    if done:
        st.session_state["runs_notice"] = f"{verb} {what} " + ", ".join(f"#{i}" for i in done) + "."
    st.session_state["runs_problems"] = problems


@st.fragment(run_every=get_settings().refresh_seconds * 2 if active_at_start else None)
def tables() -> None:
    runs = call(api.list_runs, limit=500)["items"]
    comparisons = call(api.list_comparisons)["items"]
    names = {c["id"]: c["name"] for c in comparisons}
    counts = {s: sum(r["status"] == s for r in runs) for s in ("queued", "running", "completed", "failed")}
    st.caption(f"{len(runs)} runs · {counts['running']} running · {counts['queued']} queued · "
               f"{counts['completed']} completed · {counts['failed']} failed")

    if notice := st.session_state.pop("runs_notice", None):
        st.success(notice, icon=":material/check:")
    for problem in st.session_state.pop("runs_problems", []):
        st.error(problem, icon=":material/block:")

    table = series.runs_table(runs, names)
    if not table["error"].astype(bool).any():
        table = table.drop(columns="error")
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={
            "id": st.column_config.NumberColumn("id", format="#%d", width="small"),
            "progress": st.column_config.ProgressColumn("progress", help="fraction of the budget used",
                                                        min_value=0.0, max_value=1.0, format="percent"),
            "error": st.column_config.TextColumn("error", width="large"),
        })

    failed = [r for r in runs if r.get("error") and r["status"] in ("failed", "diverged", "interrupted")]
    for r in failed[:5]:
        st.error(f"{run_title(r)} {r['status']}: {r['error']}", icon=":material/error:")

    by_id = {r["id"]: r for r in runs}
    c1, c2 = st.columns([3, 3], vertical_alignment="bottom")
    picked = c1.multiselect("Runs to act on", list(by_id), key="runs_picked",
                            format_func=lambda i: run_title(by_id[i]))
    b1, b2, b3 = c2.columns(3)
    any_active = any(series.is_active(by_id[i]) for i in picked)
    b1.button("Cancel", key="runs_cancel", disabled=not picked or not any_active, icon=":material/stop_circle:",
              on_click=_act, args=("cancel", [i for i in picked if series.is_active(by_id[i])], "run"))
    b2.button("Delete", key="runs_delete", disabled=not picked or any_active, icon=":material/delete:",
              on_click=_act, args=("delete", picked, "run"),
              help="Cancel active runs first; deleting removes their points too.")
    if b3.button("Compare", key="runs_compare", disabled=not picked, icon=":material/monitoring:"):
        st.session_state["compare_target"] = {"runs": picked}
        st.switch_page(PAGES["compare"])

    if comparisons:
        st.subheader("Comparisons")
        rows: list[dict[str, Any]] = [{"id": c["id"], "name": c["name"], "status": c.get("status", ""),
                                       "runs": len(c.get("run_ids") or []),
                                       "created": series.format_time(c.get("created_at"))}
                                      for c in sorted(comparisons, key=lambda c: -c["id"])]
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={"id": st.column_config.NumberColumn("id", format="#%d", width="small")})
        cmp_by_id = {c["id"]: c for c in comparisons}
        d1, d2 = st.columns([3, 3], vertical_alignment="bottom")
        cid = d1.selectbox("Comparison", sorted(cmp_by_id, reverse=True), key="runs_comparison",
                           format_func=lambda i: f"#{i} {cmp_by_id[i]['name']}")
        e1, e2 = d2.columns(2)
        if e1.button("Open", key="runs_open_cmp", icon=":material/monitoring:"):
            st.session_state["compare_target"] = {"comparison": cid}
            st.switch_page(PAGES["compare"])
        e2.button("Delete", key="runs_delete_cmp", icon=":material/delete:", on_click=_act,
                  args=("delete-comparison", [cid], "comparison"),
                  help="Only when none of its runs is queued or running.")

    if active_at_start and not any(series.is_active(r) for r in runs):
        st.rerun()


tables()
