"""The figures `make bench` reports, their goals, and the stdout table (pure functions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Figure", "FIGURES", "figure_entry", "build_table", "goal_met"]


@dataclass(frozen=True)
class Figure:
    key: str
    item: str
    label: str
    unit: str
    goal: float | None  # upper bound; None: reported without a goal
    fmt: str = "{:.3f}"

    @property
    def goal_text(self) -> str:
        return "—" if self.goal is None else f"≤ {self.fmt.format(self.goal)}{self.unit}"


FIGURES: tuple[Figure, ...] = (
    Figure("hvp_over_grad_mlp", "hvp", "HVP / gradient, F-MNIST MLP, batch 512", "", 1.5, "{:.2f}"),
    Figure("hvp_over_grad_autoencoder", "hvp", "HVP / gradient, F-MNIST autoencoder, batch 512", "", None, "{:.2f}"),
    Figure("tr_non_derivative_share", "breakdown", "TR step time outside gradient+HVPs (MLP, worst norm)", "",
           0.10, "{:.1%}"),
    Figure("tr_overhead_excl_rho_share", "breakdown", "  same, without the ρ forward pass (CG, norm, bookkeeping)",
           "", 0.05, "{:.1%}"),
    Figure("tr_host_syncs_per_cg_iteration", "syncs", "host syncs per CG iteration (TR step, CPU-counted)", "", 1.0,
           "{:.2f}"),
    Figure("tr_host_syncs_constant_per_step", "syncs", "  plus host syncs per TR step outside the Krylov loop", "",
           None, "{:.0f}"),
    Figure("gltr_peak_memory_mb", "gltr_memory", "GLTR peak memory rise, autoencoder step to the Lanczos cap (50)", " MB",
           None, "{:.0f}"),
    Figure("logging_overhead_ratio", "logging", "loop with store reporter / same loop without, MLP b128 1 epoch "
           "(CPU)", "", 1.03, "{:.3f}"),
    Figure("logging_overhead_wall_ratio", "logging", "  same, wall clock (noisy on a shared machine)", "", None,
           "{:.3f}"),
    Figure("tensorboard_overhead_ratio", "logging", "  peer: same loop with TensorBoard SummaryWriter (CPU)", "", None,
           "{:.3f}"),
    Figure("mlflow_overhead_ratio", "logging", "  peer: same loop with MLflow log_metrics, SQLite store (CPU)", "",
           None, "{:.3f}"),
    Figure("metrics_p95_ms", "metrics", "p95 GET metrics?max_points=2000 (200k TR points, 10% rejected)", " ms", 50.0,
           "{:.1f}"),
    Figure("mlflow_bulk_interval_p95_ms", "metrics", "  peer: MLflow get_metric_history_bulk_interval, same losses",
           " ms", None, "{:.1f}"),
    Figure("incremental_p95_ms", "metrics", "p95 GET metrics?since_step (last 100 of 200k)", " ms", 100.0,
           "{:.1f}"),
    Figure("compare_first_load_s_40_runs", "compare", "Compare first load, 40 runs x 7000 steps (UI data code)", " s",
           1.5, "{:.2f}"),
    Figure("compare_payload_mb_40_runs", "compare", "  payload of that first load", " MB", 5.0, "{:.2f}"),
    Figure("compare_refresh_ms_40_runs", "compare", "  one live refresh (+10 steps per run), median", " ms", 300.0,
           "{:.0f}"),
    Figure("worker_start_s", "worker", "executor asks the zygote for a run process (fork) → first step, cache warm "
           "(median)", " s", 1.5, "{:.2f}"),
    Figure("worker_cold_start_s", "worker", "  same from a fresh interpreter (Popen → first step, no zygote)", " s",
           None, "{:.2f}"),
    Figure("live_latency_s", "live", "record reported in worker → visible via API (p95)", " s", 1.0, "{:.2f}"),
    Figure("launch_to_first_point_p50_s", "launch", "POST /api/runs → first point, 2 runs training (p50)", " s", 3.0,
           "{:.2f}"),
    Figure("launch_to_first_point_p95_s", "launch", "  same, p95 over 10 launches", " s", None, "{:.2f}"),
    Figure("load_incremental_p50_ms", "load", "100 clients, 4 runs training: p50 incremental metrics poll", " ms",
           None, "{:.0f}"),
    Figure("load_incremental_p95_ms", "load", "  same, p95", " ms", None, "{:.0f}"),
    Figure("load_incremental_p99_ms", "load", "  same, p99", " ms", 500.0, "{:.0f}"),
    Figure("load_full_p95_ms", "load", "  full page (max_points=2000), p95", " ms", None, "{:.0f}"),
    Figure("load_full_p99_ms", "load", "  full page, p99", " ms", None, "{:.0f}"),
    Figure("load_errors", "load", "  errors (transport, 4xx/5xx)", "", 0.0, "{:.0f}"),
    Figure("load_5xx", "load", "  server errors (5xx)", "", 0.0, "{:.0f}"),
    Figure("hessian_checkpoint_s", "hessian", "Hessian analysis, 1st checkpoint (mlp-narrow, b512, 2 draws)", " s",
           None, "{:.1f}"),
    Figure("scale_local_runs_per_minute", "scale", "50 tiny runs, local executor: runs per minute (2 slots)", "", None,
           "{:.1f}"),
    Figure("scale_local_overhead_per_run_s", "scale", "  runner overhead per run (start → final, median)", " s", None,
           "{:.2f}"),
    Figure("scale_ray_runs_per_minute", "scale", "50 tiny runs, Ray executor: runs per minute (2 CPUs)", "", None,
           "{:.1f}"),
    Figure("scale_ray_overhead_per_run_s", "scale", "  runner overhead per run (start → final, median)", " s", None,
           "{:.2f}"),
)
FIGURE_BY_KEY = {f.key: f for f in FIGURES}


def goal_met(figure: Figure, value: float | None) -> bool | None:
    """True/False against the figure's upper bound; None when there is no value or no goal."""
    if value is None or figure.goal is None:
        return None
    return value <= figure.goal * (1 + 1e-9)  # a ratio of 1.0000000000000002 (float rounding) meets a goal of 1


def figure_entry(key: str, value: float | None, *, device: str, machine: str, reason: str | None = None,
                 measured_at: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON record of one figure: value (or None with the reason it could not be measured) and its goal."""
    fig = FIGURE_BY_KEY[key]
    if value is None and not reason:
        raise ValueError(f"figure {key!r} has no value: give the reason it could not be measured")
    return {"value": value, "unit": fig.unit.strip() or None, "goal": fig.goal_text, "met": goal_met(fig, value),
            "reason": None if value is not None else reason, "device": device, "machine": machine,
            "measured_at": measured_at, **extra}


def build_table(figures: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table of every known figure; missing ones show "n/a" and the reason."""
    rows = [("figure", "value", "goal", "met", "where")]
    notes: list[str] = []
    for fig in FIGURES:
        entry = figures.get(fig.key)
        if entry is None:
            rows.append((fig.label, "not run", fig.goal_text, "—", ""))
            continue
        value = entry.get("value")
        if value is None:
            text = "n/a"
            notes.append(f"{fig.key}: {entry.get('reason') or 'not measured'}")
        else:
            text = fig.fmt.format(value) + fig.unit
        met = entry.get("met")
        rows.append((fig.label, text, fig.goal_text, {True: "yes", False: "NO", None: "—"}[met],
                     str(entry.get("device", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) if i < 4 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines.append("")
        lines.extend(f"n/a — {n}" for n in notes)
    return "\n".join(lines)
