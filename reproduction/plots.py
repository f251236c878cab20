"""Matplotlib figures of the reproduction (Agg backend; PNG files)."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from reproduction.spec import BASELINES  # noqa: E402
from trainer.registry import OPTIMIZERS, optimizer_color  # noqa: E402

__all__ = ["COLORS", "plot_losses", "plot_tr_diagnostics", "plot_grid", "reconstruction_grid", "mean_curve"]

# The registry's colours (the dashboard's too), by optimizer name and by baseline key ("sgd-momentum").
COLORS = {**{name: info.color for name, info in OPTIMIZERS.items()},
          **{key: optimizer_color(name, fixed) for key, (name, fixed) in BASELINES.items()}}
STYLES = {"tr-uniform": "-", "tr-adagrad": "-", "tr-rmsprop": "-"}
X_LABELS = {"backprops": "backprops (gradients + HVPs)", "epoch": "epochs",
            "wall_time": "optimization wall time (s)"}


def _is_tr(key: str) -> bool:
    """Whether a baseline key (an optimizer name, or a variant's key such as "sgd-momentum") is a TR method."""
    info = OPTIMIZERS.get(key)
    return info is not None and info.is_trust_region


def mean_curve(curves: Sequence[tuple[Sequence[float], Sequence[float]]], points: int = 200
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Curves (x, y) of several seeds interpolated onto a common x grid up to the shortest seed's last x.

    Returns (x, mean, min, max).
    """
    end = min(float(x[-1]) for x, _ in curves)
    start = max(float(x[0]) for x, _ in curves)
    grid = np.linspace(start, end, points) if end > start else np.array([start])
    ys = np.stack([np.interp(grid, np.asarray(x, float), np.asarray(y, float)) for x, y in curves])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def _log_y(ax) -> None:
    """Log-scale y axis with plain decimal tick labels (0.3, 0.5, 1, 2) instead of powers of ten."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _curves(runs: list[dict[str, Any]], x: str, y: str = "train_loss") -> list[tuple[list[float], list[float]]]:
    out = []
    for r in runs:
        pts = [(e[x], e[y]) for e in r["evals"] if e.get(y) is not None and e.get(x) is not None]
        if len(pts) >= 2:
            out.append(([p[0] for p in pts], [p[1] for p in pts]))
    return out


def plot_losses(groups: dict[str, list[dict[str, Any]]], labels: dict[str, str], title: str, path: Path, *,
                y: str = "train_loss", ylabel: str = "train loss (fixed evaluation subset)") -> Path:
    """Evaluated loss against backprops, epochs and wall time: mean over seeds with a min–max band."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    for ax, x in zip(axes, ("backprops", "epoch", "wall_time")):
        for o, runs in groups.items():
            curves = _curves(runs, x, y)
            if not curves:
                continue
            gx, m, lo, hi = mean_curve(curves)
            ls = "-" if _is_tr(o) else "--"
            ax.plot(gx, m, ls, color=COLORS.get(o), lw=2 if _is_tr(o) else 1.6,
                    label=f"{labels.get(o, o)} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
            if len(curves) > 1:
                ax.fill_between(gx, lo, hi, color=COLORS.get(o), alpha=0.15, lw=0)
        ax.set_xlabel(X_LABELS[x])
        _log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    return _save(fig, path)


def _rolling(v: np.ndarray, k: int) -> np.ndarray:
    if len(v) < k or k <= 1:
        return v
    c = np.cumsum(np.insert(v.astype(float), 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([np.full(k - 1, np.nan), out])


def plot_tr_diagnostics(experiments: list[tuple[str, dict[str, list[dict[str, Any]]]]], labels: dict[str, str],
                        path: Path) -> Path:
    """Per experiment (rows): trust radius Δ before each step and CG iterations per step (rolling mean), seed 0."""
    fig, axes = plt.subplots(len(experiments), 2, figsize=(14, 4.2 * len(experiments)), squeeze=False)
    for row, (title, groups) in enumerate(experiments):
        ax_r, ax_c = axes[row]
        for o, runs in groups.items():
            if not _is_tr(o) or not runs:
                continue
            st = runs[0]["steps"]
            bp = np.asarray(st["backprops"], float)
            ax_r.plot(bp, np.asarray(st["radius"], float), color=COLORS.get(o), lw=1, label=labels.get(o, o))
            cg = np.asarray([c or 0 for c in st["cg_iterations"]], float)
            k = max(1, len(cg) // 60)
            ax_c.plot(bp, _rolling(cg, k), color=COLORS.get(o), lw=1.3,
                      label=f"{labels.get(o, o)} (rolling mean of {k} steps)")
        ax_r.set_yscale("log")
        ax_r.set_xlabel(X_LABELS["backprops"])
        ax_r.set_ylabel("trust radius Δ (in M-units)")
        ax_r.set_title(f"{title}: trust radius (seed 0)")
        ax_c.set_xlabel(X_LABELS["backprops"])
        ax_c.set_ylabel("CG iterations (= HVPs) per step")
        ax_c.set_title(f"{title}: CG iterations (seed 0)")
        for ax in (ax_r, ax_c):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_grid(grids: list[tuple[str, dict[str, dict[str, Any]]]], labels: dict[str, str], path: Path) -> Path:
    """Final evaluated train loss of the step-size search against the step size, one panel per experiment."""
    fig, axes = plt.subplots(1, len(grids), figsize=(6.5 * len(grids), 4.2), squeeze=False)
    for ax, (title, chosen) in zip(axes[0], grids):
        for o, entry in chosen.items():
            if entry.get("lr") is None:  # every grid point failed: nothing chosen, nothing to star
                continue
            pts = sorted((float(lr), v) for lr, v in entry["losses"].items())
            xs = [p[0] for p in pts]
            ys = [p[1] if p[1] is not None else np.nan for p in pts]
            ax.plot(xs, ys, "o-", color=COLORS.get(o), label=f"{labels.get(o, o)} (chosen {entry['lr']:g})")
            ax.plot([entry["lr"]], [entry["losses"][repr(entry["lr"])]], "*", ms=14, color=COLORS.get(o))
        ax.set_xscale("log")
        _log_y(ax)
        ax.set_xlabel("step size (missing point: diverged)")
        ax.set_ylabel("final train loss (evaluation subset)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def reconstruction_grid(columns: list[tuple[str, str]], path: Path, *, upscale: int = 2) -> Path:
    """Paper Fig. 12 layout: labelled columns of image strips (base64 PNGs), side by side, via PIL."""
    from PIL import Image, ImageDraw, ImageFont

    strips = []
    for label, png in columns:
        im = Image.open(io.BytesIO(base64.b64decode(png))).convert("L")
        strips.append((label, im.resize((im.width * upscale, im.height * upscale), Image.NEAREST)))
    pad, head = 10, 34
    width = sum(im.width for _, im in strips) + pad * (len(strips) + 1)
    height = max(im.height for _, im in strips) + head + pad
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # older Pillow
        font = ImageFont.load_default()
    x = pad
    for label, im in strips:
        lines = label.split("\n")
        for i, line in enumerate(lines):
            w = draw.textlength(line, font=font)
            draw.text((x + (im.width - w) / 2, 4 + 15 * i), line, fill=0, font=font)
        canvas.paste(im, (x, head))
        x += im.width + pad
    canvas.save(path)
    return path


def _save(fig, path: Path) -> Path:
    """Lay out, write at 90 dpi and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
