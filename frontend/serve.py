"""Start the UI: ``python -m frontend.serve [streamlit options]`` runs Streamlit with a Host and Origin check.

Streamlit checks a websocket's Origin only against its Host header, and the Host header not at all, so a
DNS-rebinding page (Origin = Host = ``evil.example:PORT``) could drive the UI from a browser on this machine.
This launcher starts Streamlit's own server in this process and wraps the ASGI application it builds
(``streamlit.web.server.starlette``) in ``HostGuard``, which sees every HTTP request and every websocket
upgrade before Streamlit does:

  400 a Host header whose name is not in TRUSTLAB_UI_ALLOWED_HOSTS (default: localhost, 127.0.0.1, ::1);
  403 a state-changing HTTP request (POST/PUT/PATCH/DELETE) or a websocket upgrade whose Origin names another
      host (a websocket upgrade is refused before it is accepted: the client sees HTTP 403).

``make run`` and ``make ui`` use it. It binds 127.0.0.1 unless ``--server.address`` says otherwise, and always
passes ``--server.headless true --browser.gatherUsageStats false``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

__all__ = ["HostGuard", "install", "main", "APP"]

APP = str(Path(__file__).resolve().parent / "server.py")  # app.py, with page URLs answered (frontend/server.py)

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _name(netloc: str) -> str:
    """``example.org:8501`` → ``example.org``; ``[::1]:8501`` → ``::1``; lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class HostGuard:
    """ASGI middleware refusing unknown Host names and cross-origin websocket upgrades / state changes."""

    def __init__(self, app: ASGIApp, allowed: set[str]) -> None:
        self.app = app
        self.allowed = {a.strip("[]").lower() for a in allowed}
        self.any = "*" in self.allowed

    def problem(self, scope: Scope) -> str | None:
        """Why this request is refused, or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = _name(headers.get("host", ""))
        if not self.any and host not in self.allowed:
            return (f"Host {host[:100]!r} is not a name of this trustlab UI; add it to TRUSTLAB_UI_ALLOWED_HOSTS if "
                    "it is")
        origin = headers.get("origin")
        if origin is not None and (scope["type"] == "websocket" or scope.get("method") in _UNSAFE):
            origin_host = _name(urlsplit(origin).netloc) if origin != "null" else "null"
            if not self.any and origin_host not in self.allowed:
                return f"cross-origin request from {origin[:100]!r} refused"
        return None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.problem(scope)
        if why is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})  # before accept: HTTP 403
            return
        body = why.encode()
        status = 400 if why.startswith("Host") else 403
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def install(allowed: set[str]) -> None:
    """Make Streamlit's server wrap its ASGI application in ``HostGuard``. Fails loudly if Streamlit's server
    no longer builds its application where this expects (an unchecked UI must not start)."""
    try:
        from streamlit.web.server.starlette import starlette_server
    except ImportError as exc:
        raise RuntimeError(f"this Streamlit has no Starlette server ({exc}); the UI cannot check Host headers "
                           "and was not started") from None
    build = getattr(starlette_server, "create_starlette_app", None)
    if build is None or not callable(build):
        raise RuntimeError("streamlit.web.server.starlette.starlette_server.create_starlette_app is gone; the UI "
                           "cannot check Host headers and was not started (pin the Streamlit in requirements.txt)")
    if getattr(build, "_trustlab_guarded", False):
        return

    def guarded(*args: Any, **kwargs: Any) -> Any:
        return HostGuard(build(*args, **kwargs), allowed)

    guarded._trustlab_guarded = True  # type: ignore[attr-defined]
    starlette_server.create_starlette_app = guarded  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    from streamlit.web import cli

    from frontend.settings import get_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--server.address" or a.startswith("--server.address=") for a in args):
        args = ["--server.address", "127.0.0.1", *args]
    try:
        install(get_settings().ui_host_names)
    except RuntimeError as exc:
        print(f"trustlab UI not started: {exc}", file=sys.stderr)
        return 2
    cli.main(["run", APP, *args, "--server.headless", "true", "--browser.gatherUsageStats", "false"],
             prog_name="streamlit", standalone_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
