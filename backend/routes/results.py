"""Results route: a comparison's results table (per-seed values, mean ± std, k/n reached, paired intervals)."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from backend import stats
from backend.deps import ComparisonDep, SessionDep
from backend.results import comparison_paired_curves, comparison_results

router = APIRouter(prefix="/comparisons", tags=["comparisons"])

MAX_TARGETS = 10


def _targets(targets: list[float] | None) -> list[float]:
    values = targets or []
    bad = [t for t in values if not (math.isfinite(t) and 0 < t <= 1e6)]
    if bad or len(values) > MAX_TARGETS:
        msg = (f"at most {MAX_TARGETS} loss targets" if len(values) > MAX_TARGETS
               else f"loss targets must be finite numbers in (0, 1e6], got {bad}")
        raise HTTPException(422, [{"loc": ["query", "targets"], "type": "value_error", "input": [repr(t) for t in values],
                                   "msg": msg}])
    return sorted(set(values), reverse=True)


@router.get("/{comparison_id}/results", summary="Results table: per-seed values, mean ± std, k/n seeds reaching "
            "each loss target, paired bootstrap intervals against a reference, verdicts (json, csv or markdown)")
def results(comparison: ComparisonDep, session: SessionDep,
            reference: Annotated[str | None, Query(max_length=300, description="group (label without seed) or "
                                                   "optimizer name; default: the first group")] = None,
            targets: Annotated[list[float] | None, Query(description="train-loss targets, e.g. targets=0.5&targets=0.3"
                                                         )] = None,
            k: Annotated[int, Query(ge=1, le=100, description="smoothed final = mean of the last k evaluations")] = 3,
            level: Annotated[float, Query(ge=0.5, le=0.999, description="confidence level of the intervals")] = 0.95,
            format: Annotated[Literal["json", "csv", "markdown"], Query()] = "json",  # noqa: A002
            ) -> Any:
    try:
        res = comparison_results(session, comparison.id, reference=reference, targets=_targets(targets), k=k,
                                 level=level)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["query", "reference"], "type": "value_error", "input": reference,
                                   "msg": str(exc)}]) from None
    if format == "json":
        return res
    body, media, ext = ((stats.results_csv(res), "text/csv", "csv") if format == "csv"
                        else (stats.results_markdown(res), "text/markdown", "md"))
    return Response(content=body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="comparison-{comparison.id}-results.{ext}"'})


@router.get("/{comparison_id}/paired-curves", summary="Paired difference (group − reference) of the evaluated "
            "train loss against an x-axis, mean over seeds with a pointwise bootstrap band")
def paired_curves(comparison: ComparisonDep, session: SessionDep,
                  reference: Annotated[str | None, Query(max_length=300)] = None,
                  axis: Annotated[Literal["backprops", "epoch", "wall_time"], Query()] = "backprops",
                  points: Annotated[int, Query(ge=2, le=500)] = 100,
                  level: Annotated[float, Query(ge=0.5, le=0.999)] = 0.95) -> dict[str, Any]:
    try:
        return comparison_paired_curves(session, comparison.id, reference=reference, axis=axis, points=points,
                                        level=level)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["query", "reference"], "type": "value_error", "input": reference,
                                   "msg": str(exc)}]) from None
