"""The UI launcher's Host / Origin check (frontend/serve.py), as a pure ASGI middleware, and its hook into
Streamlit's server (the end-to-end refusal over a real socket: tests/frontend/test_ui_server.py)."""
from __future__ import annotations

import asyncio

import pytest

from frontend import serve

DEFAULT = {"localhost", "127.0.0.1", "::1"}


def _scope(kind: str, host: str | None, origin: str | None = None, method: str = "GET") -> dict:
    headers = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {"type": kind, "headers": headers, "path": "/_stcore/stream"}
    if kind == "http":
        scope["method"] = method
    return scope


@pytest.mark.parametrize("host", ["127.0.0.1:8501", "localhost:8501", "[::1]:8501", "LOCALHOST", "127.0.0.1"])
def test_loopback_names_pass(host: str) -> None:
    guard = serve.HostGuard(lambda *a: None, DEFAULT)
    assert guard.problem(_scope("http", host)) is None
    assert guard.problem(_scope("websocket", host, origin=f"http://{host}")) is None


@pytest.mark.parametrize("scope,why", [
    (_scope("http", "evil.example:8501"), "Host 'evil.example'"),
    (_scope("websocket", "evil.example:8501", origin="http://evil.example:8501"), "Host"),  # DNS rebinding
    (_scope("websocket", "127.0.0.1:8501", origin="http://evil.example"), "cross-origin"),
    (_scope("websocket", "127.0.0.1:8501", origin="null"), "cross-origin"),
    (_scope("http", "127.0.0.1:8501", origin="http://evil.example", method="PUT"), "cross-origin"),
    (_scope("http", None), "Host ''"),
    (_scope("http", "127.0.0.1.evil.example"), "Host"),
])
def test_refusals(scope: dict, why: str) -> None:
    assert why in (serve.HostGuard(lambda *a: None, DEFAULT).problem(scope) or "")


def test_reads_from_another_origin_and_extra_names() -> None:
    guard = serve.HostGuard(lambda *a: None, DEFAULT | {"lab.example.org"})
    assert guard.problem(_scope("http", "127.0.0.1:8501", origin="http://evil.example")) is None  # a GET
    assert guard.problem(_scope("websocket", "lab.example.org:8501", origin="https://lab.example.org")) is None
    assert serve.HostGuard(lambda *a: None, {"*"}).problem(_scope("websocket", "x:1", origin="http://y")) is None


def test_refused_websocket_is_closed_before_accept_and_http_gets_400() -> None:
    reached: list[str] = []

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        reached.append(scope["type"])

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    guard = serve.HostGuard(app, DEFAULT)
    asyncio.run(guard(_scope("websocket", "evil.example:1", origin="http://evil.example:1"), None, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": sent[0]["reason"]}]
    asyncio.run(guard(_scope("http", "evil.example:1"), None, send))
    assert sent[1]["status"] == 400 and b"TRUSTLAB_UI_ALLOWED_HOSTS" in sent[2]["body"]
    asyncio.run(guard({"type": "lifespan"}, None, send))
    asyncio.run(guard(_scope("http", "127.0.0.1:1"), None, send))
    assert reached == ["lifespan", "http"]


def test_install_wraps_streamlits_app_and_refuses_to_run_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.web.server.starlette import starlette_server

    original = starlette_server.create_starlette_app
    monkeypatch.setattr(starlette_server, "create_starlette_app", lambda *a, **k: "streamlit app")
    serve.install(DEFAULT)
    wrapped = starlette_server.create_starlette_app()
    assert isinstance(wrapped, serve.HostGuard) and wrapped.app == "streamlit app"
    serve.install(DEFAULT)  # idempotent: not wrapped twice
    assert starlette_server.create_starlette_app().app == "streamlit app"
    monkeypatch.delattr(starlette_server, "create_starlette_app")
    with pytest.raises(RuntimeError, match="cannot check Host headers"):
        serve.install(DEFAULT)
    monkeypatch.undo()
    assert starlette_server.create_starlette_app is original


def test_settings_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from frontend.settings import Settings

    monkeypatch.setenv("TRUSTLAB_UI_ALLOWED_HOSTS", "lab.example.org, [::1] ,LOCALHOST")
    assert Settings().ui_host_names == {"lab.example.org", "::1", "localhost"}
    monkeypatch.delenv("TRUSTLAB_UI_ALLOWED_HOSTS")
    assert Settings().ui_host_names == DEFAULT
