"""A torch-free stand-in for ``trainer.run`` so scheduler and worker tests run in a fraction of a second.

Behaviour by seed: 0-99 train ``budget.backprops`` steps (``budget.seconds``: step until stopped or the time is
up, 20 ms a step); 666 diverges at step 3; 667 fails like a trainer exception; 668 crashes the process after
printing to stderr; 669 ignores stop requests; 670 reports its CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS; 671 tries
to allocate twice the worker's memory limit (TRUSTLAB_WORKER_MEMORY_GB) and raises MemoryError under it.
"""
from __future__ import annotations

import math
import os
import sys
import time


def run(config, reporter, *, data_dir=None, download=True):  # noqa: ANN001 - mirrors trainer.run
    reporter.on_start({"device": "cpu", "num_parameters": 10, "task": "classification"})
    seed, budget = config.seed, config.budget
    summary = {"status": "completed", "message": "budget reached", "steps": 0}
    reporter.on_eval({"step": 0, "backprops": 0, "epoch": 0.0, "wall_time": 0.0, "train_loss": 2.0,
                      "test_loss": 2.1, "train_accuracy": 0.1, "test_accuracy": 0.1})
    if seed == 667:
        summary.update(status="failed", message="RuntimeError: simulated trainer failure")
        reporter.on_finish(summary)
        return summary
    if seed == 671:
        limit_gb = float(os.environ.get("TRUSTLAB_WORKER_MEMORY_GB", "1"))
        bytearray(int(2 * limit_gb * 2**30))  # MemoryError under the worker's RLIMIT_AS
    if seed == 668:
        print("boom: simulated crash in the training process", file=sys.stderr, flush=True)
        os._exit(3)
    if seed == 670:
        summary["env"] = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "device": config.device}
    t0 = time.monotonic()
    step = 0
    while True:
        if budget.backprops is not None and step >= budget.backprops:
            break
        if budget.seconds is not None and time.monotonic() - t0 >= budget.seconds:
            break
        if seed != 669 and reporter.should_stop():
            summary.update(status="stopped", message=f"stopped on request at step {step}")
            break
        step += 1
        loss = float("nan") if seed == 666 and step == 3 else 1.0 / step
        reporter.on_step({"step": step, "backprops": step, "gradients": step, "hvps": 0, "forwards": 0,
                          "epoch": step / 100, "wall_time": time.monotonic() - t0, "train_loss": loss,
                          "grad_norm": 1.0, "step_norm": 0.1})
        if math.isnan(loss):
            summary.update(status="diverged", message=f"training loss became nan at step {step}")
            break
        if budget.seconds is not None:
            time.sleep(0.02)
    summary["steps"] = step
    if summary["status"] != "diverged":
        reporter.on_eval({"step": step, "backprops": step, "epoch": step / 100, "wall_time": 0.1,
                          "train_loss": 0.5, "test_loss": 0.6, "train_accuracy": 0.8, "test_accuracy": 0.7})
    reporter.on_finish(summary)
    return summary
