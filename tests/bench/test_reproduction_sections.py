"""reproduction.sections: the verdict rules of REPORT.md on hand-computed cases (backend.stats' calibrated rules: a
sentence only for a resolved comparison with >= 5 paired seeds; no wall-time verdict inside an equal-backprop
comparison), and the CG vs GLTR / raw vs standardised / equal wall-time sections."""
from __future__ import annotations

import pytest

from backend import stats
from reproduction.sections import (findings, hvps_per_step, per_seed_table, scaling_section, solver_section,
                                   stat_runs, wall_findings)


def record(seed: int, *, reach: float | None, final: float, wall_reach: float = 1.0, budget=None, hvps=0,
           steps=100, optimizer: str = "tr-rmsprop") -> dict:
    """A saved run: loss 1.0 at 0 and 0.5 at ``reach`` - 5 backprops, 0.3 at backprops ``reach`` (never when None),
    ``final`` at 1,000 backprops (so a crossing is resolved to 5 backprops)."""
    evals = [{"step": 0, "backprops": 0, "epoch": 0.0, "wall_time": 0.0, "train_loss": 1.0}]
    if reach is not None:
        evals.append({"step": 1, "backprops": reach - 5, "epoch": 0.05, "wall_time": wall_reach - 0.5,
                      "train_loss": 0.5})
        evals.append({"step": 1, "backprops": reach, "epoch": 0.1, "wall_time": wall_reach, "train_loss": 0.3})
    else:
        evals.append({"step": 1, "backprops": 500, "epoch": 0.1, "wall_time": wall_reach, "train_loss": 0.6})
    evals.append({"step": 2, "backprops": 1000, "epoch": 0.2, "wall_time": 9.0, "train_loss": final})
    return {"optimizer": optimizer, "seed": seed, "run_id": None, "evals": evals,
            "summary": {"status": "completed", "hvps": hvps, "steps": steps},
            "config": {"budget": budget or {"backprops": 1000}}}


def table(a, b, *, targets=(0.3,), k=1):
    return stats.results(stat_runs(a, "A") + stat_runs(b, "B"), reference="A", targets=targets, k=k)


SEEDS = tuple(range(1, 9))  # 8 paired seeds: 2/2^8 leaves room for Holm over a few comparisons


def test_a_resolved_target_gives_a_sentence_but_wall_time_never_does():
    # A reaches 0.3 at 200 + 10 i backprops after 1 s; B at 100 + 10 i after 5 s: paired differences -100 on every
    # seed, interval [-100, -100], exact sign-flip p = 2/256
    a = [record(s, reach=200 + 10 * i, final=0.25, wall_reach=1.0) for i, s in enumerate(SEEDS)]
    b = [record(s, reach=100 + 10 * i, final=0.20, wall_reach=5.0) for i, s in enumerate(SEEDS)]
    res = table(a, b)
    sentences, unresolved = findings(res)
    to = next(x for x in sentences if x.startswith("B reaches train loss ≤ 0.3 in fewer backprops than A"))
    assert "mean difference -100, 95% paired t-interval [-100, -100]" in to and "n = 8 paired seeds" in to
    assert "Holm-adjusted p" in to and "resolution 5 backprops" in to
    # final train loss (k=1): 0.20 - 0.25 = -0.05 on every seed
    assert any(x.startswith("B has a lower smoothed final train loss than A: mean difference -0.05") for x in sentences)
    # the stats resolve "more wall time" (+4 s on every seed) but the report's findings leave it out
    assert any("in more wall time" in p["sentence"] for g in res["groups"] for p in g["paired"])
    assert not any("wall time" in s for s in sentences)
    assert all("epochs" not in s for s in sentences)
    assert unresolved == 2  # final test loss and accuracy: these records have none


def test_a_seed_that_never_reached_the_target_is_censored_with_its_known_sign():
    a = [record(s, reach=200, final=0.25) for s in SEEDS]
    b = [record(s, reach=100, final=0.2) for s in SEEDS[:-1]] + [record(SEEDS[-1], reach=None, final=0.4)]
    res = table(a, b)
    pair = next(p for p in res["groups"][1]["paired"] if p["metric"] == "backprops_to_0.3")
    # B's seed 8 never reached 0.3 by its last evaluation (1,000 backprops), A reached it at 200: B is slower there
    assert pair["n_pairs"] == 8 and pair["n_censored"] == 1 and pair["test"].startswith("exact sign test")
    assert pair["p"] == pytest.approx(18 / 256)  # 7 of 8 signs negative: 2·(1 + 8)/256
    assert pair["verdict"] is None and "censored pair" in pair["sentence"]
    assert not any("≤ 0.3" in s for s in findings(res)[0])


def test_no_sentence_when_the_interval_includes_zero():
    a = [record(s, reach=200, final=0.25) for s in SEEDS]
    b = [record(s, reach=200 + d, final=0.25) for s, d in zip(SEEDS, (-10, 20, -5, 15, -20, 10, -15, 5))]
    res = table(a, b)
    pair = next(p for p in res["groups"][1]["paired"] if p["metric"] == "backprops_to_0.3")
    assert pair["mean_diff"] == pytest.approx(0) and pair["ci"][0] < 0 < pair["ci"][1]
    assert pair["verdict"] is None and "not resolved with 8 seeds" in pair["sentence"]
    # the final train losses are identical: "no practical difference" is a finding; the rest are not resolved
    sentences, unresolved = findings(res)
    assert sentences == [next(p["sentence"] for p in res["groups"][1]["paired"] if p["metric"] == "final_train_loss")]
    assert "no practical difference" in sentences[0] and unresolved == 3


