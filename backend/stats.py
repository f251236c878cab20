"""Results statistics of a comparison (numpy + SciPy): smoothed finals, cost to a loss target, calibrated paired verdicts.

Inputs are plain dicts, so the API, the UI's exports and `make reproduce` share one implementation:

    run = {"group": "<group_key>", "name": "Adam lr=0.001", "seed": 0, "status": "completed",
           "budget": {"backprops": 5000},
           "evals": [{"step", "backprops", "epoch", "wall_time", "train_loss", "test_loss", "test_accuracy"}, ...]}

``group`` is the run's ``group_key`` (trainer.identity: the resolved config minus the seed); ``name`` is only how the
group is written (default: the key).

Rules (issue 19, DESIGN.md "Verdicts", rule 12):

- Differences are paired by seed (same seed = same initial weights and data order). A group's seed count is its
  number of distinct seeds; a repeated seed is flagged and only its first run (lowest run id) is used.
- Test: the exact two-sided sign-flip permutation test of a zero mean paired difference, over all 2^n sign flips
  for n <= ``EXACT_MAX_N`` (SciPy's ``permutation_test`` with a seeded Monte Carlo sample above). Interval: the
  paired t-interval (``scipy.stats.t``) for n < ``BCA_MIN_N``, the BCa bootstrap (``scipy.stats.bootstrap``) from
  there on.
- Family: every comparison of one table that is tested is one family; p-values are Holm-adjusted over it (Holm
  1979, family-wise error rate <= 1 - level).
- At least ``MIN_PAIRS`` paired seeds for a test; fewer is "descriptive only" (no interval, no p, no verdict).
- A practical-equivalence margin per criterion (``Metric.margin``): a difference whose interval lies inside
  ±margin, or a significant difference whose mean is inside it, is "no practical difference", never a win.
- A verdict ("better"/"worse") needs Holm-adjusted p <= 1 - level, an interval excluding 0 and a mean difference
  beyond the margin. Each sentence names the test, n, the adjusted p and the interval.
- Cost to a target is a bracket: (last evaluation above, first evaluation at or below) on one axis; the paired
  value is the first evaluation at or below, the bracket width is the resolution (stated, and part of the margin).
  A finished run that never reached the target is right-censored at its last evaluated cost: against a run that
  reached it at no more than that cost the pair's sign is known, so those pairs enter an exact sign test (the
  sign-flip test on the signs); pairs whose order is unknown (both censored) are left out, and the sentence says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from backend.runner.states import ACTIVE_STATES

__all__ = ["AXES", "METRICS", "MIN_PAIRS", "EXACT_MAX_N", "BCA_MIN_N", "CORRECTION", "finite", "smoothed_final",
           "final_value", "cost_to_target", "target_bracket", "mean_std", "bootstrap_ci", "bootstrap_band",
           "sign_flip_p", "mean_interval", "holm", "paired_test", "decide", "paired_curves", "budget_summary",
           "Metric", "target_metric", "results", "results_rows", "results_csv", "results_markdown", "rules_note"]

MIN_PAIRS = 5  # fewer paired seeds than this are descriptive only (issue 19)
EXACT_MAX_N = 16  # all 2^n sign flips up to here (65,536); a seeded Monte Carlo permutation test above
MC_RESAMPLES = 100_000
BCA_MIN_N = 20  # the paired t-interval below this many pairs, the BCa bootstrap from here on
CORRECTION = "Holm"
AXES = {"backprops": "backprops", "epoch": "epochs", "wall_time": "wall time (s)"}
_BUDGET_AXIS = {"backprops": "backprops", "epochs": "epochs", "seconds": "wall time (s)"}
_ACTIVE = {str(s) for s in ACTIVE_STATES}


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def smoothed_final(evals: Sequence[Mapping[str, Any]], key: str = "train_loss", k: int = 3) -> float | None:
    """Mean of the last ``k`` evaluations' finite ``key`` values (fewer if the run has fewer); None if none."""
    if k < 1:
        raise ValueError(f"Invalid smoothing window k={k}: use k >= 1")
    values = [v for v in (finite(e.get(key)) for e in evals) if v is not None]
    return float(np.mean(values[-k:])) if values else None


