"""The reference for logging overhead: one first-order epoch as a bare PyTorch loop, in its own process.

Usage: python -m bench.bare_loop {bare|trainer|tensorboard|mlflow} OUT.json [--threads 1] [--log-dir DIR]

``bare``: the training the trainer does for a first-order run — same data tensors, seed, model,
``torch.optim.SGD``, batch and sample order — with nothing else. ``trainer``: ``trainer.run`` of the same
config with a reporter that discards everything (the trainer's own per-step instrumentation, no store).
``tensorboard`` / ``mlflow``: ``trainer.run`` with that peer's logger (bench/peers.py) writing into ``--log-dir``.
Both time from the point where data and model are ready to the end of training.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

__all__ = ["overhead_config", "bare_epoch", "main"]

SEED, BATCH, LR = 0, 128, 0.1


def overhead_config() -> dict[str, Any]:
    """The RunConfig of the logging-overhead comparison (evaluation shrunk to one sample: not training)."""
    return {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd", "hyperparameters": {"lr": LR}},
            "budget": {"epochs": 1}, "batch_size": BATCH, "eval_every": 1_000_000, "eval_train_size": 1,
            "test_subset": 1, "seed": SEED, "device": "cpu"}


def bare_epoch(data_dir: str) -> dict[str, Any]:
    from trainer.data import load_dataset
    from trainer.models import build_model, loss_function

    data = load_dataset("fashion-mnist", data_dir, device="cpu", normalize=True, test_subset=1, download=False)
    torch.manual_seed(SEED)
    model = build_model("mlp", "fashion-mnist")
    model.train()
    loss_fn = loss_function("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    n = data.train_size
    t0, c0 = time.perf_counter(), time.process_time()
    perm = torch.randperm(n, generator=gen)
    loss = None
    steps = 0
    for start in range(0, n, BATCH):
        idx = perm[start:start + BATCH]
        xb, yb = data.train_x[idx], data.train_y[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), xb, yb)
        loss.backward()
        opt.step()
        steps += 1
    final = float(loss.detach()) if loss is not None else None
    return {"train_seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - c0, "steps": steps,
            "final_train_loss": final}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("bare", "trainer", "tensorboard", "mlflow"):
        print(__doc__, file=sys.stderr)
        return 2
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
    from trainer.data import DEFAULT_DATA_DIR

    data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else DEFAULT_DATA_DIR
    torch.set_num_threads(threads)
    if args[0] == "bare":
        out = bare_epoch(data_dir)
    else:
        from trainer.reporting import NullReporter
        import bench.hooks as hooks
        import os

        os.environ.pop(hooks.TIMING_DIR_ENV, None)
        if args[0] == "trainer":
            inner = NullReporter()
        else:
            from pathlib import Path

            from bench.peers import PEERS

            log_dir = Path(args[args.index("--log-dir") + 1]) if "--log-dir" in args else Path("bench-peer-logs")
            inner = PEERS[args[0]][1](log_dir)
        wrapper = hooks.TimingReporter(inner)
        summary = hooks.run(overhead_config(), wrapper, data_dir=data_dir, download=False)
        t = wrapper.timings(summary)
        out = {"train_seconds": t["train_seconds"], "train_cpu_seconds": t["train_cpu_seconds"],
               "steps": summary["steps"],
               "final_train_loss": t["last_minibatch_loss"], "status": summary["status"]}
    out["threads"] = torch.get_num_threads()
    with open(args[1], "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
