"""Proof that an engineer asked: signed, fresh, single-use requests meant for this site, in
the wire format shared by the gateway and the engineer's tool.

A request is a JSON object {user, to, ts, nonce, command, args, sig}. `to` is the topic root
of the site it is meant for, so a request seen on the shared broker cannot be replayed at
another site. `sig` is the hex signature of the canonical JSON of every other field: Ed25519
(RFC 8032) under the engineer's private key, checked against the public key the users file
lists; or, for a user the file lists with a shared `secret` (legacy), HMAC-SHA256 under it.
Which of the two applies is the users file's say, never the request's.

Everything that arrives is hostile until proven otherwise: the size is checked before
anything is parsed, the JSON is parsed with limits on nesting and on the length of numbers
(pydantic's parser), and every field's type and size is checked before it is used. A
request that is not proven to come from the engineer it names raises `Unverified`, with the
kind of refusal, for the audit log's per-minute counts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .credentials import Role, User, Users
from .refusals import Refused

MAX_REQUEST = 16 * 1024  # bytes; a command is a few hundred
MAX_NAME = 64  # characters of a user or command name
MAX_ARG = 2000  # characters of one argument (a note is cut to 500 anyway)
MAX_ARGS = 8  # arguments of one request (a command takes at most three)
# pydantic's JSON parser refuses nesting deeper than 200 and integers longer than Python's
# 4,300 digits by itself, before building anything from them.

# Why a request was not admitted; the audit log counts refusals per kind and minute.
Kind = Literal["too_large", "malformed", "wrong_site", "unknown_user", "revoked", "bad_signature", "stale", "replayed"]

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


@dataclass(frozen=True, slots=True)
class Verified:
    """An authentic, fresh, first-seen request for this site."""

    user: str
    role: Role
    command: str
    args: dict[str, Any]


class Unverified(Refused):
    """A request not proven to come, now and for this site, from the engineer it names. `user`
    and `command` are what it claimed (printable, bounded), for the audit log."""

    def __init__(self, kind: Kind, message: str, user: str = "?", command: str = "?") -> None:
        super().__init__(message)
        self.kind = kind
        self.why = "invalid" if kind in ("too_large", "malformed") else "forbidden"
        self.user = user
        self.command = command


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
        raise ValueError(_problem(exc).removeprefix("malformed request: ")) from None
    return canonical({**fields, "sig": sign(credential, canonical(fields))})


def verify(
    payload: bytes, users: Users, to: str, now: datetime, max_skew_s: float, claim: Callable[[str], bool]
) -> Verified:
    """The request, if it is well formed, meant for the site `to`, signed by a user of
    `users`, within `max_skew_s` of `now` and first seen; else `Unverified` saying why.
    `claim` records a nonce and says False if it was used before; it is called only for
    requests proven authentic, so nobody can burn another's nonces. Whether the role may
    run the command is the operations' call."""
    if len(payload) > MAX_REQUEST:
        raise Unverified("too_large", f"request of {len(payload)} bytes is over the {MAX_REQUEST}-byte limit")
    try:
        req = Request.model_validate_json(payload)
    except ValidationError as exc:
        raise Unverified("malformed", _problem(exc)) from None
    claimed = {"user": printable(req.user), "command": printable(req.command)}
    if req.to != to:
        raise Unverified("wrong_site", f"request is for {printable(req.to)!r}, not this site ({to})", **claimed)
    user = users.users.get(req.user)
    if user is None:
        raise Unverified("unknown_user", "unknown user or bad signature", **claimed)
    if users.is_revoked(user):
        raise Unverified("revoked", f"{claimed['user']}'s key is revoked", **claimed)
    if not _signed_by(user, req):
        raise Unverified("bad_signature", "unknown user or bad signature", **claimed)
    try:
        ts = datetime.fromisoformat(req.ts)
    except ValueError:
        raise Unverified("malformed", "ts is not an ISO 8601 time", **claimed) from None
    if ts.tzinfo is None or abs((now - ts).total_seconds()) > max_skew_s:
        raise Unverified(
            "stale",
            f"stale request: ts {printable(req.ts)} is more than {max_skew_s:g} s from the gateway's clock",
            **claimed,
        )
    if not claim(req.nonce):
        raise Unverified("replayed", "replayed request: nonce already used", **claimed)
    return Verified(req.user, user.role, req.command, dict(req.args))


def _signed_by(user: User, req: Request) -> bool:
    sig = bytes.fromhex(req.sig)  # the pattern has checked it is hex
    key = user.verifying_key()
    if key is not None:
        try:
            key.verify(sig, req.signed())
        except InvalidSignature:
            return False
        return True
    assert user.secret is not None  # a user has a key or a secret (credentials.User)
    expected = hmac.new(user.secret.encode(), req.signed(), hashlib.sha256).digest()
    return hmac.compare_digest(sig, expected)


def printable(text: str, limit: int = MAX_NAME) -> str:
    """A name the sender chose, safe for a log line or an audit row: escapes instead of
    control or non-ASCII characters, and no longer than `limit`."""
    return text.encode("ascii", "backslashreplace").decode()[:limit].translate(_CONTROL)


_CONTROL = {c: "?" for c in (*range(0x20), 0x7F)}


def _problem(exc: ValidationError) -> str:
    """The first thing wrong with a request, with where: never the input itself."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    text = f"{printable(where, 80)}: {first['msg']}" if where else first["msg"]
    return f"malformed request: {text[:200]}{more}"
