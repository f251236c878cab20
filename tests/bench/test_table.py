"""bench's pure helpers: goals, figure records, the stdout table, percentiles, CPU model parsing."""
import pytest

from bench.machine import cpu_model
from bench.table import FIGURE_BY_KEY, FIGURES, build_table, figure_entry, goal_met
from bench.timing import percentile

REQUIRED = {"hvp_over_grad_mlp", "hvp_over_grad_autoencoder", "tr_non_derivative_share", "logging_overhead_ratio",
            "metrics_p95_ms", "incremental_p95_ms", "live_latency_s"}


def test_every_required_key_is_a_figure():
    assert REQUIRED <= {f.key for f in FIGURES}


def test_goal_met_is_an_upper_bound():
    fig = FIGURE_BY_KEY["hvp_over_grad_mlp"]
    assert goal_met(fig, 1.5) is True
    assert goal_met(fig, 1.51) is False
    assert goal_met(fig, None) is None
    assert goal_met(FIGURE_BY_KEY["hvp_over_grad_autoencoder"], 9.0) is None  # no goal


def test_missing_value_needs_a_reason():
    with pytest.raises(ValueError, match="reason"):
        figure_entry("live_latency_s", None, device="cpu", machine="m", reason=None)
    e = figure_entry("live_latency_s", None, device="cpu", machine="m", reason="backend not available")
    assert e["value"] is None and e["met"] is None and e["reason"] == "backend not available"


def test_table_shows_values_goals_and_reasons():
    figures = {
        "hvp_over_grad_mlp": figure_entry("hvp_over_grad_mlp", 1.23, device="cpu", machine="m"),
        "tr_non_derivative_share": figure_entry("tr_non_derivative_share", 0.25, device="cpu", machine="m"),
        "metrics_p95_ms": figure_entry("metrics_p95_ms", None, device="cpu", machine="m", reason="no backend"),
    }
    text = build_table(figures)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("HVP / gradient, F-MNIST MLP"))
    assert "1.23" in row and "≤ 1.50" in row and "yes" in row
    share = next(line for line in lines if line.startswith("TR step time"))
    assert "25.0%" in share and "NO" in share
    assert "n/a — metrics_p95_ms: no backend" in text
    assert "not run" in next(line for line in lines if line.startswith("record reported"))


def test_breakdown_shares():
    from bench.breakdown import shares

    sh = shares({"gradient": 2.0, "hvp": 6.0, "cg_vector": 0.5, "rho_eval": 1.0, "norm": 0.2, "bookkeeping": 0.3})
    assert sum(sh[p] for p in ("gradient", "hvp", "cg_vector", "rho_eval", "norm", "bookkeeping")) == pytest.approx(1)
    assert sh["non_derivative"] == pytest.approx(0.2)
    assert sh["non_derivative_excl_rho"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        shares({p: 0.0 for p in ("gradient", "hvp", "cg_vector", "rho_eval", "norm", "bookkeeping")})


def test_percentile_interpolates():
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 95) == pytest.approx(95.05)
    assert percentile([3.0], 95) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_cpu_model_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
    assert cpu_model(text) == "AMD EPYC 7B13"


def test_goal_met_tolerates_float_rounding_only():
    from bench.table import FIGURES, goal_met

    syncs = next(f for f in FIGURES if f.key == "tr_host_syncs_per_cg_iteration")
    assert goal_met(syncs, 1.0000000000000002) is True  # a least-squares slope of exactly one sync per iteration
    assert goal_met(syncs, 1.01) is False
