"""Pure data shaping for the charts: merging fetched points, downsampling, smoothing, seed bands, tables."""
from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, UTC
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from frontend.run_states import is_active  # noqa: F401 - re-exported: views call series.is_active
from trainer.downsample import minmax_indices  # numpy only: the one min/max downsampling, shared with the API

__all__ = [
    "X_AXES",
    "converged_reason",
    "FORWARD_COST",
    "DERIVED_X",
    "with_x",
    "is_active",
    "append_points",
    "bound_rows",
    "downsample_minmax",
    "ema",
    "ema_x",
    "series_key",
    "series_label",
    "group_runs",
    "build_curves",
    "tr_frame",
    "runs_table",
    "final_result",
    "chart_data_csv",
    "format_duration",
    "eta_seconds",
    "RUN_FILTERS",
    "filter_values",
    "filter_runs",
    "finals_table",
    "pick_reconstruction",
    "compact_labels",
    "optimizer_label",
    "flatten_config",
    "describe_config",
    "config_diff",
    "group_labels",
    "relabel",
    "format_budget",
    "format_time",
    "tr_thresholds",
    "is_trust_region",
]


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
# x columns computed in the UI (:func:`with_x`) from the stored fields they need
DERIVED_X: dict[str, tuple[str, ...]] = {"cost": ("backprops", "forwards")}


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


