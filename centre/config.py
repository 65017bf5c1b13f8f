"""The service centre's file: its database, its broker, how it ingests and how it judges a
site dark. Strict like the site file: an unknown key or a number out of bounds is refused at
load with the key path, and `load_centre` reads the password files and builds the broker's
TLS context there, so a file `migrate` accepts is one `ingest` can run with."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.yamlfile import ConfigError, load_yaml_model, read_text

from .desk_config import DeskConfig
from .relay import RelayConfig
from .rota import NotifyConfig

MAX_SECRET_BYTES = 64 * 1024  # a password file
MAX_BATCH = 10_000  # messages in one transaction: past it a batch holds locks for seconds
MAX_BATCH_WAIT_S = 10.0  # a message waits at most this long for its batch to fill
MAX_SESSION_EXPIRY_S = 7 * 86_400  # the broker queues for a dead worker this long at most
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # a ticket event is a few KiB; past this it is junk
MAX_OFFLINE_AFTER_S = 86_400.0
MAX_POOL = 64


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Area = Literal["city", "suburb"]
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_.:-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _host(value: str) -> str:
    if not _HOST.match(value):
        raise ValueError(f"{value[:60]!r} is neither an IP address nor a host name")
    return value


def _topic_root(value: str) -> str:
    if not value or len(value) > 200 or value.startswith("/") or value.endswith("/"):
        raise ValueError("a topic root of 1 to 200 characters, no leading or trailing /")
    if any(c in value for c in "#+$\0") or _CONTROL.search(value):
        raise ValueError(f"{value[:60]!r}: no wildcards (+ #), $, NUL or control characters")
    return value


def _dsn(value: str) -> str:
    if not value.startswith(("postgresql://", "postgres://")) and "=" not in value:
        raise ValueError("a libpq connection string: postgresql://USER@HOST:PORT/DB or 'host=... dbname=...'")
    if _CONTROL.search(value):
        raise ValueError("holds a control character")
    return value


def _once_each(value: list[int]) -> list[int]:
    if len(set(value)) != len(value):
        raise ValueError("a mark given twice")
    return sorted(value, reverse=True)


HostName = Annotated[str, AfterValidator(_host)]
TopicRoot = Annotated[str, AfterValidator(_topic_root)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatabaseConfig(_Strict):
    dsn: Annotated[str, Field(max_length=2000), AfterValidator(_dsn)]
    pool_max: Int = Field(default=4, ge=1, le=MAX_POOL)
    password_file: Path | None = None  # kept out of the dsn (libpq's PGPASSWORD otherwise)


class TlsConfig(_Strict):
    """Present, even empty, means TLS: verified, name checked, never plaintext."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _key_has_certificate(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: a client key needs its certificate (cert_file)")
        return self


class BrokerConfig(_Strict):
    host: HostName
    port: Int = Field(default=1883, ge=1, le=65535)
    username: Name | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None


class IngestConfig(_Strict):
    group: Ident = "centre"  # the shared-subscription group every worker joins
    topic_root: TopicRoot = "alarmgw"  # sites publish under <topic_root>/<site id>/...
    client_id: Ident = "alarmgw-centre"  # `--worker N` appends -N; stable, so the session survives
    session_expiry_s: Int = Field(default=3600, ge=0, le=MAX_SESSION_EXPIRY_S)
    batch_max: Int = Field(default=500, ge=1, le=MAX_BATCH)
    batch_wait_s: Float = Field(default=0.2, gt=0, le=MAX_BATCH_WAIT_S)
    max_payload_bytes: Int = Field(default=256 * 1024, ge=1024, le=MAX_PAYLOAD_BYTES)
    # What messages waiting to be taken may hold before more past the Receive Maximum are
    # turned away (to be sent again); about 20,000 small ones at the default.
    max_waiting_bytes: Int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024**3)
    # Tell the broker our Maximum Packet Size, so it drops bigger messages instead of sending
    # them. Off by default: mosquitto 2.0 then keeps each dropped QoS 1 message's in-flight
    # slot, and a few oversized messages stop all delivery to the worker.
    announce_max_packet: bool = False
    log_every_s: Float = Field(default=60.0, ge=1, le=86_400)


