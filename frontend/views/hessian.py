"""Hessian page (the paper's Figure 2 / Appendix D): diagonal and per-layer block mass of a run's Hessians."""
from __future__ import annotations

import streamlit as st

from frontend import hessian_charts
from frontend.live_chart import PLOTLY_CONFIG
from frontend.settings import get_settings
from frontend.ui import call, client, run_title

FINAL = ("completed", "diverged", "cancelled", "interrupted", "failed")
ACTIVE = ("queued", "running")

st.title("Hessian structure")
st.markdown(
    "The paper motivates *diagonal* trust-region norms by the **diagonal dominance** of neural-network Hessians "
    "(Fig. 2, App. D). For chosen checkpoints of a run this page computes the exact Hessian $H$ of the training loss "
    "on a fixed batch, and the share of its absolute mass $\\sum_{ij}|H_{ij}|$ on the diagonal and on the per-layer "
    "diagonal blocks, against a **random matrix with the same spectrum** ($QΛQ^\\top$, $Q$ Haar-random), a "
    "**Wigner matrix** (Proposition 1; convention: every entry on and above the diagonal drawn from one "
    "distribution, so the diagonal share is $1/n$; the GOE convention, diagonal variance doubled, would give "
    "$\\sqrt2/(\\sqrt2+n-1)$) and the paper's **OLS baseline** (Proposition 2, App. D.2): the Hessian $X^\\top X/N$ "
    "of least squares on $N$ random inputs ($N$ = the batch size), diagonal share $1/(1+(n-1)\\sqrt{2/(\\pi N)})$ "
    "for large $N$, and simulated with Gaussian $X$. A **block** share is read against its baseline's: with one "
    "layer holding most parameters any matrix puts most mass on the blocks, so the table compares the off-block "
    "mass $1-\\text{share}$ with each baseline's (ratio < 1: more concentrated on the layers). "
    "Dense Hessians need small models: train the **narrow MLP** (`mlp-narrow`, 3,190 parameters). "
    "Runs keep no weights: the analysis replays the run from its seed on the CPU and checks the replayed losses "
    "against the recorded ones.")

runs = [r for r in call(client().list_runs, limit=500)["items"] if r["status"] in FINAL and r.get("last_step")]
if not runs:
    st.info("No finished run with recorded steps yet. Launch one with the model **Narrow MLP** (`mlp-narrow`) "
            "on the Launch page, then come back.")
    st.stop()
runs.sort(key=lambda r: (r["config"].get("model") != "mlp-narrow", -r["id"]))
run = st.selectbox("Run", runs, format_func=lambda r: f"{run_title(r)} · {r['config'].get('model')} · "
                   f"{r['last_step']} steps · {r['status']}", key="hessian_run")
run_id = int(run["id"])
if run["config"].get("model") != "mlp-narrow":
    st.caption(f"Model `{run['config'].get('model')}`: the API refuses models above the dense-Hessian limit and "
               "says so below.")

with st.form("hessian_launch"):
    c1, c2, c3, c4 = st.columns(4)
    count = c1.number_input("Checkpoints (evenly spaced, incl. step 0 and the last)", min_value=1, max_value=8,
                            value=5, key="hessian_count")
    batch = c2.number_input("Fixed batch (first N training samples)", min_value=1, max_value=2048, value=512,
                            key="hessian_batch")
    size = c3.select_slider("Heatmap resolution", options=[16, 32, 64, 96, 128], value=64, key="hessian_size")
    draws = c4.number_input("Random baseline draws", min_value=1, max_value=5, value=2, key="hessian_draws")
    if st.form_submit_button("Analyse", type="primary"):
        n = int(count)
        fractions = [0.0] if n == 1 else [i / (n - 1) for i in range(n)]
        created = call(client().create_hessian_analysis, run_id,
                       {"fractions": fractions, "batch_size": int(batch), "heatmap_size": int(size),
                        "random_draws": int(draws)}, stop=False)
        if created is not None:
            st.success(f"Analysis #{created['id']} queued: steps {created['params']['checkpoint_steps']}.")

analyses = call(client().list_analyses, run_id)["items"]
if not analyses:
    st.info("No analysis of this run yet: choose checkpoints above and press **Analyse**.")
    st.stop()