def append_points(existing: pd.DataFrame | None, points: list[dict[str, Any]] | pd.DataFrame, *,
                  max_rows: int | None = None, keep_steps: tuple[int, int] | None = None) -> pd.DataFrame:
    """``existing`` plus new ``points`` (dicts, or a frame, with a ``step``), one row per step (newest wins), by step.

    The usual live case (new steps all after the last one held) appends without re-sorting; overlapping
    points take the slow path (merge, newest wins, sort). With ``max_rows``, a frame that grows past it is
    thinned to ``max_rows // 2`` rows by :func:`bound_rows` (so thinning happens once per ``max_rows // 2``
    new rows, not every refresh).
    """
    if isinstance(points, pd.DataFrame):
        new = points if not points.empty else None
    else:
        new = pd.DataFrame.from_records(points) if points else None
    if new is not None and "step" not in new.columns:
        raise ValueError("points must carry a 'step' field")
    if existing is None or existing.empty:
        if new is None:
            return pd.DataFrame({"step": pd.Series(dtype="int64")})
        out = new
        if not (out["step"].is_monotonic_increasing and out["step"].is_unique):
            out = out.drop_duplicates("step", keep="last").sort_values("step", kind="stable")
        out = out.reset_index(drop=True)
    elif new is None:
        return existing
    elif (new["step"].is_monotonic_increasing and new["step"].is_unique
          and new["step"].iloc[0] > existing["step"].iloc[-1]):
        out = pd.concat([existing, new], ignore_index=True)
    else:
        out = pd.concat([existing, new], ignore_index=True)
        out = out.drop_duplicates("step", keep="last").sort_values("step", kind="stable").reset_index(drop=True)
    if max_rows is not None and len(out) > max_rows:
        out = bound_rows(out, max(4, max_rows // 2), keep_steps=keep_steps)
    return out


def bound_rows(df: pd.DataFrame, target: int, *, y: str = "train_loss",
               keep_steps: tuple[int, int] | None = None) -> pd.DataFrame:
    """At most ~``target`` rows of ``df`` (by step) that keep the shape of ``y``: min/max-preserving on ``y``
    (evenly spaced when ``df`` has no ``y``), plus the rejected TR steps (``accepted`` is False; at most
    ``target // 4`` of them, evenly spread, so the result stays bounded) and every row with ``keep_steps[0] <= step <= keep_steps[1]`` (a range the user asked to see in detail)."""
    n = len(df)
    if n <= target:
        return df
    keep = np.zeros(n, dtype=bool)
    if y in df.columns:
        keep[downsample_minmax(pd.to_numeric(df[y], errors="coerce").to_numpy(float), max(4, target))] = True
    else:
        keep[np.linspace(0, n - 1, max(2, target)).round().astype(int)] = True
    if "accepted" in df.columns:
        rejected = np.flatnonzero((df["accepted"] == False).to_numpy(dtype=bool))  # noqa: E712 (None allowed)
        cap = max(1, target // 4)
        if len(rejected) > cap:
            rejected = rejected[np.linspace(0, len(rejected) - 1, cap).round().astype(int)]
        keep[rejected] = True
    if keep_steps is not None:
        steps = df["step"].to_numpy()
        keep |= (steps >= keep_steps[0]) & (steps <= keep_steps[1])
    return df[keep].reset_index(drop=True)


def downsample_minmax(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ~``max_points`` points that keep the first, the last and every bucket's min and max
    (``trainer.downsample.minmax_indices``, the API's own; NaNs are ignored). The UI asks for at least 4."""
    if max_points < 4:
        raise ValueError(f"Invalid max_points: {max_points}; need at least 4")
    return minmax_indices(np.asarray(y, dtype=float), max_points)


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); ``weight`` in [0, 1), 0 = none.

    NaNs stay NaN and do not disturb the average.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"Invalid smoothing weight: {weight}; use a value in [0, 1)")
    y = np.asarray(y, dtype=float)
    if weight == 0 or len(y) == 0:
        return y.copy()
    # pandas' adjusted EWM is Σ wⁱ y_(t-i) / Σ wⁱ, i.e. the debiased average; ignore_na skips NaNs entirely
    out = pd.Series(y).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean().to_numpy(dtype=float, copy=True)
    out[np.isnan(y)] = np.nan
    return out


# Smoothing by x-distance: the weight applies once per 1/SMOOTHING_RESOLUTION of the chart's x range, for every
# run alike (0.9: a window of ~3% of the range; 0.99: ~30%).
SMOOTHING_RESOLUTION = 300


def ema_x(x: np.ndarray, y: np.ndarray, weight: float, unit: float) -> np.ndarray:
    """Debiased exponential moving average by distance along x (TensorBoard's smoothing, made rate-free).

    Between consecutive points the old average decays by ``weight ** (dx / unit)``, so the window is the
    same length in x (backprops, epochs, ...) whether a run logs 16 or 600 points per epoch; a run with one
    point per ``unit`` gets exactly :func:`ema`. NaNs stay NaN and do not disturb the average.

    Args:
        x: non-decreasing positions; y: values (same length).
        weight: in [0, 1), 0 = no smoothing.
        unit: x distance over which the weight applies once (> 0).
    """
    if not 0 <= weight < 1:
        raise ValueError(f"Invalid smoothing weight: {weight}; use a value in [0, 1)")
    if not (np.isfinite(unit) and unit > 0):
        raise ValueError(f"Invalid smoothing unit: {unit}; use a positive distance")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"Invalid series: {len(x)} x values for {len(y)} y values")
    if weight == 0 or len(y) == 0:
        return y.copy()
    out = np.full_like(y, np.nan)
    acc = norm = 0.0
    last_x: float | None = None
    for i, (xi, v) in enumerate(zip(x, y)):
        if np.isnan(v):
            continue
        d = weight if last_x is None else weight ** (max(0.0, xi - last_x) / unit)
        acc = d * acc + (1 - d) * v
        norm = d * norm + (1 - d)
        out[i] = acc / norm if norm > 0 else v
        last_x = xi
    return out


_SEED_SUFFIX = re.compile(r"\s*\(seed \d+\)\s*$")
_SEED_TEXT = re.compile(r" · seed \d+$")


def series_key(run: Mapping[str, Any]) -> str:
    """The run's ``group_key`` from the API (its resolved config minus the seed: the one group identity, issue 19).
    A run without one (an older server) is its own group: runs are never merged on a guess."""
    return str(run.get("group_key") or f"run-{run.get('id')}")


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


def distinct_seeds(members: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(one run per seed: the lowest run id, the other runs of a repeated seed). A group's seed count is its
    number of distinct seeds; a repeated seed is shown apart, never averaged as another seed."""
    first: dict[Any, Mapping[str, Any]] = {}
    repeats = []
    for r in sorted(members, key=lambda r: (r.get("id") is None, r.get("id") or 0)):
        if r.get("seed") in first:
            repeats.append(r)
        else:
            first[r.get("seed")] = r
    keep = {id(r) for r in first.values()}
    return [r for r in members if id(r) in keep], repeats


_SETTING_TOKEN = re.compile(r"\s+\S+=\S+")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def optimizer_label(run: Mapping[str, Any], optimizer_labels: Mapping[str, str] | None = None) -> str:
    """The optimizer's display name ("TR uniform"): from the API's metadata, else the run label's head."""
    opt = str(run.get("optimizer") or ((run.get("config") or {}).get("optimizer") or {}).get("name") or "")
    if optimizer_labels and opt in optimizer_labels:
        return optimizer_labels[opt]
    head = _SETTING_TOKEN.sub("", series_label(run)).strip()
    return head or opt or f"run {run.get('id')}"


def flatten_config(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's configuration as flat ``name -> value`` (hyperparameter overrides by name, ``budget.epochs``...)."""
    cfg = run.get("config") or {}
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key == "optimizer":
            out["optimizer"] = (value or {}).get("name") or run.get("optimizer")
            for hk, hv in sorted(((value or {}).get("hyperparameters") or {}).items()):
                out[hk] = hv
        elif isinstance(value, dict):
            for sk, sv in value.items():
                if sv is not None:
                    out[f"{key}.{sk}"] = sv
        elif value is not None:
            out[key] = value
    return out


def describe_config(run: Mapping[str, Any], optimizer_labels: Mapping[str, str] | None = None) -> str:
    """The full configuration in one line, for hovers: "TR uniform · eta1=1e-05 ... · batch 512 · ..."."""
    flat = flatten_config(run)
    cfg = run.get("config") or {}
    hp = ((cfg.get("optimizer") or {}).get("hyperparameters") or {})
    parts = [optimizer_label(run, optimizer_labels)]
    if hp:
        parts.append(" ".join(f"{k}={_fmt(v)}" for k, v in sorted(hp.items())))
    parts.append(f"batch {cfg.get('batch_size') or 'default'}")
    parts.append(f"{cfg.get('dataset', '?')}/{cfg.get('model', '?')}")
    budget = format_budget(cfg.get("budget"))
    if budget:
        parts.append(budget)
    if "seed" in flat:
        parts.append(f"seed {flat['seed']}")
    return " · ".join(parts)


_LABEL_KEYS_IGNORED = frozenset({"seed", "optimizer"})


def compact_labels(runs: Sequence[Mapping[str, Any]], optimizer_labels: Mapping[str, str] | None = None,
                   *, key: Any = None) -> dict[Any, str]:
    """Short labels: the optimizer's name plus only the settings that tell it apart from other runs of the
    same optimizer here (e.g. "SGD lr=0.1" beside "SGD lr=0.01"; a lone "TR uniform" stays just that).

    Args:
        runs: run dicts; runs sharing ``key(run)`` (default: the run id) share a label.
        optimizer_labels: registry name -> display name (``meta["optimizers"]``); default: the run label's head.
    """
    key = key or (lambda r: r["id"])
    reps: dict[Any, Mapping[str, Any]] = {}
    for r in runs:
        reps.setdefault(key(r), r)
    flat = {k: flatten_config(r) for k, r in reps.items()}
    by_opt: dict[str, list[Any]] = {}
    for k, r in reps.items():
        by_opt.setdefault(str(r.get("optimizer") or flat[k].get("optimizer")), []).append(k)
    labels: dict[Any, str] = {}
    for keys in by_opt.values():
        names = sorted({n for k in keys for n in flat[k]} - _LABEL_KEYS_IGNORED)
        differing = [n for n in names if len({json.dumps(flat[k].get(n), default=str) for k in keys}) > 1]
        for k in keys:
            extra = [f"{n.replace('batch_size', 'batch')}={_fmt(flat[k][n])}" for n in differing if n in flat[k]]
            labels[k] = " ".join([optimizer_label(reps[k], optimizer_labels), *extra])
    seen: dict[str, int] = {}
    for v in labels.values():
        seen[v] = seen.get(v, 0) + 1
    seeds: dict[str, set[Any]] = {}
    for k, v in labels.items():
        seeds.setdefault(v, set()).add(reps[k].get("seed"))
    return {k: (v if seen[v] == 1 else f"{v} (seed {reps[k].get('seed')})" if len(seeds[v]) == seen[v]
                else f"{v} (#{reps[k]['id']})") for k, v in labels.items()}


def group_labels(runs: Sequence[Mapping[str, Any]], optimizer_labels: Mapping[str, str] | None = None
                 ) -> dict[str, str]:
    """The API's group names of ``runs`` (a run's label without its seed, as the results and paired-curve routes
    name groups) -> the compact labels the charts give the same runs (:func:`compact_labels`)."""
    return compact_labels(runs, optimizer_labels, key=series_label)


def relabel(text: str, labels: Mapping[str, str]) -> str:
    """``text`` (e.g. a verdict sentence) with every group name in ``labels`` replaced by its compact label."""
    names = sorted((n for n in labels if n and labels[n] != n), key=len, reverse=True)
    if not names:
        return text
    return re.sub("|".join(map(re.escape, names)), lambda m: labels[m.group(0)], text)


def config_diff(runs: Sequence[Mapping[str, Any]], optimizer_labels: Mapping[str, str] | None = None
                ) -> pd.DataFrame:
    """One row per run, one column per configuration setting whose value differs between the runs
    ("—" where a run does not set it). Columns ``id`` and ``run`` come first."""
    flat = [flatten_config(r) for r in runs]
    names = list(dict.fromkeys(n for f in flat for n in f))
    differing = [n for n in names if len({json.dumps(f.get(n), default=str) for f in flat}) > 1]
    labels = compact_labels(runs, optimizer_labels)
    rows = [{"id": r["id"], "run": labels[r["id"]], **{n: _fmt(f[n]) if n in f else "—" for n in differing}}
            for r, f in zip(runs, flat)]
    return pd.DataFrame(rows, columns=["id", "run", *differing])


_CURVE_COLUMNS = ["series", "label", "optimizer", "x", "y", "lo", "hi", "seeds", "config"]


def build_curves(runs: list[Mapping[str, Any]], frames: Mapping[int, pd.DataFrame], *, x: str, y: str,
                 smoothing: float = 0.0, max_points: int = 1000, aggregate: bool = True,
                 optimizer_labels: Mapping[str, str] | None = None,
                 reference: Mapping[int, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One curve per series (runs that differ only by seed), ready for a chart builder.

    Args:
        runs: Run dicts (API shape).
        frames: run id -> DataFrame of points with columns ``x`` and ``y``.
        x, y: column names (e.g. ``"backprops"``, ``"train_loss"``).
        smoothing: EMA weight in [0, 1) per 1/300 of the x range of all these runs (:func:`ema_x`), applied
            per run before aggregation; 0 (the default, and what evaluation curves get) leaves points raw.
        max_points: per curve (min/max-preserving for single runs; grid size for seed means).
        aggregate: with several seeds, draw mean ± std (``lo``/``hi``) instead of one curve per run.
        optimizer_labels: registry name -> display name, for the short labels (:func:`compact_labels`).
        reference: run id -> metric points, to derive an x column the ``frames`` lack (see :func:`with_x`).

    Returns a DataFrame with columns ``series, label, optimizer, x, y, lo, hi, seeds, config`` (``lo``/``hi``
    are NaN where there is no band; ``config`` is the full configuration in words, for the hover).
    """
    groups = group_runs(runs)
    labels = compact_labels(runs, optimizer_labels, key=series_key)
    parts: list[pd.DataFrame] = []
    data: dict[int, pd.DataFrame] = {}
    for r in runs:
        df = frames.get(r["id"])
        if df is not None and not df.empty:
            df = with_x(df, x, (reference or {}).get(r["id"]))
        if df is None or df.empty or x not in df.columns or y not in df.columns:
            continue
        d = df[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x, kind="stable")
        if not d.empty:
            data[r["id"]] = d
    unit = 1.0
    if data:  # one smoothing window in x for every run of the chart
        span = max(d[x].iloc[-1] for d in data.values()) - min(d[x].iloc[0] for d in data.values())
        unit = span / SMOOTHING_RESOLUTION if span > 0 else 1.0
    for key, all_members in groups.items():
        members, repeats = distinct_seeds(all_members)
        if aggregate and len(members) > 1 and repeats:
            for r in repeats:  # drawn on their own, flagged: never averaged as if they were seeds
                d = data.get(r["id"])
                if d is not None:
                    xs = d[x].to_numpy(float)
                    ys = ema_x(xs, d[y].to_numpy(float), smoothing, unit)
                    idx = downsample_minmax(ys, max_points) if len(ys) > max_points else slice(None)
                    parts.append(pd.DataFrame({"series": f"{key}#{r['id']}", "optimizer": str(r.get("optimizer") or ""),
                                               "label": f"{labels[key]} (seed {r.get('seed')} repeated, run {r['id']})",
                                               "x": xs[idx], "y": ys[idx], "lo": np.nan, "hi": np.nan, "seeds": 1,
                                               "config": describe_config(r, optimizer_labels)}))
        elif repeats:
            members = list(all_members)
        xy = []
        for r in members:
            d = data.get(r["id"])
            if d is None:
                continue
            xs = d[x].to_numpy(float)
            xy.append((r, xs, ema_x(xs, d[y].to_numpy(float), smoothing, unit)))
        if not xy:
            continue
        opt = str(members[0].get("optimizer") or "")
        if len(xy) == 1 or not aggregate:
            for r, xs, ys in xy:
                idx = downsample_minmax(ys, max_points) if len(ys) > max_points else slice(None)
                label = labels[key] if len(xy) == 1 else f"{labels[key]} (seed {r.get('seed')})"
                parts.append(pd.DataFrame({"series": key if len(xy) == 1 else f"{key}#{r['id']}", "label": label,
                                           "optimizer": opt, "x": xs[idx], "y": ys[idx], "lo": np.nan,
                                           "hi": np.nan, "seeds": 1, "config": describe_config(r, optimizer_labels)}))
            continue
        lo_x = max(xs[0] for _, xs, _ in xy)
        hi_x = min(xs[-1] for _, xs, _ in xy)  # the band stops where the first seed ends: no jump in the mean
        cut = max(xs[-1] for _, xs, _ in xy) > hi_x
        if hi_x <= lo_x:
            hi_x = lo_x = float(xy[0][1][0])
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
        note = ", cut at the shortest run" if cut else ""
        parts.append(pd.DataFrame({"series": key, "label": f"{labels[key]} (mean ± std, {len(xy)} seeds{note})",
                                   "optimizer": opt, "x": grid[ok], "y": mean[ok], "lo": (mean - std)[ok],
                                   "hi": (mean + std)[ok], "seeds": len(xy),
                                   "config": _SEED_TEXT.sub("", describe_config(xy[0][0], optimizer_labels))
                                   + f" · seeds {', '.join(str(r.get('seed')) for r, _, _ in xy)}"}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("x", "y", "lo", "hi") else "object")
                             for c in _CURVE_COLUMNS})
    return pd.concat(parts, ignore_index=True)[_CURVE_COLUMNS]


_TR_COLUMNS = ["radius", "new_radius", "rho", "cg_iterations", "cg_exit", "accepted", "train_loss"]


def tr_frame(runs: list[Mapping[str, Any]], frames: Mapping[int, pd.DataFrame], *, x: str,
             max_points: int = 2000, optimizer_labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Trust-region internals of the TR runs among ``runs``, stacked: one row per (kept) step.

    Columns: ``run_id, label, optimizer, x, radius, new_radius, rho, cg_iterations, cg_exit, accepted,
    train_loss`` (``radius`` is Δ before the step, ``new_radius`` after its update).
    Long runs are thinned to ``max_points`` per run by stride, always keeping rejected steps and the
    extremes of ρ and the radius.
    """
    parts = []
    labels = compact_labels(runs, optimizer_labels)
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
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_budget(budget: Mapping[str, Any] | None) -> str:
    """``{"epochs": 2}`` -> ``"2 epochs"``; several limits are joined with "or"."""
    if not budget:
        return ""
    units = {"epochs": "epochs", "backprops": "backprops", "seconds": "s"}
    parts = [f"{budget[k]:g} {u}" if isinstance(budget[k], (int, float)) else f"{budget[k]} {u}"
             for k, u in units.items() if budget.get(k) is not None]
    return " or ".join(parts)


def chart_data_csv(curves: Mapping[str, pd.DataFrame], *, x_name: str) -> str:
    """The drawn curves as one CSV: ``chart, series, seeds, <x_name>, y, lo, hi`` (lo/hi: mean ± std)."""
    parts = [c.assign(chart=name)[["chart", "label", "seeds", "x", "y", "lo", "hi"]]
             for name, c in curves.items() if c is not None and not c.empty]
    if not parts:
        return f"chart,series,seeds,{x_name},y,lo,hi\n"
    out = pd.concat(parts, ignore_index=True).rename(columns={"label": "series", "x": x_name})
    return out.to_csv(index=False)


def final_result(run: Mapping[str, Any], name: str) -> float | None:
    """A finished run's final evaluation value (``"test_accuracy"``, ``"test_loss"``...) from its summary."""
    value = (run.get("summary") or {}).get(f"final_{name}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def converged_reason(run: Mapping[str, Any]) -> str:
    """Why a completed run ended early: its summary's message when ``stop_reason`` is "converged" (a convergence
    floor met, or the loss at its floor when a guard tripped; trainer/guards.py), else ``""``."""
    summary = run.get("summary") or {}
    if run.get("status") != "completed" or summary.get("stop_reason") != "converged":
        return ""
    return str(summary.get("message") or "converged")


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``"1 h 2 min"``; ``None`` -> ``""``."""
    if seconds is None or not np.isfinite(seconds):
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days = hours / 24
    return f"{days:,.0f} days" if days < 730 else f"{days / 365:,.0f} years"


def _timestamp(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


ETA_WINDOW_SECONDS = 120.0


def eta_seconds(run: Mapping[str, Any], history: Sequence[tuple[float, float]], now: float) -> float | None:
    """Seconds until a running run uses its budget, from its recent rate.

    Args:
        run: the run (``status``, ``progress``, ``started_at``).
        history: ``(time, progress)`` samples seen by this page, oldest first.
        now: the current time (seconds since the epoch).

    The rate is the progress gained over the last ``ETA_WINDOW_SECONDS`` of samples; with fewer than two
    samples there it is the average since ``started_at``. ``None`` when not running or no progress yet.
    """
    if run.get("status") != "running":
        return None
    progress = float(run.get("progress") or 0.0)
    if progress >= 1.0:
        return 0.0
    recent = [(t, p) for t, p in history if now - t <= ETA_WINDOW_SECONDS]
    if len(recent) >= 2 and recent[-1][1] > recent[0][1] and recent[-1][0] > recent[0][0]:
        rate = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
    else:
        started = _timestamp(run.get("started_at"))
        if started is None or now <= started or progress <= 0:
            return None
        rate = progress / (now - started)
    return (1.0 - progress) / rate if rate > 0 else None


def runs_table(runs: list[Mapping[str, Any]], comparisons: Mapping[int, str] | None = None,
               etas: Mapping[int, float | None] | None = None) -> pd.DataFrame:
    """The Runs page table: one row per run, newest first, with final test accuracy / loss and ETA."""
    comparisons = comparisons or {}
    etas = etas or {}
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        cid = r.get("comparison_id")
        rows.append({
            "id": r["id"],
            "run": r.get("label") or series_label(r),
            "comparison": (f"#{cid} {comparisons.get(cid, '')}".strip() if cid is not None else "—"),
            "owner": r.get("owner") or "",
            "status": r.get("status", ""),
            "progress": float(r.get("progress") or 0.0),
            "ETA": format_duration(etas.get(r["id"])),
            "test acc": final_result(r, "test_accuracy"),
            "test loss": final_result(r, "test_loss"),
            "tags": ", ".join(r.get("tags") or []),
            "dataset / model": f"{cfg.get('dataset', '?')} / {cfg.get('model', '?')}",
            "budget": format_budget(cfg.get("budget")),
            "device": r.get("device") or "",
            "started": format_time(r.get("started_at")) or ("waiting" if r.get("status") == "queued" else ""),
            "error": r.get("error") or converged_reason(r),
        })
    df = pd.DataFrame(rows, columns=["id", "run", "comparison", "owner", "status", "progress", "ETA", "test acc", "test loss",
                                     "tags", "dataset / model", "budget", "device", "started", "error"])
    return df.sort_values("id", ascending=False, kind="stable").reset_index(drop=True)


RUN_FILTERS = ("status", "optimizer", "dataset", "model", "comparison", "tag")


def filter_values(run: Mapping[str, Any], field: str) -> list[Any]:
    """The values of ``field`` (one of ``RUN_FILTERS``) a run can be filtered by."""
    cfg = run.get("config") or {}
    return {
        "status": lambda: [run.get("status")],
        "optimizer": lambda: [run.get("optimizer")],
        "dataset": lambda: [cfg.get("dataset")],
        "model": lambda: [cfg.get("model")],
        "comparison": lambda: [run.get("comparison_id")],
        "tag": lambda: list(run.get("tags") or []),
    }[field]()


def filter_runs(runs: Sequence[Mapping[str, Any]], chosen: Mapping[str, Sequence[Any]], text: str = ""
                ) -> list[Mapping[str, Any]]:
    """Runs matching every non-empty filter (any of its values) and, when given, containing ``text``
    (case-insensitive) in their id (``#12``), label, optimizer, tags or note."""
    for field in chosen:
        if field not in RUN_FILTERS:
            raise ValueError(f"Invalid filter: {field!r}; use one of {RUN_FILTERS}")
    needle = text.strip().lower()
    out = []
    for r in runs:
        if any(values and not set(filter_values(r, f)) & set(values) for f, values in chosen.items()):
            continue
        if needle:
            hay = " ".join([f"#{r['id']}", str(r.get("label") or ""), str(r.get("optimizer") or ""),
                            *(r.get("tags") or []), str(r.get("note") or "")]).lower()
            if needle not in hay:
                continue
        out.append(r)
    return out


def finals_table(runs: Sequence[Mapping[str, Any]], optimizer_labels: Mapping[str, str] | None = None
                 ) -> pd.DataFrame:
    """Mean ± std of the final test accuracy and loss per setting (runs that differ only by seed).

    Only completed runs (their whole budget) with a final evaluation count: a cancelled or diverged run's last
    evaluation is not a final result. ``n`` says how many seeds each row has (std needs 2).
    Columns: ``setting, n, seeds, test acc mean, test acc std, test loss mean, test loss std``.
    """
    groups = group_runs(runs)
    labels = compact_labels(list(runs), optimizer_labels, key=series_key)
    rows = []
    for key, all_members in groups.items():
        members, _ = distinct_seeds(all_members)
        done = [r for r in members if r.get("status") == "completed" and final_result(r, "test_loss") is not None]
        if not done:
            continue
        row: dict[str, Any] = {"setting": labels[key], "n": len(done),
                               "seeds": ", ".join(str(r.get("seed")) for r in done)}
        for name, col in (("test_accuracy", "test acc"), ("test_loss", "test loss")):
            vals = np.array([v for r in done if (v := final_result(r, name)) is not None], dtype=float)
            row[f"{col} mean"] = float(vals.mean()) if len(vals) else None
            row[f"{col} std"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["setting", "n", "seeds", "test acc mean", "test acc std", "test loss mean",
                                       "test loss std"])


def pick_reconstruction(steps: list[int], backprops: list[float], budget: float | None) -> int | None:
    """The step of the latest reconstruction within ``budget`` backprops (``None`` budget: the latest)."""
    if not steps:
        return None
    if budget is None:
        return max(steps)
    pairs = sorted(zip(backprops, steps))
    within = [s for b, s in pairs if b <= budget]
    return within[-1] if within else None


# The family the API gives trust-region optimizers (/api/meta's optimizers[].family, a run's ``family``).
TR_FAMILY = "second-order"


def is_trust_region(run: Mapping[str, Any]) -> bool:
    """Whether ``run`` (a run as the API returns it) used a trust-region optimizer, by its ``family``."""
    return run.get("family") == TR_FAMILY


def tr_thresholds(runs: Sequence[Mapping[str, Any]], defaults: tuple[float, float] = (0.01, 0.95)
                  ) -> tuple[float, float] | None:
    """(η₁, η₂) to mark on the ρ panel when all TR runs share them; ``None`` when they differ."""
    seen = set()
    for r in runs:
        if not is_trust_region(r):
            continue
        opt = ((r.get("config") or {}).get("optimizer") or {})
        hp = opt.get("hyperparameters") or {}
        seen.add((float(hp.get("eta1", defaults[0])), float(hp.get("eta2", defaults[1]))))
    return seen.pop() if len(seen) == 1 else None
