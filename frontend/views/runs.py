"""Runs page: every run and comparison with status, progress, ETA and results; filter, tag, cancel, delete
(after a confirmation that lists what will go), download, open in Compare."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import streamlit as st

from frontend import series
from frontend.api_client import ApiError, ApiUnreachable
from frontend.settings import get_settings
from frontend.signin import signed_in_user
from frontend.ui import PAGES, call, client, meta, run_title, show_api_error

api = client()
st.title("Runs")
me = (signed_in_user() or {}).get("name")
MINE = "runs_mine"  # the "mine" filter: only the signed-in user's runs and comparisons (the API filters)


def _owner() -> str | None:
    return me if st.session_state.get(MINE) else None


first = call(api.list_runs, limit=500)
if not first["items"]:
    st.info("No runs yet. Launch one (or a comparison of several optimizers) and it shows up here.",
            icon=":material/inbox:")
    st.page_link(PAGES["launch"], label="Go to Launch", icon=":material/rocket_launch:")
    st.stop()
active_at_start = any(series.is_active(r) for r in first["items"])
opt_labels = {o["name"]: o["label"] for o in meta()["optimizers"]}

SELECTED = "runs_selected"  # set of run ids, kept across refreshes and filter changes
CONFIRM = "runs_confirm"  # ("run" | "comparison", [ids], [lines]) awaiting a second click
MAX_CHECKBOXES = 200


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
    if action == "delete":
        st.session_state[SELECTED] = set(st.session_state.get(SELECTED, set())) - set(done)
        for i in done:
            st.session_state.pop(f"runs_sel_{i}", None)
    st.session_state["runs_problems"] = problems
    st.session_state.pop(CONFIRM, None)


def _ask(kind: str, ids: list[int], lines: list[str]) -> None:
    st.session_state[CONFIRM] = (kind, list(ids), list(lines))


def _toggle(run_id: int) -> None:
    chosen = set(st.session_state.get(SELECTED, set()))
    (chosen.add if st.session_state.get(f"runs_sel_{run_id}") else chosen.discard)(run_id)
    st.session_state[SELECTED] = chosen


def _select(ids: list[int], on: bool) -> None:
    chosen = set(st.session_state.get(SELECTED, set()))
    chosen = chosen | set(ids) if on else chosen - set(ids)
    st.session_state[SELECTED] = chosen
    for i in ids:
        st.session_state[f"runs_sel_{i}"] = on


def _save_annotations(kind: str, obj_id: int, tags_key: str, note_key: str) -> None:
    """PATCH tags (comma-separated in the text box) and note; the API's refusal is shown in words."""
    tags = [t.strip() for t in str(st.session_state.get(tags_key) or "").split(",") if t.strip()]
    note = str(st.session_state.get(note_key) or "")
    fn: Callable[..., Any] = api.annotate_run if kind == "run" else api.annotate_comparison
    try:
        fn(obj_id, tags=tags, note=note)
        st.session_state[f"runs_saved_{kind}_{obj_id}"] = (True, f"Saved the tags and note of {kind} #{obj_id}.")
    except ApiError as exc:
        st.session_state[f"runs_saved_{kind}_{obj_id}"] = (False, f"{kind} #{obj_id}: " + "; ".join(exc.messages))
    except ApiUnreachable as exc:
        show_api_error(exc)


def _etas(runs: list[Mapping[str, Any]]) -> dict[int, float | None]:
    """ETA per running run from the progress this page has seen over the last minutes."""
    now = time.time()
    history: dict[int, list[tuple[float, float]]] = st.session_state.setdefault("runs_progress_history", {})
    out = {}
    for r in runs:
        if r.get("status") != "running":
            history.pop(r["id"], None)
            continue
        samples = history.setdefault(r["id"], [])
        samples.append((now, float(r.get("progress") or 0.0)))
        del samples[:-60]
        out[r["id"]] = series.eta_seconds(r, samples, now)
    return out


