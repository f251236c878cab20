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
  422 a JSON body with a string that is not valid Unicode (a lone surrogate escape such as ``\\ud800``);
  503 (Retry-After) when a request waited ``queue_seconds`` for one of the ``2 x pool_size`` request slots.

The slots bound the requests in flight to the store connections there are, so a request never holds a
connection while it waits for a thread (which drained the pool before): excess requests wait here, holding
nothing. /api/health needs no slot. A refused request's body is read and dropped (bounded) before the
answer, so a client that sends it all first reads the answer rather than a connection reset.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from backend.settings import Settings, is_loopback
from backend.users import Directory

__all__ = ["RequestGate", "PUBLIC_PATHS", "SIGN_IN_PATHS", "UNSAFE_METHODS", "USER_KEY", "unicode_problem",
           "safe_text"]

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


_DISCARD_BYTES = 64 * 2**20  # a refused body is read and dropped up to this size ...
_DISCARD_SECONDS = 10.0  # ... and for at most this long; past either the connection is closed
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in headers


async def _discard_body(receive: Receive) -> None:
    """Read and drop the rest of a request body (bounded by ``_DISCARD_BYTES`` and ``_DISCARD_SECONDS``).

    A client that sends its whole body before reading the answer (urllib, requests) would otherwise see a
    connection reset: the server closing a socket with unread data makes the kernel send RST.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DISCARD_SECONDS
    dropped = 0
    while dropped < _DISCARD_BYTES:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def unicode_problem(body: bytes) -> list[dict[str, Any]] | None:
    """A 422 detail naming the first JSON string (or key) in ``body`` that is not valid Unicode, else None.

    JSON's ``\\ud800`` escape decodes to a lone UTF-16 surrogate, which no store or UTF-8 answer can carry (it
    made routes answer 500, or drop the connection when an error echoed it). Only bodies with such an escape
    are parsed here; a body that is not JSON is left to the route's own 422.
    """
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[Any], Any]] = [(["body"], value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str) and not is_unicode(item):
            return [{"loc": loc, "type": "string_unicode", "input": safe_text(item[:200]),
                     "msg": "text is not valid Unicode (a lone UTF-16 surrogate such as \\ud800); send valid "
                            "UTF-8 text"}]
        if isinstance(item, dict):
            for key, child in item.items():
                if not is_unicode(key):
                    return [{"loc": [*loc, safe_text(key[:200])], "type": "string_unicode",
                             "msg": "field name is not valid Unicode (a lone UTF-16 surrogate); send valid UTF-8"}]
                stack.append(([*loc, key], child))
        elif isinstance(item, list):
            stack.extend(([*loc, i], child) for i, child in enumerate(item))
    return None


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\ud800``): safe to echo in a UTF-8 answer."""
    return text if is_unicode(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


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
            if _has_body(headers) and "100-continue" not in headers.get("expect", "").lower():
                await _discard_body(receive)  # else the client, still sending, reads a reset instead of the answer
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
        # Read the whole body here (the routes read it whole anyway), counting it against the cap.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body arrived: nobody to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                if message.get("more_body"):
                    await _discard_body(receive)
                await _answer(send, 413, self._too_large(), {})
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        problem = unicode_problem(body)
        if problem is not None:
            await _answer(send, 422, problem, {})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, for routes that watch for it

        await self.app(scope, replay, send)

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
            if _has_body(headers):
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


async def _answer(send: Send, status: int, message: str | list[dict[str, Any]], extra: dict[str, str]) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
