"""What every request to the desk passes before a route runs (outermost ASGI layer): a token
bucket per client address (429), a Host check against DNS rebinding (421), the bearer token
for every path but the page's own files, the login and the OpenAPI document (401, decided
before a byte of the body is read; the body never reaches a route), a cap on the body (413)
and on the time it takes (408), and the security headers on every answer. The user a token
names is left on the request's scope."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from alarmgw import asgi_guard
from alarmgw.asgi_guard import (
    BODY_TIMEOUT_S,
    LOOPBACK_NAMES,
    MAX_HEAD_BYTES,
    SECURITY_HEADERS,
    Gone,
    TokenBuckets,
    bearer,
    host_name,
    read_body,
    replay,
    with_headers,
)
from alarmgw.clock import Clock

from .desk_auth import User
from .desk_config import DeskConfig

log = logging.getLogger(__name__)

USER = "alarmgw.desk.user"  # scope key: the User the bearer token names
TOKEN = "alarmgw.desk.token"  # scope key: the token itself (for logout)
# The page's answers are the fleet's tickets: nothing of them is kept in a cache either.
DESK_HEADERS = [*SECURITY_HEADERS, (b"cache-control", b"no-store")]
OPEN_PATHS = ("/", "/favicon.ico", "/api/openapi.json", "/api/login")
OPEN_PREFIX = "/desk/"
MIN_BURST = 20  # the page's first load (page, script, style, four reads) with room to spare
# Logins per client address, on top of the general limit: ten tries at once, then one every
# two seconds, so guessing a password from one address takes years.
LOGIN_BURST = 10
LOGIN_RATE = 0.5

Holder = Callable[[str], Awaitable[User | None]]


class Unavailable(Exception):
    """The token cannot be checked now (the database does not answer): 503."""


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
        send = with_headers(send, DESK_HEADERS)
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
                with contextlib.suppress(TimeoutError, Gone):
                    close = await read_body(receive, self.config.max_body_bytes) is None
            await asgi_guard.refuse(send, status, detail, close, headers)

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
            token = bearer(auth)
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
                    body = await read_body(receive, most)
                except TimeoutError:
                    await asgi_guard.refuse(send, 408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", True)
                    return
                except Gone:
                    return
            if body is None:
                await asgi_guard.refuse(send, 413, f"the body is over {most} bytes, the most the desk takes", True)
                return
            receive = replay(body, receive)
        await self.app(scope, receive, send)
