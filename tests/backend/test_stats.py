"""backend.stats against hand-computed cases: smoothed finals, targets with k/n seeds, paired bootstrap, verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend import stats


def ev(*losses, step=100, acc=None):
    """Evaluations every ``step`` backprops with the given train losses (test loss = train + 0.1)."""
    return [{"step": i, "backprops": step * i, "epoch": i / 10, "wall_time": 2.0 * i, "train_loss": loss,
             "test_loss": loss + 0.1, "test_accuracy": acc if acc is not None else 1 - loss / 2}
            for i, loss in enumerate(losses)]


def run(group, seed, losses, status="completed", budget=None, **kw):
    return {"group": group, "seed": seed, "status": status, "run_id": seed, "optimizer": group,
            "budget": budget or {"backprops": 1000}, "evals": ev(*losses, **kw)}


def test_smoothed_final_is_the_mean_of_the_last_k_finite_values():
    e = ev(2.0, 1.0, 0.6, float("nan"), 0.4, 0.2)
    assert stats.smoothed_final(e, k=3) == pytest.approx((0.6 + 0.4 + 0.2) / 3)
    assert stats.smoothed_final(e, k=1) == pytest.approx(0.2)
    assert stats.smoothed_final(e, k=100) == pytest.approx((2 + 1 + 0.6 + 0.4 + 0.2) / 5)
    assert stats.smoothed_final([], k=3) is None
    with pytest.raises(ValueError, match="Invalid smoothing"):
        stats.smoothed_final(e, k=0)


def test_cost_to_target_is_the_first_evaluation_at_or_below_it():
    e = ev(2.0, 1.0, 0.5, 0.7, 0.3)
    assert stats.cost_to_target(e, 0.5) == 200
    assert stats.cost_to_target(e, 0.5, axis="wall_time") == 4.0
    assert stats.cost_to_target(e, 0.5, axis="epoch") == pytest.approx(0.2)
    assert stats.cost_to_target(e, 0.1) is None
    assert stats.cost_to_target(ev(float("inf"), float("nan")), 10.0) is None


def test_mean_std_uses_the_sample_std():
    assert stats.mean_std([1.0, 2.0, 3.0, None]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert stats.mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert stats.mean_std([None]) == {"mean": None, "std": None, "n": 0}


def test_bootstrap_of_two_differences_matches_the_exact_distribution():
    # resampled means of (1, 3): 1 w.p. 1/4, 2 w.p. 1/2, 3 w.p. 1/4 → the 95% interval is [1, 3]
    lo, hi = stats.bootstrap_ci([1.0, 3.0], level=0.95, n_boot=20_000, seed=1)
    assert (lo, hi) == (1.0, 3.0)
    # (0, 0, 0, 4): the mean of 4 resamples is 0 w.p. (3/4)^4 = 0.316 > 0.2, so an 60% interval starts at 0
    lo, hi = stats.bootstrap_ci([0.0, 0.0, 0.0, 4.0], level=0.6, n_boot=20_000, seed=1)
    assert lo == 0.0 and hi == 2.0  # P(mean <= 1) = 0.316 + 4·(1/4)(3/4)^3 = 0.738 < 0.8 ≤ P(mean <= 2) = 0.949
    assert stats.bootstrap_ci([1.0, 3.0], seed=7) == stats.bootstrap_ci([1.0, 3.0], seed=7)  # seeded
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="Invalid confidence level"):
        stats.bootstrap_ci([1.0], level=1.0)
    with pytest.raises(ValueError, match="Invalid differences"):
        stats.bootstrap_ci([1.0, math.nan])


def test_bootstrap_interval_agrees_with_a_naive_loop():
    d = [0.3, -0.1, 0.5, 0.2, 0.4]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, size=(4000, 5))
    naive = sorted(sum(d[j] for j in row) / 5 for row in idx)
    lo, hi = stats.bootstrap_ci(d, n_boot=4000, seed=0)
    assert lo == pytest.approx(np.quantile(naive, 0.025)) and hi == pytest.approx(np.quantile(naive, 0.975))


def _pair(res, group, metric):
    g = next(g for g in res["groups"] if g["group"] == group)
    return next(p for p in g["paired"] if p["metric"] == metric)


def test_verdict_when_every_seed_reached_and_the_interval_excludes_zero():
    runs = [run("ref", s, [2.0, 1.0, 0.8, 0.6]) for s in range(4)]
    runs += [run("fast", s, [2.0, 0.5, 0.3, 0.2 + 0.01 * s]) for s in range(4)]
    res = stats.results(runs, reference="ref", targets=[0.6], k=2)
    fast = next(g for g in res["groups"] if g["group"] == "fast")
    # smoothed final (k=2): ref (0.8+0.6)/2 = 0.7; fast (0.3 + 0.2+0.01s)/2
    assert fast["per_seed"][1]["final_train_loss"] == pytest.approx((0.3 + 0.21) / 2)
    p = _pair(res, "fast", "final_train_loss")
    diffs = [(0.3 + 0.2 + 0.01 * s) / 2 - 0.7 for s in range(4)]
    assert p["n_pairs"] == 4 and p["mean_diff"] == pytest.approx(np.mean(diffs))
    assert p["verdict"] == "better" and "lower smoothed final train loss than ref" in p["sentence"]
    # backprops to 0.6: ref 300, fast 100 on every seed → difference exactly -200
    t = _pair(res, "fast", "backprops_to_0.6")
    assert t["mean_diff"] == -200 and t["ci"] == [-200, -200] and t["verdict"] == "better"
    assert "fewer backprops" in t["sentence"] and "4/4 seeds" in t["sentence"]
    target = fast["targets"][0]
    assert target["reached"] == 4 and target["n"] == 4 and target["backprops"]["mean"] == 100
    assert res["budget"]["equal"] and res["budget"]["axis"] == "backprops"


def test_no_verdict_when_a_seed_did_not_reach_the_target_and_a_stopped_run_is_not_counted_slower():
    runs = [run("ref", s, [2.0, 1.0, 0.5]) for s in range(3)]
    runs += [run("other", 0, [2.0, 0.4]), run("other", 1, [2.0, 0.4]),
             run("other", 2, [2.0, 0.9], status="cancelled")]  # stopped before reaching 0.5
    res = stats.results(runs, reference="ref", targets=[0.5])
    other = next(g for g in res["groups"] if g["group"] == "other")
    assert other["targets"][0]["reached"] == 2 and other["targets"][0]["n"] == 3
    assert other["targets"][0]["backprops"] == {"mean": 100.0, "std": 0.0, "n": 2}
    t = _pair(res, "other", "backprops_to_0.5")
    assert t["verdict"] is None and t["n_pairs"] == 2
    assert "not resolved with 3 seeds" in t["sentence"] and "only 2/3 seeds reached" in t["sentence"]
    # the cancelled run's last value is not a final value
    assert other["final_train_loss"]["n"] == 2
    assert _pair(res, "other", "final_train_loss")["verdict"] is None


def test_interval_including_zero_is_not_resolved():
    runs = [run("ref", s, [1.0, 0.5]) for s in range(4)]
    runs += [run("b", s, [1.0, 0.5 + d]) for s, d in enumerate([0.1, -0.1, 0.05, -0.05])]
    p = _pair(stats.results(runs, reference="ref", k=1), "b", "final_train_loss")
    assert p["ci"][0] < 0 < p["ci"][1] and p["verdict"] is None
    assert "not resolved with 4 seeds" in p["sentence"] and "includes zero" in p["sentence"]


def test_too_few_seeds_never_give_a_verdict():
    runs = [run("ref", s, [1.0, 0.5]) for s in range(2)] + [run("b", s, [1.0, 0.1]) for s in range(2)]
    p = _pair(stats.results(runs, reference="ref"), "b", "final_train_loss")
    assert p["verdict"] is None and "at least 3 paired seeds" in p["sentence"]


def test_unequal_budgets_are_flagged_and_withhold_final_verdicts_but_not_target_ones():
    runs = [run("ref", s, [2.0, 1.0, 0.5], budget={"backprops": 1000}) for s in range(3)]
    runs += [run("b", s, [2.0, 0.4, 0.3], budget={"backprops": 500}) for s in range(3)]
    res = stats.results(runs, reference="ref", targets=[0.5])
    assert not res["budget"]["equal"] and "UNEQUAL" in res["budget"]["note"]
    assert _pair(res, "b", "final_train_loss")["verdict"] is None
    assert "budgets are unequal" in _pair(res, "b", "final_train_loss")["sentence"]
    assert _pair(res, "b", "backprops_to_0.5")["verdict"] == "better"


def test_budget_axis_is_named():
    assert stats.budget_summary([{"group": "a", "budget": {"epochs": 2}}])["axis"] == "epochs"
    assert stats.budget_summary([{"group": "a", "budget": {"seconds": 60}}])["axis"] == "wall time (s)"


def test_accuracy_higher_is_better_and_pairs_are_by_seed():
    runs = [run("ref", s, [1.0, 0.5], acc=0.80 + 0.01 * s) for s in range(3)]
    runs += [run("b", s, [1.0, 0.5], acc=0.85 + 0.01 * s) for s in (2, 1, 0)]  # listed out of order
    p = _pair(stats.results(runs, reference="ref"), "b", "final_test_accuracy")
    assert p["mean_diff"] == pytest.approx(0.05) and p["ci"] == pytest.approx([0.05, 0.05])
    assert p["verdict"] == "better" and "higher final test accuracy" in p["sentence"]


def test_unknown_reference_is_refused():
    with pytest.raises(ValueError, match="Invalid reference"):
        stats.results([run("a", 0, [1.0])], reference="nope")


def test_exports_carry_every_seed_and_the_verdicts():
    runs = [run("ref", s, [2.0, 1.0]) for s in range(3)] + [run("b|x", s, [2.0, 0.5]) for s in range(3)]
    res = stats.results(runs, reference="ref", targets=[1.0])
    csv_text = stats.results_csv(res)
    assert csv_text.splitlines()[0].startswith("group,seed,run_id,status,final_train_loss")
    assert len(csv_text.splitlines()) == 7
    md = stats.results_markdown(res)
    assert "| b\\|x | 3 |" in md and "[3/3 reached]" in md and "equal budgets in backprops" in md
    assert all(v in md for v in res["verdicts"])


def test_paired_curves_interpolate_onto_a_shared_grid_and_band_the_mean():
    # ref: loss 2 - x/100 on 0..100; other: 1.5 - x/100 on 0..200 (seed 0) and 1.7 - x/100 (seed 1), evals every 50
    def lin(group, seed, c, end):
        return {"group": group, "seed": seed, "status": "completed",
                "evals": [{"backprops": x, "train_loss": c - x / 100} for x in range(0, end + 1, 50)]}
    runs = [lin("ref", 0, 2.0, 100), lin("ref", 1, 2.0, 100), lin("b", 0, 1.5, 200), lin("b", 1, 1.7, 200)]
    out = stats.paired_curves(runs, reference="ref", points=5, n_boot=4000)
    g = out["groups"][0]
    assert g["n"] == 2 and g["x"] == [0.0, 25.0, 50.0, 75.0, 100.0]  # up to the shortest pair's end
    assert g["mean"] == pytest.approx([-0.4] * 5)  # (-0.5 + -0.3) / 2 at every x
    assert g["lo"] == pytest.approx([-0.5] * 5) and g["hi"] == pytest.approx([-0.3] * 5)  # exact 2-seed bootstrap
    with pytest.raises(ValueError, match="Invalid axis"):
        stats.paired_curves(runs, reference="ref", axis="steps")
    lonely = stats.paired_curves(runs + [lin("c", 7, 1.0, 100)], reference="ref")
    assert lonely["groups"][-1] == {"group": "c", "optimizer": None, "n": 0, "x": [], "mean": [], "lo": [], "hi": []}
