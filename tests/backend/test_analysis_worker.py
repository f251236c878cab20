"""Analysis worker helpers: the replay check's tolerance and the strict-JSON guard on results."""
from functools import reduce

import pytest

from backend.analyses.worker import REPLAY_TOLERANCE, _checked, _matches, main, overall_match


def test_replay_check_tolerance() -> None:
    assert _matches(1.0, 1.0 + REPLAY_TOLERANCE / 2) is True
    assert _matches(1.0, 1.0 + 3 * REPLAY_TOLERANCE) is False
    assert _matches(None, 1.0) is None and _matches(1.0, None) is None  # step 0 has no recorded loss
    assert _matches(1.0, float("nan")) is False


def test_non_finite_results_are_refused() -> None:
    ok = {"checkpoints": [{"shares": {"diagonal": 0.1}}]}
    assert _checked(ok) is ok
    with pytest.raises(ValueError, match="non-finite"):
        _checked({"checkpoints": [{"loss": float("inf")}]})


def test_usage_is_checked_before_anything_else() -> None:
    assert main(["x"]) == 2


def test_replay_matches_is_null_until_something_was_compared() -> None:
    def over(matches):
        return reduce(overall_match, matches, None)

    assert over([]) is None and over([None]) is None and over([None, None]) is None  # e.g. only step 0
    assert over([None, True]) is True and over([True, True]) is True
    assert over([True, False, True]) is False and over([None, False]) is False and over([False, None]) is False