def _filters(runs: list[Mapping[str, Any]], names: Mapping[int, str]) -> list[Mapping[str, Any]]:
    """Filter widgets (they wrap on narrow windows); returns the runs that match."""
    fmt: dict[str, Callable[[Any], str]] = {
        "optimizer": lambda v: opt_labels.get(v, str(v)),
        "comparison": lambda v: f"#{v} {names.get(v, '')}" if v is not None else "none",
    }
    chosen: dict[str, list[Any]] = {}
    with st.container(horizontal=True, gap="small"):
        search = st.text_input("Search", key="runs_search", placeholder="#id, label, tag or note", width=220)
        for field in series.RUN_FILTERS:
            options = sorted({v for r in runs for v in series.filter_values(r, field)},
                             key=lambda v: (v is None, str(v)))
            chosen[field] = st.multiselect(field.capitalize(), options, key=f"runs_f_{field}", width=180,
                                           format_func=fmt.get(field, str), placeholder="any")
    return series.filter_runs(runs, chosen, search or "")


def _confirmation(by_id: Mapping[int, Mapping[str, Any]]) -> None:
    """The pending deletion: exactly what will go, and two buttons."""
    kind, ids, lines = st.session_state[CONFIRM]
    with st.container(border=True):
        if kind == "run":
            st.warning(f"**Delete {len(ids)} run{'s' if len(ids) != 1 else ''} and all their points?** "
                       "This cannot be undone.", icon=":material/delete_forever:")
        else:
            st.warning(f"**Delete comparison #{ids[0]} and its {len(lines)} runs with all their points?** "
                       "This cannot be undone.", icon=":material/delete_forever:")
        st.markdown("\n".join(f"- {line}" for line in lines) or "- (no runs)")
        c1, c2 = st.columns(2)
        action = "delete" if kind == "run" else "delete-comparison"
        c1.button(f"Yes, delete {'these runs' if kind == 'run' else 'the comparison'}", key="runs_confirm_yes",
                  type="primary", icon=":material/delete:", on_click=_act, args=(action, ids, kind))
        c2.button("Keep them", key="runs_confirm_no", on_click=lambda: st.session_state.pop(CONFIRM, None))


def _run_line(r: Mapping[str, Any]) -> str:
    acc = series.final_result(r, "test_accuracy")
    extra = f", final test accuracy {acc:.1%}" if acc is not None else ""
    return f"{run_title(r)} — {r.get('status')}, {r.get('last_step') or 0:,} steps{extra}"


def _downloads(r: Mapping[str, Any]) -> None:
    rid = r["id"]
    with st.container(horizontal=True, gap="small"):
        st.download_button("Metrics CSV", data=lambda: api.export(rid, "csv"), file_name=f"run-{rid}-metrics.csv",
                           mime="text/csv", key=f"runs_dl_csv_{rid}", icon=":material/download:", on_click="ignore")
        st.download_button("Evaluations CSV", data=lambda: api.export_evals_csv(rid),
                           file_name=f"run-{rid}-evals.csv", mime="text/csv", key=f"runs_dl_evals_{rid}",
                           icon=":material/download:", on_click="ignore")
        st.download_button("Everything (JSON)", data=lambda: api.export(rid, "json"), file_name=f"run-{rid}.json",
                           mime="application/json", key=f"runs_dl_json_{rid}", icon=":material/download:",
                           on_click="ignore")


def _annotations(kind: str, obj: Mapping[str, Any]) -> None:
    """Tags (comma-separated) and a note, saved with PATCH."""
    oid = obj["id"]
    tags_key, note_key = f"runs_tags_{kind}_{oid}", f"runs_note_{kind}_{oid}"
    st.session_state.setdefault(tags_key, ", ".join(obj.get("tags") or []))
    st.session_state.setdefault(note_key, obj.get("note") or "")
    st.text_input("Tags (comma-separated)", key=tags_key, placeholder="baseline, lr-sweep",
                  help="Up to 20 tags: letters, digits and _ . : + / - (no spaces inside a tag).")
    st.text_area("Note", key=note_key, height=80, max_chars=4000)
    st.button("Save tags and note", key=f"runs_save_{kind}_{oid}", icon=":material/save:",
              on_click=_save_annotations, args=(kind, oid, tags_key, note_key))
    # the outcome right under the button (the page's notices are at the top, out of sight from here)
    if saved := st.session_state.pop(f"runs_saved_{kind}_{oid}", None):
        (st.success if saved[0] else st.error)(saved[1], icon=":material/check:" if saved[0] else ":material/block:")


