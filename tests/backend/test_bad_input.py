"""Bad input never reaches the store: 422 (or 404) with a message naming the problem, and nothing saved."""
from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import MLP_RUN

COMPARISON = {"name": "c", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 10},
              "seeds": [0], "optimizers": [{"name": "sgd"}, {"name": "tr-uniform"}]}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


RUN_CASES = {
    "unknown optimizer": (_with(MLP_RUN, optimizer={"name": "lbfgs"}), ["optimizer", "name"], "unknown optimizer 'lbfgs'"),
    "unknown model": (_with(MLP_RUN, model="vgg"), ["body"], "unknown model 'vgg'"),
    "unknown dataset": (_with(MLP_RUN, dataset="imagenet"), ["body"], "unknown dataset 'imagenet'"),
    "lr out of range": (_with(MLP_RUN, optimizer={"name": "sgd", "hyperparameters": {"lr": -1}}), ["optimizer"],
                        "lr must be > 0.0"),
    "momentum above max": (_with(MLP_RUN, optimizer={"name": "sgd", "hyperparameters": {"momentum": 1.5}}),
                           ["optimizer"], "momentum must be <= 1.0"),
    "unknown hyperparameter": (_with(MLP_RUN, optimizer={"name": "adam", "hyperparameters": {"beta3": 1}}),
                               ["optimizer"], "unknown hyperparameter 'beta3' for adam"),
    "hyperparameter of wrong type": (_with(MLP_RUN, optimizer={"name": "sgd", "hyperparameters": {"lr": "fast"}}),
                                     ["optimizer"], "lr must be a number"),
    "tr eta1 above eta2": (_with(MLP_RUN, optimizer={"name": "tr-uniform",
                                                     "hyperparameters": {"eta1": 0.9, "eta2": 0.5}}),
                           ["optimizer"], "eta1 (0.9) must not exceed eta2 (0.5)"),
    "tr unknown solver": (_with(MLP_RUN, optimizer={"name": "tr-adagrad", "hyperparameters": {"solver": "qr"}}),
                          ["optimizer"], "solver must be one of ['cg', 'lanczos']"),
    "model does not fit dataset": (_with(MLP_RUN, model="autoencoder", dataset="cifar10"), ["body"],
                                   "model 'autoencoder' does not fit dataset 'cifar10'"),
    "empty budget": (_with(MLP_RUN, budget={}), ["budget"], "set at least one budget"),
    "missing budget": (_with(MLP_RUN, budget=...), ["budget"], "Field required"),
    "negative budget": (_with(MLP_RUN, budget={"epochs": -2}), ["budget", "epochs"], "greater than 0"),
    "wrong type": (_with(MLP_RUN, eval_every="often"), ["eval_every"], "valid integer"),
    "unknown field": (_with(MLP_RUN, comparison_id=3), ["comparison_id"], "Extra inputs are not permitted"),
    "bad device": (_with(MLP_RUN, device="tpu"), ["device"], 'device must be "auto", "cpu", "cuda" or "cuda:N"'),
    "negative seed": (_with(MLP_RUN, seed=-1), ["seed"], "greater than or equal to 0"),
    "zero batch size": (_with(MLP_RUN, batch_size=0), ["batch_size"], "greater than or equal to 1"),
    "body is a list": ([MLP_RUN], ["body"], "valid dictionary"),
}


@pytest.mark.parametrize("body,loc,message", RUN_CASES.values(), ids=RUN_CASES.keys())
def test_bad_run_is_refused_and_not_stored(client: TestClient, body: Any, loc: list[str], message: str) -> None:
    r = client.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(message in e["msg"] and e["loc"][:len(["body", *loc])] == (loc if loc == ["body"] else ["body", *loc])
               for e in errors), errors
    assert client.get("/api/runs").json()["total"] == 0


