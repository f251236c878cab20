"""Run states as the API publishes them (``GET /api/meta`` → ``run_states``); the UI never defines its own.

``update`` is called with what the API sent; until then (or while the API is down) a minimal fallback
keeps the pages working. Checks are pure functions of a run dict, so chart and table code stays testable.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["update", "active", "terminal", "all_states", "is_active", "is_terminal"]

# Used only until /api/meta has answered (e.g. the API is down at page load).
_FALLBACK_ACTIVE = ("queued", "running")

_state: dict[str, frozenset[str] | tuple[str, ...]] = {"active": frozenset(_FALLBACK_ACTIVE), "terminal": frozenset(),
                                                       "all": _FALLBACK_ACTIVE}


def update(published: Mapping[str, Any] | None) -> None:
    """Adopt the states of ``/api/meta``'s ``run_states`` (ignored when absent or malformed)."""
    if not isinstance(published, Mapping):
        return
    active, terminal, every = published.get("active"), published.get("terminal"), published.get("all")
    if not (isinstance(active, list) and isinstance(terminal, list) and isinstance(every, list)):
        return
    _state.update(active=frozenset(map(str, active)), terminal=frozenset(map(str, terminal)),
                  all=tuple(map(str, every)))


def active() -> frozenset[str]:
    return frozenset(_state["active"])


def terminal() -> frozenset[str]:
    """Final states; before the API answered: anything that is not active."""
    return frozenset(_state["terminal"])


def all_states() -> tuple[str, ...]:
    return tuple(_state["all"])


def is_active(run: Mapping[str, Any]) -> bool:
    return run.get("status") in _state["active"]


def is_terminal(run: Mapping[str, Any]) -> bool:
    status = run.get("status")
    if _state["terminal"]:
        return status in _state["terminal"]
    return status is not None and status not in _state["active"]
