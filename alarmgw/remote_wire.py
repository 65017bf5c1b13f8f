"""The wire format of an engineer's remote request, shared by the site gateway (which
verifies it), the engineer's tool and the service centre (which sign it).

A request is a JSON object {user, to, ts, nonce, command, args, sig}. `to` is the topic root
of the site it is meant for, so a request seen on the shared broker cannot be replayed at
another site. `sig` is the hex signature of the canonical JSON of every other field: Ed25519
(RFC 8032) under the engineer's private key or, for a legacy user, HMAC-SHA256 under a
shared secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_REQUEST = 16 * 1024  # bytes; a command is a few hundred
MAX_NAME = 64  # characters of a user or command name
MAX_ARG = 2000  # characters of one argument (a note is cut to 500 anyway)
MAX_ARGS = 8  # arguments of one request (a command takes at most three)
# pydantic's JSON parser refuses nesting deeper than 200 and integers longer than Python's
# 4,300 digits by itself, before building anything from them.

Credential = Ed25519PrivateKey | str  # an engineer's private key, or a legacy shared secret

ArgValue = Annotated[str, Field(max_length=MAX_ARG)] | int | bool


class Request(BaseModel):
    """A request as it travels; strict: a number is not a string, a bool is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    user: str = Field(min_length=1, max_length=MAX_NAME)
    to: str = Field(min_length=1, max_length=256)
    ts: str = Field(max_length=40)
    nonce: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
    command: str = Field(min_length=1, max_length=MAX_NAME)
    args: dict[Annotated[str, Field(max_length=MAX_NAME)], ArgValue] = Field(max_length=MAX_ARGS)
    # hex: 64 bytes of Ed25519 signature, or 32 of HMAC-SHA256 (legacy)
    sig: str = Field(pattern=r"^[0-9a-f]{64}(?:[0-9a-f]{64})?$")

    def signed(self) -> bytes:
        """The bytes the signature covers."""
        return canonical(self.model_dump(exclude={"sig"}))


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign(credential: Credential, message: bytes) -> str:
    if isinstance(credential, Ed25519PrivateKey):
        return credential.sign(message).hex()
    return hmac.new(credential.encode(), message, hashlib.sha256).hexdigest()


def make_request(
    user: str, credential: Credential, to: str, command: str, args: dict[str, Any], now: datetime
) -> bytes:
    """A signed request for the site whose topic root is `to`, as the engineer's tool sends it.
    ValueError if it would not pass the gateway's checks of its shape."""
    fields = {
        "user": user,
        "to": to,
        "ts": now.isoformat(),
        "nonce": secrets.token_hex(12),
        "command": command,
        "args": args,
    }
    try:
        Request.model_validate({**fields, "sig": "0" * 128})
    except ValidationError as exc:
        raise ValueError(problem(exc).removeprefix("malformed request: ")) from None
    return canonical({**fields, "sig": sign(credential, canonical(fields))})


def printable(text: str, limit: int = MAX_NAME) -> str:
    """A name the sender chose, safe for a log line or an audit row: escapes instead of
    control or non-ASCII characters, and no longer than `limit`."""
    return text.encode("ascii", "backslashreplace").decode()[:limit].translate(_CONTROL)


_CONTROL = {c: "?" for c in (*range(0x20), 0x7F)}


def problem(exc: ValidationError) -> str:
    """The first thing wrong with a request, with where: never the input itself."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    text = f"{printable(where, 80)}: {first['msg']}" if where else first["msg"]
    return f"malformed request: {text[:200]}{more}"
