"""Incremental, bounded point cache for live charts: one batched request per refresh for every run shown."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from frontend.run_states import is_terminal
from frontend.series import DERIVED_X, append_points, is_trust_region

__all__ = ["LiveData", "TR_FIELDS", "chart_fields", "columns_frame"]

# Metric columns the trust-region charts read (besides the x-axis column and the loss).
TR_FIELDS = ("radius", "new_radius", "rho", "cg_iterations", "cg_exit", "accepted")


def chart_fields(run: Mapping[str, Any], x: str) -> tuple[str, ...]:
    """The metric fields the Compare page draws for ``run`` on x-axis column ``x`` (TR columns for TR runs)."""
    base = ("step", *DERIVED_X.get(x, (x,)), "train_loss")
    if is_trust_region(run):
        base += TR_FIELDS
    return tuple(dict.fromkeys(base))


def columns_frame(block: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """A column-wise API block (``{"fields": [...], "columns": {field: [...]}}``) as a DataFrame; None if empty."""
    if not block:
        return None
    columns = block.get("columns") or {}
    fields = block.get("fields") or list(columns)
    if not columns or not columns.get("step"):
        return None
    return pd.DataFrame({f: columns[f] for f in fields})


class LiveData:
    """Metric and evaluation points fetched so far, per run (kept in ``st.session_state`` by the pages).

    ``refresh(client, runs)`` makes ONE request (``POST /api/metrics/batch``) for every run not yet finished
    here: per run, the points after the last step seen, only the fields the charts need, downsampled by the
    API. A run that has reached a terminal status is fetched once more and then left alone. Memory stays
    bounded: each run's history holds at most ``history_points`` rows (min/max-thinned on the loss, rejected
    TR steps and any zoomed range kept), and a refresh appends without re-sorting.

    Args:
        max_points: cap per run per request, passed to the API's min/max-preserving downsampling.
        history_points: cap of each run's cached rows (default ``2 * max_points``).
    """

    def __init__(self, max_points: int = 2000, *, history_points: int | None = None) -> None:
        if max_points < 2:
            raise ValueError(f"Invalid max_points: {max_points}; need at least 2")
        self.max_points = max_points
        self.history_points = history_points or 2 * max_points
        if self.history_points < 8:
            raise ValueError(f"Invalid history_points: {self.history_points}; need at least 8")
        self.metrics: dict[int, pd.DataFrame] = {}
        self.evals: dict[int, pd.DataFrame] = {}
        self.reconstructions: dict[int, dict[str, Any]] = {}
        self.images: dict[tuple[int, Any], bytes] = {}
        self.zoomed: dict[int, tuple[int, int]] = {}  # run id -> step range fetched at full resolution
        self._fields: dict[int, tuple[str, ...]] = {}
        self._last_step: dict[int, int] = {}
        self._last_eval: dict[int, int] = {}
        self._done: set[int] = set()
        self.requests = 0  # API calls made, for tests and the status line

    def is_done(self, run_id: int) -> bool:
        return run_id in self._done

    def last_step(self, run_id: int) -> int | None:
        return self._last_step.get(run_id)

    def _forget_metrics(self, run_id: int) -> None:
        for d in (self.metrics, self._last_step, self._fields, self.zoomed):
            d.pop(run_id, None)
        self._done.discard(run_id)

    def refresh(self, client: Any, runs: list[Mapping[str, Any]], *, reconstructions: bool = False,
                fields: Callable[[Mapping[str, Any]], Sequence[str]] | None = None) -> int:
        """Fetch new points for every run not yet complete here (one request); returns how many points arrived.

        Args:
            fields: run -> the metric fields needed (e.g. ``lambda r: chart_fields(r, "backprops")``); None: all.
                A run whose cached fields lack one is fetched again from the start with the new set.
        """
        wanted: dict[int, tuple[str, ...] | None] = {}
        for run in runs:
            rid = int(run["id"])
            need = tuple(fields(run)) if fields is not None else None
            if rid in self._fields:
                have = self._fields[rid]
                if not (have is None or (need is not None and set(need) <= set(have))):
                    self._forget_metrics(rid)  # e.g. a new x-axis: fetch the run again with its column
            wanted[rid] = need
        todo = [r for r in runs if int(r["id"]) not in self._done and r.get("status") != "queued"]
        if not todo:
            return 0
        cursors = [{"id": int(r["id"]), "since_step": self._last_step.get(int(r["id"])),
                    "eval_since_step": self._last_eval.get(int(r["id"])),
                    "fields": list(wanted[int(r["id"])]) if wanted[int(r["id"])] is not None else None}
                   for r in todo]
        batch = client.metrics_batch(cursors, max_points=self.max_points)
        self.requests += 1
        by_id = {int(item["id"]): item for item in batch.get("runs") or []}
        new = 0
        for run in todo:
            rid = int(run["id"])
            item = by_id.get(rid) or {}
            self._fields.setdefault(rid, wanted[rid])
            frame = columns_frame(item)
            if frame is not None:
                self.metrics[rid] = append_points(self.metrics.get(rid), frame, max_rows=self.history_points,
                                                  keep_steps=self.zoomed.get(rid))
                new += len(frame)
            last = item.get("last_step")
            if last is None and frame is not None:
                last = int(frame["step"].iloc[-1])
            if last is not None:
                self._last_step[rid] = max(int(last), self._last_step.get(rid, -1))
            eframe = columns_frame(item.get("evals"))
            if eframe is not None:
                self.evals[rid] = append_points(self.evals.get(rid), eframe, max_rows=self.history_points)
                self._last_eval[rid] = int(eframe["step"].iloc[-1])
                new += len(eframe)
            terminal = is_terminal(run)
            if reconstructions and (eframe is not None or rid not in self.reconstructions or terminal):
                self.reconstructions[rid] = client.reconstructions(rid)
                self.requests += 1
            if terminal:
                self._done.add(rid)
        return new

    def zoom(self, client: Any, run_ids: Iterable[int], *, x: str, lo: float, hi: float) -> int:
        """Re-fetch ``lo <= x <= hi`` of each run at up to ``max_points`` points (the API's ``until_step``),
        replacing the thinned rows there; the range is kept through later thinning. Returns points fetched."""
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise ValueError(f"Invalid x-range: [{lo}, {hi}]; give two finite numbers, low first")
        fetched = 0
        for rid in run_ids:
            df = self.metrics.get(rid)
            if df is None or df.empty or x not in df.columns:
                continue
            xs = pd.to_numeric(df[x], errors="coerce").to_numpy(float)
            steps = df["step"].to_numpy()
            inside = np.flatnonzero((xs >= lo) & (xs <= hi))
            if not len(inside):
                continue
            first, last = max(0, inside[0] - 1), min(len(df) - 1, inside[-1] + 1)  # the neighbours bound the gap
            s0, s1 = int(steps[first]), int(steps[last])
            page = client.metrics(rid, since_step=s0 - 1, until_step=s1, max_points=self.max_points,
                                  fields=self._fields.get(rid), columns=True)
            self.requests += 1
            detail = columns_frame(page)
            if detail is None:
                continue
            outside = df[(df["step"] < s0) | (df["step"] > s1)]
            self.metrics[rid] = pd.concat([outside, detail], ignore_index=True).sort_values(
                "step", kind="stable").reset_index(drop=True)
            self.zoomed[rid] = (s0, s1)
            fetched += len(detail)
        return fetched

    def image(self, client: Any, run_id: int, which: int | str) -> bytes:
        """A reconstruction PNG (step, ``"original"``), fetched once and kept."""
        key = (run_id, which)
        if key not in self.images:
            self.images[key] = client.reconstruction_png(run_id, which)
            self.requests += 1
        return self.images[key]
