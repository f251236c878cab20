"""backend.stats against hand-computed cases and SciPy: smoothed finals, target brackets and censoring, the exact
sign-flip test, the paired t-interval, Holm, margins and verdicts (calibration: test_stats_calibration.py)."""
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
    assert stats.mean_std([5.0]) == {"mean": 5.0, "std": None, "n": 1}  # one seed has no spread
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


def test_sign_flip_p_is_exact_and_matches_scipy():
    from scipy import stats as sps
    # n = 3, all positive: only the all-plus and all-minus patterns reach |mean| → p = 2/8
    assert stats.sign_flip_p([1.0, 2.0, 3.0]) == 0.25
    assert stats.sign_flip_p([0.0, 0.0, 0.0]) == 1.0
    # the smallest p at n = 5 is 2/32: no verdict is possible at the 5% level with 5 seeds
    assert stats.sign_flip_p([1.0, 1.1, 1.2, 1.3, 1.4]) == pytest.approx(1 / 16)
    rng = np.random.default_rng(3)
    for n in (4, 6, 9, 12):
        d = rng.normal(0.4, 1.0, n)
        ref = sps.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True, n_resamples=10**6,
                                   alternative="two-sided").pvalue  # SciPy enumerates all 2^n flips here
        assert stats.sign_flip_p(d) == pytest.approx(ref, rel=1e-12)
    rows = rng.normal(size=(7, 6))
    assert stats.sign_flip_p(rows) == pytest.approx([stats.sign_flip_p(r) for r in rows])
    with pytest.raises(ValueError, match="Invalid differences"):
        stats.sign_flip_p([1.0, math.nan])


def test_interval_is_the_paired_t_interval_below_the_bca_threshold():
    from scipy import stats as sps
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    lo, hi, method = stats.mean_interval(d, level=0.95)
    ref = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    assert (lo, hi) == pytest.approx(ref) and method == "paired t-interval"
    big = np.random.default_rng(0).normal(1.0, 1.0, stats.BCA_MIN_N)
    lo, hi, method = stats.mean_interval(big, seed=1)
    assert method == "BCa bootstrap interval" and lo < big.mean() < hi
    assert stats.mean_interval(big, seed=1) == stats.mean_interval(big, seed=1)  # seeded


def test_holm_adjusts_step_down():
    # sorted 0.01, 0.03, 0.04, 0.5 → 4·0.01, max(0.04, 3·0.03), max(0.09, 2·0.04), max(.., 0.5)
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert stats.holm([0.6, 0.6]) == pytest.approx([1.0, 1.0])


def test_target_bracket_is_last_above_first_below():
    e = ev(2.0, 1.0, 0.5, 0.7, 0.3)
    assert stats.target_bracket(e, 0.5) == (100, 200)
    assert stats.target_bracket(e, 2.5) == (0.0, 0)
    assert stats.target_bracket(e, 0.1) is None


SEEDS = range(8)  # 2/2^8 = 0.0078: enough for a verdict after Holm over the few comparisons of these tables


