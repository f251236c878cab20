"""Block rollups: closing rules and agreement with a naive min/max over each block."""
from __future__ import annotations

import math

from backend.rollup import BlockRollup, block_of
from backend.tables import BLOCK_SIZE


def test_blocks_close_on_their_last_step_and_at_the_end() -> None:
    roll = BlockRollup()
    closed = []
    losses = {s: math.sin(s) for s in range(1, 3 * BLOCK_SIZE + 6)}
    losses[40] = float("nan")
    losses[41] = None
    for step, loss in losses.items():
        closed += roll.add(step, loss)
    assert [b["block"] for b in closed] == [0, 1, 2]
    tail = roll.close()
    assert tail is not None and tail["block"] == 3 and tail["count"] == 5 and roll.close() is None
    for block in closed + [tail]:
        steps = [s for s in losses if block_of(s) == block["block"]]
        finite = {s: losses[s] for s in steps if losses[s] is not None and math.isfinite(losses[s])}
        assert block["first_step"] == steps[0] and block["last_step"] == steps[-1] and block["count"] == len(steps)
        assert block["min_step"] == min(finite, key=finite.get) and block["max_step"] == max(finite, key=finite.get)


def test_gaps_close_the_open_block() -> None:
    roll = BlockRollup()
    assert roll.add(3, 1.0) == []
    closed = roll.add(BLOCK_SIZE * 5 + 1, 2.0)
    assert len(closed) == 1 and closed[0]["block"] == 0 and closed[0]["count"] == 1
    assert roll.close()["block"] == 5