def test_fewer_than_five_seeds_are_descriptive_only():
    a = [record(s, reach=200, final=0.25) for s in (1, 2, 3)]
    b = [record(s, reach=100, final=0.2) for s in (1, 2, 3)]
    res = table(a, b)
    assert findings(res) == ([], 4)
    assert all("descriptive only" in p["sentence"] for p in res["groups"][1]["paired"])


def test_per_seed_table_lists_every_seed():
    a = [record(s, reach=200 + s, final=0.25) for s in (1, 2, 3)]
    b = [record(1, reach=100, final=0.2), record(2, reach=None, final=0.31), record(3, reach=120, final=0.22)]
    md = per_seed_table(table(a, b))
    assert "| A | 1, 2, 3 | 0.25, 0.25, 0.25 | 201, 202, 203 |" in md
    assert "| B | 1, 2, 3 | 0.2, 0.31, 0.22 | 100, —, 120 |" in md


def test_wall_findings_only_for_equal_seconds_and_only_final_values():
    a = [record(s, reach=200, final=0.25, budget={"seconds": 10}) for s in SEEDS]
    b = [record(s, reach=100, final=0.20, budget={"seconds": 10}) for s in SEEDS]
    sentences, _ = wall_findings(table(a, b))
    assert len(sentences) == 1 and sentences[0].startswith(
        "B has a lower smoothed final train loss than A: mean difference -0.05, 95% paired t-interval [-0.05, -0.05]")
    with pytest.raises(ValueError, match="equal budgets in seconds"):
        wall_findings(table([record(s, reach=200, final=0.25) for s in SEEDS], b))


def test_scaling_section_counts_seeds_and_pairs():
    raw = [record(1, reach=None, final=0.35), record(2, reach=None, final=0.34), record(3, reach=900, final=0.3)]
    std = [record(s, reach=1700 + 100 * s, final=0.28) for s in (1, 2, 3)]
    sec = scaling_section(raw, std, label="TR uniform", target=0.3)
    assert sec["cells"][0] == ("TR uniform, raw inputs", "1/3", "900 ± — (over 1)", "—, —, 900")
    assert sec["cells"][1] == ("TR uniform, standardised inputs", "3/3", "1,900 ± 100", "1,800, 1,900, 2,000")
    assert sec["paired"]["verdict"] is None
    assert not any("≤ 0.3" in s for s in sec["sentences"])
    raw = [record(s, reach=1900 + 100 * s, final=0.28) for s in SEEDS]
    std = [record(s, reach=1700 + 100 * s, final=0.28) for s in SEEDS]
    sec = scaling_section(raw, std, label="TR uniform", target=0.3)
    assert sec["paired"]["mean_diff"] == pytest.approx(-200) and sec["paired"]["ci"] == pytest.approx([-200, -200])
    assert any("standardised inputs reaches train loss ≤ 0.3 in fewer backprops than TR uniform, raw inputs"
               in s for s in sec["sentences"])


def test_solver_section_hvps_per_step():
    cg = [record(s, reach=200, final=0.25, hvps=300, steps=100) for s in SEEDS]  # 3 HVPs a step
    gltr = [record(s, reach=200, final=0.25, hvps=250, steps=100) for s in SEEDS]  # 2.5 HVPs a step
    assert hvps_per_step(cg[0]) == 3.0 and hvps_per_step({"summary": {"hvps": 5, "steps": 0}}) is None
    sec = solver_section(cg, gltr, label="TR RMSprop", targets=(0.3,))
    assert sec["hvps"] == {"n": 8, "mean": pytest.approx(-0.5), "ci": pytest.approx([-0.5, -0.5]),
                           "p": pytest.approx(2 / 256)}
    assert any(s.startswith("TR RMSprop, GLTR uses fewer HVPs per step than TR RMSprop, CG: mean difference -0.5, "
                            "95% paired t-interval [-0.5, -0.5]; exact sign-flip permutation test p = 0.0078")
               for s in sec["sentences"])
    assert not any(" lower " in s or " fewer backprops" in s for s in sec["sentences"])  # identical losses
    assert "| TR RMSprop, GLTR | 8 |" in sec["table"]


def test_findings_can_keep_only_the_train_loss_finals():
    a = [record(s, reach=200, final=0.25) for s in SEEDS]
    b = [record(s, reach=100, final=0.20) for s in SEEDS]
    for r in a + b:  # a final test loss 0.1 lower for B on every seed: resolved, but not a train-loss finding
        r["evals"][-1]["test_loss"] = 0.5 if r in a else 0.4
    res = table(a, b)
    everything, _ = findings(res)
    train_only, _ = findings(res, finals=("final_train_loss",))
    assert any("final test loss" in s for s in everything)
    assert not any("final test" in s for s in train_only) and len(train_only) == len(everything) - 1
