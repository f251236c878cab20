"""Pure chart builders of the Hessian page: |H| heatmap with log colour, and mass shares over training."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from frontend.charts import _x_axis, empty_figure, log_ticks

__all__ = ["share_table", "heatmap_figure", "shares_figure", "SHARE_SERIES"]

# (column, label, colour, dash): the measured shares solid, the baselines dashed / dotted in the same colour.
SHARE_SERIES = (
    ("diagonal", "diagonal share of |H|", "#1f77b4", "solid"),
    ("random_diagonal", "diagonal, random same-spectrum", "#1f77b4", "dash"),
    ("wigner_diagonal", "diagonal, Wigner (1/n)", "#1f77b4", "dot"),
    ("ols_diagonal", "diagonal, OLS random inputs", "#1f77b4", "dashdot"),
    ("block_diagonal", "per-layer block share of |H|", "#d62728", "solid"),
    ("random_block_diagonal", "block, random same-spectrum", "#d62728", "dash"),
    ("wigner_block_diagonal", "block, Wigner (Σ n_b² / n²)", "#d62728", "dot"),
    ("ols_block_diagonal", "block, OLS random inputs", "#d62728", "dashdot"),
)


_SYMBOL = {"solid": "circle", "dash": "diamond-open", "dot": "x-thin-open", "dashdot": "triangle-up-open"}


def share_table(checkpoints: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per checkpoint: step, loss, the measured shares and their baselines, the spectrum."""
    rows = []
    for c in checkpoints:
        shares, rnd, wig, eig = c["shares"], c["random_same_spectrum"], c["wigner"], c["eigenvalues"]
        ols = c.get("ols") or {}  # analyses stored before the OLS baseline have none
        off = c.get("off_block_ratio") or {}
        rows.append({"step": c["step"], "loss": c.get("loss"),
                     "diagonal": shares["diagonal"], "random_diagonal": rnd["diagonal"],
                     "random_diagonal_min": rnd.get("diagonal_min"), "random_diagonal_max": rnd.get("diagonal_max"),
                     "wigner_diagonal": wig["diagonal"], "ols_diagonal": ols.get("diagonal"),
                     "ols_simulated_diagonal": ols.get("simulated_diagonal"),
                     "block_diagonal": shares["block_diagonal"], "random_block_diagonal": rnd["block_diagonal"],
                     "wigner_block_diagonal": wig["block_diagonal"], "ols_block_diagonal": ols.get("block_diagonal"),
                     "off_block_vs_random": off.get("random_same_spectrum"), "off_block_vs_wigner": off.get("wigner"),
                     "off_block_vs_ols": off.get("ols"),
                     "negative_eigenvalues": eig["negative"], "min_eigenvalue": eig["min"],
                     "max_eigenvalue": eig["max"], "replay_matches": c.get("replay_matches")})
    return pd.DataFrame(rows)


def shares_figure(table: pd.DataFrame, *, height: int = 380) -> go.Figure:
    """Shares of |H| mass against the training step (log y: diagonal shares are ≪ block shares)."""
    if table.empty:
        return empty_figure("No checkpoint analysed yet", height=height)
    fig = go.Figure()
    mode = "lines+markers" if len(table) > 1 else "markers"
    for column, label, color, dash in SHARE_SERIES:
        if column not in table or table[column].isna().all():
            continue
        # the marker tells measured and baselines apart too: one checkpoint has dots only, no dashes
        fig.add_trace(go.Scatter(x=table["step"], y=table[column], name=label, mode=mode,
                                 line=dict(color=color, dash=dash),
                                 marker=dict(color=color, size=8 if dash == "solid" else 9, symbol=_SYMBOL[dash])))
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=70, b=50),
                      legend=dict(orientation="h", yref="container", y=1.0, yanchor="top", x=0, font=dict(size=12)),
                      hovermode="x unified", font=dict(size=13))
    steps = table["step"].astype(float)
    if len(steps) == 1:  # one checkpoint: its dots in the middle, its step the only tick (no negative steps)
        x0 = float(steps.iloc[0])
        pad = max(1.0, abs(x0) * 0.5)
        fig.update_xaxes(title_text="optimizer step of the checkpoint", range=[x0 - pad, x0 + pad], autorange=False,
                         tickvals=[x0], ticktext=[f"{x0:g}"])
    else:
        fig.update_xaxes(title_text="optimizer step of the checkpoint", **_x_axis(steps))
    shares = table[[c for c, *_ in SHARE_SERIES if c in table]]
    fig.update_yaxes(title_text="share of Σ|Hᵢⱼ|", type="log", **{"exponentformat": "power", **log_ticks(shares)})
    return fig


_COLORBAR_ROOM = 90  # px right of the plot for the colour bar and its labels


def heatmap_figure(grid: Sequence[Sequence[float]], edges: Sequence[int], blocks: Sequence[Mapping[str, Any]], *,
                   title: str = "", height: int = 520) -> go.Figure:
    """|H| (cell means of the downsampled matrix) on a log colour scale, with the layer blocks outlined.

    Args:
        grid: k×k cell means of |H| (``result.checkpoints[i].heatmap``).
        edges: the k + 1 parameter-index edges of the cells.
        blocks: ``{"name", "start", "stop"}`` per layer, drawn as squares on the diagonal.
    """
    z = np.asarray(grid, dtype=float)
    if z.size == 0:
        return empty_figure("No heatmap in this result", height=height)
    e = np.asarray(edges, dtype=float)
    centers = (e[:-1] + e[1:]) / 2
    positive = z[z > 0]
    floor = float(positive.min()) if positive.size else 1.0
    logz = np.log10(np.where(z > 0, z, floor))
    lo, hi = math.floor(float(logz.min())), math.ceil(float(logz.max()))
    ticks = list(range(lo, hi + 1)) if hi > lo else [lo]
    fig = go.Figure(go.Heatmap(
        x=centers, y=centers, z=logz, colorscale="Viridis", zmin=lo, zmax=max(hi, lo + 1),
        customdata=z, hovertemplate="row ≈ %{y:.0f}, column ≈ %{x:.0f}<br>mean |H| = %{customdata:.3g}<extra></extra>",
        colorbar=dict(title=dict(text="|H|"), tickvals=ticks, ticktext=[f"1e{t}" for t in ticks], x=1.02,
                      xanchor="left", thickness=16)))
    for b in blocks:
        fig.add_shape(type="rect", x0=b["start"], x1=b["stop"], y0=b["start"], y1=b["stop"],
                      line=dict(color="white", width=1.5, dash="dot"), fillcolor="rgba(0,0,0,0)")
        fig.add_annotation(x=(b["start"] + b["stop"]) / 2, y=b["start"], text=b["name"], showarrow=False,
                           font=dict(color="white", size=11), yanchor="bottom")
    # a square plot as wide as it is high, so the colour bar sits right beside it (a full-width figure centred
    # the square and left the bar at the far edge); shown at this width (st.plotly_chart(width="content"))
    margin = dict(l=60, r=20 + _COLORBAR_ROOM, t=50 if title else 20, b=50)  # the bar lives in the right margin
    side = height - margin["t"] - margin["b"]
    fig.update_layout(template="plotly_white", height=height, width=margin["l"] + side + margin["r"], margin=margin,
                      title=dict(text=title, x=0) if title else None, font=dict(size=13))
    fig.update_xaxes(title_text="parameter index", range=[e[0], e[-1]], constrain="domain")
    fig.update_yaxes(title_text="parameter index", range=[e[-1], e[0]], scaleanchor="x")
    return fig
