"""Pure builders for issue 9's views: the results table (DataFrame), the paired-difference chart, the sweep chart."""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from frontend.charts import _rgba, color_for, empty_figure
from frontend.series import relabel

__all__ = ["results_frame", "results_view", "paired_difference_figure", "sweep_figure", "sweep_parcoords_figure",
           "sweep_heatmap_figure", "verdict_lists"]


def _num(stat: Mapping[str, Any] | None) -> float:
    v = None if not stat else stat.get("mean")
    return float("nan") if v is None else float(v)


def _std(stat: Mapping[str, Any] | None) -> float:
    v = None if not stat else stat.get("std")  # None for one seed: no spread (shown as "—")
    return float("nan") if v is None else float(v)


def _active(p: Mapping[str, Any]) -> bool:
    return p["n_pairs"] == 0 and any("still running" in r for r in p.get("reasons") or [])


def _interval_text(p: Mapping[str, Any] | None, pending: bool, min_pairs: int) -> str:
    if p is None:
        return "reference"
    if pending or _active(p):
        return "pending"
    if not p.get("ci"):
        return f"needs ≥ {min_pairs} seeds" if p["n_pairs"] < min_pairs else "—"
    return f"[{p['ci'][0]:.4g}, {p['ci'][1]:.4g}]"


def _verdict_text(p: Mapping[str, Any] | None, pending: bool, min_pairs: int) -> str:
    if p is None:
        return "reference"
    if pending or _active(p):
        return "pending"
    if p.get("verdict"):
        return "no practical difference" if p["verdict"] == "equivalent" else p["verdict"]
    if p.get("p") is None and p["n_pairs"] < min_pairs:
        return f"descriptive only (needs ≥ {min_pairs} seeds)"
    return "not resolved"


def results_frame(res: Mapping[str, Any], *, axis: str = "backprops", labels: Mapping[str, str] | None = None
                  ) -> pd.DataFrame:
    """One row per group: numeric mean/std columns (so the table sorts by value; NaN where there is nothing to
    show, displayed "—" by :func:`results_view`), the cost to each target on ``axis`` (backprops, epoch or
    wall_time) with k/n seeds reached, the paired difference of the smoothed final train loss to the reference with
    its interval and Holm-adjusted p, and the verdict. One seed has no std and no interval ("needs ≥ 5 seeds");
    a group none of whose runs has finished is "pending". ``labels``: group name -> the charts' compact label."""
    labels = labels or {}
    rows = []
    axes = [axis] if axis in (res.get("axes") or []) else (res.get("axes") or ["backprops"])
    min_pairs = int((res.get("rules") or {}).get("min_pairs") or 2)  # the API states its rule
    for g in res.get("groups") or []:
        statuses = g.get("statuses") or {}
        pending = bool(statuses) and all(s in ("queued", "running") for s in statuses)
        seeds_note = "pending" if pending else (
            f"repeated seeds {g['repeated_seeds']}" if g.get("repeated_seeds") else "")
        row: dict[str, Any] = {"optimizer": labels.get(g["group"], g["group"]), "seeds": g["n"], "note": seeds_note}
        for key, name in (("final_train_loss", "final train loss"), ("final_test_loss", "test loss"),
                          ("final_test_accuracy", "test accuracy")):
            row[name] = _num(g.get(key))
            row[f"{name} std"] = _std(g.get(key))
        for t in g.get("targets") or []:
            row[f"{axes[0]} to ≤{t['target']:g}"] = _num(t.get(axes[0]))
            row[f"reached ≤{t['target']:g}"] = f"{t['reached']}/{t['n']}"
        pair = next((p for p in g.get("paired") or [] if p["metric"] == "final_train_loss"), None)
        diff = None if pair is None else pair.get("mean_diff")
        row["Δ final loss vs ref"] = float("nan") if diff is None else diff
        row["interval"] = _interval_text(pair, pending, min_pairs)
        adj = None if pair is None else pair.get("p_adjusted")
        row["p (Holm)"] = float("nan") if adj is None else adj
        row["verdict"] = _verdict_text(pair, pending, min_pairs)
        if "tuning" in g:  # equal tuning effort: what each row's setting was chosen from
            row["tuning"] = g["tuning"].get("note") or "—"
        rows.append(row)
    return pd.DataFrame(rows)


