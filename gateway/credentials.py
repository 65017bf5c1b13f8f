"""Who may use the gateway, from the site's files: the engineers of the remote desk (users
file) and the holders of HTTP API tokens, of which the gateway keeps only the SHA-256
(tokens file). Each has a role: a viewer reads, an engineer also acts.

An engineer is known by an Ed25519 public key (RFC 8032, through `cryptography`); the private
key stays with the engineer, so a site box, which stands on a customer's premises and can be
stolen, holds nothing that signs a request. A user listed with a shared `secret` instead
(HMAC-SHA256) is the legacy way: every box holding that file can sign as that user.

A key is revoked without visiting the sites: the service centre delivers a new users file
with the user removed, or the key listed under `revoked:`, and each gateway reads the file
again as soon as it changes on disk (`UsersFile`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from alarmgw.yamlfile import ConfigError, load_yaml_model

# cryptography loads where keys are made or read: a site without remote engineers never needs it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)

Role = Literal["viewer", "engineer"]

RANK: dict[Role, int] = {"viewer": 0, "engineer": 1}

ED25519_PUBLIC_BYTES = 32  # RFC 8032, 5.1.5
MAX_KEY_FILE = 64 * 1024  # bytes; an Ed25519 key in PEM is about 120


def decode_public_key(text: str) -> bytes:
    """The 32 bytes of an Ed25519 public key written as base64 (as `alarmgw keygen` prints
    it); ValueError saying what is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 (expected the 44 characters `alarmgw keygen` prints)") from None
    if len(raw) != ED25519_PUBLIC_BYTES:
        raise ValueError(f"an Ed25519 public key is {ED25519_PUBLIC_BYTES} bytes, this one is {len(raw)}")
    return raw


def _normal_key(text: str) -> str:
    return base64.b64encode(decode_public_key(text)).decode()


PublicKey = Annotated[str, AfterValidator(_normal_key)]


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    # Ed25519 public key, base64 of its 32 bytes; the engineer keeps the private key.
    public_key: PublicKey | None = None
    # Legacy: a secret shared between the engineer and every box (HMAC-SHA256).
    secret: str | None = Field(default=None, min_length=16)

    @model_validator(mode="after")
    def _one_credential(self) -> User:
        if (self.public_key is None) == (self.secret is None):
            raise ValueError("give exactly one of public_key (Ed25519) or secret (legacy HMAC)")
        return self

    def verifying_key(self) -> Ed25519PublicKey | None:
        """The user's Ed25519 public key, or None for a legacy (HMAC) user."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if self.public_key is None:
            return None
        return Ed25519PublicKey.from_public_bytes(decode_public_key(self.public_key))


class Users(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    users: dict[str, User]
    # Public keys refused whoever they are listed under (a lost laptop, a leaver); each entry
    # must be a key, so that a typo in a revocation is an error, not a silent no-op.
    revoked: list[PublicKey] = Field(default_factory=list)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file these users were read from, if any."""
        return self._source

    def is_revoked(self, user: User) -> bool:
        return user.public_key is not None and user.public_key in self.revoked

    def legacy(self) -> list[str]:
        """Names of users who sign with a shared secret instead of a key pair."""
        return sorted(name for name, u in self.users.items() if u.secret is not None)


def load_users(path: Path | str) -> Users:
    users = load_yaml_model(path, Users)
    users._source = Path(path)
    return users


class UsersFileError(Exception):
    """The users file changed on disk and cannot be read now; nobody is admitted until a good
    one is delivered (failing open would keep a revoked key working)."""


class UsersFile:
    """The users file as it is now: read again whenever it changes on disk, so a key the
    service centre revokes stops working at the next request, with no restart and no visit."""

    def __init__(self, users: Users) -> None:
        self._users = users
        self._path = users.source
        self._stamp = _stamp(self._path) if self._path else None
        self._broken: UsersFileError | None = None

    def current(self) -> Users:
        """The users as the file says now; UsersFileError while the file is unreadable."""
        if self._path is None:
            return self._users
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._users = load_users(self._path)
                self._broken = None
                log.warning("users file %s changed: read again (%d users)", self._path, len(self._users.users))
            except ConfigError as exc:
                self._broken = UsersFileError(
                    f"the gateway's users file cannot be read ({'; '.join(exc.problems)[:200]}); "
                    "nobody is admitted until the service centre delivers a good one"
                )
                log.error("users file %s: %s; refusing every remote request until it is fixed", self._path, exc)
        if self._broken is not None:
            raise self._broken
        return self._users


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# --- engineers' key pairs -------------------------------------------------------------------


def new_key_pair() -> tuple[bytes, str]:
    """A fresh Ed25519 key pair: the private key as PEM (PKCS#8, what
    `openssl genpkey -algorithm ed25519` writes) and the public key as the users file wants it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, public_key_text(key)


def public_key_text(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def user_entry(name: str, role: Role, public_key: str) -> str:
    """The users file's line for one engineer (under `users:`)."""
    return f"{name}: {{role: {role}, public_key: {public_key}}}"


class KeyFileError(Exception):
    """A private key file that cannot be used; the message names the file and why."""


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The engineer's Ed25519 private key from a PEM file (encrypted with `passphrase`, or not)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path}: over {MAX_KEY_FILE} bytes; not a private key file")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted; give its passphrase in $ALARMGW_KEY_PASSPHRASE") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({str(exc)[:120]})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: a {type(key).__name__}, not an Ed25519 key (make one with `alarmgw keygen`)")
    return key


def write_private_key(path: Path, pem: bytes) -> None:
    """Write a new private key file readable by its owner only; an existing file is kept."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


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
