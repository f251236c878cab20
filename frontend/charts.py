"""Chart builders: pure functions from DataFrames (see frontend.series) to Plotly figures."""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "OPTIMIZER_COLORS",
    "EXIT_COLORS",
    "color_for",
    "adopt_colors",
    "curve_figure",
    "eval_figure",
    "tr_internals_figure",
    "geometry_figure",
    "empty_figure",
    "log_ticks",
]

# One colour per optimizer, everywhere: the API publishes them (/api/meta → optimizers[].color, defined in the
# registry) and the app adopts them at start (``adopt_colors``). Until then names get the fallback palette.
OPTIMIZER_COLORS: dict[str, str] = {}
_FALLBACK = ["#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39"]
_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]

EXIT_COLORS: dict[str, str] = {
    "interior": "#2ca02c",
    "boundary": "#1f77b4",
    "negative_curvature": "#d62728",
    "max_iter": "#ff7f0e",
}
_EXIT_LABELS = {"interior": "interior (tolerance met)", "boundary": "boundary (‖s‖_M = Δ)",
                "negative_curvature": "negative curvature", "max_iter": "iteration cap"}
_REJECT_COLOR = "#8b0000"
_UNKNOWN_EXIT = "#999999"
_TEMPLATE = "plotly_white"


def adopt_colors(optimizers: Any) -> None:
    """Adopt the colours of ``/api/meta``'s ``optimizers`` (entries without a colour string are ignored)."""
    for o in optimizers or ():
        if isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("color"), str):
            OPTIMIZER_COLORS[o["name"]] = o["color"]


def color_for(optimizer: str) -> str:
    """The optimizer's colour; unknown names get a stable colour from a fallback palette."""
    if optimizer in OPTIMIZER_COLORS:
        return OPTIMIZER_COLORS[optimizer]
    return _FALLBACK[sum(map(ord, optimizer)) % len(_FALLBACK)]