@st.fragment(run_every=get_settings().refresh_seconds * 2 if active_at_start else None)
def tables() -> None:
    runs = call(api.list_runs, limit=500, owner=_owner())["items"]
    comparisons = [c for c in call(api.list_comparisons)["items"] if _owner() is None or c.get("owner") == _owner()]
    names = {c["id"]: c["name"] for c in comparisons}
    by_id = {r["id"]: r for r in runs}
    counts = {s: sum(r["status"] == s for r in runs) for s in ("queued", "running", "completed", "failed")}
    st.caption(f"{len(runs)} runs · {counts['running']} running · {counts['queued']} queued · "
               f"{counts['completed']} completed · {counts['failed']} failed")

    if notice := st.session_state.pop("runs_notice", None):
        st.success(notice, icon=":material/check:")
    for problem in st.session_state.pop("runs_problems", []):
        st.error(problem, icon=":material/block:")
    if CONFIRM in st.session_state:
        _confirmation(by_id)

    st.toggle(f"Only mine ({me})" if me else "Only mine", key=MINE, disabled=not me,
              help="Only the runs and comparisons you created; you may cancel, delete or tag only your own "
                   "unless you are an admin.")
    shown = _filters(runs, names)
    table = series.runs_table(shown, names, etas=_etas(shown))
    if not table["error"].astype(bool).any():
        table = table.drop(columns="error")
    if not table["ETA"].astype(bool).any():
        table = table.drop(columns="ETA")
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={
            "id": st.column_config.NumberColumn("id", format="#%d", width="small"),
            "progress": st.column_config.ProgressColumn("progress", help="fraction of the budget used",
                                                        min_value=0.0, max_value=1.0, format="percent"),
            "ETA": st.column_config.TextColumn("ETA", help="time left at the run's rate over the last 2 minutes"),
            "test acc": st.column_config.NumberColumn("test acc", format="percent",
                                                      help="final evaluation's test accuracy"),
            "test loss": st.column_config.NumberColumn("test loss", format="%.4f",
                                                       help="final evaluation's test loss"),
            "error": st.column_config.TextColumn("error", width="large",
                                                 help="why a run failed, or why a completed run converged early"),
        })
    if len(shown) < len(runs):
        st.caption(f"{len(shown)} of {len(runs)} runs match the filters.")

    failed = [r for r in shown if r.get("error") and r["status"] in ("failed", "diverged", "interrupted")]
    for r in failed[:5]:
        st.error(f"{run_title(r)} {r['status']}: {r['error']}", icon=":material/error:")
    converged = [r for r in shown if series.converged_reason(r)]  # completed early: the reason, not an error
    for r in converged[:5]:
        st.info(f"{run_title(r)} completed: {series.converged_reason(r)}", icon=":material/check_circle:")

    # exact selection: one checkbox per run id (no substring matching), kept in session state across refreshes
    chosen_all: set[int] = {i for i in st.session_state.get(SELECTED, set()) if i in by_id}
    st.session_state[SELECTED] = chosen_all
    visible = [r for r in sorted(shown, key=lambda r: -r["id"])][:MAX_CHECKBOXES]
    st.markdown(f"**Select runs** · {len(chosen_all)} selected")
    with st.container(horizontal=True, gap="small"):
        st.button("Select all shown", key="runs_select_all", icon=":material/select_all:",
                  on_click=_select, args=([r["id"] for r in visible], True))
        st.button("Clear selection", key="runs_select_none", icon=":material/deselect:",
                  on_click=_select, args=(list(chosen_all), False))
    with st.container(horizontal=True, gap="small", height=min(44 * (1 + len(visible) // 3), 220)):
        for r in visible:
            key = f"runs_sel_{r['id']}"
            if key not in st.session_state:
                st.session_state[key] = r["id"] in chosen_all
            st.checkbox(f"{run_title(r)} · {r['status']}", key=key, on_change=_toggle, args=(r["id"],), width=260)
    if len(shown) > MAX_CHECKBOXES:
        st.caption(f"Showing the newest {MAX_CHECKBOXES} for selection; filter to reach the others.")

    picked = sorted(chosen_all, reverse=True)
    active = [i for i in picked if series.is_active(by_id[i])]
    with st.container(horizontal=True, gap="small"):
        st.button("Cancel", key="runs_cancel", disabled=not active, icon=":material/stop_circle:",
                  on_click=_act, args=("cancel", active, "run"),
                  help="Stop the selected queued or running runs.")
        st.button("Delete…", key="runs_delete", disabled=not picked or bool(active), icon=":material/delete:",
                  on_click=_ask, args=("run", picked, [_run_line(by_id[i]) for i in picked]),
                  help="Cancel active runs first; you confirm on the next step, which lists what goes.")
        if st.button("Compare", key="runs_compare", disabled=not picked, icon=":material/monitoring:"):
            st.session_state["compare_target"] = {"runs": picked}
            st.switch_page(PAGES["compare"])

    if len(picked) > 1:
        with st.expander(f"Configuration: what differs between the {len(picked)} selected runs"):
            diff = series.config_diff([by_id[i] for i in picked], opt_labels)
            if diff.shape[1] > 2:
                st.dataframe(diff, hide_index=True, width="stretch")
            else:
                st.caption("The selected runs share every setting.")
    if len(picked) == 1:
        r = by_id[picked[0]]
        with st.expander(f"{run_title(r)}: download, tags and note", expanded=True):
            st.caption(series.describe_config(r, opt_labels))
            _downloads(r)
            _annotations("run", r)

    if comparisons:
        st.subheader("Comparisons")
        rows: list[dict[str, Any]] = [{"id": c["id"], "name": c["name"], "owner": c.get("owner") or "",
                                       "status": c.get("status", ""),
                                       "runs": len(c.get("run_ids") or []), "tags": ", ".join(c.get("tags") or []),
                                       "note": c.get("note") or "",
                                       "created": series.format_time(c.get("created_at"))}
                                      for c in sorted(comparisons, key=lambda c: -c["id"])]
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={"id": st.column_config.NumberColumn("id", format="#%d", width="small")})
        cmp_by_id = {c["id"]: c for c in comparisons}
        cid = st.selectbox("Comparison", sorted(cmp_by_id, reverse=True), key="runs_comparison",
                           format_func=lambda i: f"#{i} {cmp_by_id[i]['name']}")
        members = [by_id[i] for i in cmp_by_id[cid].get("run_ids") or [] if i in by_id]
        with st.container(horizontal=True, gap="small"):
            if st.button("Open in Compare", key="runs_open_cmp", icon=":material/monitoring:"):
                st.session_state["compare_target"] = {"comparison": cid}
                st.switch_page(PAGES["compare"])
            st.button("Delete comparison…", key="runs_delete_cmp", icon=":material/delete:", on_click=_ask,
                      args=("comparison", [cid], [_run_line(r) for r in members]),
                      help="Only when none of its runs is queued or running; you confirm on the next step.")
        finals = series.finals_table(members, opt_labels)
        st.markdown(f"**Final results of #{cid}** (completed runs: mean ± std over seeds of each setting's final "
                    "evaluation)")
        if finals.empty:
            st.caption("No completed run with a final evaluation yet.")
        else:
            st.dataframe(finals, hide_index=True, width="stretch", column_config={
                "n": st.column_config.NumberColumn("n", help="finished seeds; std needs 2 or more"),
                "test acc mean": st.column_config.NumberColumn(format="percent"),
                "test acc std": st.column_config.NumberColumn(format="percent"),
                "test loss mean": st.column_config.NumberColumn(format="%.4f"),
                "test loss std": st.column_config.NumberColumn(format="%.4f")})
            st.caption("Descriptive only: mean ± sample std of n seeds, not a test of which optimizer is better.")
        with st.expander(f"Tags and note of comparison #{cid}"):
            _annotations("comparison", cmp_by_id[cid])

    if active_at_start and not any(series.is_active(r) for r in runs):
        st.rerun()


tables()
