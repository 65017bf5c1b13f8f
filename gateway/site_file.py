"""Loading a site file: the validated document (`config.SiteConfig`) with every path it
names resolved against its folder and every file it names read and checked, so that
`check-config` and `run` accept and refuse the same files. `load_site()` raises
`ConfigError` naming the file, the key path and what was expected."""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

from alarmgw.diagnostics.rules import DEFAULT_FAULTS_FILE, FaultTable, compile_rules, load_fault_table
from alarmgw.drivers.envisalink import check_password
from alarmgw.drivers.json_map import JsonProfile, load_json_profile
from alarmgw.drivers.modbus_map import Profile, load_profile
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.model import DeviceKind
from alarmgw.yamlfile import ConfigError, load_yaml_model, read_text

from .config import MAX_SECRET_BYTES, BrokerConfig, SiteConfig, TlsConfig
from .credentials import load_api_tokens, load_users

# An IP hub's AES key: 16, 24 or 32 hex characters (AES-128, -192, -256), used as written.
SIA_KEY = re.compile(r"^[0-9A-Fa-f]{16}(?:[0-9A-Fa-f]{8}){0,2}$")


class LoadedSite:
    """A validated site file with the paths it refers to resolved against its folder, and
    every file it names read and checked: what `run` would refuse, loading refuses."""

    def __init__(self, path: Path, config: SiteConfig) -> None:
        self.path = path
        self.config = config
        base = path.parent
        self.store_path = resolve(base, config.store.path)
        if self.store_path.is_dir():
            raise ConfigError(path, f"store.path: {self.store_path} is a folder; name the ticket store's file")
        self.faults_file = DEFAULT_FAULTS_FILE
        if config.faults_file is not None:
            self.faults_file = existing(path, "faults_file", config.faults_file)
        self.fault_table = checked_fault_table(self.faults_file, config.supervision())
        self.bus_ports = {b.id: resolve(base, b.port) for b in config.buses}
        extra = None
        if config.profiles_dir is not None:
            extra = resolve(base, config.profiles_dir)
            if not extra.is_dir():
                what = "is a file, not a folder" if extra.exists() else "no such folder"
                raise ConfigError(path, f"profiles_dir: {extra}: {what}")
        self.profiles: dict[str, Profile] = {}
        self.envisalink_passwords: dict[str, str] = {}  # host -> its module's password
        self.sia_keys: dict[str, str] = {}  # host -> its hub's AES key (hex), for hubs that encrypt
        for hi, host in enumerate(config.hosts):
            if not host.zoned and host.model not in self.profiles:
                self.profiles[host.model] = find_profile(host.model, extra, path, f"hosts[{hi}].model", load_profile)
            if host.envisalink is not None:
                key = f"hosts[{hi}].envisalink.password_file"
                password = read_secret(path, key, host.envisalink.password_file)
                try:
                    self.envisalink_passwords[host.id] = check_password(password)
                except ValueError as exc:
                    raise ConfigError(path, f"{key}: {exc}") from None
            if host.sia is not None and host.sia.key_file is not None:
                key = f"hosts[{hi}].sia.key_file"
                hub_key = read_secret(path, key, host.sia.key_file).strip()
                if not SIA_KEY.match(hub_key):
                    raise ConfigError(
                        path, f"{key}: the hub's key is 16, 24 or 32 hex characters (AES-128, -192, -256)"
                    )
                self.sia_keys[host.id] = hub_key
        self.json_profiles: dict[str, JsonProfile] = {}
        for zi, z in enumerate(config.zigbee2mqtt):
            if z.profile not in self.json_profiles:
                key = f"zigbee2mqtt[{zi}].profile"
                self.json_profiles[z.profile] = find_profile(z.profile, extra, path, key, load_json_profile)
        self.device_broker = broker_spec(config.device_broker, path, "device_broker") if config.device_broker else None
        self.uplink_broker = broker_spec(config.uplink.broker, path, "uplink.broker") if config.uplink else None
        self.users = None
        if config.remote is not None:
            self.users = load_users(existing(path, "remote.users_file", config.remote.users_file))
        self.api_tokens = None
        if config.http is not None:
            self.api_tokens = load_api_tokens(existing(path, "http.tokens_file", config.http.tokens_file))
        self.influx_token = ""
        if config.influxdb is not None and config.influxdb.token_file is not None:
            self.influx_token = read_secret(path, "influxdb.token_file", config.influxdb.token_file)


