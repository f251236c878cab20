"""Build reproduction/REPORT.md and its PNG figures from the saved runs (no training).

Usage: python -m reproduction.report [--results-dir DIR] [--out-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reproduction.analysis import (final_table, format_mean_std,
                                   group_by_optimizer, markdown_table, target_table)
from reproduction.records import RESULTS_DIR, load_experiment
from backend.sweeps import log_grid
from reproduction.sections import (findings, per_seed_table, scaling_section, solver_section, wall_findings)
from reproduction.spec import EXPERIMENTS, LABELS, TR_OPTIMIZERS, Experiment
from backend import stats

__all__ = ["build_report", "edge_cautions", "machine_paragraph", "paired_findings", "paired_results",
           "results_markdown_without_wall", "side_sections"]

OUT_DIR = Path(__file__).resolve().parent
TRAIN_LOSS = ("final_train_loss",)  # the Findings list: the optimization claims; test-set verdicts stay in the tables
# The report's prose and layout: reproduction/templates/REPORT.md.j2 (Markdown; no HTML escaping)
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=False,
                         trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=StrictUndefined)
ORDER = ("tr-uniform", "tr-adagrad", "tr-rmsprop", "sgd", "sgd-momentum", "adagrad", "rmsprop", "adam")


def _n(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"


def paired_findings(short: str, res: dict[str, Any]) -> list[str]:
    """Findings lines from a results table (backend.stats.results): resolved verdicts only (final values and
    backprops to target; never wall time inside an equal-backprop comparison), with their n."""
    n = sorted({g["n"] for g in res["groups"]})
    resolved, unresolved = findings(res, axes=("backprops",), finals=TRAIN_LOSS)
    lines = [f"- **{short} ({'/'.join(map(str, n))} seeds per method, paired by seed, against {res['reference']}; "
             f"{res['budget']['note']}; train loss — test-set verdicts are under the results table):**"]
    lines += [f"  - {s}" for s in resolved] or [f"  - no difference to {res['reference']} is resolved with these seeds."]
    if unresolved:
        lines.append(f"  - {unresolved} other comparison(s) not resolved (listed under the results table below).")
    return lines


def results_markdown_without_wall(res: dict[str, Any]) -> str:
    """The product's Markdown results table with its verdict list, minus the wall-time-to-target sentences (wall
    time is compared only at equal wall-time budgets)."""
    kept = [p["sentence"] for g in res["groups"] for p in g["paired"] if p.get("axis") != "wall_time"]
    return stats.results_markdown({**res, "verdicts": kept})


def _load_phase(root: Path, e: Experiment, phase: str, optimizer: str) -> list[dict[str, Any]]:
    return [r for r in load_experiment(e.name, phase, root=root) if r["optimizer"] == optimizer]


def side_sections(root: Path, e: Experiment) -> dict[str, list[str]]:
    """The CG vs GLTR, raw vs standardised and equal wall-time sections of one experiment (Markdown parts) and
    their findings lines; sections whose runs were not saved are left out."""
    short = e.title.split(" (")[0]
    out: dict[str, list[str]] = {"findings": [], "sections": []}
    # CG vs GLTR: the comparison's CG runs against the GLTR runs on the same seeds
    solver = [(o, solver_section(_load_phase(root, e, "main", o), gltr, label=LABELS[o], targets=e.targets))
              for o in e.solver_optimizers if (gltr := _load_phase(root, e, "gltr", o))]
    if solver:
        md = [f"### {short}: CG vs GLTR (same stopping rule)\n",
              "Steihaug-Toint CG and GLTR (Lanczos) solve the same trust-region subproblem and now stop on the same "
              "rule, the preconditioned residual ‖r‖_{M⁻¹} ≤ ‖g‖_{M⁻¹}·min(κ, ‖g‖_{M⁻¹}^θ) "
              "(trainer/optim/krylov.py `stopping_threshold`), so the comparison is like for like. Same seeds, same "
              f"inputs and budget ({e.backprops:,} backprops); the loss is compared at that equal backprop budget "
              "(smoothed final train loss, mean of the last 3 evaluations); HVPs per step = HVPs / optimizer steps "
              "of each run.\n"]
        for o, sec in solver:
            md.append(sec["table"] + "\n")
            md.append("Targets (backprops to train loss, per seed): \n\n" + per_seed_table(sec["results"]) + "\n")
            md += [f"- {x}" for x in sec["sentences"]] or ["- no difference between the solvers is resolved with "
                                                          "these seeds."]
            md.append(f"- {sec['unresolved']} other paired comparison(s) not resolved.\n")
            out["findings"] += [f"- **{short}, {LABELS[o]}: CG vs GLTR (same stopping rule, "
                                f"{sec['results']['groups'][0]['n']} paired seeds):**"]
            out["findings"] += [f"  - {x}" for x in sec["sentences"] if "final test" not in x] \
                or ["  - no difference in train loss or HVPs per step resolved."]
        out["sections"].append("\n".join(md))
    # raw vs standardised inputs: the comparison's raw-input TR runs against standardised ones on the same seeds
    scaling = [(o, scaling_section(_load_phase(root, e, "main", o), std, label=LABELS[o], target=e.scaling_target))
               for o in e.scaling_optimizers if (std := _load_phase(root, e, "standardised", o))]
    if scaling:
        rows = []
        for _o, sec in scaling:
            pair = sec["paired"]
            interval = ("—" if pair is None or pair["ci"] is None else
                        f"{_n(pair['mean_diff'])} [{_n(pair['ci'][0])}, {_n(pair['ci'][1])}] (n = {pair['n_pairs']})")
            for i, (group, reached, mean, per) in enumerate(sec["cells"]):
                rows.append([group, reached, mean, per, interval if i == 1 else ""])
        md = [f"### {short}: standardised vs raw inputs\n",
              "The TR methods with raw inputs (pixels / 255, the paper's choice; un-centred) — the comparison's own "
              "runs — against the same methods and seeds with standardised inputs (per-dataset mean and std). "
              f"Backprops to train loss ≤ {e.scaling_target:g} (evaluated on the fixed training subset) within "
              f"{e.backprops:,} backprops; k/n = seeds that reached it.\n",
              markdown_table(["method, inputs", "reached (k/n seeds)", f"backprops to ≤ {e.scaling_target:g} "
                              "(mean ± std over the seeds that reached it)", "per seed (— = not reached)",
                              "standardised − raw (paired, 95% CI)"], rows) + "\n"]
        lines = []
        for _o, sec in scaling:
            lines += sec["sentences"]
            pair = sec["paired"]
            if pair is not None and not pair.get("verdict"):
                lines.append(pair["sentence"])
        md += [f"- {x}" for x in lines]
        out["sections"].append("\n".join(md) + "\n")
        out["findings"].append(f"- **{short}: raw vs standardised inputs, backprops to train loss ≤ "
                               f"{e.scaling_target:g}:** " + "; ".join(
                                   f"{group} {reached} seeds" + ("" if m == "not reached" else f" ({m})")
                                   for _, sec in scaling for group, reached, m, _ in sec["cells"]) + ".")
        out["findings"] += [f"  - {x}" for _, sec in scaling for x in sec["sentences"] if "final test" not in x] \
            or ["  - no paired difference resolved (see the section)."]
    # equal wall-time budgets
    side_path = root / e.name / "sides.json"
    wall = (json.loads(side_path.read_text()).get("wall") or {}).get("results") if side_path.is_file() else None
    if wall and (root / e.name / "wall").is_dir():  # recomputed from the saved runs with the current rules
        wall = recompute_results(root, e, "wall", wall)
    if wall:
        resolved, unresolved = wall_findings(wall, finals=TRAIN_LOSS)
        md = [f"### {short}: equal wall-time budgets\n",
              f"The best TR method and the best first-order method of the comparison (lowest mean smoothed final "
              f"train loss) trained again on the same seeds, each for the same optimization wall time "
              f"({e.wall_seconds:g} s; {wall['budget']['note']}), two runs at a time. This is the only place the "
              "report compares wall time: the loss each reached in the same seconds.\n",
              results_markdown_without_wall(wall) + "\n",
              per_seed_table(wall) + "\n"]
        out["sections"].append("\n".join(md))
        out["findings"].append(f"- **{short}: equal wall time ({e.wall_seconds:g} s per run, "
                               f"{'/'.join(sorted({str(g['n']) for g in wall['groups']}))} seeds, against "
                               f"{wall['reference']}):**")
        out["findings"] += [f"  - {x}" for x in resolved] or ["  - no difference resolved with these seeds."]
    if out["sections"]:
        out["sections"].insert(0, "")
    return out


def _tr_stats(groups: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    header = ["optimizer", "steps", "mean CG iterations / step", "accepted steps", "CG exits (all seeds)", "final Δ"]
    rows = []
    for o in TR_OPTIMIZERS:
        if o not in groups:
            continue
        cg, acc, steps, final_r = [], [], [], []
        exits: Counter = Counter()
        for r in groups[o]:
            st = r["steps"]
            its = [c or 0 for c in st["cg_iterations"]]
            cg.append(sum(its) / max(len(its), 1))
            acc.append(sum(bool(a) for a in st["accepted"]) / max(len(st["accepted"]), 1))
            steps.append(r["summary"].get("steps"))
            final_r.append(st["radius"][-1] if st["radius"] else None)
        for r in groups[o]:
            exits.update(e for e in r["steps"].get("cg_exit", []) if e)
        rows.append([LABELS[o], format_mean_std(steps, digits=4), format_mean_std(cg), format_mean_std(acc),
                     ", ".join(f"{k} {v / max(sum(exits.values()), 1):.0%}" for k, v in exits.most_common()) or "—", format_mean_std(final_r)])
    return header, rows


def _setup_table(exps: list[Experiment]) -> str:
    header = ["", *[e.name for e in exps]]
    rows = [
        ["model", *[e.title for e in exps]],
        ["equal budget per run", *[f"{e.backprops:,} backprops (gradients + HVPs)" for e in exps]],
        ["seeds of the comparison (fresh)", *[", ".join(map(str, e.seeds)) for e in exps]],
        ["batch: TR / first-order", *[f"{e.batch_tr} / {e.batch_first_order}" for e in exps]],
        ["first-order methods", *[", ".join(LABELS[o] for o in e.first_order) for e in exps]],
        ["TR settings (beyond Table 1 defaults)", *[json_short(e.tr_hyperparameters("tr-uniform")) or "none"
                                                    for e in exps]],
        ["evaluation (loss for curves and tables)",
         *[(f"every {e.eval_every} optimizer steps" if isinstance(e.eval_every, int) else
            f"every {', '.join(f'{v:g} {k}' for k, v in e.eval_every.items())} (every run)") + " on a fixed "
           f"{e.settings.get('eval_train_size', 2048):,}-image training subset" for e in exps]],
        ["step-size search (a sweep)", *[f"grid {', '.join(f'{lr:g}' for lr in log_grid(**e.grid))}; tuning seed(s) "
                                         f"{', '.join(map(str, e.tuning_seeds))}; the full budget; lowest smoothed "
                                         "final train loss (mean of the last 3 evaluations)" for e in exps]],
        *([["TR search (the same sweep)", *[("Δ₀ × η₁: " + "; ".join(
            f"{k} ×{', ×'.join(f'{f:g}' for f in fs)} of the preset's value" for k, fs in e.tr_grid.items())
            + " (9 configurations, as a baseline's 9 step sizes)") if e.tr_grid else "none: TR at the preset's values"
            for e in exps]]] if any(e.tr_grid for e in exps) else []),
        ["loss targets in the tables", *[", ".join(f"{t:g}" for t in e.targets) for e in exps]],
        ["inputs", *[{"unit": "raw: pixels / 255, un-centred (as the paper)", "standardize": "standardised (mean/std)"}
                     .get(e.run_settings.get("input_scaling"), "trustlab's default") for e in exps]],
        ["side comparisons (same seeds)", *[", ".join(
            ([f"GLTR vs CG for {', '.join(LABELS[o] for o in e.solver_optimizers)}"] if e.solver_optimizers else [])
            + ([f"standardised vs raw inputs for {', '.join(LABELS[o] for o in e.scaling_optimizers)}"]
               if e.scaling_optimizers else [])
            + ([f"best TR vs best first-order at {e.wall_seconds:g} s of wall time each"] if e.wall_seconds else [])
        ) or "none" for e in exps]],
    ]
    if any("train_subset" in e.settings for e in exps):
        rows.append(["training set", *[f"first {e.settings['train_subset']:,} images" if "train_subset" in e.settings
                                       else "all 60,000 images" for e in exps]])
    return markdown_table(header, rows)


def json_short(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in d.items())


def _grid_section(root: Path, exps: list[Experiment]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    parts, panels = [], []
    for e in exps:
        path = root / e.name / "chosen_lr.json"
        if not path.is_file():
            continue
        chosen = json.loads(path.read_text())
        panels.append((e.title.split(" (")[0], chosen))
        grid = sorted({float(lr) for entry in chosen.values() for lr in entry["losses"]})
        header = ["optimizer", *[f"lr {lr:g}" for lr in grid], "chosen"]
        rows, flags = [], []
        for o, entry in chosen.items():
            losses = {float(k): v for k, v in entry["losses"].items()}
            rows.append([LABELS.get(o, o), *[("failed/diverged" if losses[lr] is None else f"{losses[lr]:.4f}")
                                             if lr in losses else "—" for lr in grid],
                         "none" if entry["lr"] is None else f"**{entry['lr']:g}**"])
            flags += [f"- {LABELS.get(o, o)}: {f}" for f in entry.get("edge_flags") or []]
        parts.append(f"**{e.title}** — smoothed final train loss after {e.backprops:,} backprops (the full budget; "
                     f"tuning seed(s) {', '.join(map(str, e.tuning_seeds))}):\n\n" + markdown_table(header, rows)
                     + "\n\nEdge checks: " + ("\n" + "\n".join(flags) if flags else "every chosen step size is inside "
                                               "its grid."))
        tr_path = root / e.name / "chosen_tr.json"
        if tr_path.is_file():  # protocol v3: the TR methods tuned with the same effort (9 configurations each)
            tr = json.loads(tr_path.read_text())
            points = list(dict.fromkeys(p for entry in tr.values() for p in entry["losses"]))
            tr_rows = [[LABELS.get(o, o), *[("failed/diverged" if entry["losses"][p] is None
                                            else f"{entry['losses'][p]:.4f}") if p in entry["losses"] else "—"
                                           for p in points],
                        "none" if entry["point"] is None else
                        "**" + ", ".join(f"{k}={v:g}" for k, v in entry["point"].items()) + "**"]
                       for o, entry in tr.items()]
            tr_flags = [f"- {LABELS.get(o, o)}: {f}" for o, entry in tr.items() for f in entry.get("edge_flags") or []]
            parts.append("TR methods, Δ₀ (radius) × η₁ (eta1), same budget and tuning seed(s):\n\n"
                         + markdown_table(["optimizer", *points, "chosen"], tr_rows)
                         + "\n\nEdge checks: " + ("\n" + "\n".join(tr_flags) if tr_flags
                                                   else "every chosen TR setting is inside its grid."))
    return "\n\n".join(parts), panels


def _reconstruction_columns(groups: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    cols: list[tuple[str, str]] = []
    order = ("sgd", "adagrad", "rmsprop", "tr-uniform", "tr-adagrad", "tr-rmsprop")
    for o in order:
        runs = groups.get(o) or []
        if runs and not cols and "original" in runs[0]["images"]:
            cols.append(("Original", runs[0]["images"]["original"]["png"]))
    for o in order:
        runs = groups.get(o) or []
        if runs and "reconstruction" in runs[0]["images"]:
            cols.append((LABELS[o], runs[0]["images"]["reconstruction"]["png"]))
    return cols


def edge_cautions(short: str, chosen: dict[str, Any]) -> list[str]:
    """Findings lines for baselines whose chosen step size lies on the edge of the swept grid (chosen_lr.json):
    a better value may lie outside it, so comparisons against that baseline may understate it."""
    return [f"- **Caution ({short}): {LABELS.get(o, o)} — {flag}.** Its tuned value is on the edge of the grid; a "
            "better one may lie outside it, so the comparisons above may understate this method."
            for o, entry in chosen.items() for flag in entry.get("edge_flags") or []]


def report_version() -> str:
    """The commit the report text was built with (the runs' commit is in the machine paragraph)."""
    from bench.machine import code_version

    cv = code_version()
    if not cv.get("git_commit"):
        return ""
    return (f" Report text built by `python -m reproduction.report` at commit `{cv['git_commit'][:10]}`"
            + (f" with local changes to {', '.join(cv['modified_files'])}" if cv.get("modified_files") else "")
            + " from the saved runs.")


def machine_paragraph(meta: dict[str, Any]) -> str:
    """Where and when the runs were made: the machine, its load at the start, the code's commit, the total time."""
    m = meta.get("machine") or {}
    text = ("Generated by `python -m reproduction.report` from the runs `make reproduce` (`python -m reproduction.run`) "
            "saved in `reproduction/results/`.")
    if not meta:
        return text
    load = m.get("load_average")
    text += (f" Machine: {m.get('cpu_model')}, {m.get('cpu_cores')} usable cores ({m.get('cpu_cores_total')} in all), "
             f"{m.get('platform')}, Python {m.get('python')}, torch {m.get('torch_version')}, "
             f"{'GPU ' + str(m['gpu']) if m.get('gpu') else 'no GPU used'}; {meta.get('workers')} runs at a time, one "
             f"torch thread each" + (f"; load average {load[0]:.1f} when the run started (other work shared the "
                                     "machine)" if load else "") + ".")
    text += (f" Total time (training, exports and statistics): {meta.get('training_seconds', 0) / 60:.1f} min "
             f"({meta.get('started_at')} → {meta.get('finished_at')}).")
    if m.get("git_commit"):
        text += f" Code: commit `{m['git_commit'][:10]}`" + (
            f" with local changes to {', '.join(m['modified_files'])}" if m.get("modified_files") else
            " (clean tree)") + "."
    return text


def paired_results(root: Path, e: Experiment) -> dict[str, Any] | None:
    """The experiment's results table recomputed from its saved main-phase runs with the current statistics
    (backend.stats; groups by trainer.identity's group key), for the request the protocol made (reference, targets,
    k, axes: saved in results.json). None when the comparison saved no results."""
    path = root / e.name / "results.json"
    if not path.is_file():
        return None
    return recompute_results(root, e, "main", json.loads(path.read_text()))


def recompute_results(root: Path, e: Experiment, phase: str, asked: dict[str, Any]) -> dict[str, Any]:
    """backend.stats.results over the runs saved for ``phase``, with the reference, targets, k, axes and level of
    ``asked`` (the table the protocol got from the API when it ran)."""
    from backend.results import group_name
    from trainer.identity import group_key_of_stored

    data = [{"group": group_key_of_stored(r.get("config") or {}), "name": group_name(r.get("label") or r["optimizer"]),
             "optimizer": r["optimizer"], "seed": r["seed"], "status": (r.get("summary") or {}).get("status"),
             "run_id": r.get("run_id"), "budget": (r.get("config") or {}).get("budget") or {},
             "evals": r.get("evals") or []} for r in load_experiment(e.name, phase, root=root)]
    res = stats.results(data, reference=asked["reference"], targets=asked.get("targets") or [], k=asked.get("k", 3),
                        axes=asked.get("axes") or ("backprops", "epoch", "wall_time"), level=asked.get("level", 0.95))
    res["comparison_id"] = asked.get("comparison_id")
    return res


def build_report(root: Path = RESULTS_DIR, *, names: Sequence[str] | None = None, out_dir: Path = OUT_DIR) -> Path:
    """Write REPORT.md and the figures into ``out_dir`` from the runs saved under ``root``."""
    from reproduction import plots

    meta_path = root / "run_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    specs = meta.get("experiment_specs") or {}  # the experiments as they ran (e.g. --quick), else the spec's
    exps = [Experiment(**{k: tuple(v) if isinstance(v, list) else v for k, v in specs[n].items()}) if n in specs
            else EXPERIMENTS[n] for n in (names or EXPERIMENTS) if (root / n / "main").is_dir()]
    groups_by = {e.name: group_by_optimizer(load_experiment(e.name, root=root), ORDER) for e in exps}
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict_lines: list[str] = []
    paired = {e.name: res for e in exps if (res := paired_results(root, e)) is not None}
    sides = {e.name: side_sections(root, e) for e in exps}
    for e in exps:
        short = e.title.split(" (")[0]
        if e.name in paired:
            verdict_lines += paired_findings(short, paired[e.name])
        else:
            verdict_lines.append(f"- **{short}:** no paired results saved (the comparison did not finish); no verdict.")
        verdict_lines += sides[e.name]["findings"]
        for name in ("chosen_lr.json", "chosen_tr.json"):
            chosen_path = root / e.name / name
            if chosen_path.is_file():
                verdict_lines += edge_cautions(short, json.loads(chosen_path.read_text()))

    sections = []
    for e in exps:
        groups = groups_by[e.name]
        if not groups:
            continue
        plots.plot_losses(groups, LABELS, f"{e.title}: train loss (mean over seeds, band = min–max)",
                          out_dir / f"{e.name}_loss.png")
        section: dict[str, Any] = {
            "name": e.name, "title": e.title, "n_seeds": len(e.seeds), "sections": sides[e.name]["sections"],
            "backprops_table": markdown_table(*target_table(groups, e.targets, LABELS, x="backprops")),
            "epoch_table": markdown_table(*target_table(groups, e.targets, LABELS, x="epoch")),
            "final_table": markdown_table(*final_table(groups, LABELS, classifier=e.model == "mlp")),
            "paired": None, "reconstructions": False}
        if e.name in paired:
            section["paired"] = {"reference": paired[e.name]["reference"],
                                 "comparison_id": paired[e.name].get("comparison_id"),
                                 "results": results_markdown_without_wall(paired[e.name]),
                                 "per_seed": per_seed_table(paired[e.name])}
        if e.model == "autoencoder":
            cols = _reconstruction_columns(groups)
            if cols:
                plots.reconstruction_grid(cols, out_dir / "reconstructions.png")
                section["reconstructions"] = True
        sections.append(section)

    tr_tables = None
    tr_panels = [(e.title.split(" (")[0], groups_by[e.name]) for e in exps if groups_by[e.name]]
    if tr_panels:
        plots.plot_tr_diagnostics(tr_panels, LABELS, out_dir / "tr_diagnostics.png")
        tr_tables = [(e.title, markdown_table(h, rows)) for e in exps
                     for h, rows in [_tr_stats(groups_by[e.name])] if rows]

    grid_md, panels = _grid_section(root, exps)
    if panels:
        plots.plot_grid(panels, LABELS, out_dir / "lr_grid.png")
    text = _TEMPLATES.get_template("REPORT.md.j2").render(
        quick=bool(meta.get("quick")), machine=machine_paragraph(meta) + report_version(),
        findings="\n".join(verdict_lines), setup_table=_setup_table(exps),
        seeds_text="; ".join(f"{len(e.seeds)} seeds for the {e.name}" for e in exps),
        experiments=sections, tr_tables=tr_tables, grid_md=grid_md if panels else None)
    path = out_dir / "REPORT.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduction.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    print(f"wrote {build_report(args.results_dir, out_dir=args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