def log_ticks(values: Any, *, max_labels: int = 6) -> dict[str, Any]:
    """Tick settings for a log axis over ``values``.

    Two decades or more: whole decades (every n-th), written as powers of ten. Less: explicit ticks on a
    1-2-5 (or, for a short range, 1-1.5-2-3-…) sequence, each labelled in full, instead of Plotly's lone digits.
    """
    v = np.asarray(pd.to_numeric(pd.Series(np.ravel(values)), errors="coerce"), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return {}
    lo, hi = float(v.min()), float(v.max())
    span = float(np.log10(hi / lo))
    pinned: dict[str, Any] = {}
    if span < _MIN_LOG_SPAN:  # one point (or a flat curve): pad to a readable range with two labelled ticks
        mid = (np.log10(lo) + np.log10(hi)) / 2
        lo, hi = 10 ** (mid - _MIN_LOG_SPAN / 2), 10 ** (mid + _MIN_LOG_SPAN / 2)
        span = _MIN_LOG_SPAN
        pinned = {"range": [float(np.log10(lo)), float(np.log10(hi))], "autorange": False}
    if span >= 2:
        return {"dtick": max(1, int(np.ceil(span / max_labels))), "exponentformat": "power"}
    slack = 1 if pinned else 1.15
    for mantissas in _MANTISSAS:  # the densest sequence whose labels keep apart (a 200 px panel has room for ~6)
        ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
                 for m in mantissas]
        ticks = [t for t in ticks if lo / slack <= t <= hi * slack]
        gaps = np.diff(np.log10(ticks)) if len(ticks) > 1 else np.array([np.inf])
        if len(ticks) <= max_labels and gaps.min() >= _MIN_TICK_GAP * span:
            break
    if len(ticks) < 2:
        return pinned
    return {"tickmode": "array", "tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks], **pinned}


# candidate tick mantissas per decade, densest first, and the least distance between two labels (a fraction of
# the data's span in decades): 0.5, 0.6, 0.7, 0.8, 0.9 on a small panel overlapped
_MANTISSAS = ((1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,))
_MIN_TICK_GAP = 0.15
_MIN_LOG_SPAN = 0.4  # decades: narrower data gets a padded, pinned range (Plotly labels it with overlapping digits)
# Series with at most this many points also get markers: one evaluation per run must still be visible.
_MARKERS_UP_TO = 12


def _x_range(values: Any) -> list[float] | None:
    """An explicit x range where Plotly's would mislead: one x value only (it draws -1..1, negative costs)."""
    v = np.asarray(pd.to_numeric(pd.Series(np.ravel(values)), errors="coerce"), dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() != v.max():
        return None
    x0 = float(v[0])
    return [0.0, 1.0] if x0 == 0 else [0.0, x0 * 1.1] if x0 > 0 else [x0 * 1.1, 0.0]


def _x_axis(values: Any) -> dict[str, Any]:
    """x-axis settings for a cost axis (backprops, epochs, seconds, steps): never below zero."""
    rng = _x_range(values)
    return {"rangemode": "nonnegative", **({"range": rng, "autorange": False} if rng else {})}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# A thin vertical line at the cursor's x on every x axis; with ``hoversubplots="axis"`` the unified hover and the
# line span every panel stacked on the same x axis (the TR internals), not only the panel under the cursor.
_SPIKES = dict(showspikes=True, spikemode="across", spikesnap="cursor", spikethickness=1, spikedash="dot",
               spikecolor="#888")


def _layout(fig: go.Figure, *, height: int, uirevision: Any, title: str | None = None, top: int = 50) -> go.Figure:
    """Shared look: white template, legend in a row across the top (above any subplot titles), a unified hover
    (short label and value per series: the configuration is in the page's tables, not in the hover box) with a
    spike line at the cursor."""
    top = top + (30 if title else 0)
    fig.update_xaxes(**_SPIKES)
    fig.update_layout(
        template=_TEMPLATE, height=height, uirevision=uirevision, hovermode="x unified", hoversubplots="axis",
        margin=dict(l=60, r=20, t=top, b=50),
        legend=dict(orientation="h", yref="container", y=1.0 if not title else 0.995 - 34 / height,
                    yanchor="top", xanchor="left", x=0, title_text="", font=dict(size=12)),
        title=dict(text=title, x=0, xanchor="left", y=0.995, yanchor="top", yref="container", font=dict(size=16))
        if title else None,
        font=dict(size=13),
    )
    return fig


def empty_figure(message: str, *, height: int = 300) -> go.Figure:
    """A blank chart that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#666"), x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height, uirevision="empty")


def _dash_for(curves: pd.DataFrame) -> dict[str, str]:
    """Series sharing an optimizer (same colour) are told apart by dash style."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for series, opt in curves[["series", "optimizer"]].drop_duplicates("series").itertuples(index=False):
        out[series] = _DASHES[seen.get(opt, 0) % len(_DASHES)]
        seen[opt] = seen.get(opt, 0) + 1
    return out


def _add_curves(fig: go.Figure, curves: pd.DataFrame, *, row: int | None = None, col: int | None = None,
                showlegend: bool = True, log_y: bool = False, legendgroup_prefix: str = "",
                legendgroups: Mapping[str, str] | None = None) -> None:
    """Add each series of ``curves`` (a line, and its band when there is one).

    Args:
        legendgroups: label -> legend group for series whose legend entry another trace already shows (they
            join that group and get no entry of their own).
    """
    dashes = _dash_for(curves)
    where = dict(row=row, col=col) if row is not None else {}
    for series, d in curves.groupby("series", sort=False):
        opt = str(d["optimizer"].iloc[0])
        color = color_for(opt)
        label = str(d["label"].iloc[0])
        group = legendgroup_prefix + str(series)
        shown = showlegend
        if legendgroups and label in legendgroups:
            group, shown = legendgroups[label], False
        lo, hi = d["lo"].to_numpy(float), d["hi"].to_numpy(float)
        band = ~np.isnan(lo) & ~np.isnan(hi)
        if band.any():
            xs = d["x"].to_numpy(float)[band]
            lo_b, hi_b = lo[band], hi[band]
            if log_y:
                floor = np.nanmin(d["y"].to_numpy(float)[d["y"].to_numpy(float) > 0], initial=np.inf)
                floor = floor / 10 if np.isfinite(floor) else 1e-12
                lo_b = np.maximum(lo_b, floor)
            fig.add_trace(go.Scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi_b, lo_b[::-1]]),
                                     mode="lines", fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=group, name=label + " ± std"),
                          **where)
        few = len(d) <= _MARKERS_UP_TO
        fig.add_trace(go.Scatter(x=d["x"], y=d["y"], mode="lines+markers" if few else "lines", name=label,
                                 legendgroup=group, showlegend=shown,
                                 line=dict(color=color, width=1.6, dash=dashes[series]),
                                 marker=dict(color=color, size=7) if few else None,
                                 hovertemplate="%{y:.4g}"), **where)


