"""The guard every HTTP request passes before it reaches a route (outermost ASGI layer, before
any body is read): a token bucket per client address (429, and the connection reads nothing
more until its Retry-After), a Host check against DNS rebinding (421), the bearer token for
every route but the dashboard's files and the OpenAPI document (401, before a byte of the
body is read), a cap on the body (413) and on the time it may take (408), and the security
headers on every answer. Refusals are logged at most once a minute each, with a count."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

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
    refuse,
    replay,
    with_headers,
)
from alarmgw.buckets import client_key
from alarmgw.clock import Clock

if TYPE_CHECKING:
    from .http_api import ApiState

log = logging.getLogger(__name__)

UNAUTHORIZED = "a valid bearer token is required"
# Paths served without a token: the dashboard's files (it asks for the token itself) and the
# OpenAPI document (the same for every gateway of a version: it describes, it holds no data).
OPEN_PATHS = ("/", "/favicon.ico", "/api/openapi.json")
OPEN_PREFIX = "/dashboard/"
MIN_BURST = 16  # a dashboard's first load (page, script, style, icon, five reads), with room to spare
LOG_EVERY_S = 60.0  # a refusal that repeats is logged at most this often, with its count
HOLD = "alarmgw.hold_s"  # set on a request's scope: its connection reads nothing more for this long
HOLD_MAX_S = 1.0  # ... at most: enough to spread a flood out, short for a client that waits as told


class Quiet:
    """When a line that repeats may be said again: the first time at once, then at most once
    every `every_s`; each time it may, how many were held back since the last line."""

    def __init__(self, clock: Clock, every_s: float = LOG_EVERY_S) -> None:
        self.clock = clock
        self.every_s = every_s
        self._held = 0
        self._until = -math.inf

    def say(self) -> int | None:
        """None while quiet (this one is held back), else how many were held back before it."""
        now = self.clock.monotonic()
        if now < self._until:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._until = now + self.every_s
        return held


class Tally:
    """A refusal that may come thousands of times a second, logged at most once a minute:
    the first at once, later ones as one line with how many came since the last line."""

    def __init__(self, reason: str, clock: Clock, every_s: float = LOG_EVERY_S) -> None:
        self.reason = reason
        self.total = 0
        self._quiet = Quiet(clock, every_s)

    def note(self, what: str) -> None:
        """Count one refusal of `what` (e.g. "GET /api/site from 10.0.0.7"), and log it unless
        a line was logged less than `every_s` ago."""
        self.total += 1
        held = self._quiet.say()
        if held is None:
            return
        if held == 0:
            log.warning("http %s: %s", what, self.reason)
        else:
            log.warning("http %s: %s (%d like it since the last line)", what, self.reason, held + 1)


class Guard:
    """Pure ASGI, outermost: refuses what must be refused before any route runs or any byte
    of a body is read, and puts the security headers on every answer."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state
        s = state.settings
        self.buckets = TokenBuckets(s.requests_per_s, max(MIN_BURST, s.requests_per_s))
        self.names = {*LOOPBACK_NAMES, *(n.lower().rstrip(".") for n in s.host_names)}
        clock = state.clock
        self.too_many = Tally(f"refused: over {s.requests_per_s:g} requests a second from one address", clock)
        self.wrong_host = Tally("refused: its Host is neither this gateway's address nor in http.host_names", clock)
        self.too_large_head = Tally(f"refused: request headers over {MAX_HEAD_BYTES} bytes", clock)
        self.too_big = Tally(f"refused: a body over http.max_body_bytes ({s.max_body_bytes})", clock)
        self.too_slow = Tally(f"refused: a body that took over {BODY_TIMEOUT_S:g} s", clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_headers(send, SECURITY_HEADERS)
        client = scope["client"][0] if scope.get("client") else "?"
        host = auth = None
        length: float = 0  # the declared Content-Length
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = int(value) if len(value) < 20 else math.inf  # h11 has checked it is digits
            elif name == b"transfer-encoding":
                chunked = True
        unread = length > 0 or chunked  # a body left unread: the answer closes the connection

        wait = self.buckets.take(client_key(client), self.state.clock.monotonic())
        if wait:
            self.too_many.note(f"{scope['method']} {scope['path']} from {client}")
            rate = self.state.settings.requests_per_s
            detail = f"too many requests from {client} (at most {rate:g} a second): try again in {wait:.1f} s"
            scope[HOLD] = wait  # the connection reads nothing more until then (see `_Connection`)
            await refuse(send, 429, detail, unread, [(b"retry-after", str(math.ceil(wait)).encode())])
            return
        head = len(scope.get("raw_path") or b"") + sum(len(n) + len(v) + 4 for n, v in scope["headers"])
        if head > MAX_HEAD_BYTES:
            self.too_large_head.note(f"{scope['method']} {scope['path']} from {client}")
            await refuse(send, 431, f"request headers of {head} bytes: at most {MAX_HEAD_BYTES}", unread)
            return
        name = host_name(host) if host is not None else ""
        here = str((scope.get("server") or ("",))[0]).lower()  # the address the client reached
        if not name or (name not in self.names and name != here):
            self.wrong_host.note(f"{scope['method']} {scope['path']} for {name!r} from {client}")
            named = f"the host name {name!r}" if name else "a request without a Host header"
            detail = f"this gateway does not answer to {named} (http.host_names lists the names it does)"
            await refuse(send, 421, detail, unread)
            return
        if self._needs_token(scope["path"]) and not self._known(auth):
            self.state.unknown_token.note(f"{scope['method']} {scope['path']} from {client}")
            await refuse(send, 401, UNAUTHORIZED, unread, [(b"www-authenticate", b"Bearer")])
            return
        if unread:
            most = self.state.settings.max_body_bytes
            body: bytes | None = None
            if length <= most:
                try:
                    body = await read_body(receive, most)
                except TimeoutError:
                    self.too_slow.note(f"{scope['method']} {scope['path']} from {client}")
                    await refuse(send, 408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", True)
                    return
                except Gone:
                    return  # the client left: nobody to answer
            if body is None:
                self.too_big.note(f"{scope['method']} {scope['path']} from {client}")
                await refuse(send, 413, f"the body is over {most} bytes, the most this gateway takes", True)
                return
            receive = replay(body, receive)
        await self.app(scope, receive, send)

    def _needs_token(self, path: str) -> bool:
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            return False
        return not (path == "/metrics" and self.state.metrics_public)

    def _known(self, auth: bytes | None) -> bool:
        token = bearer(auth)
        return bool(token) and self.state.tokens.holder(token) is not None
