"""Who may ask the gateway what, and proof that they asked: signed, fresh, single-use
requests, roles, and the wire format shared by the gateway and the engineer's tool.

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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.yamlfile import load_yaml_model

Role = Literal["viewer", "engineer"]

# command -> the least role that may run it. Nothing else is ever run.
COMMANDS: dict[str, Role] = {
    "status": "viewer",
    "devices": "viewer",
    "faults": "viewer",
    "device": "viewer",
    "tickets": "viewer",
    "ticket": "viewer",
    "poll": "engineer",
    "selftest": "engineer",
    "ack": "engineer",
    "dispatch": "engineer",
    "arrive": "engineer",
    "resolve": "engineer",
    "close": "engineer",
}
RANK = {"viewer": 0, "engineer": 1}
MAX_REQUEST = 16 * 1024  # bytes; a command is a few hundred


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    secret: str = Field(min_length=16)


class Users(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    users: dict[str, User]


def load_users(path: Path | str) -> Users:
    return load_yaml_model(path, Users)


# --- HTTP API tokens: bearer tokens, of which the gateway keeps only the SHA-256 ------------


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ApiTokens(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: dict[str, ApiToken]

    def holder(self, presented: str) -> tuple[str, Role] | None:
        """(name, role) of the token presented, or None."""
        digest = hashlib.sha256(presented.encode()).hexdigest()
        found = None
        for name, t in self.tokens.items():  # compare every one: no early exit to time
            if hmac.compare_digest(digest, t.sha256):
                found = (name, t.role)
        return found


def load_api_tokens(path: Path | str) -> ApiTokens:
    return load_yaml_model(path, ApiTokens)


def new_api_token() -> str:
    """A fresh bearer token (its holder keeps it; the tokens file gets `token_entry`)."""
    return secrets.token_urlsafe(32)


def token_entry(name: str, role: Role, token: str) -> str:
    """The tokens file's line for one holder of `token` (the file keeps only its SHA-256)."""
    return f"{name}: {{role: {role}, sha256: {hashlib.sha256(token.encode()).hexdigest()}}}"


class Refused(Exception):
    """A request the gateway will not run; the message is what the requester is told."""


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
) -> tuple[str, str, dict[str, Any]]:
    """(user, command, args) of a valid request; raises Refused saying why not. `claim`
    records a nonce and says False if it was used before; it is called only for requests
    proven authentic, so nobody can burn another's nonces."""
    if len(payload) > MAX_REQUEST:
        raise Refused(f"request of {len(payload)} bytes is over the {MAX_REQUEST}-byte limit")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Refused("request is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"user", "ts", "nonce", "command", "args", "sig"}:
        raise Refused("request must have exactly: user, ts, nonce, command, args, sig")
    user = users.users.get(doc["user"]) if isinstance(doc["user"], str) else None
    sig = doc.pop("sig")
    if user is None or not isinstance(sig, str) or not hmac.compare_digest(sig, signature(user.secret, doc)):
        raise Refused("unknown user or bad signature")
    try:
        ts = datetime.fromisoformat(str(doc["ts"]))
    except ValueError:
        raise Refused("ts is not an ISO 8601 time") from None
    if ts.tzinfo is None or abs((now - ts).total_seconds()) > max_skew_s:
        raise Refused(f"stale request: ts {doc['ts']} is more than {max_skew_s:g} s from the gateway's clock")
    if not claim(str(doc["nonce"])):
        raise Refused("replayed request: nonce already used")
    command, args = doc["command"], doc["args"]
    if not isinstance(args, dict):
        raise Refused("args must be an object")
    authorise(str(doc["user"]), user.role, command)
    return str(doc["user"]), command, args


def authorise(user: str, role: Role, command: object) -> None:
    """Raise Refused unless `command` is on the allow-list and `role` may run it."""
    if not isinstance(command, str) or command not in COMMANDS:
        raise Refused(f"unknown command {str(command)[:40]!r}; allowed: {', '.join(COMMANDS)}")
    if RANK[role] < RANK[COMMANDS[command]]:
        raise Refused(f"{user} ({role}) may not {command}; it needs the {COMMANDS[command]} role")