def results_view(frame: pd.DataFrame) -> Any:
    """The table as shown: numbers to 4 significant digits, missing values as "—" (never "None" or "nan"); the
    underlying values stay numeric, so columns still sort by value."""
    numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    return frame.style.format("{:.4g}", subset=numeric, na_rep="—")


def verdict_lists(res: Mapping[str, Any], *, axis: str | None = None, labels: Mapping[str, str] | None = None
                  ) -> tuple[list[str], list[str]]:
    """(resolved sentences, unresolved sentences); with ``axis``, cost-to-target ones on that axis only; group
    names in the sentences replaced by ``labels`` (the charts' compact labels)."""
    resolved, unresolved = [], []
    for g in res.get("groups") or []:
        for p in g.get("paired") or []:
            if axis is None or p.get("axis") in (None, axis):
                (resolved if p.get("verdict") else unresolved).append(relabel(p["sentence"], labels or {}))
    return resolved, unresolved


def paired_difference_figure(curves: Mapping[str, Any], *, x_title: str, height: int = 360,
                             labels: Mapping[str, str] | None = None) -> go.Figure:
    """Mean paired difference (group − reference) of the evaluated train loss against the x-axis, with its band
    (pointwise bootstrap interval over seeds); the zero line is the reference. ``labels``: group name -> the
    charts' compact label."""
    labels = labels or {}
    groups = [g for g in curves.get("groups") or [] if g.get("n")]
    ref = str(curves.get("reference"))
    ref = labels.get(ref, ref)
    if not groups:
        return empty_figure("No paired seeds yet: the difference needs runs of the same seed in both groups")
    fig = go.Figure()
    level = curves.get("level", 0.95)
    for g in groups:
        colour = color_for(str(g.get("optimizer") or g["group"]))
        name = labels.get(g["group"], g["group"])
        if g.get("lo"):  # no band from fewer seeds than the API's min_pairs (it sends empty lo/hi)
            fig.add_trace(go.Scatter(x=g["x"] + g["x"][::-1], y=g["hi"] + g["lo"][::-1], fill="toself",
                                     fillcolor=_rgba(colour, 0.18), line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, name=f"{name} {level:.0%} band"))
        no_band = "" if g.get("lo") else f", no band: needs ≥ {curves.get('min_pairs', '?')} seeds"
        fig.add_trace(go.Scatter(x=g["x"], y=g["mean"], mode="lines", line=dict(color=colour, width=2),
                                 name=f"{name} − {ref} (n = {g['n']} seed{'s' if g['n'] != 1 else ''}{no_band})",
                                 hovertemplate="%{y:.4g}"))
    fig.add_hline(y=0, line=dict(color="#444", width=1, dash="dot"))
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                      xaxis_title=x_title, yaxis_title="Δ train loss (eval) vs reference")
    return fig


