"""reproduction.sections: the verdict rules of REPORT.md on hand-computed cases (a sentence only where the paired
interval excludes zero at the stated target and every seed reached it; no wall-time verdict inside an
equal-backprop comparison), and the CG vs GLTR / raw vs standardised / equal wall-time sections."""
from __future__ import annotations

import pytest

from backend import stats
from reproduction.sections import (findings, hvps_per_step, per_seed_table, scaling_section, solver_section,
                                   stat_runs, wall_findings)


def record(seed: int, *, reach: float | None, final: float, wall_reach: float = 1.0, budget=None, hvps=0,
           steps=100, optimizer: str = "tr-rmsprop") -> dict:
    """A saved run: loss 1.0 at 0, 0.3 at backprops ``reach`` (never when None), ``final`` at 1,000 backprops."""
    evals = [{"step": 0, "backprops": 0, "epoch": 0.0, "wall_time": 0.0, "train_loss": 1.0}]
    if reach is not None:
        evals.append({"step": 1, "backprops": reach, "epoch": 0.1, "wall_time": wall_reach, "train_loss": 0.3})
    else:
        evals.append({"step": 1, "backprops": 500, "epoch": 0.1, "wall_time": wall_reach, "train_loss": 0.6})
    evals.append({"step": 2, "backprops": 1000, "epoch": 0.2, "wall_time": 9.0, "train_loss": final})
    return {"optimizer": optimizer, "seed": seed, "run_id": None, "evals": evals,
            "summary": {"status": "completed", "hvps": hvps, "steps": steps},
            "config": {"budget": budget or {"backprops": 1000}}}


def table(a, b, *, targets=(0.3,), k=1):
    return stats.results(stat_runs(a, "A") + stat_runs(b, "B"), reference="A", targets=targets, k=k)


def test_a_resolved_target_gives_a_sentence_but_wall_time_never_does():
    # A reaches 0.3 at 200/210/220 backprops after 1 s; B at 100/110/120 after 5 s: paired backprops
    # differences are -100 on every seed, so every bootstrap mean is -100 and the interval is [-100, -100].
    a = [record(s, reach=200 + 10 * i, final=0.25, wall_reach=1.0) for i, s in enumerate((1, 2, 3))]
    b = [record(s, reach=100 + 10 * i, final=0.20, wall_reach=5.0) for i, s in enumerate((1, 2, 3))]
    res = table(a, b)
    sentences, unresolved = findings(res)
    assert ("B reaches train loss ≤ 0.3 in fewer backprops than A: mean difference -100, 95% CI [-100, -100], "
            "3/3 seeds reached it in both.") in sentences
    # final train loss (k=1): 0.20 - 0.25 = -0.05 on every seed
    assert "B has a lower smoothed final train loss than A: mean difference -0.05, 95% CI [-0.05, -0.05], " \
           "n = 3 paired seeds." in sentences
    # the stats resolve "more wall time" (+4 s on every seed) but the report's findings leave it out
    assert any("in more wall time" in p["sentence"] for g in res["groups"] for p in g["paired"])
    assert not any("wall time" in s for s in sentences)
    assert all("epochs" not in s for s in sentences)
    assert unresolved == 2  # final test loss and accuracy: these records have none


def test_no_sentence_when_a_seed_did_not_reach_the_target():
    a = [record(s, reach=200, final=0.25) for s in (1, 2, 3)]
    b = [record(1, reach=100, final=0.2), record(2, reach=100, final=0.2), record(3, reach=None, final=0.4)]
    res = table(a, b)
    sentences, _ = findings(res)
    assert not any("≤ 0.3" in s for s in sentences)  # 2/3 reached: censored, never "slower" or "faster"
    pair = next(p for p in res["groups"][1]["paired"] if p["metric"] == "backprops_to_0.3")
    assert pair["n_pairs"] == 2 and pair["mean_diff"] == -100 and pair["verdict"] is None
    assert "only 2/3 seeds reached the target in both" in pair["sentence"]


def test_no_sentence_when_the_interval_includes_zero():
    # paired differences -10, +20, -5: a resample mean is < 0 whenever no +20 is drawn ((2/3)^3 = 30% of
    # resamples) and > 0 in more than half of them, so the 95% interval straddles zero
    a = [record(s, reach=200, final=0.25) for s in (1, 2, 3)]
    b = [record(1, reach=190, final=0.25), record(2, reach=220, final=0.25), record(3, reach=195, final=0.25)]
    res = table(a, b)
    pair = next(p for p in res["groups"][1]["paired"] if p["metric"] == "backprops_to_0.3")
    assert pair["mean_diff"] == pytest.approx(5 / 3) and pair["ci"][0] < 0 < pair["ci"][1]
    assert "not resolved with 3 seeds" in pair["sentence"]
    # unresolved: the backprops target, the final train loss (ci [0, 0] contains 0), final test loss and accuracy
    assert findings(res) == ([], 4)


