"""The parts both HTTP fronts guard with, before a route runs: the site gateway's API and
dashboard (`gateway/http_guard.py`) and the service centre's desk (`centre/desk_guard.py`).
A token bucket per client, the Host header's name, the bearer token, reading a body within
bounds, handing it on, the security headers, and a refusal as JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from starlette.responses import Response
from starlette.types import Message, Receive, Send

from .buckets import TokenBuckets as TokenBuckets  # the fronts take it from here

MAX_HEAD_BYTES = 16 * 1024  # request line and headers
BODY_TIMEOUT_S = 10.0  # a body of a few KiB that takes longer is someone holding a connection
# Names a loopback front is reached by; the connection's own address is good too.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Each front loads only its own page, script and style and calls only its own API; no other
# page may frame it, have a type guessed, or learn its address.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def host_name(value: bytes) -> str:
    """The name in a Host header, without its port: `[::1]:8080` -> `::1`."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    name, colon, _port = text.rpartition(":")
    return (name if colon and ":" not in name else text).rstrip(".")


def bearer(auth: bytes | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header; "" for anything else."""
    if auth is None:
        return ""
    scheme, _, token = auth.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Gone(Exception):
    """The client went away while sending its body."""


async def read_body(receive: Receive, most: int) -> bytes | None:
    """The whole body within BODY_TIMEOUT_S (TimeoutError past it), or None once it passes
    `most` bytes (what came is dropped); Gone if the client leaves."""
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(BODY_TIMEOUT_S):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def with_headers(send: Send, headers: Iterable[tuple[bytes, bytes]]) -> Send:
    """A `send` that adds `headers` to every answer."""
    extra = list(headers)

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return sending


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever the connection says next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def refuse(
    send: Send, status: int, detail: str, close: bool, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer `{"detail": ...}` with `status`; `close` when a body is left unread."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def invalid_request(_request: object, exc: Exception) -> Response:
    """A request whose parameters or body do not fit: 422 naming each field and what was
    wrong, without echoing what was sent (text that cannot be encoded, a lone surrogate
    say, would otherwise turn the refusal into a crash)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [str(part).encode("utf-8", "backslashreplace").decode() for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")).encode("utf-8", "backslashreplace").decode(),
            "type": str(e.get("type", "")),
        }
        for e in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)
