"""Command-line interface: build a RunConfig from flags (or a JSON file), train with a progress bar."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from pydantic import ValidationError
from tqdm import tqdm

from trainer.config import RunConfig
from trainer.errors import error_lines
from trainer.loop import DEFAULT_DATA_DIR, run
from trainer.registry import DATASETS, MODELS, OPTIMIZERS
from trainer.reporting import NullReporter, RunStatus

__all__ = ["main", "build_config", "CliError"]


class CliError(Exception):
    """A usage error with a message for the user."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train one trustlab run: a trust-region or first-order optimizer on a model and dataset.",
        epilog="Example: python -m trainer --dataset fashion-mnist --model mlp --optimizer tr-rmsprop --epochs 1",
    )
    p.add_argument("--config", type=Path, help="RunConfig JSON file; flags given here override its values")
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--model", choices=sorted(MODELS))
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--epochs", type=float, help="budget in epochs")
    p.add_argument("--backprops", type=int, help="budget in backprops (gradients + HVPs)")
    p.add_argument("--seconds", type=float, help="budget in seconds of optimization")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--test-subset", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help='"auto", "cpu", "cuda" or "cuda:N"')
    p.add_argument("--data-dir", help=f"dataset directory (default {DEFAULT_DATA_DIR!r})")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a hyperparameter, e.g. --set eta1=0.01 --set solver=lanczos (repeatable)")
    p.add_argument("--out", type=Path, help="write one JSON object per line (kind: step | eval | summary)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config(args: argparse.Namespace) -> RunConfig:
    """Merge ``--config`` with the flags and validate; raises CliError with readable field messages."""
    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text())
        except OSError as exc:
            raise CliError(f"cannot read --config {args.config}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise CliError(f"--config {args.config} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CliError(f"--config {args.config} must hold a JSON object")
    for flag, key in (("dataset", "dataset"), ("model", "model"), ("batch_size", "batch_size"),
                      ("eval_every", "eval_every"), ("train_subset", "train_subset"), ("test_subset", "test_subset"),
                      ("seed", "seed"), ("device", "device")):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    opt = dict(data.get("optimizer") or {})
    if args.optimizer:
        if opt.get("name") not in (None, args.optimizer):
            opt["hyperparameters"] = {}
        opt["name"] = args.optimizer
    hyper = dict(opt.get("hyperparameters") or {})
    for item in args.set:
        if "=" not in item:
            raise CliError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        hyper[name.strip()] = _parse_value(value.strip())
    if opt or hyper:
        opt["hyperparameters"] = hyper
        data["optimizer"] = opt
    budget = dict(data.get("budget") or {})
    for key in ("epochs", "backprops", "seconds"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    if budget:
        data["budget"] = budget
    missing = [k for k in ("dataset", "model", "optimizer") if k not in data]
    if missing:
        raise CliError("missing " + ", ".join(f"--{m}" for m in missing) + " (or give them in --config)")
    if "budget" not in data:
        raise CliError("set a budget: --epochs, --backprops or --seconds")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {line}" for line in error_lines(exc.errors())]
        raise CliError("invalid configuration:\n" + "\n".join(lines)) from exc


LINE_PROGRESS_STEP = 0.05  # without a terminal: one progress line per 5% of the budget


class _CliReporter(NullReporter):
    """Progress on stderr (a bar on a terminal, else one line per update) and JSON lines in ``--out``."""

    def __init__(self, cfg: RunConfig, out: TextIO | None, quiet: bool, *, stream: TextIO | None = None) -> None:
        self.cfg, self.out = cfg, out
        self.stream = stream or sys.stderr
        self.lines = not quiet and not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self._next_line = 0.0
        self._started = time.monotonic()
        self.bar = None if quiet or self.lines else tqdm(
            total=1000, unit="‰", desc=cfg.optimizer.name, file=self.stream,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def _line(self, progress: float, post: dict[str, str]) -> None:
        """A log-friendly progress line (no carriage returns) when stderr is a file or a pipe."""
        extra = " ".join(f"{k} {v}" for k, v in post.items())
        print(f"{self.cfg.optimizer.name}: {100 * progress:3.0f}% after {time.monotonic() - self._started:.0f} s"
              + (f", {extra}" if extra else ""), file=self.stream, flush=True)

    def _write(self, kind: str, record: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(json.dumps({"kind": kind, **record}) + "\n")

    def _progress(self, rec: dict[str, Any]) -> float:
        b = self.cfg.budget
        fr = [rec["epoch"] / b.epochs if b.epochs else 0.0, rec["backprops"] / b.backprops if b.backprops else 0.0,
              rec["wall_time"] / b.seconds if b.seconds else 0.0]
        return min(max(fr), 1.0)

    def on_start(self, info: dict[str, Any]) -> None:
        self.info = info
        self._write("start", info)

    def on_step(self, record: dict[str, Any]) -> None:
        self._write("step", record)
        if self.bar is None and not self.lines:
            return
        progress = self._progress(record)
        post = {"loss": f"{record['train_loss']:.4f}" if record["train_loss"] is not None else "nan"}
        if record.get("radius") is not None:
            post["Δ"] = f"{record['new_radius']:.3g}"
        if self.lines:
            if progress >= self._next_line:
                self._line(progress, post)
                self._next_line = (math.floor(progress / LINE_PROGRESS_STEP + 1e-9) + 1) * LINE_PROGRESS_STEP
            return
        assert self.bar is not None  # returned above when there is neither a bar nor lines
        self.bar.n = int(1000 * progress)
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(0)

    def on_eval(self, record: dict[str, Any]) -> None:
        self._write("eval", record)

    def on_finish(self, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
        self._write("summary", {k: v for k, v in summary.items() if k != "traceback"})


def _print_summary(cfg: RunConfig, s: dict[str, Any]) -> None:
    print(f"{cfg.optimizer.name} on {cfg.dataset}/{cfg.model}: {s['status']} — {s['message']}")
    if s["status"] == RunStatus.FAILED:
        return
    print(f"  steps {s['steps']}, backprops {s['backprops']} (gradients {s.get('gradients')}, HVPs {s.get('hvps')}), "
          f"epochs {s['epoch']:.3f}, optimization time {s['wall_time']:.2f} s on {s.get('device')}")
    for key, label in (("final_minibatch_loss", "last minibatch loss"),
                       ("final_train_loss", "train loss (fixed evaluation subset)"), ("final_test_loss", "test loss"),
                       ("final_test_accuracy", "test accuracy")):
        if s.get(key) is not None:
            print(f"  {label}: {s[key]:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = build_config(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = None
    if args.out is not None:
        try:
            out = args.out.open("w")
        except OSError as exc:
            print(f"error: cannot write --out {args.out}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        summary = run(cfg, _CliReporter(cfg, out, args.quiet), data_dir=args.data_dir,
                      download=not args.no_download)
    finally:
        if out is not None:
            out.close()
    _print_summary(cfg, summary)
    if summary["status"] == RunStatus.FAILED:
        print(f"error: {summary['message']}", file=sys.stderr)
        return 1
    return 0 if summary["status"] == RunStatus.COMPLETED else 3
