"""Proof that an engineer asked: signed, fresh, single-use requests meant for this site, in
the wire format shared by the gateway, the engineer's tool and the service centre
(`alarmgw.remote_wire`).

Which signature applies (Ed25519 under the engineer's public key, or HMAC-SHA256 under a
legacy user's shared secret) is the users file's say, never the request's.

Everything that arrives is hostile until proven otherwise: the size is checked before
anything is parsed, the JSON is parsed with limits on nesting and on the length of numbers
(pydantic's parser), and every field's type and size is checked before it is used. A
request that is not proven to come from the engineer it names raises `Unverified`, with the
kind of refusal, for the audit log's per-minute counts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError

from alarmgw.remote_wire import MAX_REQUEST as MAX_REQUEST
from alarmgw.remote_wire import Credential as Credential
from alarmgw.remote_wire import Request, problem
from alarmgw.remote_wire import make_request as make_request
from alarmgw.remote_wire import printable as printable

from .credentials import Role, User, Users
from .refusals import Refused

# Why a request was not admitted; the audit log counts refusals per kind and minute.
Kind = Literal["too_large", "malformed", "wrong_site", "unknown_user", "revoked", "bad_signature", "stale", "replayed"]


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
        raise Unverified("malformed", problem(exc)) from None
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
