"""The Compare page's results section: sortable results table, verdicts, CSV/Markdown downloads, paired chart."""
from __future__ import annotations

import math
from typing import Mapping

import streamlit as st

from frontend.live_chart import live_plotly_chart
from frontend.results_charts import paired_difference_figure, results_frame, results_view, verdict_lists
from frontend.ui import call, client

__all__ = ["parse_targets", "results_section", "PAIRED_AXES", "stats_note"]

PAIRED_AXES = ("backprops", "epoch", "wall_time")  # the API's cost axes (not optimizer steps)


def parse_targets(text: str) -> list[float]:
    """"0.5, 0.3" → [0.5, 0.3]; raises ValueError naming the bad entry (targets must be finite and > 0)."""
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"Invalid loss target {part!r}: give numbers separated by commas, e.g. 0.5, 0.3") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"Invalid loss target {part!r}: targets must be finite and > 0")
        out.append(value)
    if len(out) > 10:
        raise ValueError("Invalid loss targets: at most 10")
    return out


def stats_note(res: dict) -> str:
    """The rules behind the table, from the API's ``rules`` (the backend states them once)."""
    rules = res.get("rules") or {}
    if not rules:
        return "Mean ± std over seeds; paired by seed."
    return (f"Mean ± std over distinct seeds (one seed: no spread, \"—\"). Paired by seed: {res['level']:.0%} "
            f"{rules['interval']}; p from the {rules['test']}, {rules['correction']}; at least "
            f"{rules['min_pairs']} paired seeds for a verdict, fewer is descriptive only. A difference inside its "
            f"practical-equivalence margin (final train loss: {rules['margins'].get('final_train_loss')}; costs: "
            f"{rules.get('target_margin')}) is no practical difference.")


def results_section(comparison_id: int, *, x_col: str, x_title: str, labels: Mapping[str, str] | None = None) -> None:
    """Results of one comparison against a chosen reference (all numbers come from the API's results route).

    Args:
        labels: the API's group name -> the compact label the charts use (``frontend.series.group_labels``).
    """
    labels = labels or {}
    api = client()
    st.subheader("Results")
    first = call(api.comparison_results, comparison_id, stop=False)
    if not first or not first.get("groups"):
        st.caption("No results yet: they appear when runs have evaluations.")
        return
    groups = [g["group"] for g in first["groups"]]
    tr = [g for g in groups if g.lower().startswith("tr ")]
    cols = st.columns([2, 2, 1])
    reference = cols[0].selectbox("Reference", groups, index=groups.index(tr[-1]) if tr else 0, key="res_reference",
                                  format_func=lambda g: labels.get(g, g),
                                  help="Paired differences are this group minus the reference, seed by seed.")
    text = cols[1].text_input("Train-loss targets", key="res_targets", placeholder="e.g. 0.5, 0.3",
                              help="Cost to reach each target, with k/n seeds reached.")
    k = int(cols[2].number_input("Smooth: last k evals", min_value=1, max_value=100, value=3, key="res_k"))
    try:
        targets = parse_targets(text or "")
    except ValueError as exc:
        st.warning(str(exc), icon=":material/warning:")
        targets = []
    res = call(api.comparison_results, comparison_id, reference=reference, targets=targets, k=k, stop=False)
    if not res:
        return
    n = sorted({g["n"] for g in res["groups"]})
    st.caption(f"Budget: {res['budget']['note']}. Seeds per group: {', '.join(map(str, n))}. "
               f"{stats_note(res)} Click a column header to sort.")
    if not res["budget"]["equal"]:
        st.warning(res["budget"]["note"], icon=":material/balance:")
    axis = x_col if x_col in PAIRED_AXES else "backprops"  # results count cost in backprops, epochs, seconds
    st.dataframe(results_view(results_frame(res, axis=axis, labels=labels)), hide_index=True, width="stretch")
    resolved, unresolved = verdict_lists(res, axis=axis, labels=labels)
    if resolved:
        st.success("\n".join(f"- {s}" for s in resolved), icon=":material/check_circle:")
    else:
        st.info(f"No verdict: no difference to {labels.get(reference, reference)} is resolved with these seeds "
                "(see below).",
                icon=":material/balance:")
    st.caption("Cost-to-target verdicts on the other axes: switch the x-axis, or see the downloads.")
    with st.expander(f"Not resolved ({len(unresolved)})"):
        st.markdown("\n".join(f"- {s}" for s in unresolved) or "none")
    down = st.columns(2)
    params = {"reference": reference, "targets": targets, "k": k}
    csv_text = call(api.comparison_results, comparison_id, fmt="csv", stop=False, **params) or ""
    md_text = call(api.comparison_results, comparison_id, fmt="markdown", stop=False, **params) or ""
    down[0].download_button("Download CSV", csv_text, file_name=f"comparison-{comparison_id}-results.csv",
                            mime="text/csv", key="res_csv")
    down[1].download_button("Download Markdown", md_text, file_name=f"comparison-{comparison_id}-results.md",
                            mime="text/markdown", key="res_md")
    if len(groups) < 2:
        return
    st.subheader("Paired difference to the reference")
    if x_col not in PAIRED_AXES:
        st.caption("The paired difference is drawn against backprops, epochs or wall time; shown against backprops.")
        x_col, x_title = "backprops", "Backprops (gradients + Hessian-vector products)"
    curves = call(api.paired_curves, comparison_id, reference=reference, axis=x_col, stop=False)
    if curves:
        live_plotly_chart(paired_difference_figure(curves, x_title=x_title, labels=labels), key="chart_paired")