def final_value(evals: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The last evaluation's ``key`` when finite (the final test loss or accuracy); None otherwise."""
    return finite(evals[-1].get(key)) if evals else None


def cost_to_target(evals: Sequence[Mapping[str, Any]], target: float, *, axis: str = "backprops",
                   key: str = "train_loss") -> float | None:
    """``axis`` (backprops, epoch, wall_time) at the first evaluation with ``key`` ≤ ``target``; None if never."""
    for e in evals:
        v = finite(e.get(key))
        if v is not None and v <= target:
            return finite(e.get(axis))
    return None


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """{"mean", "std" (sample, ddof=1; None for one value: one seed has no spread), "n"} over the values that are
    not None."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if xs.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(xs.mean()), "std": float(xs.std(ddof=1)) if xs.size > 1 else None, "n": int(xs.size)}


def target_bracket(evals: Sequence[Mapping[str, Any]], target: float, *, axis: str = "backprops",
                   key: str = "train_loss") -> tuple[float, float] | None:
    """(last ``axis`` value above ``target``, first at or below it): where the crossing lies at this record's
    resolution (0 when the first evaluation already meets it); None if never reached."""
    previous = 0.0
    for e in evals:
        v, x = finite(e.get(key)), finite(e.get(axis))
        if v is not None and v <= target:
            return (previous, x) if x is not None else None
        if x is not None:
            previous = x
    return None


def _censor_point(evals: Sequence[Mapping[str, Any]], axis: str) -> float | None:
    """The largest ``axis`` value evaluated: a run that never reached a target took more than this."""
    xs = [x for x in (finite(e.get(axis)) for e in evals) if x is not None]
    return max(xs) if xs else None


def bootstrap_ci(diffs: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences.

    Resamples the n differences with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``, so the
    same input gives the same interval) and returns the (1-level)/2 and (1+level)/2 quantiles of the means.
    """
    if not 0.5 <= level < 1:
        raise ValueError(f"Invalid confidence level {level}: use 0.5 <= level < 1")
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("Invalid differences: need at least one, all finite")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_band(diffs: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile bootstrap band of the mean over seeds (rows) of ``diffs`` (seeds × points): the seeds
    are resampled together, so each resample is a whole set of paired curves."""
    if not 0.5 <= level < 1:
        raise ValueError(f"Invalid confidence level {level}: use 0.5 <= level < 1")
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.shape[0], size=(n_boot, d.shape[0]))
    means = d[idx].mean(axis=1)  # n_boot × points
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def paired_curves(runs: Sequence[Mapping[str, Any]], *, reference: str, axis: str = "backprops",
                  key: str = "train_loss", points: int = 100, level: float = 0.95, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Per group, the paired difference (group − reference) of the evaluated ``key`` against ``axis``.

    For each seed both groups ran, both evaluation curves are linearly interpolated onto a common grid of
    ``points`` values from 0 to the smallest final ``axis`` value among all pairs (so every grid point has all
    n pairs); the curve is the mean difference over seeds with a pointwise paired t-interval band (percentile
    bootstrap of whole curves from ``BCA_MIN_N`` seeds); fewer than ``MIN_PAIRS`` seeds get no band (empty lo/hi).
    Groups are keyed by ``group`` (the group key) and written with ``name``; ``reference`` is a key or a name.

    Returns {"reference", "reference_key", "axis", "key", "level", "min_pairs", "band", "groups": [{"group",
    "group_key", "optimizer", "n", "x", "mean", "lo", "hi"}]}; a group with no complete pair has n = 0 and empty
    lists.
    """
    if axis not in AXES:
        raise ValueError(f"Invalid axis {axis!r}: choose from {list(AXES)}")
    if not 2 <= points <= 2000:
        raise ValueError(f"Invalid points {points}: use 2..2000")

    def curve(run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        pts = [(finite(e.get(axis)), finite(e.get(key))) for e in run.get("evals") or []]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if len(pts) < 2:
            return None
        xs, ys = np.array(pts).T
        order = np.argsort(xs, kind="stable")
        return xs[order], ys[order]

    by_group: dict[str, dict[int, Mapping[str, Any]]] = {}
    names: dict[str, str] = {}
    for r in sorted(runs, key=lambda r: int(r["run_id"]) if r.get("run_id") is not None else -1):
        by_group.setdefault(r["group"], {}).setdefault(r["seed"], r)  # a repeated seed: its first run only
        names.setdefault(r["group"], str(r.get("name") or r["group"]))
    if reference not in by_group:
        by_name = [g for g, nm in names.items() if nm == reference]
        if len(by_name) != 1:
            raise ValueError(f"Invalid reference {reference!r}: choose one of {list(names.values())}")
        reference = by_name[0]
    ref = {s: curve(r) for s, r in by_group[reference].items()}
    out: list[dict[str, Any]] = []
    for gkey, seeds in by_group.items():
        if gkey == reference:
            continue
        name = names[gkey]
        pairs = [(c, rc) for s, r in seeds.items() if (rc := ref.get(s)) is not None
                 and (c := curve(r)) is not None]
        optimizer = next(iter(seeds.values())).get("optimizer")
        if not pairs:
            out.append({"group": name, "group_key": gkey, "optimizer": optimizer, "n": 0, "x": [], "mean": [],
                        "lo": [], "hi": []})
            continue
        end = min(min(a[0][-1], b[0][-1]) for a, b in pairs)
        grid = np.linspace(0.0, end, points)
        diffs = np.array([np.interp(grid, *a) - np.interp(grid, *b) for a, b in pairs])
        band: tuple[list[float], list[float]] = ([], [])  # no band from fewer than MIN_PAIRS seeds
        if len(pairs) >= MIN_PAIRS:
            lo, hi, _ = mean_interval(diffs.T, level=level) if len(pairs) < BCA_MIN_N else (
                *bootstrap_band(diffs, level=level, n_boot=n_boot, seed=seed), "")
            band = (np.asarray(lo).tolist(), np.asarray(hi).tolist())
        out.append({"group": name, "group_key": gkey, "optimizer": optimizer, "n": len(pairs), "x": grid.tolist(),
                    "mean": diffs.mean(axis=0).tolist(), "lo": band[0], "hi": band[1]})
    return {"reference": names[reference], "reference_key": reference, "axis": axis, "key": key,
            "level": level, "min_pairs": MIN_PAIRS,
            "band": f"pointwise paired t-interval (percentile bootstrap from {BCA_MIN_N} seeds); none below "
                    f"{MIN_PAIRS} seeds", "groups": out}


def budget_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which budget axis the runs share and whether their budgets are equal.

    Returns {"axis": "backprops" | "epochs" | "wall time (s)" | None, "equal": bool, "budgets": {group: budget},
    "note": a sentence}. Budgets are equal when every run has the same budget dict.
    """
    per_group: dict[str, dict[str, Any]] = {}
    distinct: list[dict[str, Any]] = []
    for r in runs:
        b = {k: v for k, v in (r.get("budget") or {}).items() if v is not None}
        per_group.setdefault(str(r.get("name") or r["group"]), b)
        if b not in distinct:
            distinct.append(b)
    if len(distinct) == 1 and len(distinct[0]) == 1:
        (name, value), = distinct[0].items()
        return {"axis": _BUDGET_AXIS.get(name, name), "equal": True, "budgets": per_group,
                "note": f"equal budgets in {_BUDGET_AXIS.get(name, name)}: {value:g} per run"}
    if len(distinct) == 1:
        parts = ", ".join(f"{_BUDGET_AXIS.get(k, k)} {v:g}" for k, v in distinct[0].items())
        return {"axis": None, "equal": True, "budgets": per_group,
                "note": f"equal budgets, the first limit reached ends a run ({parts})"}
    return {"axis": None, "equal": False, "budgets": per_group,
            "note": "UNEQUAL budgets: " + "; ".join(f"{g}: {b}" for g, b in per_group.items())
            + ". Final values are not compared; runs that stopped before a target are not counted as slower."}


def _sign_matrix(n: int) -> np.ndarray:
    """All 2^n sign vectors (rows) of length n."""
    return (((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(np.float64)


def sign_flip_p(diffs: Sequence[float] | np.ndarray, *, seed: int = 0) -> np.ndarray | float:
    """Two-sided p-value of the sign-flip permutation test of a zero mean (statistic: the mean difference).

    Under the null the paired differences are symmetric about 0, so every one of the 2^n sign patterns is equally
    likely; p = the fraction of patterns whose |mean| is at least the observed one (exact enumeration for
    n <= ``EXACT_MAX_N``; above, ``scipy.stats.permutation_test(permutation_type="samples")`` with
    ``MC_RESAMPLES`` seeded resamples). A 2-D input (replicates × n) gives one p per row (vectorised).
    The smallest possible exact p is 2/2^n: no verdict is possible below n = 6 at the 5% level.
    """
    d = np.asarray(diffs, dtype=np.float64)
    one = d.ndim == 1
    d = np.atleast_2d(d)
    if d.shape[1] == 0 or not np.all(np.isfinite(d)):
        raise ValueError("Invalid differences: need at least one, all finite")
    n = d.shape[1]
    if n > EXACT_MAX_N:
        p = np.array([sps.permutation_test((row,), np.mean, permutation_type="samples", vectorized=True,
                                           n_resamples=MC_RESAMPLES, alternative="two-sided",
                                           rng=np.random.default_rng(seed)).pvalue for row in d])
        return float(p[0]) if one else p
    signs = _sign_matrix(n)
    obs = np.abs(d.sum(axis=1))
    tol = 1e-12 * np.maximum(np.abs(d).sum(axis=1), 1e-300)  # ties within rounding count as ties
    p = np.empty(d.shape[0])
    chunk = max(1, 2 ** 22 // signs.shape[0])
    for i in range(0, d.shape[0], chunk):
        null = np.abs(d[i:i + chunk] @ signs.T)
        p[i:i + chunk] = (null >= (obs[i:i + chunk] - tol[i:i + chunk])[:, None]).mean(axis=1)
    return float(p[0]) if one else p


def mean_interval(diffs: Sequence[float] | np.ndarray, *, level: float = 0.95, n_boot: int = 10_000,
                  seed: int = 0) -> tuple[np.ndarray | float, np.ndarray | float, str]:
    """(lo, hi, method) of the mean paired difference at ``level``: the paired t-interval (Student's t with n-1
    degrees of freedom, ``scipy.stats.t``) for n < ``BCA_MIN_N``, the BCa bootstrap (``scipy.stats.bootstrap``,
    seeded) from there on. Vectorised over rows for the t-interval."""
    if not 0.5 <= level < 1:
        raise ValueError(f"Invalid confidence level {level}: use 0.5 <= level < 1")
    d = np.asarray(diffs, dtype=np.float64)
    one = d.ndim == 1
    d = np.atleast_2d(d)
    n = d.shape[1]
    if n < 2 or not np.all(np.isfinite(d)):
        raise ValueError("Invalid differences: need at least two, all finite")
    m = d.mean(axis=1)
    if n < BCA_MIN_N:
        half = sps.t.ppf((1 + level) / 2, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
        lo, hi, method = m - half, m + half, "paired t-interval"
    else:
        lo, hi = np.empty_like(m), np.empty_like(m)
        for i, row in enumerate(d):
            if np.ptp(row) == 0:
                lo[i] = hi[i] = row[0]
                continue
            ci = sps.bootstrap((row,), np.mean, method="BCa", confidence_level=level, n_resamples=n_boot,
                               rng=np.random.default_rng(seed)).confidence_interval
            lo[i], hi[i] = ci.low, ci.high
        method = "BCa bootstrap interval"
    if one:
        return float(lo[0]), float(hi[0]), method
    return lo, hi, method


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence); the last axis is the family.

    adj_(i) = max over j <= i of min(1, (m - j + 1) p_(j)) for the p-values sorted ascending.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.shape[-1]
    if m == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, adj_sorted, axis=-1)
    return out


def paired_test(diffs: Sequence[float], *, level: float = 0.95, signs_only: bool = False, n_boot: int = 10_000,
                seed: int = 0) -> dict[str, Any]:
    """The unadjusted test of one comparison: {"n", "mean", "ci", "interval", "p", "test"}.

    ``signs_only`` (censored pairs present): the sign-flip test on the signs of the differences (the exact sign
    test); the mean and interval then use the censored values as bounds.
    """
    d = np.asarray(diffs, dtype=np.float64)
    lo, hi, method = mean_interval(d, level=level, n_boot=n_boot, seed=seed)
    test = "exact sign test (sign-flip on signs; censored pairs)" if signs_only else (
        "exact sign-flip permutation test" if d.size <= EXACT_MAX_N
        else f"sign-flip permutation test ({MC_RESAMPLES:,} seeded resamples)")
    p = sign_flip_p(np.sign(d) if signs_only else d, seed=seed)
    return {"n": int(d.size), "mean": float(d.mean()), "ci": [float(lo), float(hi)], "interval": method,
            "p": float(p), "test": test}


def decide(mean: np.ndarray | float, lo: np.ndarray | float, hi: np.ndarray | float, p_adjusted: np.ndarray | float,
           *, margin: np.ndarray | float, alpha: float) -> np.ndarray:
    """Verdict codes (vectorised): 1 = a difference (sign of the mean), 0 = no practical difference, -1 = not
    resolved. A difference needs p_adjusted <= alpha, an interval excluding 0 and |mean| > margin; no practical
    difference: the interval inside [-margin, margin], or a significant difference with |mean| <= margin."""
    mean, lo, hi, p = (np.asarray(v, dtype=np.float64) for v in (mean, lo, hi, p_adjusted))
    margin = np.asarray(margin, dtype=np.float64)
    significant = (p <= alpha) & ((lo > 0) | (hi < 0))
    diff = significant & (np.abs(mean) > margin)
    equivalent = ~diff & (((lo >= -margin) & (hi <= margin)) | (significant & (np.abs(mean) <= margin)))
    return np.where(diff, 1, np.where(equivalent, 0, -1))


@dataclass(frozen=True)
class Metric:
    """A per-run number the table reports: its name, how it is read, which direction is better and its
    practical-equivalence margin: max(``rel_margin`` × |reference's mean|, ``abs_margin``) (plus, for a cost to a
    target, the measurement resolution: the widest bracket of the pairs)."""

    name: str
    label: str
    lower_is_better: bool
    target: float | None = None
    axis: str | None = None
    rel_margin: float = 0.0
    abs_margin: float = 0.0

    def value(self, run: Mapping[str, Any], k: int) -> float | None:
        evals = run.get("evals") or []
        if self.target is not None:
            return cost_to_target(evals, self.target, axis=self.axis or "backprops")
        if self.name == "final_train_loss":
            return smoothed_final(evals, "train_loss", k)
        return final_value(evals, self.name.removeprefix("final_"))

    @property
    def is_target(self) -> bool:
        return self.target is not None

    def margin(self, reference_mean: float, resolution: float = 0.0) -> float:
        return max(self.rel_margin * abs(reference_mean), self.abs_margin, resolution)

    def margin_text(self) -> str:
        parts = [f"{self.rel_margin:.0%} of the reference's mean"] if self.rel_margin else []
        if self.abs_margin:
            parts.append(f"{self.abs_margin:g} absolute")
        if self.is_target:
            parts.append("the resolution (widest bracket)")
        return "the largest of " + ", ".join(parts) if len(parts) > 1 else (parts[0] if parts else "0")


# Margins (issue 19): losses 2% of the reference's value; accuracy half a percentage point; costs 5% of the
# reference's cost, and never less than what the evaluation grid can resolve.
LOSS_MARGIN = 0.02
ACCURACY_MARGIN = 0.005
COST_MARGIN = 0.05
METRICS = (Metric("final_train_loss", "smoothed final train loss", True, rel_margin=LOSS_MARGIN),
           Metric("final_test_loss", "final test loss", True, rel_margin=LOSS_MARGIN),
           Metric("final_test_accuracy", "final test accuracy", False, abs_margin=ACCURACY_MARGIN))


def target_metric(target: float, axis: str) -> Metric:
    """The cost-to-``target`` criterion on ``axis``."""
    return Metric(f"{axis}_to_{target:g}", f"{AXES[axis]} to train loss ≤ {target:g}", True, target, axis,
                  rel_margin=COST_MARGIN)


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _finished(run: Mapping[str, Any]) -> bool:
    return str(run.get("status")) not in _ACTIVE


def _target_pair(metric: Metric, a: Mapping[str, Any], b: Mapping[str, Any]
                 ) -> tuple[str, float | None, float]:
    """("reached" | "censored" | "unknown" | "pending", difference a − b or its bound, bracket width) of one pair."""
    axis, target = metric.axis or "backprops", float(metric.target or 0.0)
    ea, eb = a.get("evals") or [], b.get("evals") or []
    ba, bb = target_bracket(ea, target, axis=axis), target_bracket(eb, target, axis=axis)
    if ba is not None and bb is not None:
        return "reached", ba[1] - bb[1], max(ba[1] - ba[0], bb[1] - bb[0])
    if (ba is None and not _finished(a)) or (bb is None and not _finished(b)):
        return "pending", None, 0.0
    if ba is None and bb is None:
        return "unknown", None, 0.0
    if ba is None and bb is not None:  # a never reached it: it took more than its last evaluated cost
        ca = _censor_point(ea, axis)
        return ("censored", ca - bb[1], bb[1] - bb[0]) if ca is not None and ca >= bb[1] else ("unknown", None, 0.0)
    cb = _censor_point(eb, axis)
    if ba is not None and cb is not None and cb >= ba[1]:
        return "censored", ba[1] - cb, ba[1] - ba[0]
    return "unknown", None, 0.0


def _paired(metric: Metric, runs: list[Mapping[str, Any]], ref_runs: list[Mapping[str, Any]], *, k: int,
            level: float, n_boot: int, seed: int, equal_budgets: bool) -> dict[str, Any]:
    """Paired difference (this − reference) of ``metric`` over the seeds both groups have, with its unadjusted
    test when there are at least ``MIN_PAIRS`` pairs (the verdict is decided over the whole table, ``_decide``)."""
    mine = {r["seed"]: r for r in runs}
    theirs = {r["seed"]: r for r in ref_runs}
    seeds = sorted(set(mine) & set(theirs))
    out: dict[str, Any] = {"metric": metric.name, "label": metric.label, "target": metric.target,
                           "axis": metric.axis, "n_seeds": len(seeds), "n_pairs": 0, "n_censored": 0,
                           "mean_diff": None, "ci": None, "interval": None, "level": level, "test": None, "p": None,
                           "p_adjusted": None, "correction": None, "family_size": None, "margin": None,
                           "margin_rule": metric.margin_text(), "resolution": None, "verdict": None, "reasons": []}
    diffs: list[float] = []
    ref_values: list[float] = []
    widths: list[float] = []
    censored = pending = unknown = 0
    for s in seeds:
        if metric.is_target:
            kind, d, width = _target_pair(metric, mine[s], theirs[s])
            if d is not None:  # reached or censored with a known sign
                diffs.append(d)
                widths.append(width)
                ref_values.append(metric.value(theirs[s], k) or _censor_point(theirs[s].get("evals") or [],
                                                                             metric.axis or "backprops") or 0.0)
                censored += kind == "censored"
            pending += kind == "pending"
            unknown += kind == "unknown"
            continue
        if not (_finished(mine[s]) and _finished(theirs[s])):
            pending += 1
            continue
        a, b = metric.value(mine[s], k), metric.value(theirs[s], k)
        if a is not None and b is not None and mine[s]["status"] == "completed" and theirs[s]["status"] == "completed":
            diffs.append(a - b)
            ref_values.append(b)
    n = len(diffs)
    out.update(n_pairs=n, n_censored=censored)
    if metric.is_target and widths:
        out["resolution"] = float(max(widths))
    if n:
        out["mean_diff"] = float(np.mean(diffs))
    reasons = out["reasons"]
    if pending:
        reasons.append(f"{pending} pair(s) still running")
    if unknown:
        reasons.append(f"{unknown} pair(s) left out: neither reached the target (or one stopped before the other "
                       "reached it), so their order is unknown")
    if not metric.is_target and n < len(seeds) - pending:
        reasons.append(f"only {n}/{len(seeds)} seed pairs completed")
    if not metric.is_target and not equal_budgets:
        reasons.append("budgets are unequal")
    if n < MIN_PAIRS:
        return out
    t = paired_test(diffs, level=level, signs_only=censored > 0, n_boot=n_boot, seed=seed)
    out.update(ci=t["ci"], interval=t["interval"], test=t["test"], p=t["p"],
               margin=metric.margin(float(np.mean(ref_values)), out["resolution"] or 0.0))
    return out


def _decide(entries: list[tuple[str, str, Metric, dict[str, Any]]], *, level: float) -> None:
    """Holm over every tested comparison of the table, then each pair's verdict and sentence (in place)."""
    tested = [e for e in entries if e[3]["p"] is not None and not e[3]["reasons"]]
    adjusted: list[float] = holm([e[3]["p"] for e in tested]).tolist() if tested else []
    for e, q in zip(tested, adjusted):
        e[3].update(p_adjusted=float(q), correction=CORRECTION, family_size=len(tested))
    alpha = 1 - level
    pct = f"{level:.0%}"
    for name, ref_name, metric, out in entries:
        what = (f"{AXES[metric.axis or 'backprops']} to train loss ≤ {metric.target:g}" if metric.is_target
                else metric.label)
        n = out["n_pairs"]
        res_note = (f", resolution {_fmt(out['resolution'])} {AXES[metric.axis or 'backprops']}"
                    if out["resolution"] is not None else "")
        cens_note = (f"; {out['n_censored']} censored pair(s) (a run that never reached the target took more than "
                     "its last evaluated cost) enter with their known sign, so the mean and interval are bounds"
                     if out["n_censored"] else "")
        if out["p"] is None:
            if n < MIN_PAIRS:
                desc = f"mean difference {_fmt(out['mean_diff'])}" if n else "no paired values"
                extra = "; " + "; ".join(out["reasons"]) if out["reasons"] else ""
                out["sentence"] = (f"{name} vs {ref_name}, {what}: descriptive only, needs ≥ {MIN_PAIRS} paired "
                                   f"seeds (has {n}; {desc}{extra}).")
            continue
        stats_text = (f"mean difference {_fmt(out['mean_diff'])}, {pct} {out['interval']} "
                      f"[{_fmt(out['ci'][0])}, {_fmt(out['ci'][1])}]; {out['test']}")
        if out["p_adjusted"] is None:  # tested, but a reason withholds the verdict
            out["sentence"] = (f"{name} vs {ref_name}, {what}: not resolved with {n} seeds ({stats_text}, "
                               f"unadjusted p = {_fmt_p(out['p'])}; " + "; ".join(out["reasons"]) + ").")
            continue
        stats_text += (f", {CORRECTION}-adjusted p = {_fmt_p(out['p_adjusted'])} over {out['family_size']} "
                       f"comparisons, n = {n} paired seeds; margin ±{_fmt(out['margin'])}{res_note}{cens_note}")
        code = int(decide(out["mean_diff"], out["ci"][0], out["ci"][1], out["p_adjusted"], margin=out["margin"],
                          alpha=alpha))
        if code == 0:
            out["verdict"] = "equivalent"
            out["sentence"] = f"{name} vs {ref_name}, {what}: no practical difference ({stats_text})."
        elif code == -1:
            why = ("the interval includes zero" if out["ci"][0] <= 0 <= out["ci"][1]
                   else f"adjusted p > {alpha:.2g}")
            out["sentence"] = f"{name} vs {ref_name}, {what}: not resolved with {n} seeds ({stats_text}; {why})."
        else:
            better = (out["mean_diff"] < 0) == metric.lower_is_better
            out["verdict"] = "better" if better else "worse"
            if metric.is_target:
                word = (("less" if better else "more") if metric.axis == "wall_time"
                        else ("fewer" if better else "more"))
                out["sentence"] = (f"{name} reaches train loss ≤ {metric.target:g} in {word} "
                                   f"{AXES[metric.axis or 'backprops']} than {ref_name}: {stats_text}.")
            else:
                word = "lower" if out["mean_diff"] < 0 else "higher"
                out["sentence"] = f"{name} has a {word} {metric.label} than {ref_name}: {stats_text}."


def _distinct_seeds(gruns: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[int]]:
    """(one run per seed: the lowest run id, the seeds that occur more than once)."""
    by_seed: dict[int, list[Mapping[str, Any]]] = {}
    for r in sorted(gruns, key=lambda r: (r["seed"], r.get("run_id") if r.get("run_id") is not None else -1)):
        by_seed.setdefault(r["seed"], []).append(r)
    return [rs[0] for rs in by_seed.values()], sorted(s for s, rs in by_seed.items() if len(rs) > 1)


def results(runs: Sequence[Mapping[str, Any]], *, reference: str | None = None, targets: Sequence[float] = (),
            axes: Sequence[str] = ("backprops", "epoch", "wall_time"), k: int = 3, level: float = 0.95,
            n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The results table of a comparison: per group per-seed values, mean ± std, costs to targets with k/n
    seeds reached (and their brackets), and paired tests against ``reference`` (a group key or a group's name;
    default the first group), Holm-corrected over the table.

    Raises:
        ValueError: ``reference`` names no group, or an axis is unknown.
    """
    for a in axes:
        if a not in AXES:
            raise ValueError(f"Invalid axis {a!r}: choose from {list(AXES)}")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["group"], []).append(r)
    names = {g: str(rs[0].get("name") or g) for g, rs in groups.items()}
    rules = {"min_pairs": MIN_PAIRS, "test": f"exact sign-flip permutation test (n ≤ {EXACT_MAX_N}; Monte Carlo "
             f"above), exact sign test with censored pairs", "interval": f"paired t-interval (n < {BCA_MIN_N}), "
             f"BCa bootstrap (n ≥ {BCA_MIN_N})", "correction": f"{CORRECTION} over every tested comparison of "
             "the table", "margins": {m.name: m.margin_text() for m in METRICS},
             "target_margin": target_metric(1.0, "backprops").margin_text()}
    base = {"targets": list(targets), "axes": list(axes), "k": k, "level": level, "n_boot": n_boot,
            "bootstrap_seed": seed, "rules": rules}
    if not groups:
        return {"reference": reference, "reference_key": reference, "groups": [], "verdicts": [],
                "budget": budget_summary([]), **base}
    ref = reference if reference is not None else next(iter(groups))
    if ref not in groups:
        by_name = [g for g, nm in names.items() if nm == ref]
        if len(by_name) != 1:
            raise ValueError(f"Invalid reference {ref!r}: choose one of {list(names.values())} (or a group key: "
                             f"{list(groups)})")
        ref = by_name[0]
    budget = budget_summary(runs)
    distinct = {g: _distinct_seeds(rs) for g, rs in groups.items()}
    out_groups, entries = [], []
    for key, gruns in groups.items():
        used, repeated = distinct[key]
        per_seed = []
        for r in sorted(gruns, key=lambda r: r["seed"]):
            row = {"seed": r["seed"], "run_id": r.get("run_id"), "status": r["status"],
                   "duplicate": any(r is not u and r["seed"] == u["seed"] for u in used),
                   **{m.name: m.value(r, k) for m in METRICS},
                   "to_target": {f"{t:g}": {a: cost_to_target(r.get("evals") or [], t, axis=a) for a in axes}
                                 for t in targets},
                   "brackets": {f"{t:g}": {a: (list(b) if (b := target_bracket(r.get("evals") or [], t, axis=a))
                                                else None) for a in axes} for t in targets}}
            per_seed.append(row)
        use = [p for p in per_seed if not p["duplicate"]]
        completed = [p for p in use if p["status"] == "completed"]
        budgets = {tuple(sorted((r.get("budget") or {}).items())) for r in gruns}
        entry: dict[str, Any] = {
            "group": names[key], "group_key": key, "optimizer": gruns[0].get("optimizer"), "n": len(used),
            "n_runs": len(gruns), "repeated_seeds": repeated, "unequal_budgets": len(budgets) > 1,
            "statuses": {s: sum(p["status"] == s for p in per_seed) for s in sorted({p["status"] for p in per_seed})},
            "per_seed": per_seed,
            # finals over completed runs only: a cancelled or failed run's last value is not a final value
            **{m.name: mean_std(p[m.name] for p in completed) for m in METRICS},
            "targets": [{"target": t, "reached": sum(p["to_target"][f"{t:g}"][axes[0]] is not None for p in use),
                         "n": len(use),
                         "resolution": max((b[1] - b[0] for p in use
                                            if (b := p["brackets"][f"{t:g}"][axes[0]]) is not None), default=None),
                         **{a: mean_std(p["to_target"][f"{t:g}"][a] for p in use) for a in axes}}
                        for t in targets],
            "paired": [],
        }
        if key != ref:
            metrics = list(METRICS) + [target_metric(t, a) for t in targets for a in axes]
            for m in metrics:
                p = _paired(m, distinct[key][0], distinct[ref][0], k=k, level=level, n_boot=n_boot, seed=seed,
                            equal_budgets=budget["equal"])
                entry["paired"].append(p)
                entries.append((names[key], names[ref], m, p))
        out_groups.append(entry)
    _decide(entries, level=level)
    return {"reference": names[ref], "reference_key": ref, "groups": out_groups,
            "verdicts": [e[3]["sentence"] for e in entries], "budget": budget, **base}


def _ms(s: Mapping[str, Any], n: int) -> str:
    """"mean ± std (n=…)"; one value has no spread: "mean (n=1; needs ≥ 5 seeds for a spread)"."""
    if s["mean"] is None:
        return "—"
    text = f"{_fmt(s['mean'])} ± {_fmt(s['std'])}" if s["n"] > 1 else f"{_fmt(s['mean'])} ± —"
    count = f"n={s['n']}" if s["n"] == n else f"{s['n']}/{n}"
    return f"{text} ({count})"


def _pair_cell(p: Mapping[str, Any] | None) -> str:
    """The paired-difference cell: "reference", "pending", "needs ≥ 5 seeds", or "mean [lo, hi], p_adj"."""
    if p is None:
        return "reference"
    if p["n_pairs"] == 0 and any("still running" in r for r in p["reasons"]):
        return "pending"
    if p["ci"] is None:
        return f"— (needs ≥ {MIN_PAIRS} seeds)" if p["n_pairs"] < MIN_PAIRS else "—"
    adj = f", p_adj {_fmt_p(p['p_adjusted'])}" if p.get("p_adjusted") is not None else ""
    return f"{_fmt(p['mean_diff'])} [{_fmt(p['ci'][0])}, {_fmt(p['ci'][1])}]{adj}"


def _verdict_cell(p: Mapping[str, Any] | None) -> str:
    if p is None:
        return "reference"
    if p["verdict"]:
        return "no practical difference" if p["verdict"] == "equivalent" else p["verdict"]
    if p["p"] is None:
        if p["n_pairs"] == 0 and any("still running" in r for r in p["reasons"]):
            return "pending"
        return f"descriptive only (needs ≥ {MIN_PAIRS} seeds)" if p["n_pairs"] < MIN_PAIRS else "not resolved"
    return "not resolved"


def _group_status(g: Mapping[str, Any]) -> str:
    """How many seeds a row has, and "pending" while none has finished."""
    statuses = g.get("statuses") or {}
    active = sum(v for s, v in statuses.items() if s in _ACTIVE)
    if active == sum(statuses.values()) and active:
        return f"{g['n']} (pending)"
    flags = [f"repeated seeds {g['repeated_seeds']}"] if g.get("repeated_seeds") else []
    if g.get("unequal_budgets"):
        flags.append("unequal budgets")
    return f"{g['n']}" + (f" ({'; '.join(flags)})" if flags else "")


def results_rows(res: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table as strings: one row per group (mean ± std, k/n reached with the resolution, the paired test of
    the smoothed final train loss and its verdict). Missing values are "—", never None."""
    axes = res.get("axes") or ["backprops"]
    header = ["optimizer", "seeds", "smoothed final train loss", "final test loss", "final test accuracy"]
    header += [f"{AXES[axes[0]]} to loss ≤ {t:g}" for t in res["targets"]]
    header += [f"Δ final train loss vs {res['reference']} ({res['level']:.0%} interval, adjusted p)", "verdict"]
    tuned = any("tuning" in g for g in res["groups"])
    if tuned:
        header.append("tuning budget (configurations tried, grid edges)")
    rows = []
    for g in res["groups"]:
        n = g["n"]
        row = [g["group"], _group_status(g)] + [_ms(g[m.name], n) for m in METRICS]
        for t in g["targets"]:
            res_txt = f", resolution {_fmt(t.get('resolution'))}" if t.get("resolution") is not None else ""
            row.append(f"{_ms(t[axes[0]], t['n']) if t['reached'] else 'not reached'} "
                       f"[{t['reached']}/{t['n']} reached{res_txt}]")
        ref_pair = next((p for p in g["paired"] if p["metric"] == "final_train_loss"), None)
        if ref_pair is None and g.get("group_key", g["group"]) != res.get("reference_key", res["reference"]):
            ref_pair = {"n_pairs": 0, "ci": None, "p": None, "verdict": None, "reasons": []}
        row += [_pair_cell(ref_pair), _verdict_cell(ref_pair)]
        if tuned:
            row.append((g.get("tuning") or {}).get("note") or "—")
        rows.append(row)
    return header, rows


def results_csv(res: Mapping[str, Any]) -> str:
    """One line per run (group, seed, status, finals, cost to each target on each axis): the raw numbers."""
    import csv
    import io

    axes = res.get("axes") or ["backprops"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f"{a}_to_{t:g}" for t in res["targets"] for a in axes]
    w.writerow(["group", "seed", "run_id", "status"] + [m.name for m in METRICS] + cols
               + ["group_key", "repeated_seed"])
    for g in res["groups"]:
        for p in g["per_seed"]:
            w.writerow([g["group"], p["seed"], p["run_id"], p["status"]]
                       + ["" if p[m.name] is None else repr(p[m.name]) for m in METRICS]
                       + ["" if p["to_target"][f"{t:g}"][a] is None else repr(p["to_target"][f"{t:g}"][a])
                          for t in res["targets"] for a in axes]
                       + [g.get("group_key", g["group"]), "yes" if p.get("duplicate") else ""])
    return buf.getvalue()


def rules_note(res: Mapping[str, Any]) -> str:
    """The statistics used, in one paragraph (under every table that shows them)."""
    return (f"Mean ± sample std over distinct seeds (one seed: no spread, \"—\"); smoothed final = mean of the last "
            f"{res['k']} evaluations. Paired by seed: {res['level']:.0%} paired t-interval of the mean difference "
            f"(BCa bootstrap from {BCA_MIN_N} pairs, {res['n_boot']} resamples, RNG seed {res['bootstrap_seed']}); "
            f"p from the exact sign-flip permutation test over all 2^n flips (the exact sign test when censored "
            f"pairs take part), {CORRECTION}-adjusted over every tested comparison of this table; at least "
            f"{MIN_PAIRS} paired seeds for a test, fewer is descriptive only. Practical-equivalence margins: losses "
            f"{LOSS_MARGIN:.0%} of the reference's value, accuracy {ACCURACY_MARGIN:g}, costs {COST_MARGIN:.0%} of "
            "the reference's cost or the resolution (the widest bracket: last evaluation above, first at or below "
            "the target), whichever is larger; a difference inside its margin is no practical difference. A run "
            "that never reached a target is right-censored at its last evaluated cost.")


def results_markdown(res: Mapping[str, Any]) -> str:
    """A Markdown table to paste into a paper, with the budget note and the verdict sentences under it."""
    header, rows = results_rows(res)
    esc = [[c.replace("|", "\\|") for c in r] for r in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    lines += ["", f"Budget: {res['budget']['note']}. {rules_note(res)}", ""]
    lines += [f"- {v}" for v in res["verdicts"]]
    return "\n".join(lines) + "\n"