def test_per_seed_table_lists_every_seed():
    a = [record(s, reach=200 + s, final=0.25) for s in (1, 2, 3)]
    b = [record(1, reach=100, final=0.2), record(2, reach=None, final=0.31), record(3, reach=120, final=0.22)]
    md = per_seed_table(table(a, b))
    assert "| A | 1, 2, 3 | 0.25, 0.25, 0.25 | 201, 202, 203 |" in md
    assert "| B | 1, 2, 3 | 0.2, 0.31, 0.22 | 100, —, 120 |" in md


def test_wall_findings_only_for_equal_seconds_and_only_final_values():
    a = [record(s, reach=200, final=0.25, budget={"seconds": 10}) for s in (1, 2, 3)]
    b = [record(s, reach=100, final=0.20, budget={"seconds": 10}) for s in (1, 2, 3)]
    sentences, _ = wall_findings(table(a, b))
    assert sentences == ["B has a lower smoothed final train loss than A: mean difference -0.05, 95% CI "
                         "[-0.05, -0.05], n = 3 paired seeds."]
    with pytest.raises(ValueError, match="equal budgets in seconds"):
        wall_findings(table([record(s, reach=200, final=0.25) for s in (1, 2, 3)], b))


def test_scaling_section_counts_seeds_and_pairs():
    raw = [record(1, reach=None, final=0.35), record(2, reach=None, final=0.34), record(3, reach=900, final=0.3)]
    std = [record(s, reach=1700 + 100 * s, final=0.28) for s in (1, 2, 3)]
    sec = scaling_section(raw, std, label="TR uniform", target=0.3)
    assert sec["cells"][0] == ("TR uniform, raw inputs", "1/3", "900 (over 1)", "—, —, 900")
    assert sec["cells"][1] == ("TR uniform, standardised inputs", "3/3", "1,900 ± 100", "1,800, 1,900, 2,000")
    assert sec["paired"]["n_pairs"] == 1 and sec["paired"]["verdict"] is None
    assert not any("≤ 0.3" in s for s in sec["sentences"])
    raw = [record(s, reach=1900 + 100 * s, final=0.28) for s in (1, 2, 3)]  # 2,000 / 2,100 / 2,200
    sec = scaling_section(raw, std, label="TR uniform", target=0.3)
    assert sec["paired"]["mean_diff"] == pytest.approx(-200) and sec["paired"]["ci"] == pytest.approx([-200, -200])
    assert any("standardised inputs reaches train loss ≤ 0.3 in fewer backprops than TR uniform, raw inputs"
               in s for s in sec["sentences"])


def test_solver_section_hvps_per_step():
    cg = [record(s, reach=200, final=0.25, hvps=300, steps=100) for s in (1, 2, 3)]  # 3 HVPs a step
    gltr = [record(s, reach=200, final=0.25, hvps=250, steps=100) for s in (1, 2, 3)]  # 2.5 HVPs a step
    assert hvps_per_step(cg[0]) == 3.0 and hvps_per_step({"summary": {"hvps": 5, "steps": 0}}) is None
    sec = solver_section(cg, gltr, label="TR RMSprop", targets=(0.3,))
    assert sec["hvps"] == {"n": 3, "mean": pytest.approx(-0.5), "ci": pytest.approx([-0.5, -0.5])}
    assert ("TR RMSprop, GLTR uses fewer HVPs per step than TR RMSprop, CG: mean difference -0.5, 95% CI "
            "[-0.5, -0.5], n = 3 paired seeds.") in sec["sentences"]
    assert not any("train loss" in s for s in sec["sentences"])  # identical losses: nothing else resolved
    assert "| TR RMSprop, GLTR | 3 | 0.5167, 0.5167, 0.5167 | 2.5, 2.5, 2.5 |" in sec["table"]


def test_findings_can_keep_only_the_train_loss_finals():
    a = [record(s, reach=200, final=0.25) for s in (1, 2, 3)]
    b = [record(s, reach=100, final=0.20) for s in (1, 2, 3)]
    for r in a + b:  # a final test loss 0.1 lower for B on every seed: resolved, but not a train-loss finding
        r["evals"][-1]["test_loss"] = 0.5 if r in a else 0.4
    res = table(a, b)
    everything, _ = findings(res)
    train_only, _ = findings(res, finals=("final_train_loss",))
    assert any("final test loss" in s for s in everything)
    assert not any("test" in s for s in train_only) and len(train_only) == len(everything) - 1