def test_malformed_json_is_refused(client: TestClient) -> None:
    r = client.post("/api/runs", content=b'{"dataset": "fashion-mnist",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in r.json()["detail"][0]["msg"]
    r = client.post("/api/runs", content=b"dataset=mnist", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    assert client.get("/api/runs").json()["total"] == 0


COMPARISON_CASES = {
    "no optimizers": (_with(COMPARISON, optimizers=[]), ["optimizers"], "at least 1 item"),
    "unknown optimizer in the list": (_with(COMPARISON, optimizers=[{"name": "sgd"}, {"name": "newton"}]),
                                      ["optimizers", 1, "name"], "unknown optimizer 'newton'"),
    "bad hyperparameter in the list": (_with(COMPARISON, optimizers=[{"name": "sgd", "hyperparameters": {"lr": 0}}]),
                                       ["optimizers", 0], "lr must be > 0.0"),
    "duplicate seeds": (_with(COMPARISON, seeds=[1, 1]), ["body"], "seeds must be distinct"),
    "model does not fit dataset": (_with(COMPARISON, model="conv-autoencoder"), ["body"],
                                   "model 'conv-autoencoder' does not fit dataset 'fashion-mnist'"),
    "too many runs": (_with(COMPARISON, seeds=list(range(100)), optimizers=[{"name": "sgd"}] * 3), ["body"],
                      "300 runs requested"),
    "bad device": (_with(COMPARISON, device="gpu"), ["body"], 'device must be "auto"'),
    "no name": (_with(COMPARISON, name=""), ["name"], "at least 1 character"),
    "no budget": (_with(COMPARISON, budget={}), ["budget"], "set at least one budget"),
    "unknown batch size family": (_with(COMPARISON, batch_sizes={"zeroth-order": 3}), ["batch_sizes"],
                                  "'first-order' or 'second-order'"),
}


@pytest.mark.parametrize("body,loc,message", COMPARISON_CASES.values(), ids=COMPARISON_CASES.keys())
def test_bad_comparison_is_refused_and_not_stored(client: TestClient, body: Any, loc: list, message: str) -> None:
    r = client.post("/api/comparisons", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    want = loc if loc == ["body"] else ["body", *loc]
    assert any(message in e["msg"] and e["loc"][:len(want)] == want for e in errors), errors
    assert client.get("/api/comparisons").json()["total"] == 0
    assert client.get("/api/runs").json()["total"] == 0


QUERY_CASES = {
    "max_points too small": ("/api/runs/{id}/metrics?max_points=1", "greater than or equal to 2"),
    "since_step not a number": ("/api/runs/{id}/metrics?since_step=abc", "valid integer"),
    "since_step far too large": ("/api/runs/{id}/evals?since_step=99999999999999999999999", "less than or equal"),
    "unknown status": ("/api/runs?status=sleeping", "unknown status ['sleeping']"),
    "limit zero": ("/api/runs?limit=0", "greater than or equal to 1"),
    "negative offset": ("/api/comparisons?offset=-1", "greater than or equal to 0"),
    "export format": ("/api/runs/{id}/export?format=xml", "'csv' or 'json'"),
    "run id not a number": ("/api/runs/abc", "valid integer"),
    "run id beyond 64 bits": ("/api/runs/99999999999999999999999", "less than or equal"),
    "image step not a number": ("/api/runs/{id}/reconstructions/first.png", "valid integer"),
}


@pytest.mark.parametrize("url,message", QUERY_CASES.values(), ids=QUERY_CASES.keys())
def test_bad_query_parameters(client: TestClient, url: str, message: str) -> None:
    run_id = client.post("/api/runs", json=MLP_RUN).json()["id"]
    r = client.get(url.format(id=run_id))
    assert r.status_code == 422, r.text
    assert any(message in e["msg"] for e in r.json()["detail"]), r.json()


SURROGATE_CASES = {  # JSON's \ud800 escape decodes to a lone surrogate: once 500s and dropped connections
    "note": ("PATCH", "/api/runs/{run}", '{"note": "\\ud800"}', ["body", "note"]),
    "tag": ("PATCH", "/api/runs/{run}", '{"tags": ["ok", "\\udfff"]}', ["body", "tags", 1]),
    "comparison name": ("POST", "/api/comparisons", json.dumps({**COMPARISON, "name": "a\ud800b"}), ["body", "name"]),
    "run field": ("POST", "/api/runs", json.dumps({**MLP_RUN, "dataset": "\udc00"}), ["body", "dataset"]),
    "field name": ("POST", "/api/runs", '{"\\ud800": 1}', ["body", "\\ud800"]),
}


@pytest.mark.parametrize("method,url,body,loc", SURROGATE_CASES.values(), ids=SURROGATE_CASES.keys())
def test_lone_surrogates_are_refused_naming_the_field(client: TestClient, method: str, url: str, body: str,
                                                      loc: list) -> None:
    run = client.post("/api/runs", json=MLP_RUN).json()["id"]
    r = client.request(method, url.format(run=run), content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc and "not valid Unicode" in r.json()["detail"][0]["msg"]
    assert client.get(f"/api/runs/{run}").json()["note"] == ""
    assert client.get("/api/runs").json()["total"] == 1 and client.get("/api/comparisons").json()["total"] == 0


def test_paired_surrogate_escapes_are_ordinary_text(client: TestClient) -> None:
    run = client.post("/api/runs", json=MLP_RUN).json()["id"]
    r = client.patch(f"/api/runs/{run}", content='{"note": "\\ud83d\\ude00 ok"}',
                     headers={"content-type": "application/json"})
    assert r.status_code == 200 and client.get(f"/api/runs/{run}").json()["note"] == "\U0001F600 ok"


def test_validation_errors_echo_lone_surrogates_safely() -> None:
    """The 422 handler's echo (input, loc, msg, ctx) never carries a lone surrogate: it could not be encoded."""
    from backend.main import _plain_errors

    out = _plain_errors([{"loc": ("body", "\ud800"), "msg": "bad \udfff", "type": "x", "input": "a\ud800",
                          "ctx": {"given": "\ud800"}}])
    assert out == [{"loc": ["body", "\\ud800"], "msg": "bad \\udfff", "type": "x", "input": "a\\ud800",
                    "ctx": {"given": "\\ud800"}}]
    json.dumps(out, ensure_ascii=False).encode("utf-8")


SWEEP = {"name": "s", "dataset": "fashion-mnist", "model": "mlp", "budget": {"backprops": 10},
         "optimizers": [{"name": "sgd", "space": {"lr": {"values": [0.1]}}}]}
# Lax types once got through: a boolean or a string where a number belongs, a number where a boolean does.
TYPE_CASES = {
    "batch evals 0": ("/api/metrics/batch", {"runs": [{"id": 1}], "evals": 0}, ["evals"]),
    "batch id true": ("/api/metrics/batch", {"runs": [{"id": True}]}, ["runs", 0, "id"]),
    "batch max_points string": ("/api/metrics/batch", {"runs": [{"id": 1}], "max_points": "100"}, ["max_points"]),
    "batch since_step float": ("/api/metrics/batch", {"runs": [{"id": 1, "since_step": 2.5}]},
                               ["runs", 0, "since_step"]),
    "run seed true": ("/api/runs", {**MLP_RUN, "seed": True}, ["seed"]),
    "run batch size string": ("/api/runs", {**MLP_RUN, "batch_size": "128"}, ["batch_size"]),
    "run budget epochs true": ("/api/runs", {**MLP_RUN, "budget": {"epochs": True}}, ["budget", "epochs"]),
    "run guards enabled 1": ("/api/runs", {**MLP_RUN, "guards": {"enabled": 1}}, ["guards", "enabled"]),
    "run warm start string": ("/api/runs", {**MLP_RUN, "warm_start_epochs": "0"}, ["warm_start_epochs"]),
    "comparison seeds true": ("/api/comparisons", {**COMPARISON, "seeds": [True]}, ["seeds", 0]),
    "comparison name number": ("/api/comparisons", {**COMPARISON, "name": 5}, ["name"]),
    "sweep per_decade true": ("/api/sweeps", {**SWEEP, "optimizers": [
        {"name": "sgd", "space": {"lr": {"low": 0.01, "high": 0.1, "per_decade": True}}}]},
        ["optimizers", 0, "space", "lr", "per_decade"]),
    "sweep criterion k string": ("/api/sweeps", {**SWEEP, "criterion": {"k": "3"}}, ["criterion", "k"]),
}


@pytest.mark.parametrize("url,body,loc", TYPE_CASES.values(), ids=TYPE_CASES.keys())
def test_request_types_are_strict(client: TestClient, url: str, body: Any, loc: list) -> None:
    client.post("/api/runs", json=MLP_RUN)
    r = client.post(url, json=body)
    assert r.status_code == 422, r.text
    assert any(e["loc"][:len(loc) + 1] == ["body", *loc] for e in r.json()["detail"]), r.json()["detail"]


def test_strict_numbers_still_take_integers_where_floats_belong(client: TestClient) -> None:
    """JSON does not tell 1 from 1.0: an integer is a valid float everywhere."""
    body = {**MLP_RUN, "budget": {"epochs": 1, "seconds": 60}, "warm_start_epochs": 0,
            "guards": {"loss_factor": 1000, "radius_floor": 0}, "optimizer": {"name": "sgd",
                                                                              "hyperparameters": {"lr": 1}}}
    assert client.post("/api/runs", json=body).status_code == 201
    assert client.post("/api/sweeps", json={**SWEEP, "optimizers": [
        {"name": "sgd", "space": {"lr": {"low": 1, "high": 10}}}]}).status_code == 201


def test_every_request_model_is_strict() -> None:
    """Each body model of a route (and the models nested in it) validates with strict types."""
    from pydantic import BaseModel

    from backend.routes import api_router

    def models(annotation: Any) -> list[type[BaseModel]]:
        out = []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.append(annotation)
            for field in annotation.model_fields.values():
                out += models(field.annotation)
        for arg in getattr(annotation, "__args__", ()):
            out += models(arg)
        return out

    def routes(items: list[Any]) -> list[Any]:
        out = []
        for route in items:
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            out += routes(inner.routes) if inner is not None and hasattr(inner, "routes") else [route]
        return out

    bodies = {param.field_info.annotation for route in routes(api_router.routes)
              for param in getattr(getattr(route, "dependant", None), "body_params", [])}
    assert len(bodies) >= 6, bodies
    found = {m for body in bodies for m in models(body)}
    lax = sorted(m.__name__ for m in found if not m.model_config.get("strict"))
    assert not lax, f"request models without strict types: {lax}"
