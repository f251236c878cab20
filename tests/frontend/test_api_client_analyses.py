"""The analyses methods of frontend.api_client: paths, bodies and 422s in words (httpx mock transport)."""
import json

import httpx
import pytest

from frontend.api_client import ApiClient, ApiError


def test_analysis_routes_and_errors() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if body is not None and "batch_size" in body and body["batch_size"] > 2048:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "batch_size"], "msg": "too large"}]})
        return httpx.Response(200, json={"id": 1, "items": []})

    c = ApiClient("http://api.test:8000", transport=httpx.MockTransport(handler))
    c.create_hessian_analysis(3, {"fractions": [0, 1]})
    c.list_analyses(3)
    c.get_analysis(3, 9)
    assert seen == [("POST", "/api/runs/3/analyses/hessian", {"fractions": [0, 1]}),
                    ("GET", "/api/runs/3/analyses", None), ("GET", "/api/runs/3/analyses/9", None)]
    with pytest.raises(ApiError) as err:
        c.create_hessian_analysis(3, {"steps": [0], "batch_size": 5000})
    assert err.value.messages == ["batch_size: too large"]