def test_verdict_when_every_seed_reached_and_the_test_rejects():
    runs = [run("ref", s, [2.0, 1.0, 0.8, 0.6]) for s in SEEDS]
    runs += [run("fast", s, [2.0, 0.5, 0.3, 0.2 + 0.01 * s]) for s in SEEDS]
    res = stats.results(runs, reference="ref", targets=[0.6], k=2, axes=("backprops",))
    fast = next(g for g in res["groups"] if g["group"] == "fast")
    assert fast["per_seed"][1]["final_train_loss"] == pytest.approx((0.3 + 0.21) / 2)
    p = _pair(res, "fast", "final_train_loss")
    diffs = [(0.3 + 0.2 + 0.01 * s) / 2 - 0.7 for s in SEEDS]
    assert p["n_pairs"] == 8 and p["mean_diff"] == pytest.approx(np.mean(diffs))
    assert p["p"] == pytest.approx(2 / 256) and p["family_size"] == 4 and p["p_adjusted"] <= 0.05
    assert p["verdict"] == "better" and "lower smoothed final train loss than ref" in p["sentence"]
    for words in ("exact sign-flip permutation test", "Holm-adjusted p", "n = 8 paired seeds", "paired t-interval",
                  "margin ±"):
        assert words in p["sentence"]
    # backprops to 0.6: ref 300, fast 100 on every seed → difference exactly -200, brackets (200, 300) and (0, 100)
    t = _pair(res, "fast", "backprops_to_0.6")
    assert t["mean_diff"] == -200 and t["ci"] == [-200, -200] and t["verdict"] == "better"
    assert t["resolution"] == 100 and "fewer backprops" in t["sentence"] and "resolution 100" in t["sentence"]
    target = fast["targets"][0]
    assert target["reached"] == 8 and target["n"] == 8 and target["backprops"]["mean"] == 100
    assert target["resolution"] == 100
    assert res["budget"]["equal"] and res["budget"]["axis"] == "backprops"


def test_a_consistent_difference_inside_the_margin_is_no_practical_difference():
    # the autoencoder case of issue 19: every seed lower, but by ~0.1% of a loss of 0.06
    runs = [run("ref", s, [1.0, 0.06]) for s in SEEDS] + [run("b", s, [1.0, 0.06 - 5e-5 - 1e-6 * s]) for s in SEEDS]
    p = _pair(stats.results(runs, reference="ref", k=1), "b", "final_train_loss")
    assert p["margin"] == pytest.approx(0.02 * 0.06) and p["ci"][1] < 0
    assert p["verdict"] == "equivalent" and "no practical difference" in p["sentence"]


def test_a_censored_run_enters_the_sign_test_with_its_known_sign():
    runs = [run("ref", s, [2.0, 1.0, 0.5]) for s in SEEDS]  # reaches 0.5 at 200
    runs += [run("slow", s, [2.0, 1.0, 0.9, 0.8, 0.7]) for s in SEEDS[:-1]]  # never reaches it: censored at 400
    runs += [run("slow", 7, [2.0, 1.0, 0.9, 0.7, 0.4])]  # reaches it at 400
    res = stats.results(runs, reference="ref", targets=[0.5], axes=("backprops",))
    t = _pair(res, "slow", "backprops_to_0.5")
    assert t["n_pairs"] == 8 and t["n_censored"] == 7 and t["test"].startswith("exact sign test")
    assert t["p"] == pytest.approx(2 / 256) and t["verdict"] == "worse" and "censored pair" in t["sentence"]
    assert next(g for g in res["groups"] if g["group"] == "slow")["targets"][0]["reached"] == 1


def test_no_verdict_while_a_pair_is_still_running_and_a_stopped_run_is_censored_only_when_its_order_is_known():
    runs = [run("ref", s, [2.0, 1.0, 0.5]) for s in range(6)]
    runs += [run("other", s, [2.0, 0.4]) for s in range(4)]
    runs += [run("other", 4, [2.0, 0.9], status="cancelled"),  # stopped at 100, before ref reached at 200: unknown
             run("other", 5, [2.0, 0.9], status="running")]
    res = stats.results(runs, reference="ref", targets=[0.5])
    other = next(g for g in res["groups"] if g["group"] == "other")
    assert other["targets"][0]["reached"] == 4 and other["targets"][0]["n"] == 6
    t = _pair(res, "other", "backprops_to_0.5")
    assert t["verdict"] is None and t["n_pairs"] == 4 and "descriptive only" in t["sentence"]
    assert any("still running" in r for r in t["reasons"]) and any("order is unknown" in r for r in t["reasons"])
    # the cancelled run's last value is not a final value
    assert other["final_train_loss"]["n"] == 4
    assert _pair(res, "other", "final_train_loss")["verdict"] is None


