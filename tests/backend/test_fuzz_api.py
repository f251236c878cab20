"""Fuzzing (issue 8): schemathesis over the OpenAPI schema, in process; plus non-strict JSON (NaN, Infinity).

At least 1,000 generated requests (positive and negative data, every operation); 0 server errors: a 5xx other
than a 503 "busy" fails the test. Positive cases create runs (training is faked: tests/backend/fake_trainer.py;
the job runner is off so runs stay queued, keeping the test in seconds).
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from backend.main import create_app
from tests.backend.conftest import MLP_RUN, make_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    app = create_app(make_settings(tmp_path_factory.mktemp("fuzz"), max_queued_runs=100_000))
    with TestClient(app):  # runs the lifespan: store, migrations
        yield app


def test_schemathesis_finds_no_server_error(app) -> None:  # noqa: ANN001
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sent: list[int] = []
    errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy(schemathesis.GenerationMode.POSITIVE) | \
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)

        @hsettings(max_examples=75, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case) -> None:  # noqa: ANN001
            response = case.call()
            sent.append(response.status_code)
            if response.status_code >= 500 and response.status_code != 503:
                errors.append(f"{case.method} {case.formatted_path} {case.body!r:.300} -> {response.status_code} "
                              f"{response.text[:300]}")

        check()
    counts = {s: sent.count(s) for s in sorted(set(sent))}
    print(f"fuzz: {len(sent)} requests, statuses {counts}")
    assert len(sent) >= 1000, counts
    assert not errors, errors[:5]
    assert 201 in counts, counts  # the success path created runs


_NUMBERS = [("budget", "seconds"), ("budget", "epochs"), ("budget", "backprops"), ("train_subset",), ("test_subset",),
            ("eval_train_size",), ("eval_every",), ("seed",), ("batch_size",), ("grad_norm_every",),
            ("num_reconstructions",), ("guards", "loss_factor"), ("guards", "radius_floor"),
            ("optimizer", "hyperparameters", "lr")]
_BAD = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e30", "123456789012345678901234567890"]


def _body_with(path: tuple[str, ...], literal: str) -> str:
    marker = "__MARK__"
    body = json.loads(json.dumps({**MLP_RUN, "guards": {}}))
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = marker
    return json.dumps(body).replace(f'"{marker}"', literal)


@hsettings(max_examples=60, deadline=None, database=None, derandomize=True,
           suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(_NUMBERS), literal=st.sampled_from(_BAD))
def _nonstrict(client: TestClient, path: tuple[str, ...], literal: str) -> None:
    for url, body in (("/api/runs", _body_with(path, literal)),):
        r = client.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, literal, r.status_code, r.text[:300])
        assert any(path[0] in map(str, e["loc"]) for e in r.json()["detail"]), (path, literal, r.json())


def test_non_strict_json_numbers_are_422_naming_the_field(app) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        before = client.get("/api/runs").json()["total"]
        _nonstrict(client)
        assert client.get("/api/runs").json()["total"] == before
