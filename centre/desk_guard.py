"""What every request to the desk passes before a route runs (outermost ASGI layer): a token
bucket per client address (429), a Host check against DNS rebinding (421), the bearer token
for every path but the page's own files, the login and the OpenAPI document (401, decided
before a byte of the body is read; the body never reaches a route), a cap on the body (413)
and on the time it takes (408), and the security headers on every answer. The user a token
names is left on the request's scope."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alarmgw.clock import Clock

from .desk_auth import User
from .desk_config import DeskConfig

log = logging.getLogger(__name__)

USER = "alarmgw.desk.user"  # scope key: the User the bearer token names
TOKEN = "alarmgw.desk.token"  # scope key: the token itself (for logout)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/", "/favicon.ico", "/api/openapi.json", "/api/login")
OPEN_PREFIX = "/desk/"
MIN_BURST = 20  # the page's first load (page, script, style, four reads) with room to spare
MAX_CLIENTS = 4096  # addresses remembered; past it the longest quiet is forgotten
MAX_HEAD_BYTES = 16 * 1024
# Logins per client address, on top of the general limit: ten tries at once, then one every
# two seconds, so guessing a password from one address takes years.
LOGIN_BURST = 10
LOGIN_RATE = 0.5
BODY_TIMEOUT_S = 10.0  # a body of a few KiB that takes longer is someone holding a connection

Holder = Callable[[str], Awaitable[User | None]]


class Unavailable(Exception):
    """The token cannot be checked now (the database does not answer): 503."""


class TokenBuckets:
    """`burst` requests at once per client, refilled at `rate` a second."""

    def __init__(self, rate: float, burst: float, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        """0 when `client` may go ahead, else the seconds it must wait."""
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (max(-self.burst, tokens - 1), now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def host_name(value: bytes) -> str:
    """The name in a Host header without its port: `[::1]:8480` -> `::1`."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    name, colon, _port = text.rpartition(":")
    return (name if colon and ":" not in name else text).rstrip(".")


class DeskGuard:
    """Pure ASGI, outermost: refuses what must be refused before any route runs."""

    def __init__(self, app: ASGIApp, config: DeskConfig, clock: Clock, holder: Holder) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.holder = holder
        self.buckets = TokenBuckets(config.requests_per_s, max(MIN_BURST, config.requests_per_s))
        self.logins = TokenBuckets(LOGIN_RATE, LOGIN_BURST)
        self.names = {*LOOPBACK_NAMES, config.bind, *config.host_names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        client = scope["client"][0] if scope.get("client") else "?"
        host = auth = None
        length: float = 0
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() and len(value) < 20 else math.inf
            elif name == b"transfer-encoding":
                chunked = True
        unread = length > 0 or chunked

        async def refuse(status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
            """Answer without the body reaching a route. A small body is read and dropped
            first: closing a connection with bytes unread makes the kernel reset it, and the
            client may lose the answer with it. A big or chunked one closes the connection."""
            close = unread
            if unread and not chunked and length <= self.config.max_body_bytes:
                with contextlib.suppress(TimeoutError, _Gone):
                    close = await _body(receive, self.config.max_body_bytes) is None
            await _refuse(send, status, detail, close, headers)

        wait = self.buckets.take(client, self.clock.monotonic())
        if not wait and scope["path"] == "/api/login":
            wait = self.logins.take(client, self.clock.monotonic())
        if wait:
            detail = f"too many requests from {client}"
            await refuse(429, f"{detail}: try again in {wait:.1f} s", [(b"retry-after", b"%d" % math.ceil(wait))])
            return
        head = len(scope.get("raw_path") or b"") + sum(len(n) + len(v) + 4 for n, v in scope["headers"])
        if head > MAX_HEAD_BYTES:
            await refuse(431, f"request headers of {head} bytes: at most {MAX_HEAD_BYTES}")
            return
        name = host_name(host) if host is not None else ""
        here = str((scope.get("server") or ("",))[0]).lower()
        if not name or (name not in self.names and name != here):
            detail = f"this desk does not answer to the host name {name!r} (desk.host_names lists the names it does)"
            await refuse(421, detail)
            return
        path = scope["path"]
        if path not in OPEN_PATHS and not path.startswith(OPEN_PREFIX):
            token = _bearer(auth)
            try:
                user = await self.holder(token) if token else None
            except Unavailable as exc:
                await refuse(503, str(exc), [(b"retry-after", b"5")])
                return
            if user is None:
                detail = "log in first: a valid bearer token is required (POST /api/login)"
                await refuse(401, detail, [(b"www-authenticate", b"Bearer")])
                return
            scope[USER] = user
            scope[TOKEN] = token
        if unread:
            most = self.config.max_body_bytes
            body = None
            if length <= most:
                try:
                    body = await _body(receive, most)
                except TimeoutError:
                    await _refuse(send, 408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", True)
                    return
                except _Gone:
                    return
            if body is None:
                await _refuse(send, 413, f"the body is over {most} bytes, the most the desk takes", True)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _bearer(auth: bytes | None) -> str:
    if auth is None:
        return ""
    scheme, _, token = auth.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class _Gone(Exception):
    """The client went away while sending its body."""


async def _body(receive: Receive, most: int) -> bytes | None:
    """The whole body, or None once it passes `most` bytes."""
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(BODY_TIMEOUT_S):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
        await send(message)

    return sending


def _replay(body: bytes, receive: Receive) -> Receive:
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _refuse(
    send: Send, status: int, detail: str, close: bool, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
