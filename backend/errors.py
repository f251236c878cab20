"""Error responses of the API: one shape ({"detail": ...}), the statuses each route can answer, their meaning."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["ErrorOut", "QueueFull", "COMMON_RESPONSES", "NOT_FOUND", "CONFLICT", "QUEUE_FULL", "FORBIDDEN",
           "responses", "STORE_ERRORS", "is_store_outage", "store_error_message"]


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` is a sentence, or (422) a list of {loc, msg, type} naming each bad field."""

    detail: str | list[dict[str, Any]] = Field(description="what was wrong and what to do")


class QueueFull(Exception):
    """Too many runs are queued (setting max_queued_runs) → HTTP 429 with Retry-After."""


# Errors of the store itself (unreachable server, lost connection, SQLite locked / disk full / read-only file /
# missing file): the API answers 503 with Retry-After, workers buffer and retry. DBAPIError covers every driver
# error (IntegrityError included: on a route it means the store refused a write, not a bad request, which the
# routes validate before writing).
STORE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, InterfaceError, OperationalError)

# Words in a driver's message → what the operator should do (first match wins; checked in lower case).
_STORE_ADVICE: tuple[tuple[str, str], ...] = (
    ("database or disk is full", "the store's disk is full: free space on the server"),
    ("disk i/o error", "the store's file refused a read or write (disk full or failing, or the file made "
                       "read-only): check the disk, its free space and the file's permissions"),
    ("readonly database", "the store file is read-only: make it and its folder writable by the API's user"),
    ("read-only", "the store is read-only: make it writable by the API's user"),
    ("database is locked", "the store is locked by another writer: retry shortly"),
    ("unable to open database file", "the store file cannot be opened (deleted or moved?): restore it"),
    ("no such table", "the store file lost its tables (deleted and re-created?): restore it, then restart the API"),
    ("connection refused", "the store server refuses connections (stopped?): start it"),
    ("server closed the connection", "the store server closed the connection (restarting?)"),
    ("terminating connection", "the store server is shutting down or restarting"),
    ("the database system is starting up", "the store server is starting up"),
    ("the database system is shutting down", "the store server is shutting down"),
)


def is_store_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is a store error worth retrying (connection or file trouble, not a bad statement)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def store_error_message(exc: BaseException) -> str:
    """One short sentence about a store error: the cause the operator can act on, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())[:300]
    lowered = text.lower()
    advice = next((a for words, a in _STORE_ADVICE if words in lowered), None)
    kind = type(orig).__name__
    return f"{advice} ({kind}: {text})" if advice else f"{kind}: {text}"


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
    503: _r("busy: no store connection free in time, or the store is unreachable, locked, full or read-only "
            "(Retry-After says when to try again; detail says what failed)"),
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
