"""Project tooling: the test configuration lets the project's own deprecations show."""
from __future__ import annotations

import warnings

import pytest


def test_only_third_party_deprecation_warnings_are_silenced(request: pytest.FixtureRequest) -> None:
    """pytest.ini may ignore DeprecationWarning only for named third-party modules, never wholesale: a warning
    raised in the project's own code is seen (here: raised in this test module, as trainer code would be)."""
    for line in request.config.getini("filterwarnings"):
        action, _message, category, module = [*line.split(":"), "", "", ""][:4]  # action:message:category:module
        if action == "ignore" and category.endswith("DeprecationWarning"):
            assert module and not module.startswith(("trainer", "backend", "frontend", "tests")), line
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("old API", DeprecationWarning, __file__, 1, module="trainer.example")
    assert [str(w.message) for w in seen] == ["old API"]