def test_interval_including_zero_is_not_resolved():
    runs = [run("ref", s, [1.0, 0.5]) for s in SEEDS]
    runs += [run("b", s, [1.0, 0.5 + d]) for s, d in enumerate([0.1, -0.1, 0.05, -0.05, 0.2, -0.2, 0.1, -0.1])]
    p = _pair(stats.results(runs, reference="ref", k=1), "b", "final_train_loss")
    assert p["ci"][0] < 0 < p["ci"][1] and p["verdict"] is None
    assert "not resolved with 8 seeds" in p["sentence"] and "includes zero" in p["sentence"]


def test_fewer_than_five_seeds_are_descriptive_only():
    runs = [run("ref", s, [1.0, 0.5]) for s in range(4)] + [run("b", s, [1.0, 0.1]) for s in range(4)]
    p = _pair(stats.results(runs, reference="ref"), "b", "final_train_loss")
    assert p["verdict"] is None and p["ci"] is None and p["p"] is None
    assert "descriptive only, needs ≥ 5 paired seeds (has 4" in p["sentence"]


def test_holm_family_is_the_whole_table():
    runs = [run("ref", s, [2.0, 1.0]) for s in SEEDS]
    runs += [run(g, s, [2.0, 0.5 + 0.01 * s]) for g in ("a", "b", "c") for s in SEEDS]
    res = stats.results(runs, reference="ref", k=1)
    ps = [p for g in res["groups"] for p in g["paired"] if p["p"] is not None]
    assert len(ps) == 9 and {p["family_size"] for p in ps} == {9}  # 3 groups × 3 finals
    assert all(p["p_adjusted"] == pytest.approx(min(1.0, 9 * 2 / 256)) for p in ps)
    assert all(p["verdict"] is None for p in ps)  # 9 × 2/256 = 0.07 > 0.05: 8 seeds are too few for 9 tests


def test_repeated_seeds_are_flagged_and_counted_once():
    runs = [run("ref", s, [1.0, 0.5]) for s in range(5)] + [dict(run("ref", 0, [1.0, 0.1]), run_id=99)]
    res = stats.results(runs, reference="ref")
    g = res["groups"][0]
    assert g["n"] == 5 and g["n_runs"] == 6 and g["repeated_seeds"] == [0]
    assert g["final_train_loss"]["n"] == 5 and g["final_train_loss"]["mean"] == pytest.approx(0.75)  # the duplicate (0.55) is left out


def test_unequal_budgets_are_flagged_and_withhold_final_verdicts_but_not_target_ones():
    runs = [run("ref", s, [2.0, 1.0, 0.9, 0.5], budget={"backprops": 1000}) for s in SEEDS]  # reaches 0.5 at 300
    runs += [run("b", s, [2.0, 0.4, 0.3], budget={"backprops": 500}) for s in SEEDS]  # at 100
    res = stats.results(runs, reference="ref", targets=[0.5], axes=("backprops",))
    assert not res["budget"]["equal"] and "UNEQUAL" in res["budget"]["note"]
    assert _pair(res, "b", "final_train_loss")["verdict"] is None
    assert "budgets are unequal" in _pair(res, "b", "final_train_loss")["sentence"]
    assert _pair(res, "b", "backprops_to_0.5")["verdict"] == "better"


def test_budget_axis_is_named():
    assert stats.budget_summary([{"group": "a", "budget": {"epochs": 2}}])["axis"] == "epochs"
    assert stats.budget_summary([{"group": "a", "budget": {"seconds": 60}}])["axis"] == "wall time (s)"


def test_accuracy_higher_is_better_and_pairs_are_by_seed():
    runs = [run("ref", s, [1.0, 0.5], acc=0.80 + 0.01 * s) for s in SEEDS]
    runs += [run("b", s, [1.0, 0.5], acc=0.85 + 0.01 * s) for s in reversed(SEEDS)]  # listed out of order
    p = _pair(stats.results(runs, reference="ref"), "b", "final_test_accuracy")
    assert p["mean_diff"] == pytest.approx(0.05) and p["ci"] == pytest.approx([0.05, 0.05])
    assert p["verdict"] == "better" and "higher final test accuracy" in p["sentence"]


