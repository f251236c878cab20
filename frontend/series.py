"""Pure data shaping for the charts: merging fetched points, downsampling, smoothing, seed bands, tables."""
from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "X_AXES",
    "FORWARD_COST",
    "with_x",
    "is_active",
    "append_points",
    "downsample_minmax",
    "ema",
    "series_key",
    "series_label",
    "group_runs",
    "build_curves",
    "tr_frame",
    "runs_table",
    "pick_reconstruction",
    "short_labels",
    "format_budget",
    "format_time",
    "tr_thresholds",
]

ACTIVE = frozenset({"queued", "running"})
TERMINAL = frozenset({"completed", "diverged", "failed", "cancelled", "interrupted"})

# x-axis name -> (column in metric/eval points, axis title)
X_AXES: dict[str, tuple[str, str]] = {
    "backprops": ("backprops", "Backprops (gradients + Hessian-vector products)"),
    "epochs": ("epoch", "Epochs"),
    "wall time": ("wall_time", "Wall time (s)"),
    "steps": ("step", "Optimizer steps"),
    "backprops + forwards": ("cost", "Backprops + forwards (a forward pass counted as ⅓ backprop)"),
}
# The usual convention: a forward pass (the ρ check) costs about a third of a backprop (forward + backward).
FORWARD_COST = 1.0 / 3.0


