"""Request gate (pure ASGI middleware): Host check, bearer token, cross-origin refusal, JSON content type, body cap.

Every HTTP request passes here before routing. Order of checks and their answers:
  400 Host header not in the allowed names (DNS rebinding);
  401 token missing or wrong (all routes but /api/health when credentials are configured: users in
      TRUSTLAB_USERS_FILE or TRUSTLAB_API_TOKEN; /api/auth answers without a token, but checks one that is sent);
      a request that arrived on a non-loopback address needs credentials configured at all, else 403;
      the signed-in user (backend.users.User) is left in the scope under USER_KEY for the routes;
  403 a state-changing request (POST/PUT/PATCH/DELETE) from another origin (Origin / Sec-Fetch-Site), unless the
      origin is in ``cors_origins``;
  415 a body on a state-changing request that is not ``application/json``;
  413 a body larger than ``max_body_bytes`` (by Content-Length, or counted while it streams in);
  503 (Retry-After) when a request waited ``queue_seconds`` for one of the ``2 x pool_size`` request slots.

The slots bound the requests in flight to the store connections there are, so a request never holds a
connection while it waits for a thread (which drained the pool before): excess requests wait here, holding
nothing. /api/health needs no slot.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from backend.settings import Settings, is_loopback
from backend.users import Directory

__all__ = ["RequestGate", "PUBLIC_PATHS", "SIGN_IN_PATHS", "UNSAFE_METHODS", "USER_KEY"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/api/health"})
# Answered without a token too (says whether one is needed); a token that is sent must be right.
SIGN_IN_PATHS = frozenset({"/api/auth"})
USER_KEY = "trustlab.user"  # the scope key of the signed-in backend.users.User (None: nobody, on SIGN_IN_PATHS)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a body streams in; FastAPI passes HTTPExceptions through to a 413 answer."""


def _arrived_remotely(scope: Scope) -> bool:
    """Whether the connection came in on a non-loopback local address (the ASGI server's socket address).

    In-process test clients and Unix sockets name no IP address: they count as local.
    """
    server = scope.get("server")
    if not server:
        return False
    try:
        ipaddress.ip_address(str(server[0]).strip("[]"))
    except ValueError:
        return False
    return not is_loopback(str(server[0]))


def _host_name(host: str) -> str:
    """``example.org:8000`` → ``example.org``; ``[::1]:8000`` → ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGate:
    """The ASGI middleware; see the module docstring. ``settings`` are read once."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.users = Directory(settings.users_file, settings.token, api_token_user=settings.api_token_user,
                               local_user=settings.local_user)
        self.hosts = settings.host_names
        self.any_host = "*" in self.hosts
        self.origins = set(settings.cors_origin_list)
        self.max_body = settings.max_body_bytes
        self.slots = asyncio.Semaphore(2 * settings.pool_size)
        self.queue_seconds = settings.queue_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        problem = self._check(scope, headers)
        if problem is not None:
            status, message, extra = problem
            await _answer(send, status, message, extra)
            return
        if scope.get("path") in PUBLIC_PATHS:
            await self._forward(scope, receive, send, headers)
            return
        try:
            await asyncio.wait_for(self.slots.acquire(), self.queue_seconds)
        except TimeoutError:
            await _answer(send, 503, "the API is busy; retry in a second", {"retry-after": "1"})
            return
        try:
            await self._forward(scope, receive, send, headers)
        finally:
            self.slots.release()

    async def _forward(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        if scope["method"] not in UNSAFE_METHODS and "content-length" not in headers \
                and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(413, self._too_large())
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _answer(send, 413, self._too_large(), {})

    def _too_large(self) -> str:
        return (f"request body larger than {self.max_body} bytes (setting TRUSTLAB_MAX_BODY_BYTES); "
                "send a smaller body")

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        host = _host_name(headers.get("host", ""))
        if not self.any_host and host not in self.hosts:
            return 400, (f"Host header {host[:100]!r} is not one of this API's names; add it to "
                         "TRUSTLAB_ALLOWED_HOSTS if this is a name of the server"), {}
        path = scope.get("path", "")
        if path not in PUBLIC_PATHS:
            remote = _arrived_remotely(scope)
            if not self.users.required and remote:
                return 403, ("this API is reachable from other machines but has no credentials: add users "
                             "(TRUSTLAB_USERS_FILE, `python -m backend.users add NAME`) or set TRUSTLAB_API_TOKEN "
                             "on the server"), {}
            if not self.users.required:
                scope[USER_KEY] = self.users.local
            else:
                given = headers.get("authorization", "")
                scheme, _, value = given.partition(" ")
                user = self.users.authenticate(value.strip()) if scheme.lower() == "bearer" else None
                if user is None and (given or path not in SIGN_IN_PATHS):
                    return 401, ("missing or wrong token: send the header 'Authorization: Bearer <token>' with "
                                 "your user's token (`python -m backend.users add NAME` makes one) or the "
                                 "server's TRUSTLAB_API_TOKEN"), {"www-authenticate": "Bearer"}
                scope[USER_KEY] = user
        method = scope["method"]
        if method in UNSAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin.rstrip("/") not in self.origins:
                parts = urlsplit(origin)
                same = origin != "null" and _host_name(parts.netloc) == host and \
                    parts.netloc.lower() == headers.get("host", "").strip().lower()
                if not same:
                    return 403, (f"cross-origin {method} from {origin[:100]!r} refused; allow the origin with "
                                 "TRUSTLAB_CORS_ORIGINS if it is trusted"), {}
            elif origin is None and headers.get("sec-fetch-site") in ("cross-site", "same-site"):
                return 403, f"cross-site {method} refused (Sec-Fetch-Site)", {}
            length = headers.get("content-length")
            has_body = (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in headers
            if has_body:
                ctype = headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype != "application/json":
                    return 415, (f"send the body as application/json (got {ctype[:100] or 'no content type'!r}) "
                                 "with the header 'Content-Type: application/json'"), {}
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    return 400, "invalid Content-Length header", {}
                if n > self.max_body:
                    return 413, self._too_large(), {}
        return None


async def _answer(send: Send, status: int, message: str, extra: dict[str, str]) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