def curve_figure(curves: pd.DataFrame, *, x_title: str, y_title: str, log_y: bool = False, title: str | None = None,
                 uirevision: Any = "curves", height: int = 420, log_x: bool = False) -> go.Figure:
    """Lines (and mean ± std bands) from :func:`frontend.series.build_curves` output.

    Args:
        curves: columns ``series, label, optimizer, x, y, lo, hi``.
        x_title, y_title: axis titles.
        log_y: logarithmic y axis.
        uirevision: keep zoom/pan while this value is unchanged across updates.
    """
    if curves.empty:
        return empty_figure("No points yet.", height=height)
    fig = go.Figure()
    _add_curves(fig, curves, log_y=log_y)
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", showgrid=True,
                     **({} if log_x else _x_axis(curves["x"])))
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear", showgrid=True,
                     **(log_ticks(curves[["y", "hi"]]) if log_y else {}))
    return _layout(fig, height=height, uirevision=uirevision, title=title)


def eval_figure(loss: pd.DataFrame, accuracy: pd.DataFrame | None, *, x_title: str, log_y: bool = False,
                uirevision: Any = "evals", height: int = 380, log_x: bool = False) -> go.Figure:
    """Test loss (left) and test accuracy (right, when there is one) against the same x axis."""
    has_acc = accuracy is not None and not accuracy.empty
    if loss.empty and not has_acc:
        return empty_figure("No evaluations yet.", height=height)
    cols = 2 if has_acc else 1
    fig = make_subplots(rows=1, cols=cols, subplot_titles=["Test loss", "Test accuracy"][:cols],
                        horizontal_spacing=0.13)  # room for the right panel's ticks and title at 800 px
    if not loss.empty:
        _add_curves(fig, loss, row=1, col=1, log_y=log_y)
    if has_acc:
        _add_curves(fig, accuracy, row=1, col=2, showlegend=loss.empty)
        fig.update_yaxes(title_text="accuracy", tickformat=".0%", row=1, col=2)
    fig.update_yaxes(title_text="loss", type="log" if log_y else "linear", row=1, col=1,
                     **(log_ticks(loss[["y", "hi"]]) if log_y and not loss.empty else {}))
    xs = pd.concat([loss["x"], accuracy["x"] if has_acc else loss["x"]])
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text=x_title, row=1, col=c, type="log" if log_x else "linear",
                         **({} if log_x else _x_axis(xs)))
    return _layout(fig, height=height, uirevision=uirevision, top=70)


_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "star"]