chosen = st.selectbox("Analysis", analyses, key=f"hessian_analysis_{run_id}",
                      format_func=lambda a: f"#{a['id']} · {a['status']} · steps {a['params']['checkpoint_steps']} "
                                            f"· batch {a['params']['batch_size']}")
started_active = chosen["status"] in ACTIVE


@st.fragment(run_every=get_settings().refresh_seconds * 2 if started_active else None)
def show_analysis() -> None:
    """The chosen analysis; refreshed on its own while it runs (each checkpoint adds a point and a heatmap)."""
    analysis = call(client().get_analysis, run_id, int(chosen["id"]))
    if started_active and analysis["status"] not in ACTIVE:
        st.rerun()  # done: the page (and the analysis selector's status) catch up; polling stops
    progress = analysis["progress"]
    if analysis["status"] in ACTIVE:
        st.info(f"Analysis #{analysis['id']} is {analysis['status']}: {progress['done']} of {progress['total']} "
                "checkpoints done (a dense Hessian takes seconds to a minute each).")
    elif analysis["status"] == "failed":
        st.error(f"Analysis #{analysis['id']} failed: {analysis['error']}")

    result = analysis.get("result") or {}
    checkpoints = result.get("checkpoints") or []
    if not checkpoints:
        return
    if result.get("replay_matches") is False:
        st.warning("The replay did **not** reproduce the recorded minibatch losses (e.g. the run trained on a "
                   "GPU). These Hessians belong to a CPU replay with the same seed and configuration, not to the "
                   "recorded weights.")
    elif result.get("replay_matches") is None:
        st.info("No replayed minibatch loss could be compared with a recorded one (e.g. only step 0 was analysed): "
                "the replay is unchecked.")

    table = hessian_charts.share_table(checkpoints)
    st.subheader("Mass shares over training")
    st.caption(f"One run ({run_title(run)}, seed {run['seed']}), n = {result['num_parameters']:,} parameters, one "
               f"fixed batch ({result.get('batch')}). Random baseline: mean of {analysis['params']['random_draws']} "
               "same-spectrum draws (min–max in the table). Layer blocks: "
               + ", ".join(f"{b['name']} ({b['stop'] - b['start']:,})" for b in result.get("blocks", [])) + ".")
    st.plotly_chart(hessian_charts.shares_figure(table), key="hessian_shares", width="stretch", theme=None,
                    config=PLOTLY_CONFIG)

    st.subheader("|H| at a checkpoint")
    steps = [c["step"] for c in checkpoints]
    step = st.select_slider("Checkpoint step", options=steps, value=steps[-1],
                            key=f"hessian_step_{analysis['id']}") if len(steps) > 1 else steps[0]
    current = next(c for c in checkpoints if c["step"] == step)
    st.plotly_chart(hessian_charts.heatmap_figure(current["heatmap"], current["heatmap_edges"],
                                                  result.get("blocks", []),
                                                  title=f"mean |Hᵢⱼ| per cell, step {step} (log colour)"),
                    key="hessian_heatmap", width="content", theme=None,  # its own square width: colour bar beside it
                    config=PLOTLY_CONFIG)
    diag, rnd = current["shares"]["diagonal"], current["random_same_spectrum"]["diagonal"]
    ols = current.get("ols") or {}
    off = (current.get("off_block_ratio") or {}).get("random_same_spectrum")
    block, rnd_block = current["shares"]["block_diagonal"], current["random_same_spectrum"]["block_diagonal"]
    st.caption(f"Step {step}: diagonal share {diag:.3g} vs {rnd:.3g} for a random matrix with the same spectrum"
               + (f" ({diag / rnd:.1f}×)" if rnd > 0 else "")
               + (f", {ols['diagonal']:.3g} for OLS on {ols.get('inputs')} random inputs" if ols.get("diagonal") else "")
               + f"; block share {block:.3g} vs {rnd_block:.3g}"
               + (f" (off-block mass {off:.2f}× the random matrix's)" if off is not None else "")
               + f"; {current['eigenvalues']['negative']:,} negative eigenvalues.")
    st.dataframe(table, hide_index=True, width="stretch")


show_analysis()
