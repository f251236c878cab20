"""Drive a whole experiment over the REST API: launch a comparison, follow it live, download the results.

Usage (with the API running, e.g. ``make api``)::

    python -m examples.client_example                        # a 1-minute TR vs SGD vs Adam comparison
    python -m examples.client_example --api http://host:8000 --budget-epochs 2 --seeds 0 1 2 --out results/

It uses only HTTP (httpx), exactly what the UI sees; see docs/API.md for every route.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from trainer.errors import error_summary  # stdlib only: how trustlab names a bad field everywhere



def _check(response: httpx.Response) -> Any:
    """The JSON body, or exit with the API's own explanation (422 lists every bad field)."""
    if response.status_code >= 400:
        detail = response.json().get("detail")
        if isinstance(detail, list):
            detail = error_summary(detail)
        sys.exit(f"API error {response.status_code}: {detail}")
    return response.json() if response.content else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="API base URL")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per optimizer and seed")
    parser.add_argument("--budget-epochs", type=float, default=None, help="budget in epochs (default: 300 backprops)")
    parser.add_argument("--train-subset", type=int, default=4096, help="first N training images (0: all)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for the CSV exports")
    args = parser.parse_args()

    http = httpx.Client(base_url=args.api, timeout=30)
    _check(http.get("/api/health"))
    meta = _check(http.get("/api/meta"))
    final = set(meta["run_states"]["terminal"])  # the API publishes its run states; never copy them
    fmnist = next(d for d in meta["datasets"] if d["name"] == "fashion-mnist")
    if not fmnist["available"]:
        print(f"note: Fashion-MNIST is not on the API machine yet ({fmnist['how_to_get']})")

    spec = {
        "name": "TR RMSprop vs SGD vs Adam (client example)",
        "dataset": "fashion-mnist", "model": "mlp",
        "budget": {"epochs": args.budget_epochs} if args.budget_epochs else {"backprops": 300},
        "seeds": args.seeds, "eval_every": 10, "test_subset": 2000,
        "train_subset": args.train_subset or None,
        "optimizers": [{"name": "tr-rmsprop", "hyperparameters": {}},
                       {"name": "sgd", "hyperparameters": {"lr": 0.1}},
                       {"name": "adam", "hyperparameters": {"lr": 0.001}}],
        "batch_sizes": {"first-order": 128, "second-order": 512},
    }
    created = _check(http.post("/api/comparisons", json=spec))
    print(f"comparison {created['id']}: runs {created['run_ids']}")

    # Follow the runs: incremental metric fetches (since_step) keep each poll small.
    last_step: dict[int, int] = {}
    latest_loss: dict[int, float | None] = {}
    while True:
        runs = _check(http.get(f"/api/comparisons/{created['id']}"))["runs"]
        for run in runs:
            page = _check(http.get(f"/api/runs/{run['id']}/metrics",
                                   params={"since_step": last_step.get(run["id"], -1), "max_points": 500}))
            if page["points"]:
                last_step[run["id"]] = page["last_step"]
                latest_loss[run["id"]] = page["points"][-1]["train_loss"]
        print(" | ".join(f"{r['label']}: {r['status']} {100 * r['progress']:.0f}% loss {latest_loss.get(r['id'])}"
                         for r in runs))
        if all(r["status"] in final for r in runs):
            break
        time.sleep(2)

    args.out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        evals = _check(http.get(f"/api/runs/{run['id']}/evals"))["points"]
        final = evals[-1] if evals else {}
        print(f"{run['label']}: {run['status']}{' (' + run['error'] + ')' if run['error'] else ''}; "
              f"test accuracy {final.get('test_accuracy')}, {final.get('backprops')} backprops")
        csv = http.get(f"/api/runs/{run['id']}/export", params={"format": "csv"})
        (args.out / f"run-{run['id']}.csv").write_bytes(csv.content)
    print(f"per-step records written to {args.out}/")


if __name__ == "__main__":
    main()
