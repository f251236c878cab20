"""Error responses of the API: one shape ({"detail": ...}), the statuses each route can answer, their meaning."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ErrorOut", "QueueFull", "COMMON_RESPONSES", "NOT_FOUND", "CONFLICT", "QUEUE_FULL", "FORBIDDEN",
           "responses"]


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` is a sentence, or (422) a list of {loc, msg, type} naming each bad field."""

    detail: str | list[dict[str, Any]] = Field(description="what was wrong and what to do")


class QueueFull(Exception):
    """Too many runs are queued (setting max_queued_runs) → HTTP 429 with Retry-After."""


def _r(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Answered by the request gate (backend/security.py) and the app's handlers on any /api route.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _r("Host header not allowed (TRUSTLAB_ALLOWED_HOSTS), or an unreadable body"),
    401: _r("token missing or wrong: send 'Authorization: Bearer <token>' (a user's token or TRUSTLAB_API_TOKEN; "
            "not /api/health)"),
    403: _r("cross-origin state change refused, or a non-loopback request to an API without a token"),
    413: _r("request body larger than TRUSTLAB_MAX_BODY_BYTES (default 1 MB)"),
    415: _r("a request body that is not application/json"),
    422: _r("invalid field (each error names it in loc and says the fix in msg)"),
    503: _r("busy: no store connection free in time (Retry-After), or the store is unreachable"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _r("no such run or comparison")}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _r("the request contradicts the run's state (e.g. delete a running run)")}
QUEUE_FULL: dict[int | str, dict[str, Any]] = {
    429: _r("too many runs queued (TRUSTLAB_MAX_QUEUED_RUNS, or TRUSTLAB_MAX_QUEUED_RUNS_PER_USER for one user); "
            "Retry-After says when to try again")}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: _r("the object belongs to another user (members change only their own; the message names the owner), "
            "or an admin-only route")}


def responses(*groups: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Merge response groups for a route's ``responses=``."""
    out: dict[int | str, dict[str, Any]] = {}
    for g in groups:
        out.update(g)
    return out