class SitesConfig(_Strict):
    # Silence that makes a site dark while it claims to be online: its telemetry interval
    # (60 s by default) plus a margin for a slow broker.
    offline_after_s: Float = Field(default=300.0, ge=10, le=MAX_OFFLINE_AFTER_S)
    check_interval_s: Float = Field(default=10.0, ge=0.1, le=3600)
    default_area: Area = "city"
    areas: dict[Ident, Area] = Field(default_factory=dict, max_length=1_000_000)
    accept_unlisted: bool = True  # false: a site not under `areas` is dead-lettered
    dead_letters_keep_days: Int = Field(default=30, ge=1, le=3650)
    # Each device's daily battery and signal (telemetry_daily) older than this is deleted.
    telemetry_daily_keep_days: Int = Field(default=400, ge=1, le=3650)
    # A planned maintenance visit with none done is escalated this many days before its window
    # closes (the end of its last day, UTC); 0 is the moment it is overdue. Empty: never.
    visit_marks_days: Annotated[
        list[Annotated[Int, Field(ge=0, le=366)]], Field(max_length=10), AfterValidator(_once_each)
    ] = [7, 0]

    def area_of(self, site_id: str) -> Area:
        return self.areas.get(site_id, self.default_area)


class CentreConfig(_Strict):
    database: DatabaseConfig
    broker: BrokerConfig
    ingest: IngestConfig = IngestConfig()
    sites: SitesConfig = SitesConfig()
    notify: NotifyConfig | None = None
    desk: DeskConfig = DeskConfig()
    relay: RelayConfig | None = None  # engineers' moves from the desk to the sites


@dataclass(frozen=True, slots=True)
class LoadedCentre:
    """The validated file with its secrets read and its paths resolved."""

    path: Path
    config: CentreConfig
    broker: BrokerSpec  # client_id is the configured one; a worker picks its own
    db_password: str | None

    def worker_id(self, worker: int | None) -> str:
        base = self.config.ingest.client_id
        return base if worker is None else f"{base}-{worker}"


def load_centre(path: Path | str) -> LoadedCentre:
    """Read, validate and resolve a centre file; raises `ConfigError` naming file and key."""
    p = Path(path)
    cfg = load_yaml_model(p, CentreConfig)
    db_password = None
    if cfg.database.password_file is not None:
        db_password = _secret(p, "database.password_file", cfg.database.password_file)
    return LoadedCentre(p, cfg, broker_spec(cfg.broker, cfg.ingest.client_id, p), db_password)


def broker_spec(cfg: BrokerConfig, client_id: str, path: Path) -> BrokerSpec:
    """The driver's view of the broker: paths from the file's folder, the password read from
    its file, and the TLS context built once so an unusable certificate is refused here."""
    tls = cfg.tls or TlsConfig()
    files = {}
    for name in ("ca_file", "cert_file", "key_file"):
        f = getattr(tls, name)
        if f is not None:
            f = _resolve(path, f)
            if not f.is_file():
                raise ConfigError(path, f"broker.tls.{name}: no such file {f}")
        files[name] = f
    password = None if cfg.password_file is None else _secret(path, "broker.password_file", cfg.password_file)
    spec = BrokerSpec(cfg.host, cfg.port, cfg.username, password, client_id, tls=cfg.tls is not None, **files)
    try:
        spec.tls_context()
    except ssl.SSLError as exc:
        raise ConfigError(path, f"broker.tls: cannot use the certificate files ({exc}); PEM, key unencrypted") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"broker.tls: cannot set up TLS: {exc}") from None
    return spec


def _resolve(path: Path, p: Path) -> Path:
    return p if p.is_absolute() else path.parent / p


def _secret(path: Path, key: str, p: Path) -> str:
    f = _resolve(path, p)
    if not f.is_file():
        raise ConfigError(path, f"{key}: no such file {f}")
    try:
        secret = read_text(f, max_bytes=MAX_SECRET_BYTES).strip()
    except ConfigError as exc:
        raise ConfigError(path, *(f"{key}: {f}: {problem}" for problem in exc.problems)) from None
    if not secret:
        raise ConfigError(path, f"{key}: {f} is empty")
    return secret