def test_unknown_reference_is_refused_and_a_name_finds_its_group():
    with pytest.raises(ValueError, match="Invalid reference"):
        stats.results([run("a", 0, [1.0])], reference="nope")
    res = stats.results([dict(run("k1", 0, [1.0]), name="Adam"), dict(run("k2", 0, [1.0]), name="SGD")],
                        reference="SGD")
    assert res["reference"] == "SGD" and res["reference_key"] == "k2"


def test_exports_carry_every_seed_and_the_verdicts():
    runs = [run("ref", s, [2.0, 1.0]) for s in range(3)] + [run("b|x", s, [2.0, 0.5]) for s in range(3)]
    res = stats.results(runs, reference="ref", targets=[1.0])
    csv_text = stats.results_csv(res)
    assert csv_text.splitlines()[0].startswith("group,seed,run_id,status,final_train_loss")
    assert len(csv_text.splitlines()) == 7
    md = stats.results_markdown(res)
    assert "| b\\|x | 3 |" in md and "[3/3 reached, resolution 100]" in md and "equal budgets in backprops" in md
    assert "needs ≥ 5 seeds" in md and "None" not in md and "Holm" in md
    assert all(v in md for v in res["verdicts"])


def test_one_seed_shows_no_spread_and_no_interval():
    res = stats.results([run("ref", 0, [2.0, 1.0]), run("b", 0, [2.0, 0.5])], reference="ref")
    header, rows = stats.results_rows(res)
    b = rows[1]
    assert b[2] == "1.25 ± — (n=1)" and "needs ≥ 5 seeds" in b[-2] and b[-1].startswith("descriptive only")
    assert not any("None" in c for r in rows for c in r)


def test_runs_not_started_are_pending():
    res = stats.results([run("ref", 0, [2.0]), {**run("b", 0, []), "status": "queued"}], reference="ref",
                        targets=[1.0])
    _, rows = stats.results_rows(res)
    assert rows[1][1] == "1 (pending)" and rows[1][-1] == "pending" and rows[1][-2] == "pending"


def test_paired_curves_interpolate_onto_a_shared_grid_and_band_the_mean():
    # ref: loss 2 - x/100 on 0..100; other: c - x/100 on 0..200 for seeds 0..5 (c = 1.5 + 0.04 s), evals every 50
    def lin(group, seed, c, end):
        return {"group": group, "seed": seed, "status": "completed",
                "evals": [{"backprops": x, "train_loss": c - x / 100} for x in range(0, end + 1, 50)]}
    cs = [1.5 + 0.04 * s for s in range(6)]
    runs = [lin("ref", s, 2.0, 100) for s in range(6)] + [lin("b", s, c, 200) for s, c in enumerate(cs)]
    out = stats.paired_curves(runs, reference="ref", points=5)
    g = out["groups"][0]
    d = np.array(cs) - 2.0
    assert g["n"] == 6 and g["x"] == [0.0, 25.0, 50.0, 75.0, 100.0]  # up to the shortest pair's end
    assert g["mean"] == pytest.approx([d.mean()] * 5)
    lo, hi, _ = stats.mean_interval(d)  # the paired t-interval at every x (the differences are constant in x)
    assert g["lo"] == pytest.approx([lo] * 5) and g["hi"] == pytest.approx([hi] * 5)
    two = stats.paired_curves([r for r in runs if r["seed"] < 2], reference="ref", points=5)
    assert two["groups"][0]["n"] == 2 and two["groups"][0]["lo"] == [] == two["groups"][0]["hi"]  # no band
    with pytest.raises(ValueError, match="Invalid axis"):
        stats.paired_curves(runs, reference="ref", axis="steps")
    lonely = stats.paired_curves(runs + [lin("c", 7, 1.0, 100)], reference="ref")
    assert lonely["groups"][-1] == {"group": "c", "group_key": "c", "optimizer": None, "n": 0, "x": [], "mean": [],
                                    "lo": [], "hi": []}
