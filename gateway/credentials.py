"""Who may use the gateway, from the site's files: the engineers of the remote desk with their
secrets (users file), and the holders of HTTP API tokens, of which the gateway keeps only
the SHA-256 (tokens file). Each has a role: a viewer reads, an engineer also acts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.yamlfile import load_yaml_model

Role = Literal["viewer", "engineer"]

RANK: dict[Role, int] = {"viewer": 0, "engineer": 1}


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