def sweep_figure(entry: Mapping[str, Any], *, criterion_label: str, param: str | None = None,
                 height: int = 320) -> go.Figure:
    """Criterion against one swept hyperparameter (log x when all values are positive), every tuning seed as a
    dot, the mean per grid point as a line, the winner marked with a star."""
    space = entry.get("space") or {}
    param = param or next(iter(space), None)
    points = [p for p in entry.get("points") or [] if param in p["point"]]
    if param is None or not points:
        return empty_figure("No grid points yet")
    colour = color_for(str(entry.get("name")))
    fig = go.Figure()
    xs, ys = [], []
    for p in points:
        for v in p.get("values") or []:
            if v is not None:
                xs.append(p["point"][param])
                ys.append(v)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(color=colour, size=7, opacity=0.5),
                             name="per seed"))
    line = sorted((p["point"][param], p["value"]) for p in points if p.get("value") is not None)
    if line:
        fig.add_trace(go.Scatter(x=[a for a, _ in line], y=[b for _, b in line], mode="lines+markers",
                                 line=dict(color=colour), name="mean over tuning seeds"))
    failed = [p["point"][param] for p in points if p.get("note") == "diverged"]
    if failed:
        top = max(ys) if ys else 1.0
        fig.add_trace(go.Scatter(x=failed, y=[top] * len(failed), mode="markers", name="diverged",
                                 marker=dict(symbol="x", color="#8b0000", size=10)))
    best = entry.get("best")
    if best and param in best["point"]:
        fig.add_trace(go.Scatter(x=[best["point"][param]], y=[best["value"]], mode="markers", name="winner",
                                 marker=dict(symbol="star", size=16, color="#f2b701", line=dict(color="#000", width=1))))
    numeric = [p["point"][param] for p in points]
    log_x = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in numeric)
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=50, b=50),
                      title=dict(text=str(entry.get("label")), x=0), xaxis_title=param, yaxis_title=criterion_label,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0.3))
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_parcoords_figure(entry: Mapping[str, Any], *, criterion_label: str, height: int = 360) -> go.Figure:
    """A sweep over two or more hyperparameters: one line per grid point with a value, through one axis per
    hyperparameter (log10 when every value is positive) and the criterion, coloured by the criterion."""
    space = entry.get("space") or {}
    points = [p for p in entry.get("points") or [] if p.get("value") is not None
              and all(k in p["point"] for k in space)]
    if len(space) < 2 or not points:
        return empty_figure("No grid point with a value yet")
    dims = []
    for name, grid in space.items():
        values = [p["point"][name] for p in points]
        if _numeric(values) and all(v > 0 for v in values):
            ticks = sorted(set(grid))
            dims.append(dict(label=name, values=[math.log10(v) for v in values],
                             tickvals=[math.log10(v) for v in ticks], ticktext=[f"{v:g}" for v in ticks]))
        elif _numeric(values):
            dims.append(dict(label=name, values=values))
        else:  # categories: their index on the axis, named
            cats = list(dict.fromkeys(map(str, grid)))
            dims.append(dict(label=name, values=[cats.index(str(v)) for v in values],
                             tickvals=list(range(len(cats))), ticktext=cats))
    crit = [float(p["value"]) for p in points]
    dims.append(dict(label=criterion_label, values=crit))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=crit, colorscale="Viridis", showscale=True,
                                                            colorbar=dict(title=dict(text="criterion")))))
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=60, t=70, b=30),
                      title=dict(text=f"{entry.get('label')}: every grid point", x=0))
    return fig


def _grid_values(grid: list[Any]) -> list[Any]:
    return sorted(set(grid)) if _numeric(grid) else sorted(set(grid), key=str)


def _value_text(v: Any) -> str:
    return f"{v:g}" if _numeric([v]) else str(v)


def sweep_heatmap_figure(entry: Mapping[str, Any], *, criterion_label: str, height: int = 360) -> go.Figure:
    """A sweep over exactly two hyperparameters: the criterion of each grid cell (mean over tuning seeds; blank
    where no value), the first hyperparameter across, the second up, the winner marked."""
    space = entry.get("space") or {}
    if len(space) != 2:
        return empty_figure("A heatmap needs exactly two swept hyperparameters")
    (px, gx), (py, gy) = space.items()
    xs, ys = _grid_values(gx), _grid_values(gy)
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for p in entry.get("points") or []:
        pt = p["point"]
        if p.get("value") is not None and pt.get(px) in xs and pt.get(py) in ys:
            z[ys.index(pt[py])][xs.index(pt[px])] = float(p["value"])
    labels_x, labels_y = [_value_text(v) for v in xs], [_value_text(v) for v in ys]
    fig = go.Figure(go.Heatmap(x=labels_x, y=labels_y, z=z, colorscale="Viridis", hoverongaps=False,
                               colorbar=dict(title=dict(text="criterion")),
                               hovertemplate=f"{px} %{{x}}, {py} %{{y}}: %{{z:.4g}}<extra></extra>"))
    best = entry.get("best")
    if best and px in best["point"] and py in best["point"] and best["point"][px] in xs and best["point"][py] in ys:
        fig.add_trace(go.Scatter(x=[labels_x[xs.index(best["point"][px])]], y=[labels_y[ys.index(best["point"][py])]],
                                 mode="markers", name="winner", marker=dict(symbol="star", size=16, color="#f2b701",
                                                                            line=dict(color="#000", width=1))))
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=50, b=50),
                      title=dict(text=f"{entry.get('label')}: {criterion_label}", x=0), xaxis_title=px,
                      yaxis_title=py, showlegend=False)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig
