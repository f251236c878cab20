"""The worker-start bench item: it measures through a real LocalExecutor's zygote and a cold interpreter."""
from __future__ import annotations

import pytest

from bench.table import FIGURE_BY_KEY


def test_worker_start_figures() -> None:
    from bench.run import ITEMS

    assert ITEMS["worker"][1] == ("worker_start_s", "worker_cold_start_s")
    assert FIGURE_BY_KEY["worker_start_s"].goal == 1.5 and FIGURE_BY_KEY["worker_cold_start_s"].goal is None


@pytest.mark.slow
def test_worker_start_item_runs_forked_and_cold_workers() -> None:
    from bench.harness import REPO_DATA_DIR
    from trainer.data import dataset_available

    if not dataset_available("fashion-mnist", REPO_DATA_DIR):
        pytest.skip("Fashion-MNIST is not on this machine (apt dataset-fashion-mnist or data/)")
    from bench.worker_start import measure_worker_start

    values, skipped, details = measure_worker_start(repeats=1)
    assert skipped == {} and set(values) == {"worker_start_s", "worker_cold_start_s"}
    assert len(details["zygote_seconds"]) == 1 and len(details["cold_seconds"]) == 1
    assert values["worker_start_s"] == details["zygote_seconds"][0] > 0
    assert all(c > 0 for c in details["zygote_process_cpu_seconds"] + details["cold_process_cpu_seconds"])
    assert details["zygote_ready"].endswith("fashion-mnist") and details["cache_files"]
    assert "zygote" in details["what"] and "Popen" in details["what"]
