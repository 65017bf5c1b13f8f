"""The desk's part of the centre's file (`desk:`): where it listens, how long a login lasts,
what it takes from one client, and when tickets of many sites are one incident."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .complaints import ComplaintRules
from .incidents import IncidentRules

MAX_TOKEN_LIFETIME_S = 7 * 86_400  # a week: past it a lost laptop stays logged in too long
MAX_BODY_BYTES = 1024 * 1024  # an assignment or a login is a few hundred bytes
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_.:-]+$")


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not {str(value).lower()}")
    return value


def _host(value: str) -> str:
    if not _HOST.match(value):
        raise ValueError(f"{value[:60]!r} is neither an IP address nor a host name")
    return value.lower().rstrip(".")


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
HostName = Annotated[str, AfterValidator(_host)]


class DeskConfig(BaseModel):
    """`desk:` in the centre's file; every key has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bind: HostName = "127.0.0.1"
    port: Int = Field(default=8480, ge=1, le=65535)
    # Names the desk is reached by besides its bind address and loopback (DNS rebinding).
    host_names: tuple[HostName, ...] = Field(default=(), max_length=100)
    token_lifetime_s: Int = Field(default=8 * 3600, ge=60, le=MAX_TOKEN_LIFETIME_S)  # a shift
    requests_per_s: Float = Field(default=20.0, ge=1, le=10_000)  # per client address
    max_body_bytes: Int = Field(default=16 * 1024, ge=1024, le=MAX_BODY_BYTES)
    db_wait_s: Float = Field(default=5.0, gt=0, le=60)  # for a database connection, then 503
    incidents: IncidentRules = IncidentRules()
    complaints: ComplaintRules = ComplaintRules()