def checked_fault_table(faults_file: Path, supervision: dict[str, float | None]) -> FaultTable:
    """The fault table, compiled once for every device kind as the diagnoser will compile
    it, so a rule it cannot use is refused at load, naming the fault."""
    table = load_fault_table(faults_file)
    for name, rule in table.faults.items():
        one = FaultTable.model_construct(faults={name: rule})
        for kind in DeviceKind:
            try:
                compiled = compile_rules(one, kind, supervision)
            except ValueError as exc:
                raise ConfigError(faults_file, f"faults.{name}: {exc}") from None
            for c in compiled:
                for t in c.tests:
                    if not (math.isfinite(t.limit) and math.isfinite(t.clear)):
                        raise ConfigError(faults_file, f"faults.{name}: {t.field}: a threshold must be a finite number")
    return table


def read_secret(site_path: Path, key: str, p: Path) -> str:
    """A password or token from the file the site file names under `key`: UTF-8, not empty,
    surrounding whitespace (the final newline) not part of it; a ConfigError naming the key."""
    f = existing(site_path, key, p)
    try:
        secret = read_text(f, max_bytes=MAX_SECRET_BYTES).strip()
    except ConfigError as exc:
        raise ConfigError(site_path, *(f"{key}: {f}: {problem}" for problem in exc.problems)) from None
    if not secret:
        raise ConfigError(site_path, f"{key}: {f} is empty")
    return secret


def existing(site_path: Path, key: str, p: Path) -> Path:
    """A file the site file names, resolved; a ConfigError naming the key if it is not there."""
    f = resolve(site_path.parent, p)
    if f.is_dir():
        raise ConfigError(site_path, f"{key}: {f} is a folder, not a file")
    if not f.is_file():
        raise ConfigError(site_path, f"{key}: no such file {f}")
    return f


def resolve(base: Path, p: Path) -> Path:
    """A path from the site file, taken relative to the site file's folder."""
    return p if p.is_absolute() else base / p


def builtin_profiles_dir() -> Path:
    return Path(str(resources.files("alarmgw.config").joinpath("profiles")))


P = TypeVar("P")


def find_profile(model: str, extra_dir: Path | None, site_path: Path, key: str, load: Callable[[Path], P]) -> P:
    dirs = [d for d in (extra_dir, builtin_profiles_dir()) if d is not None]
    for d in dirs:
        candidate = d / f"{model}.yaml"
        if candidate.is_file():
            return load(candidate)
    looked = ", ".join(str(d) for d in dirs)
    raise ConfigError(site_path, f"{key}: no profile {model!r} (looked for {model}.yaml in {looked})")


def broker_spec(cfg: BrokerConfig, site_path: Path, key: str) -> BrokerSpec:
    """The driver's view of a broker, with file paths taken from the site folder and the
    password read from its file. `tls:` present, even empty, means TLS; its context is built
    here so that a certificate or key that cannot be used is refused at load."""
    base = site_path.parent

    def resolve_opt(p: Path | None) -> Path | None:
        return None if p is None else resolve(base, p)

    tls = cfg.tls or TlsConfig()
    for name in ("ca_file", "cert_file", "key_file"):
        f = resolve_opt(getattr(tls, name))
        if f is not None and not f.is_file():
            # TLS that cannot be set up is an error, never a quiet fall back to plaintext.
            raise ConfigError(site_path, f"{key}.tls.{name}: no such file {f}")
    password = cfg.password
    if cfg.password_file is not None:
        password = read_secret(site_path, f"{key}.password_file", cfg.password_file)
    spec = BrokerSpec(
        cfg.host,
        cfg.port,
        cfg.username,
        password,
        cfg.client_id,
        resolve_opt(tls.ca_file),
        resolve_opt(tls.cert_file),
        resolve_opt(tls.key_file),
        mqtt_version=cfg.mqtt_version,
        tls=cfg.tls is not None,
    )
    try:
        spec.tls_context()
    except ssl.SSLError as exc:
        raise ConfigError(
            site_path, f"{key}.tls: cannot use the certificate files ({exc}); each must be PEM, the key unencrypted"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(site_path, f"{key}.tls: cannot set up TLS: {exc}") from None
    return spec


def load_site(path: Path | str) -> LoadedSite:
    """Read, validate and resolve a site file; raises `ConfigError`."""
    p = Path(path)
    return LoadedSite(p, load_yaml_model(p, SiteConfig))
