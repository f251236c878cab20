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

from reproduction.analysis import (best_by_final_loss, compare, final_losses, final_table, format_mean_std,
                                   group_by_optimizer, markdown_table, mean_std, target_table)
from reproduction.records import RESULTS_DIR, load_experiment
from backend.sweeps import log_grid
from reproduction.spec import EXPERIMENTS, LABELS, TR_OPTIMIZERS, Experiment

__all__ = ["build_report", "ellipsoid_verdict", "first_order_verdict", "paired_findings"]

OUT_DIR = Path(__file__).resolve().parent
# The report's prose: reproduction/templates/REPORT.md.j2 (Markdown; no HTML escaping)
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=False,
                         trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                         undefined=StrictUndefined)
ORDER = ("tr-uniform", "tr-adagrad", "tr-rmsprop", "sgd", "sgd-momentum", "adagrad", "rmsprop", "adam")


def _n(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"


def _cell(mean: float | None, reached: int, seeds: int) -> str:
    if reached == 0:
        return "—"
    return _n(mean) if reached == seeds else f"{_n(mean)} ({reached}/{seeds} seeds)"


def _decision_text(cmp: dict[str, Any], a: str, b: str, unit: str) -> str:
    """Per target: mean cost of A vs B ("—" = not reached within the budget)."""
    parts = [f"≤ {d['target']:g}: {_cell(d['a'], d['a_reached'], d['seeds_a'])} vs "
             f"{_cell(d['b'], d['b_reached'], d['seeds_b'])}" for d in cmp["decisions"]]
    return f"{unit} to reach train loss ({a} vs {b}; — = not reached): " + "; ".join(parts)


def _narrow(cmp: dict[str, Any]) -> str:
    """" — narrowly …" when both sides reached the deciding target within 10% of each other."""
    h = cmp["hardest"]
    if h is None or h["a_reached"] < h["seeds_a"] or h["b_reached"] < h["seeds_b"] or h["a"] is None or h["b"] is None:
        return ""
    if abs(h["a"] - h["b"]) <= 0.1 * max(h["a"], h["b"]):
        return f", narrowly (within 10% at train loss ≤ {h['target']:g})"
    return ""


def _qualifier(cmp: dict[str, Any], targets: Sequence[float]) -> str:
    h = cmp["hardest"]
    if h is None:
        return ""
    if h["target"] == max(targets) and cmp["final_a"] is not None and cmp["final_b"] is not None \
            and abs(cmp["final_a"] - cmp["final_b"]) <= 0.01 * max(cmp["final_b"], 1e-12):
        return " (decided only by the easiest target; both ended at the same loss)"
    return ""


def ellipsoid_verdict(groups: dict[str, list[dict[str, Any]]], targets: Sequence[float]) -> list[dict[str, Any]]:
    """Each ellipsoidal TR against spherical TR in backprops-to-target and final loss."""
    out = []
    if "tr-uniform" not in groups:
        return out
    for o in ("tr-adagrad", "tr-rmsprop"):
        if o not in groups:
            continue
        cmp = compare(groups[o], groups["tr-uniform"], targets)
        lower_final = (cmp["final_a"] is not None and cmp["final_b"] is not None and cmp["final_a"] < cmp["final_b"])
        word = {"a": "fewer backprops", "b": "more backprops", "mixed": "mixed", None: "undecided"}[cmp["winner"]]
        out.append({"optimizer": o, "compare": cmp, "fewer_backprops": cmp["winner"] == "a",
                    "lower_final_loss": lower_final, "qualifier": _qualifier(cmp, targets) + _narrow(cmp),
                    "text": f"{LABELS[o]} vs {LABELS['tr-uniform']}: **{word}**{_qualifier(cmp, targets)}"
                            f"{_narrow(cmp)}. "
                            f"{_decision_text(cmp, LABELS[o], LABELS['tr-uniform'], 'Backprops')}. Final train "
                            f"loss {_n(cmp['final_a'], 4)} vs {_n(cmp['final_b'], 4)}."})
    return out


def first_order_verdict(groups: dict[str, list[dict[str, Any]]], targets: Sequence[float],
                        first_order: Sequence[str]) -> dict[str, Any] | None:
    """The best TR method against the best first-order method (by final loss) in backprops and in wall time."""
    tr = best_by_final_loss(groups, TR_OPTIMIZERS)
    fo = best_by_final_loss(groups, first_order)
    if tr is None or fo is None:
        return None
    bp = compare(groups[tr], groups[fo], targets, x="backprops")
    wall = compare(groups[tr], groups[fo], targets, x="wall_time")
    wall_tr = mean_std([r["summary"].get("wall_time") for r in groups[tr]])[0]
    wall_fo = mean_std([r["summary"].get("wall_time") for r in groups[fo]])[0]
    words = {"a": f"{LABELS[tr]} ahead", "b": f"{LABELS[fo]} ahead",
             "mixed": f"mixed ({LABELS[fo]} ahead on the easier targets, {LABELS[tr]} on the harder ones)"
             if wall["decisions"] and wall["decisions"][0]["side"] == "b" else "mixed", None: "undecided"}
    wall_words = dict(words)
    if wall["winner"] == "mixed" and wall["decisions"] and wall["decisions"][0]["side"] == "a":
        wall_words["mixed"] = f"mixed ({LABELS[tr]} ahead on the easier targets, {LABELS[fo]} on the harder ones)"
    bp_words = dict(words)
    if bp["winner"] == "mixed":
        first = bp["decisions"][0]["side"] if bp["decisions"] else None
        easy, hard = (LABELS[fo], LABELS[tr]) if first == "b" else (LABELS[tr], LABELS[fo])
        bp_words["mixed"] = f"mixed ({easy} ahead on the easier targets, {hard} on the harder ones)"
    return {
        "tr": tr, "first_order": fo, "backprops": bp, "wall": wall,
        "text_backprops": f"In backprops: **{bp_words[bp['winner']]}**{_narrow(bp)}. "
                          f"{_decision_text(bp, LABELS[tr], LABELS[fo], 'Backprops')}. Final train loss at the "
                          f"equal budget {_n(bp['final_a'], 4)} ({LABELS[tr]}) vs {_n(bp['final_b'], 4)} ({LABELS[fo]}).",
        "text_wall": f"In wall time: **{wall_words[wall['winner']]}**{_narrow(wall)}. "
                     f"{_decision_text(wall, LABELS[tr], LABELS[fo], 'Seconds')}. The whole budget took "
                     f"{_n(wall_tr)} s ({LABELS[tr]}) vs {_n(wall_fo)} s ({LABELS[fo]}) of optimization.",
    }


def paired_findings(short: str, res: dict[str, Any]) -> list[str]:
    """Findings lines from a results table (backend.stats.results): resolved verdicts only, with their n."""
    n = sorted({g["n"] for g in res["groups"]})
    resolved = [p["sentence"] for g in res["groups"] for p in g["paired"] if p.get("verdict")]
    unresolved = sum(1 for g in res["groups"] for p in g["paired"] if not p.get("verdict"))
    lines = [f"- **{short} ({'/'.join(map(str, n))} seeds per method, paired by seed, against {res['reference']}; "
             f"{res['budget']['note']}):**"]
    lines += [f"  - {s}" for s in resolved] or [f"  - no difference to {res['reference']} is resolved with these seeds."]
    if unresolved:
        lines.append(f"  - {unresolved} other comparison(s) not resolved (listed under the results table below).")
    return lines


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
         *[f"every {e.eval_every} optimizer steps on a fixed "
           f"{e.settings.get('eval_train_size', 2048):,}-image training subset" for e in exps]],
        ["step-size search (a sweep)", *[f"grid {', '.join(f'{lr:g}' for lr in log_grid(**e.grid))}; tuning seed(s) "
                                         f"{', '.join(map(str, e.tuning_seeds))}; the full budget; lowest smoothed "
                                         "final train loss (mean of the last 3 evaluations)" for e in exps]],
        ["loss targets in the tables", *[", ".join(f"{t:g}" for t in e.targets) for e in exps]],
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
    machine = meta.get("machine") or {}

    verdict_lines: list[str] = []
    paired = {e.name: json.loads((root / e.name / "results.json").read_text()) for e in exps
              if (root / e.name / "results.json").is_file()}
    for e in exps:
        groups = groups_by[e.name]
        short = e.title.split(" (")[0]
        if e.name in paired:
            verdict_lines += paired_findings(short, paired[e.name])
            continue
        ev = ellipsoid_verdict(groups, e.targets)
        if ev:
            both = all(v["fewer_backprops"] for v in ev)
            none = not any(v["fewer_backprops"] for v in ev)
            qual = any(v["qualifier"] for v in ev)
            head = ("yes — both ellipsoids needed fewer backprops than the sphere"
                    + (" (with the qualifications below)" if qual else "") if both else
                    "no — neither ellipsoid needed fewer backprops than the sphere" if none else
                    "partly — " + ", ".join(f"{LABELS[v['optimizer']]} "
                                            f"{'did' if v['fewer_backprops'] else 'did not'}" for v in ev))
            n_seeds = len(e.seeds)
            verdict_lines.append(f"- **{short} ({n_seeds} seed{'s' if n_seeds > 1 else ''}): did ellipsoidal TR "
                                 f"beat spherical TR in backprops? {head}.**")
            verdict_lines += [f"  - {v['text']}" for v in ev]
        fv = first_order_verdict(groups, e.targets, e.first_order)
        if fv:
            verdict_lines.append(f"- **{short}: best TR ({LABELS[fv['tr']]}) vs best first-order "
                                 f"({LABELS[fv['first_order']]}), both chosen by final train loss.**")
            verdict_lines.append(f"  - {fv['text_backprops']}")
            verdict_lines.append(f"  - {fv['text_wall']}")

    experiments = []
    for e in exps:
        groups = groups_by[e.name]
        if not groups:
            continue
        plots.plot_losses(groups, LABELS, f"{e.title}: train loss (mean over seeds, band = min–max)",
                          out_dir / f"{e.name}_loss.png")
        section: dict[str, Any] = {"name": e.name, "title": e.title, "n_seeds": len(e.seeds), "paired": None,
                                   "reconstructions": False}
        for key, x in (("backprops_table", "backprops"), ("wall_table", "wall_time"), ("epoch_table", "epoch")):
            section[key] = markdown_table(*target_table(groups, e.targets, LABELS, x=x))
        section["final_table"] = markdown_table(*final_table(groups, LABELS, classifier=e.model == "mlp"))
        if e.name in paired:
            section["paired"] = {"reference": paired[e.name]["reference"],
                                 "comparison_id": paired[e.name].get("comparison_id"),
                                 "markdown": (root / e.name / "results.md").read_text()}
        if e.model == "autoencoder":
            cols = _reconstruction_columns(groups)
            if cols:
                plots.reconstruction_grid(cols, out_dir / "reconstructions.png")
                section["reconstructions"] = True
        experiments.append(section)

    tr_stats = None
    tr_panels = [(e.title.split(" (")[0], groups_by[e.name]) for e in exps if groups_by[e.name]]
    if tr_panels:
        plots.plot_tr_diagnostics(tr_panels, LABELS, out_dir / "tr_diagnostics.png")
        tr_stats = []
        for e in exps:
            h, rows = _tr_stats(groups_by[e.name])
            if rows:
                tr_stats.append((e.title, markdown_table(h, rows)))

    grid_md, panels = _grid_section(root, exps)
    if panels:
        plots.plot_grid(panels, LABELS, out_dir / "lr_grid.png")
    text = _TEMPLATES.get_template("REPORT.md.j2").render(
        meta=meta, machine=machine, verdict_lines=verdict_lines, paired=bool(paired), setup_table=_setup_table(exps),
        seed_counts="; ".join(f"{len(e.seeds)} seeds for the {e.name}" for e in exps), experiments=experiments,
        tr_stats=tr_stats, grid_md=grid_md if panels else None)
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
