"""Run states: the one ``RunState`` enum the store, the lifecycle, the API schemas and ``/api/meta`` use.

Torch-free and import-free (the store's table definitions import it). Clients never copy these strings:
they read ``run_states`` from ``GET /api/meta``.
"""
from __future__ import annotations

import enum

__all__ = ["RunState", "ACTIVE_STATES", "TERMINAL_STATES", "ALL_STATES", "states_metadata"]


class RunState(enum.StrEnum):
    """Where a run is in its life. ``queued`` → ``running`` → one terminal state (never left again).

    A member equals its string value (``RunState.RUNNING == "running"``), so stored rows and JSON compare
    directly.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self not in ACTIVE_STATES

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    RunState.QUEUED: "waiting for a free run slot",
    RunState.RUNNING: "claimed by the runner and training",
    RunState.COMPLETED: "reached its budget",
    RunState.DIVERGED: "the training loss became non-finite",
    RunState.FAILED: "the trainer or its worker failed (error says why)",
    RunState.CANCELLED: "stopped or dequeued on request",
    RunState.INTERRUPTED: "the API or cluster running it went away; the data logged so far is kept",
}

ACTIVE_STATES: tuple[RunState, ...] = (RunState.QUEUED, RunState.RUNNING)
TERMINAL_STATES: tuple[RunState, ...] = tuple(s for s in RunState if s not in ACTIVE_STATES)
ALL_STATES: tuple[RunState, ...] = tuple(RunState)


def states_metadata() -> dict[str, object]:
    """What ``/api/meta`` publishes: every state (in lifecycle order), which are terminal, what each means."""
    return {"all": [s.value for s in ALL_STATES], "active": [s.value for s in ACTIVE_STATES],
            "terminal": [s.value for s in TERMINAL_STATES],
            "descriptions": {s.value: s.description for s in ALL_STATES}}
