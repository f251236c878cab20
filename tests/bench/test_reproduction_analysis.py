"""reproduction's pure helpers: cost to reach a loss target, mean ± std, comparisons, step-size choice."""
import pytest

from reproduction.analysis import (best_by_final_loss, compare, cost_to_target, format_mean_std, mean_std,
                                   target_table)


def evals(*pairs):
    return [{"backprops": b, "wall_time": b / 100, "epoch": b / 1000, "train_loss": loss} for b, loss in pairs]


def run(optimizer, seed, *pairs):
    return {"optimizer": optimizer, "seed": seed, "evals": evals(*pairs)}


def test_cost_to_target_first_crossing():
    ev = evals((0, 2.3), (100, 0.8), (200, 0.45), (300, 0.5), (400, 0.3))
    assert cost_to_target(ev, 0.5) == 200  # first evaluation at or below the target
    assert cost_to_target(ev, 0.45) == 200
    assert cost_to_target(ev, 0.3) == 400
    assert cost_to_target(ev, 0.29) is None
    assert cost_to_target(ev, 0.5, x="wall_time") == 2.0


def test_cost_to_target_skips_missing_losses():
    ev = [{"backprops": 0, "train_loss": None}, {"backprops": 10, "train_loss": float("nan")},
          {"backprops": 20, "train_loss": 0.1}]
    assert cost_to_target(ev, 0.5) == 20


def test_mean_std_and_format():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_std([None, None]) == (None, None, 0)
    assert format_mean_std([100.0, 200.0, 300.0]) == "200 ± 100"
    assert format_mean_std([100.0, None, 300.0]) == "200 ± 141 (2/3 seeds)"
    assert format_mean_std([None, None]) == "not reached"
    assert format_mean_std([0.25]) == "0.25"


def test_target_table_rows():
    groups = {"tr-uniform": [run("tr-uniform", 0, (0, 2.0), (100, 0.4)), run("tr-uniform", 1, (0, 2.0), (300, 0.4))],
              "sgd": [run("sgd", 0, (0, 2.0), (500, 0.6)), run("sgd", 1, (0, 2.0), (400, 0.45))]}
    header, rows = target_table(groups, (0.5, 0.4), {"tr-uniform": "TR uniform", "sgd": "SGD"})
    assert header == ["optimizer", "loss ≤ 0.5", "loss ≤ 0.4"]
    assert rows[0] == ["TR uniform", "200 ± 141", "200 ± 141"]
    assert rows[1] == ["SGD", "400 (1/2 seeds)", "not reached"]


def test_compare_decides_on_the_hardest_target():
    a = [run("a", s, (0, 2.0), (100, 0.5), (200, 0.3)) for s in range(3)]
    b = [run("b", s, (0, 2.0), (150, 0.5), (400, 0.35)) for s in range(3)]
    cmp = compare(a, b, (0.5, 0.4, 0.3))
    assert cmp["winner"] == "a"
    assert cmp["hardest"]["target"] == 0.3 and cmp["hardest"]["b_reached"] == 0
    assert cmp["wins_a"] == 3 and cmp["wins_b"] == 0
    assert cmp["final_a"] == pytest.approx(0.3) and cmp["final_b"] == pytest.approx(0.35)


def test_compare_mixed_and_undecided():
    a = [run("a", 0, (0, 2.0), (100, 0.5), (300, 0.3))]
    b = [run("b", 0, (0, 2.0), (50, 0.5), (200, 0.3))]
    assert compare(a, b, (0.5, 0.3))["winner"] == "b"
    c = [run("c", 0, (0, 2.0), (50, 0.5), (400, 0.3))]
    assert compare(c, b, (0.5, 0.3))["winner"] == "b"
    b2 = [run("b", 0, (0, 2.0), (30, 0.6), (50, 0.5), (200, 0.3))]
    d = [run("d", 0, (0, 2.0), (20, 0.6), (40, 0.5), (500, 0.3))]  # ahead on the easy targets, behind on the hard one
    assert compare(d, b2, (0.6, 0.5, 0.3))["winner"] == "mixed"
    assert compare(a, b, (0.1,))["winner"] is None


def test_best_by_final_loss():
    groups = {"x": [run("x", 0, (0, 1.0), (10, 0.4))], "y": [run("y", 0, (0, 1.0), (10, 0.3))]}
    assert best_by_final_loss(groups, ("x", "y")) == "y"
    assert best_by_final_loss(groups, ("z",)) is None