def with_x(df: pd.DataFrame, x: str, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """``df`` with the x column ``x`` present when it is derived: ``cost`` = backprops + ⅓·forwards.

    Points without ``forwards`` (evaluations) take it from ``reference`` (the run's metric points) at the
    same step; a step before any metric point (the evaluation at step 0) has made no forward pass yet.
    Other columns, and frames that already carry ``x``, are returned unchanged.
    """
    if x != "cost" or x in df.columns or "backprops" not in df.columns:
        return df
    if "forwards" in df.columns:
        forwards = pd.to_numeric(df["forwards"], errors="coerce").fillna(0.0)
    elif reference is not None and not reference.empty and {"step", "forwards"} <= set(reference.columns):
        ref = reference[["step", "forwards"]].dropna().drop_duplicates("step").set_index("step")["forwards"]
        forwards = df["step"].map(ref).astype(float)
        forwards = forwards.where(df["step"] != 0, 0.0)
    else:
        return df
    return df.assign(cost=pd.to_numeric(df["backprops"], errors="coerce") + FORWARD_COST * forwards)


def is_active(run: Mapping[str, Any]) -> bool:
    return run.get("status") in ACTIVE


def append_points(existing: pd.DataFrame | None, points: list[dict[str, Any]]) -> pd.DataFrame:
    """``existing`` plus new ``points`` (dicts with a ``step``), one row per step (newest wins), by step."""
    new = pd.DataFrame.from_records(points) if points else None
    if existing is None or existing.empty:
        out = new if new is not None else pd.DataFrame({"step": pd.Series(dtype="int64")})
    elif new is None:
        return existing
    else:
        out = pd.concat([existing, new], ignore_index=True)
    if "step" not in out.columns:
        raise ValueError("points must carry a 'step' field")
    out = out.drop_duplicates("step", keep="last").sort_values("step", kind="stable").reset_index(drop=True)
    return out


def downsample_minmax(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ~``max_points`` points that keep the first, the last and every bucket's min and max.

    The series is cut into ``max_points // 2`` equal index buckets; per bucket the positions of the smallest
    and largest ``y`` are kept, so spikes survive (NaNs are ignored). Returns sorted unique indices.
    """
    if max_points < 4:
        raise ValueError(f"Invalid max_points: {max_points}; need at least 4")
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    edges = np.linspace(1, n - 1, buckets + 1).astype(int)
    keep = [0, n - 1]
    filled = np.where(np.isnan(y), np.nan, y)
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        seg = filled[lo:hi]
        if np.all(np.isnan(seg)):
            keep.append(lo)
            continue
        keep.append(lo + int(np.nanargmin(seg)))
        keep.append(lo + int(np.nanargmax(seg)))
    return np.unique(np.array(keep))


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); ``weight`` in [0, 1), 0 = none.

    NaNs stay NaN and do not disturb the average.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"Invalid smoothing weight: {weight}; use a value in [0, 1)")
    y = np.asarray(y, dtype=float)
    if weight == 0 or len(y) == 0:
        return y.copy()
    out = np.full_like(y, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(y):
        if np.isnan(v):
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


_SEED_SUFFIX = re.compile(r"\s*\(seed \d+\)\s*$")


def series_key(run: Mapping[str, Any]) -> str:
    """Runs that differ only in their seed share a key (optimizer + hyperparameters + batch size)."""
    cfg = run.get("config") or {}
    opt = cfg.get("optimizer") or {}
    return json.dumps([run.get("optimizer") or opt.get("name"), opt.get("hyperparameters") or {},
                       cfg.get("batch_size")], sort_keys=True, default=str)


def series_label(run: Mapping[str, Any]) -> str:
    """The run's label without its ``(seed N)`` suffix."""
    label = run.get("label") or run.get("optimizer") or f"run {run.get('id')}"
    return _SEED_SUFFIX.sub("", str(label))


def group_runs(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs grouped by :func:`series_key`, in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(series_key(r), []).append(r)
    return groups


def _unique_labels(groups: dict[str, list[Mapping[str, Any]]]) -> dict[str, str]:
    """Series labels, disambiguated with the differing hyperparameters when two series share a label."""
    labels = {k: series_label(rs[0]) for k, rs in groups.items()}
    counts: dict[str, int] = {}
    for v in labels.values():
        counts[v] = counts.get(v, 0) + 1
    for k, rs in groups.items():
        if counts[labels[k]] > 1:
            hp = ((rs[0].get("config") or {}).get("optimizer") or {}).get("hyperparameters") or {}
            extra = ", ".join(f"{a}={b}" for a, b in sorted(hp.items())) or "defaults"
            labels[k] = f"{labels[k]} ({extra})"
    return labels


_CURVE_COLUMNS = ["series", "label", "optimizer", "x", "y", "lo", "hi", "seeds"]


def build_curves(runs: list[Mapping[str, Any]], frames: Mapping[int, pd.DataFrame], *, x: str, y: str,
                 smoothing: float = 0.0, max_points: int = 1000, aggregate: bool = True,
                 reference: Mapping[int, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One curve per series (runs that differ only by seed), ready for a chart builder.

    Args:
        runs: Run dicts (API shape).
        frames: run id -> DataFrame of points with columns ``x`` and ``y``.
        x, y: column names (e.g. ``"backprops"``, ``"train_loss"``).
        smoothing: EMA weight in [0, 1), applied per run before aggregation.
        max_points: per curve (min/max-preserving for single runs; grid size for seed means).
        aggregate: with several seeds, draw mean ± std (``lo``/``hi``) instead of one curve per run.
        reference: run id -> metric points, to derive an x column the ``frames`` lack (see :func:`with_x`).

    Returns a DataFrame with columns ``series, label, optimizer, x, y, lo, hi, seeds`` (``lo``/``hi`` are NaN
    where there is no band).
    """
    groups = group_runs(runs)
    labels = _unique_labels(groups)
    parts: list[pd.DataFrame] = []
    for key, members in groups.items():
        xy = []
        for r in members:
            df = frames.get(r["id"])
            if df is not None and not df.empty:
                df = with_x(df, x, (reference or {}).get(r["id"]))
            if df is None or df.empty or x not in df.columns or y not in df.columns:
                continue
            d = df[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x, kind="stable")
            if d.empty:
                continue
            xy.append((r, d[x].to_numpy(float), ema(d[y].to_numpy(float), smoothing)))
        if not xy:
            continue
        opt = str(members[0].get("optimizer") or "")
        if len(xy) == 1 or not aggregate:
            for r, xs, ys in xy:
                idx = downsample_minmax(ys, max_points) if len(ys) > max_points else slice(None)
                label = labels[key] if len(xy) == 1 else f"{labels[key]} (seed {r.get('seed')})"
                parts.append(pd.DataFrame({"series": key if len(xy) == 1 else f"{key}#{r['id']}", "label": label,
                                           "optimizer": opt, "x": xs[idx], "y": ys[idx], "lo": np.nan,
                                           "hi": np.nan, "seeds": 1}))
            continue
        lo_x = min(xs[0] for _, xs, _ in xy)
        hi_x = max(xs[-1] for _, xs, _ in xy)
        grid = np.linspace(lo_x, hi_x, max(2, min(max_points, max(len(xs) for _, xs, _ in xy))))
        stack = np.full((len(xy), len(grid)), np.nan)
        for i, (_, xs, ys) in enumerate(xy):
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            stack[i, inside] = np.interp(grid[inside], xs, ys)
        count = np.sum(~np.isnan(stack), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are dropped below
            mean = np.nanmean(stack, axis=0)
            std = np.where(count > 1, np.nanstd(stack, axis=0), np.nan)
        ok = count > 0
        parts.append(pd.DataFrame({"series": key, "label": f"{labels[key]} (mean ± std, {len(xy)} seeds)",
                                   "optimizer": opt, "x": grid[ok], "y": mean[ok], "lo": (mean - std)[ok],
                                   "hi": (mean + std)[ok], "seeds": len(xy)}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("x", "y", "lo", "hi") else "object")
                             for c in _CURVE_COLUMNS})
    return pd.concat(parts, ignore_index=True)[_CURVE_COLUMNS]


_TR_COLUMNS = ["radius", "new_radius", "rho", "cg_iterations", "cg_exit", "accepted", "train_loss"]


def tr_frame(runs: list[Mapping[str, Any]], frames: Mapping[int, pd.DataFrame], *, x: str,
             max_points: int = 2000) -> pd.DataFrame:
    """Trust-region internals of the TR runs among ``runs``, stacked: one row per (kept) step.

    Columns: ``run_id, label, optimizer, x, radius, rho, cg_iterations, cg_exit, accepted, train_loss``.
    Long runs are thinned to ``max_points`` per run by stride, always keeping rejected steps and the
    extremes of ρ and the radius.
    """
    parts = []
    labels = {r["id"]: r.get("label") or series_label(r) for r in runs}
    for r in runs:
        df = frames.get(r["id"])
        if df is not None and not df.empty:
            df = with_x(df, x)
        if df is None or df.empty or "radius" not in df.columns or x not in df.columns:
            continue
        d = df[df["radius"].notna()]
        if d.empty:
            continue
        if len(d) > max_points:
            keep = np.zeros(len(d), dtype=bool)
            keep[np.linspace(0, len(d) - 1, max_points // 2).astype(int)] = True
            for col in ("rho", "radius"):
                keep[downsample_minmax(pd.to_numeric(d[col], errors="coerce").to_numpy(float), max_points // 4)] = True
            if "accepted" in d.columns:
                rejected = np.flatnonzero(d["accepted"].to_numpy() == False)  # noqa: E712 (object column)
                keep[rejected[np.linspace(0, len(rejected) - 1, min(len(rejected), max_points // 4)).astype(int)]
                     if len(rejected) else []] = True
            d = d[keep]
        out = pd.DataFrame({"run_id": r["id"], "label": labels[r["id"]], "optimizer": r.get("optimizer") or "",
                            "x": pd.to_numeric(d[x], errors="coerce").to_numpy(float)})
        for col in _TR_COLUMNS:
            out[col] = d[col].to_numpy() if col in d.columns else np.nan
        parts.append(out)
    if not parts:
        return pd.DataFrame(columns=["run_id", "label", "optimizer", "x", *_TR_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def format_time(ts: str | None) -> str:
    """An API timestamp (ISO, UTC) in local time, to the second; ``""`` for none."""
    if not ts:
        return ""
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_budget(budget: Mapping[str, Any] | None) -> str:
    """``{"epochs": 2}`` -> ``"2 epochs"``; several limits are joined with "or"."""
    if not budget:
        return ""
    units = {"epochs": "epochs", "backprops": "backprops", "seconds": "s"}
    parts = [f"{budget[k]:g} {u}" if isinstance(budget[k], (int, float)) else f"{budget[k]} {u}"
             for k, u in units.items() if budget.get(k) is not None]
    return " or ".join(parts)


def runs_table(runs: list[Mapping[str, Any]], comparisons: Mapping[int, str] | None = None) -> pd.DataFrame:
    """The Runs page table: one row per run, newest first."""
    comparisons = comparisons or {}
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        cid = r.get("comparison_id")
        rows.append({
            "id": r["id"],
            "run": r.get("label") or series_label(r),
            "comparison": (f"#{cid} {comparisons.get(cid, '')}".strip() if cid is not None else "—"),
            "status": r.get("status", ""),
            "progress": float(r.get("progress") or 0.0),
            "dataset / model": f"{cfg.get('dataset', '?')} / {cfg.get('model', '?')}",
            "budget": format_budget(cfg.get("budget")),
            "device": r.get("device") or "",
            "started": format_time(r.get("started_at")) or ("waiting" if r.get("status") == "queued" else ""),
            "error": r.get("error") or "",
        })
    df = pd.DataFrame(rows, columns=["id", "run", "comparison", "status", "progress", "dataset / model", "budget",
                                     "device", "started", "error"])
    return df.sort_values("id", ascending=False, kind="stable").reset_index(drop=True)


def short_labels(runs: Sequence[Mapping[str, Any]], optimizer_labels: Mapping[str, str]) -> dict[int, str]:
    """Column headers: the optimizer's label (e.g. "TR RMSprop"), or the full series label where two runs
    share an optimizer."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.get("optimizer", "")] = counts.get(r.get("optimizer", ""), 0) + 1
    return {r["id"]: (optimizer_labels.get(r.get("optimizer", ""), series_label(r))
                      if counts[r.get("optimizer", "")] == 1 else series_label(r)) for r in runs}


def pick_reconstruction(steps: list[int], backprops: list[float], budget: float | None) -> int | None:
    """The step of the latest reconstruction within ``budget`` backprops (``None`` budget: the latest)."""
    if not steps:
        return None
    if budget is None:
        return max(steps)
    pairs = sorted(zip(backprops, steps))
    within = [s for b, s in pairs if b <= budget]
    return within[-1] if within else None


def tr_thresholds(runs: Sequence[Mapping[str, Any]], defaults: tuple[float, float] = (0.01, 0.95)
                  ) -> tuple[float, float] | None:
    """(η₁, η₂) to mark on the ρ panel when all TR runs share them; ``None`` when they differ."""
    seen = set()
    for r in runs:
        opt = ((r.get("config") or {}).get("optimizer") or {})
        if not str(opt.get("name", "")).startswith("tr-"):
            continue
        hp = opt.get("hyperparameters") or {}
        seen.add((float(hp.get("eta1", defaults[0])), float(hp.get("eta2", defaults[1]))))
    return seen.pop() if len(seen) == 1 else None
