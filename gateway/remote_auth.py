"""Proof that an engineer asked: signed, fresh, single-use requests, in the wire format
shared by the gateway and the engineer's tool.

A request is a JSON object {user, ts, nonce, command, args, sig}; `sig` is the hex
HMAC-SHA256, under the user's secret, of the canonical JSON of every other field. A request
older or newer than the allowed skew, or with a nonce seen before, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .credentials import Role, Users
from .refusals import Forbidden, Invalid

MAX_REQUEST = 16 * 1024  # bytes; a command is a few hundred


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, fields: dict[str, Any]) -> str:
    return hmac.new(secret.encode(), canonical(fields), hashlib.sha256).hexdigest()


def make_request(user: str, secret: str, command: str, args: dict[str, Any], now: datetime) -> bytes:
    """A signed request, as the engineer's tool sends it."""
    fields = {"user": user, "ts": now.isoformat(), "nonce": secrets.token_hex(12), "command": command, "args": args}
    return canonical({**fields, "sig": signature(secret, fields)})


def verify(
    payload: bytes, users: Users, now: datetime, max_skew_s: float, claim: Callable[[str], bool]
) -> tuple[str, Role, str, dict[str, Any]]:
    """(user, role, command, args) of an authentic, fresh, first-seen request; raises
    Invalid or Forbidden saying why not. `claim` records a nonce and says False if it was
    used before; it is called only for requests proven authentic, so nobody can burn
    another's nonces. Whether the role may run the command is the operations' call."""
    if len(payload) > MAX_REQUEST:
        raise Invalid(f"request of {len(payload)} bytes is over the {MAX_REQUEST}-byte limit")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("request is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"user", "ts", "nonce", "command", "args", "sig"}:
        raise Invalid("request must have exactly: user, ts, nonce, command, args, sig")
    user = users.users.get(doc["user"]) if isinstance(doc["user"], str) else None
    sig = doc.pop("sig")
    if user is None or not isinstance(sig, str) or not hmac.compare_digest(sig, signature(user.secret, doc)):
        raise Forbidden("unknown user or bad signature")
    try:
        ts = datetime.fromisoformat(str(doc["ts"]))
    except ValueError:
        raise Invalid("ts is not an ISO 8601 time") from None
    if ts.tzinfo is None or abs((now - ts).total_seconds()) > max_skew_s:
        raise Forbidden(f"stale request: ts {doc['ts']} is more than {max_skew_s:g} s from the gateway's clock")
    if not claim(str(doc["nonce"])):
        raise Forbidden("replayed request: nonce already used")
    command, args = doc["command"], doc["args"]
    if not isinstance(args, dict):
        raise Invalid("args must be an object")
    return str(doc["user"]), user.role, str(command)[:64], args
