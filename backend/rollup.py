"""Per-block rollups of a metric series (count, first/last step, steps of min and max loss), built as steps arrive."""
from __future__ import annotations

import math
from typing import Any

from backend.tables import BLOCK_SIZE

__all__ = ["BlockRollup", "block_of"]


def block_of(step: int) -> int:
    """Block b holds steps ``BLOCK_SIZE*b + 1 .. BLOCK_SIZE*(b+1)`` (steps count from 1)."""
    return (step - 1) // BLOCK_SIZE


class BlockRollup:
    """Feeds on (step, loss) in step order; hands back each block once it is complete.

    A block closes when its last step arrives or a step of a later block does; ``close()`` returns the
    open (partial) block at the end of a run. Non-finite or missing losses never become a min or max.
    """

    def __init__(self) -> None:
        self._open: dict[str, Any] | None = None

    def add(self, step: int, loss: float | None) -> list[dict[str, Any]]:
        closed: list[dict[str, Any]] = []
        block = block_of(step)
        cur = self._open
        if cur is not None and cur["block"] != block:
            closed.append(cur)
            cur = None
        finite = loss is not None and math.isfinite(loss)
        if cur is None:
            cur = {"block": block, "first_step": step, "last_step": step, "count": 0, "min_step": step,
                   "min_loss": None, "max_step": step, "max_loss": None}
        cur["last_step"] = step
        cur["count"] += 1
        if finite:
            if cur["min_loss"] is None or loss < cur["min_loss"]:
                cur["min_loss"], cur["min_step"] = loss, step
            if cur["max_loss"] is None or loss > cur["max_loss"]:
                cur["max_loss"], cur["max_step"] = loss, step
        if step % BLOCK_SIZE == 0:
            closed.append(cur)
            cur = None
        self._open = cur
        return closed

    def close(self) -> dict[str, Any] | None:
        block, self._open = self._open, None
        return block