def tr_internals_figure(tr: pd.DataFrame, loss: pd.DataFrame | None, *, x_title: str, log_y: bool = False,
                        uirevision: Any = "tr", height: int = 820,
                        thresholds: tuple[float, float] | None = None, rho_range: tuple[float, float] = (-0.5, 1.5),
                        log_x: bool = False) -> go.Figure:
    """Stacked panels on one shared x axis: training loss, trust radius Δ, ρ (rejected steps marked) and
    CG iterations coloured by the solver's exit reason.

    Args:
        tr: :func:`frontend.series.tr_frame` output (one row per step of each TR run).
        loss: curves for the top panel (any runs), or ``None`` to leave it out.
        thresholds: (η₁, η₂) drawn as dotted lines on the ρ panel.
        rho_range: ρ is clipped to this range for display; hover shows the true value.
    """
    if tr.empty:
        return empty_figure("No trust-region runs here: the TR internals need a tr-* optimizer.", height=260)
    with_loss = loss is not None and not loss.empty
    titles = (["Training loss"] if with_loss else []) + ["Trust radius Δ", "ρ = actual / predicted decrease",
                                                         "CG iterations per step (colour = exit)"]
    rows = len(titles)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.045, subplot_titles=titles,
                        row_heights=([1.2] if with_loss else []) + [1, 1, 1])
    r0 = 1
    runs = list(dict.fromkeys(tr["run_id"]))
    multi = len(runs) > 1
    label_of = {run_id: str(tr.loc[tr["run_id"] == run_id, "label"].iloc[0]) for run_id in runs}
    if with_loss:
        # with several runs, each run's one legend entry (its dash and marker) also stands for its loss curve
        joined = {label: f"tr{run_id}" for run_id, label in label_of.items()} if multi else None
        _add_curves(fig, loss, row=1, col=1, log_y=log_y, legendgroups=joined)
        fig.update_yaxes(type="log" if log_y else "linear", title_text="loss", row=1, col=1,
                         **(log_ticks(loss[["y", "hi"]], max_labels=4) if log_y else {}))  # a short panel
        r0 = 2
    # each run has its own marker shape on the ρ and CG panels, shown in the legend; markers are translucent
    # so overlapping runs stay visible through each other
    symbol_of = {run_id: _SYMBOLS[i % len(_SYMBOLS)] if multi else "circle" for i, run_id in enumerate(runs)}
    # dashes as the loss panel's (:func:`_dash_for`): runs of one optimizer (one colour) differ by dash
    dash_of: dict[Any, str] = {}
    per_opt: dict[str, int] = {}
    for run_id in runs:
        opt = str(tr.loc[tr["run_id"] == run_id, "optimizer"].iloc[0])
        dash_of[run_id] = _DASHES[per_opt.get(opt, 0) % len(_DASHES)]
        per_opt[opt] = per_opt.get(opt, 0) + 1
    rejected_shown = False
    for run_id in runs:
        d = tr[tr["run_id"] == run_id]
        opt, label = str(d["optimizer"].iloc[0]), str(d["label"].iloc[0])
        color = color_for(opt)
        symbol = symbol_of[run_id]
        x = d["x"].to_numpy(float)
        radius = pd.to_numeric(d["radius"], errors="coerce").to_numpy(float)
        fig.add_trace(go.Scatter(x=x, y=radius, mode="lines", name=label, legendgroup=f"tr{run_id}",
                                 showlegend=not with_loss and not multi,
                                 line=dict(color=color, width=1.8, shape="hv", dash=dash_of[run_id]),
                                 hovertemplate=f"{html.escape(label)}: Δ %{{y:.3g}}<extra></extra>"), row=r0, col=1)
        if multi:  # legend entry: the run's line dash and marker shape (click to hide the run)
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=f"{label}",
                                     legendgroup=f"tr{run_id}", showlegend=True,
                                     line=dict(color=color, width=1.8, dash=dash_of[run_id]),
                                     marker=dict(color=color, symbol=symbol, size=9), hoverinfo="skip"),
                          row=r0, col=1)
        rho = pd.to_numeric(d["rho"], errors="coerce").to_numpy(float)
        clipped = np.clip(rho, *rho_range)
        accepted = d["accepted"].to_numpy()
        rej = np.array([a is False or a == 0 for a in accepted]) & ~pd.isna(d["accepted"]).to_numpy()
        fig.add_trace(go.Scatter(x=x[~rej], y=clipped[~rej], mode="markers", name=label, legendgroup=f"tr{run_id}",
                                 showlegend=False, marker=dict(color=color, size=5 if multi else 4, symbol=symbol,
                                                               opacity=0.55 if multi else 0.7),
                                 customdata=rho[~rej],
                                 hovertemplate=f"{html.escape(label)}: ρ %{{customdata:.3g}}<extra></extra>"),
                      row=r0 + 1, col=1)
        if rej.any():
            fig.add_trace(go.Scatter(x=x[rej], y=clipped[rej], mode="markers", name="rejected step",
                                     legendgroup="rejected", showlegend=not rejected_shown,
                                     marker=dict(color=_REJECT_COLOR, size=8, symbol="x-thin",
                                                 line=dict(width=2, color=_REJECT_COLOR)),
                                     customdata=rho[rej], hovertemplate="rejected, ρ %{customdata:.3g}"),
                          row=r0 + 1, col=1)
            fig.add_trace(go.Scatter(x=x[rej], y=radius[rej], mode="markers", name="rejected step",
                                     legendgroup="rejected", showlegend=False,
                                     marker=dict(color=_REJECT_COLOR, size=7, symbol="x-thin",
                                                 line=dict(width=2, color=_REJECT_COLOR)),
                                     hoverinfo="skip"), row=r0, col=1)
            rejected_shown = True
        cg = pd.to_numeric(d["cg_iterations"], errors="coerce").to_numpy(float)
        exits = d["cg_exit"].astype("string").fillna("unknown").to_numpy()
        for reason in dict.fromkeys(exits):
            m = exits == reason
            fig.add_trace(go.Scatter(
                x=x[m], y=cg[m], mode="markers", legendgroup=f"exit-{reason}",
                name=_EXIT_LABELS.get(str(reason), str(reason)), showlegend=False,
                marker=dict(color=EXIT_COLORS.get(str(reason), _UNKNOWN_EXIT), size=6 if multi else 5,
                            symbol=symbol, opacity=0.6 if multi else 0.8),
                hovertemplate=f"{html.escape(label)}: %{{y}} CG its ({reason})<extra></extra>"), row=r0 + 2, col=1)
    # the complete colour key of the CG panel: every exit reason, whether or not it occurred yet
    present = {str(v) for v in tr["cg_exit"].astype("string").fillna("unknown")}
    for reason in [*EXIT_COLORS, *sorted(present - set(EXIT_COLORS))]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", legendgroup=f"exit-{reason}", showlegend=True,
                                 name="CG exit: " + _EXIT_LABELS.get(reason, reason),
                                 marker=dict(color=EXIT_COLORS.get(reason, _UNKNOWN_EXIT), size=9, symbol="square"),
                                 hoverinfo="skip"), row=r0 + 2, col=1)
    if thresholds is not None:
        for eta in thresholds:
            fig.add_hline(y=eta, line=dict(color="#999", width=1, dash="dot"), row=r0 + 1, col=1)
    fig.update_yaxes(type="log", title_text="Δ", row=r0, col=1, **log_ticks(tr["radius"]))
    fig.update_yaxes(range=[rho_range[0] - 0.05, rho_range[1] + 0.05], title_text="ρ", row=r0 + 1, col=1)
    fig.update_yaxes(title_text="iterations", rangemode="tozero", row=r0 + 2, col=1)
    _one_x_axis(fig, rows)
    fig.update_xaxes(title_text=x_title, row=1, col=1, type="log" if log_x else "linear",
                     **({} if log_x else _x_axis(tr["x"])))
    return _layout(fig, height=height, uirevision=uirevision, top=80)


