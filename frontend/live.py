"""Incremental point cache for live charts: each refresh asks the API only for points after the last step."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from frontend.run_states import is_terminal
from frontend.series import append_points

__all__ = ["LiveData"]


class LiveData:
    """Metric and evaluation points fetched so far, per run (kept in ``st.session_state`` by the pages).

    ``refresh(client, runs)`` fetches ``since_step`` = the last step seen; a run that has reached a terminal
    status is fetched once more and then left alone.

    Args:
        max_points: cap per request, passed to the API's min/max-preserving downsampling.
    """

    def __init__(self, max_points: int = 10_000) -> None:
        self.max_points = max_points
        self.metrics: dict[int, pd.DataFrame] = {}
        self.evals: dict[int, pd.DataFrame] = {}
        self.reconstructions: dict[int, dict[str, Any]] = {}
        self.images: dict[tuple[int, Any], bytes] = {}
        self._last_step: dict[int, int] = {}
        self._last_eval: dict[int, int] = {}
        self._done: set[int] = set()
        self.requests = 0  # API calls made, for tests and the status line

    def is_done(self, run_id: int) -> bool:
        return run_id in self._done

    def last_step(self, run_id: int) -> int | None:
        return self._last_step.get(run_id)

    def refresh(self, client: Any, runs: list[Mapping[str, Any]], *, reconstructions: bool = False) -> int:
        """Fetch new points for every run not yet complete here; returns how many points arrived."""
        new = 0
        for run in runs:
            rid = int(run["id"])
            if rid in self._done:
                continue
            if run.get("status") == "queued":
                continue
            terminal = is_terminal(run)
            m = client.metrics(rid, since_step=self._last_step.get(rid), max_points=self.max_points)
            self.requests += 1
            points = m.get("points") or []
            if points:
                self.metrics[rid] = append_points(self.metrics.get(rid), points)
                new += len(points)
            last = m.get("last_step")
            if last is None and points:
                last = max(int(p["step"]) for p in points)
            if last is not None:
                self._last_step[rid] = max(int(last), self._last_step.get(rid, -1))
            e = client.evals(rid, since_step=self._last_eval.get(rid))
            self.requests += 1
            epoints = e.get("points") or []
            if epoints:
                self.evals[rid] = append_points(self.evals.get(rid), epoints)
                self._last_eval[rid] = max(int(p["step"]) for p in epoints)
                new += len(epoints)
            if reconstructions and (epoints or rid not in self.reconstructions or terminal):
                self.reconstructions[rid] = client.reconstructions(rid)
                self.requests += 1
            if terminal:
                self._done.add(rid)
        return new

    def image(self, client: Any, run_id: int, which: int | str) -> bytes:
        """A reconstruction PNG (step, ``"original"``), fetched once and kept."""
        key = (run_id, which)
        if key not in self.images:
            self.images[key] = client.reconstruction_png(run_id, which)
            self.requests += 1
        return self.images[key]