def _one_x_axis(fig: go.Figure, rows: int) -> None:
    """Put the traces of stacked panels on one x axis (the first, drawn at the bottom) and anchor every panel's y
    axis to it: Plotly's ``hoversubplots="axis"`` then shows the unified hover and the spike line on all panels
    at once (panels on matched but separate x axes each hover alone). Zoom stays shared: there is one axis."""
    for trace in fig.data:
        trace.xaxis = "x"
    fig.update_layout(xaxis=dict(anchor=f"y{rows}" if rows > 1 else "y", matches=None, showticklabels=True))
    for r in range(2, rows + 1):
        fig.layout[f"xaxis{r}"].update(visible=False, matches=None)
    for r in range(1, rows + 1):
        fig.layout[f"yaxis{r}" if r > 1 else "yaxis"].update(anchor="x")


# -- geometry (paper Figure 1) -------------------------------------------------------------------------------

# Geometry methods drawn in an optimizer's colour under another name.
_METHOD_AS_OPTIMIZER = {"gd": "sgd"}


def _window(problem: Any, trajectories: Sequence[Any], pad: float = 0.5
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """A square view around start and minimizer that also fits the iterates and regions (of a sane size)."""
    core = np.stack([problem.start, problem.minimizer])
    lo, hi = core.min(axis=0), core.max(axis=0)
    mid, half = (lo + hi) / 2, max(hi - lo) / 2 + pad
    pts = [core]
    for t in trajectories:
        pts.append(t.iterates)
        pts.extend(r.boundary(33) for r in t.regions)
    allpts = np.concatenate(pts)
    allpts = allpts[np.all(np.abs(allpts - mid) <= 2.5 * half, axis=1)]  # ignore diverging iterates
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    mid, half = (lo + hi) / 2, max(hi - lo) / 2 * 1.04
    return (mid[0] - half, mid[0] + half), (mid[1] - half, mid[1] + half)


def geometry_figure(problem: Any, trajectories: Sequence[Any], *, every: int = 2, height: int = 520,
                    columns: int = 2) -> go.Figure:
    """Contours of a 2-D quadratic with each method's iterates and the trust regions of its steps.

    Args:
        problem: a ``frontend.geometry.Quadratic``.
        trajectories: ``frontend.geometry.Trajectory`` objects, one panel each.
        every: draw every ``every``-th trust region (the paper draws every other one).
        columns: panels per row.
    """
    if not trajectories:
        return empty_figure("Pick at least one method.", height=300)
    n = len(trajectories)
    cols = min(columns, n)
    nrows = -(-n // cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[t.label for t in trajectories],
                        horizontal_spacing=0.06, vertical_spacing=0.1)
    (x0, x1), (y0, y1) = _window(problem, trajectories)
    gx, gy = np.meshgrid(np.linspace(x0, x1, 160), np.linspace(y0, y1, 160))
    fstar = problem.value(problem.minimizer)
    z = np.log10(problem.values(gx, gy) - fstar + 1e-3)
    for i, t in enumerate(trajectories):
        r, c = i // cols + 1, i % cols + 1
        color = color_for(_METHOD_AS_OPTIMIZER.get(t.method, t.method))
        fig.add_trace(go.Contour(x=gx[0], y=gy[:, 0], z=z, showscale=False, ncontours=16, hoverinfo="skip",
                                 colorscale=[[0, "#eef3f8"], [1, "#ffffff"]], reversescale=False,
                                 contours=dict(coloring="heatmap", showlines=True),
                                 line=dict(color="rgba(90,90,90,0.35)", width=0.8)), row=r, col=c)
        for k, region in enumerate(t.regions):
            if k % max(every, 1):
                continue
            b = region.boundary()
            fig.add_trace(go.Scatter(x=b[:, 0], y=b[:, 1], mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(color=_rgba(color, 0.7), width=1.4)), row=r, col=c)
        it = t.iterates
        fig.add_trace(go.Scatter(x=it[:, 0], y=it[:, 1], mode="lines+markers", name=t.label, showlegend=False,
                                 line=dict(color=color, width=2), marker=dict(size=5, color=color),
                                 hovertemplate="x = (%{x:.3f}, %{y:.3f})<extra>" + t.label + "</extra>"),
                      row=r, col=c)
        rejected = np.flatnonzero(~t.accepted)
        if len(rejected):
            cand = t.iterates[rejected] + t.steps[rejected]
            xs, ys = [], []
            for a, b in zip(t.iterates[rejected], cand):
                xs += [a[0], b[0], None]
                ys += [a[1], b[1], None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", showlegend=False, hoverinfo="skip",
                                     line=dict(color=_REJECT_COLOR, width=1, dash="dot")), row=r, col=c)
            fig.add_trace(go.Scatter(x=cand[:, 0], y=cand[:, 1], mode="markers", showlegend=False,
                                     hovertemplate="rejected step<extra></extra>",
                                     marker=dict(symbol="x-thin", size=7, color=_REJECT_COLOR,
                                                 line=dict(width=1.5, color=_REJECT_COLOR))), row=r, col=c)
        fig.add_trace(go.Scatter(x=[problem.minimizer[0]], y=[problem.minimizer[1]], mode="markers",
                                 showlegend=False, hovertemplate="minimizer<extra></extra>",
                                 marker=dict(symbol="star", size=14, color="#111")), row=r, col=c)
        fig.update_xaxes(range=[x0, x1], row=r, col=c, showgrid=False, zeroline=False, constrain="domain",
                         showline=True, linecolor="#bbb", mirror=True)
        fig.update_yaxes(range=[y0, y1], row=r, col=c, showgrid=False, zeroline=False, constrain="domain",
                         showline=True, linecolor="#bbb", mirror=True,
                         scaleanchor=f"x{'' if i == 0 else i + 1}", scaleratio=1)
    fig.update_layout(template=_TEMPLATE, height=height * nrows, margin=dict(l=40, r=20, t=50, b=40),
                      showlegend=False, hovermode="closest")
    return fig

