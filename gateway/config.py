"""The site file's schema: one YAML document describing a site, its hosts and devices, with
the bounds of every number. Validated with pydantic; unknown keys are errors. Reading a
site file, and the files it names, is `site_file.load_site()`."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alarmgw.diagnostics.assets import RATED_LIFE_YEARS, Asset, asset
from alarmgw.model import Device, DeviceKind

# Bounds of the numbers in a site file. Past them a value is a slip (a unit, a stray digit),
# not a setting, and it is refused at load like a misspelt key; .inf and .nan are refused
# everywhere (`allow_inf_nan=False` below), and so is a bool where a number belongs (`Int`,
# `Float`: pydantic would read `true` as 1).
MIN_INTERVAL_S = 0.1  # polling or checking more often only burns the CPU
MAX_INTERVAL_S = 86_400.0  # polls, checks and telemetry happen at least once a day
MAX_TIMEOUT_S = 60.0  # one request on a link (a Modbus read answers in milliseconds)
MAX_BACKOFF_S = 3_600.0  # a lost link is tried again at least hourly
MAX_SUPERVISION_S = 7 * 86_400.0  # EN 54-25 wants 300 s for fire, EN 50131 practice 1-2 h
MAX_BRIDGE_SUPERVISION_S = 86_400.0  # a whole site's Zigbee devices unmonitored for a day at most
MAX_ESCALATION_CHECK_S = 3_600.0  # escalation marks are minutes apart
MAX_MARK_S = 30 * 86_400.0  # a warning before a service clock is due (clocks run hours)
MAX_MARKS = 20
MAX_RETENTION_DAYS = 3_650.0
MAX_SKEW_S = 600.0  # the remote desk remembers every nonce this long
MAX_ROWS = 1_000_000  # outbox rows, telemetry points held: a few hundred MB at most
MAX_INFLUX_TIMEOUT_S = 300.0
MAX_TEXT = 200  # names, addresses, locations: they travel on every ticket
MAX_PATH = 4096  # PATH_MAX on Linux
MAX_SECRET_BYTES = 64 * 1024  # a password or token file


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Interval = Annotated[Float, Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)]
Timeout = Annotated[Float, Field(gt=0, le=MAX_TIMEOUT_S)]
BackoffSeconds = Annotated[Float, Field(gt=0, le=MAX_BACKOFF_S)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _plain_text(value: str) -> str:
    # Names travel on tickets to terminals, dashboards and the centre: no escape sequences.
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(f"holds the control character U+{ord(bad.group()):04X}; write plain text")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_plain_text)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_plain_text)]
ProfileName = Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")]  # a file in a profiles folder


def _path_text(value: object) -> object:
    if isinstance(value, str):
        if not value:
            raise ValueError("an empty path")
        if "\0" in value:
            raise ValueError("a path cannot hold a NUL character")
        if len(value) > MAX_PATH:
            raise ValueError(f"a path of {len(value)} characters (at most {MAX_PATH})")
    return value


SitePath = Annotated[Path, BeforeValidator(_path_text)]

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME.match(value):
            raise ValueError(f"{value[:60]!r} is neither an IP address nor a host name") from None
    return value


HostName = Annotated[str, AfterValidator(_host)]


def _topic(value: str) -> str:
    if not value or len(value) > 1000:
        raise ValueError("a topic of 1 to 1000 characters")
    if any(c in value for c in "#+\0"):
        raise ValueError(f"{value[:60]!r}: a topic here cannot hold the wildcards + or #, nor a NUL")
    return value


Topic = Annotated[str, AfterValidator(_topic)]

# Fire devices must be reported lost within 300 s (EN 54-25); the window plus a poll and
# the debounce has to fit inside that, so the default leaves room for both.
DEFAULT_SUPERVISION_S: dict[str, float | None] = {
    "smoke_detector": 200.0,
    "pir_detector": 3600.0,  # EN 50131 practice: 1-2 h for intruder devices
    "repeater": 120.0,
    "remote_control": None,  # hand-held: it only speaks when pressed
    "siren": 3600.0,
    "host": None,  # the gateway talks to the host directly; see link_lost
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SiteInfo(_Strict):
    id: Ident
    name: Text = ""
    address: Text = ""
    area: Literal["city", "suburb"] = "city"  # sets the arrival clock: 2 h or 12 h
    commissioned_on: date | None = None  # warranty runs 12 months from it


class StoreConfig(_Strict):
    path: SitePath = Path("alarmgw.db")


class HistoryConfig(_Strict):
    """Sampled readings kept per device for remote diagnosis (battery and signal trends)."""

    interval_s: Float = Field(default=300.0, ge=0, le=MAX_INTERVAL_S)  # at most one sample per device this often
    retention_days: Float = Field(default=30.0, gt=0, le=MAX_RETENTION_DAYS)


class AssetsConfig(_Strict):
    """The asset register: the maker's warranty where it is longer than the promise's 12
    months, and the rated life (6 years unless said), per device kind."""

    warranty_months: dict[DeviceKind, Annotated[Int, Field(ge=1, le=600)]] = {}
    rated_life_years: dict[DeviceKind, Annotated[Int, Field(ge=1, le=50)]] = {}


class MaintenanceConfig(_Strict):
    """The visits owed: monthly for three months, then every `regular_months` in the first year."""

    regular_months: Int = Field(default=3, ge=1, le=12)
    # A visit not finished by hand ends by itself this long after it started.
    max_hours: Float = Field(default=4.0, gt=0, le=24)


class EscalationConfig(_Strict):
    """When to warn before a service clock breaks: seconds before due, 0 = at the breach."""

    interval_s: Annotated[Float, Field(ge=MIN_INTERVAL_S, le=MAX_ESCALATION_CHECK_S)] = 60.0
    marks: dict[
        Literal["response", "arrival", "repair", "downtime"],
        Annotated[list[Annotated[Float, Field(ge=0, le=MAX_MARK_S)]], Field(max_length=MAX_MARKS)],
    ] = {
        "response": [1800.0, 600.0, 0.0],
        "arrival": [1800.0, 0.0],
        "repair": [21600.0, 0.0],
        "downtime": [1800.0, 0.0],
    }


class PollConfig(_Strict):
    interval_s: Interval = 5.0
    timeout_s: Timeout = 1.0
    retries: Int = Field(default=1, ge=0, le=5)
    backoff_initial_s: BackoffSeconds = 1.0
    backoff_max_s: BackoffSeconds = 60.0

    @model_validator(mode="after")
    def _backoff_grows(self) -> PollConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_initial_s: {self.backoff_initial_s:g} is more than backoff_max_s ({self.backoff_max_s:g})"
            )
        return self


class ModbusTcpEndpoint(_Strict):
    address: HostName = "127.0.0.1"
    port: Int = Field(default=502, ge=1, le=65535)
    unit: Int = Field(default=1, ge=0, le=247)

    @property
    def where(self) -> tuple[str, int]:
        """The connection it is reached over: hosts with the same one are units behind one gateway."""
        return self.address.lower(), self.port


class SerialBusConfig(_Strict):
    """A serial port and what speaks on it."""

    id: Ident
    port: SitePath  # /dev/ttyUSB0, /dev/serial/by-id/..., or the link the simulator makes
    protocol: Literal["modbus_rtu", "it100"]
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    timeout_s: Timeout = 0.5
    retries: Int = Field(default=1, ge=0, le=5)
    poll_interval_s: Interval | None = None


class RtuEndpoint(_Strict):
    bus: Ident
    unit: Int = Field(ge=1, le=247)


class It100Endpoint(_Strict):
    bus: Ident


class EnvisalinkEndpoint(_Strict):
    """An Envisalink (EVL-3/4) on the network: the IT-100 command set over TCP, behind a login."""

    address: HostName
    port: Int = Field(default=4025, ge=1, le=65535)
    password_file: SitePath  # the module's password, one line; never written in the site file

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("password: the Envisalink's password is read from a file only; name it in password_file")
        return data


class SiaHubEndpoint(_Strict):
    """An IP hub that reports to the gateway over SIA DC-09, as to an alarm receiving centre."""

    account: str = Field(pattern=r"^[0-9A-Fa-f]{3,16}$")  # as set in the hub
    key_file: SitePath | None = None  # its AES key (16, 24 or 32 hex characters), one line; none: plain text
    report_interval_s: Annotated[Float, Field(gt=0, le=MAX_SUPERVISION_S)] | None = None  # its periodic report
    report_margin_s: Annotated[Float, Field(ge=0, le=3600)] = 30.0  # how late that report may be


class SiaReceiverConfig(_Strict):
    """Where the gateway listens for its hubs' DC-09 messages, and the bounds of what it takes."""

    bind: HostName = "0.0.0.0"
    port: Int = Field(ge=1, le=65535)
    tcp: bool = True
    udp: bool = True
    interval_s: Interval | None = None  # how often the hubs' reports are judged; the poll interval by default
    max_message_bytes: Int = Field(default=1024, ge=128, le=8192)
    max_connections: Int = Field(default=2048, ge=1, le=65536)
    max_connections_per_address: Int = Field(default=4, ge=1, le=1024)
    messages_per_s: Annotated[Float, Field(gt=0, le=10_000)] = 2.0  # per peer address
    burst: Annotated[Float, Field(ge=1, le=100_000)] = 20.0
    idle_timeout_s: Annotated[Float, Field(gt=0, le=86_400)] = 300.0
    window_past_s: Annotated[Float, Field(gt=0, le=3600)] = 40.0  # how old an event's timestamp may be
    window_future_s: Annotated[Float, Field(gt=0, le=3600)] = 20.0  # and how far ahead of the gateway


class DeviceConfig(_Strict):
    id: Ident
    kind: DeviceKind
    slot: Int | None = Field(default=None, ge=1, le=8000)  # register slot (Modbus hosts)
    zone: Int | None = Field(default=None, ge=1, le=999)  # zone number (IT-100 hosts)
    parent: Ident | None = None  # a repeater on the same host; the host when omitted
    location: Text = ""
    model: Text = ""
    commissioned_on: date | None = None
    warranty_months: Int | None = Field(default=None, ge=1, le=600)  # the maker's, where longer
    poll_interval_s: Interval | None = None

    @model_validator(mode="after")
    def _not_host(self) -> DeviceConfig:
        if self.kind in (DeviceKind.HOST, DeviceKind.BUS):
            raise ValueError(f"kind: a {self.kind.value} is declared under {self.kind.value}es, not under devices")
        return self


class HostConfig(_Strict):
    id: Ident
    model: ProfileName = ""  # the register profile, config/profiles/<model>.yaml (Modbus hosts)
    location: Text = ""
    commissioned_on: date | None = None
    warranty_months: Int | None = Field(default=None, ge=1, le=600)  # the maker's, where longer
    # How the gateway reaches it: exactly one of these.
    modbus: ModbusTcpEndpoint | None = None
    rtu: RtuEndpoint | None = None
    it100: It100Endpoint | None = None
    envisalink: EnvisalinkEndpoint | None = None
    sia: SiaHubEndpoint | None = None
    poll_interval_s: Interval | None = None
    devices: list[DeviceConfig] = []

    @model_validator(mode="after")
    def _one_transport(self) -> HostConfig:
        kinds = ("modbus", "rtu", "it100", "envisalink", "sia")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(kinds)} (given: {', '.join(given) or 'none'})")
        if not self.zoned and not self.model:
            raise ValueError("model: a Modbus host needs the name of its register profile")
        place = "zone" if self.zoned else "slot"
        for i, d in enumerate(self.devices):
            if getattr(d, place) is None:
                raise ValueError(f"devices[{i}].{place}: required for a device on a host reached over {given[0]}")
        return self

    @property
    def bus(self) -> str | None:
        return self.rtu.bus if self.rtu else self.it100.bus if self.it100 else None

    @property
    def zoned(self) -> bool:
        """A DSC panel (IT-100 or Envisalink) or an IP hub (SIA DC-09): its devices are zones,
        not register slots."""
        return self.it100 is not None or self.envisalink is not None or self.sia is not None


class TlsConfig(_Strict):
    """Present (even empty, `tls: {}`) means TLS: the broker's certificate is verified and
    its name checked; there is no plaintext fall back."""

    ca_file: SitePath | None = None  # verify the broker against this CA (the system's CAs if omitted)
    cert_file: SitePath | None = None  # client certificate (and its key, unless key_file)
    key_file: SitePath | None = None

    @model_validator(mode="after")
    def _key_has_certificate(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: a client key needs its certificate (cert_file)")
        return self


class BrokerConfig(_Strict):
    host: HostName
    port: Int = Field(default=1883, ge=1, le=65535)
    username: Name | None = None
    password: str | None = None
    password_file: SitePath | None = None  # a file holding the password (kept out of the site file)
    client_id: Name | None = None
    tls: TlsConfig | None = None
    mqtt_version: Literal["5", "3.1.1"] = "5"

    @model_validator(mode="after")
    def _one_password(self) -> BrokerConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password_file: give either password or password_file, not both")
        return self


class UplinkConfig(_Strict):
    """The service centre's broker."""

    broker: BrokerConfig
    topic_root: Topic | None = None  # default alarmgw/<site id>
    telemetry_interval_s: Interval | None = 60.0  # null: no telemetry
    outbox_max: Int = Field(default=10_000, ge=100, le=MAX_ROWS)  # rows; telemetry is evicted first
    home_assistant_prefix: Topic | None = None  # e.g. homeassistant: publish MQTT discovery there


class RemoteConfig(_Strict):
    """Remote commands for engineers, through the uplink's broker."""

    users_file: SitePath  # engineers.yaml: users: {name: {role, public_key}} (secret: the legacy HMAC way)
    # A request whose time is further off than this is refused.
    max_skew_s: Annotated[Float, Field(gt=0, le=MAX_SKEW_S)] = 60.0
    # Audit rows older than this are pruned by the gateway; the store refuses to go under 30.
    audit_retention_days: Int = Field(default=400, ge=30, le=36500)


class HttpConfig(_Strict):
    """The local HTTP API, dashboard and Prometheus metrics."""

    bind: HostName = "127.0.0.1"  # loopback unless the site opens it on purpose (e.g. the box's LAN address)
    port: Int = Field(default=8080, ge=1, le=65535)
    tokens_file: SitePath  # api-tokens.yaml: tokens: {name: {role: viewer|engineer, sha256: ...}}
    metrics_public: bool = False  # serve /metrics without a token (a Prometheus on the same box)
    # Host names the API answers to besides the bound address, localhost and 127.0.0.1 / ::1
    # (e.g. the box's LAN name); any other Host header is refused (DNS rebinding).
    host_names: list[str] = Field(default_factory=list)
    max_body_bytes: Int = Field(default=8192, ge=256, le=1_048_576)  # a note is at most 500 characters
    max_connections: Int = Field(default=64, ge=1, le=10_000)  # open at once; more wait or are refused
    requests_per_s: Float = Field(default=20.0, gt=0, le=10_000)  # per client address; past it: 429


class InfluxConfig(_Strict):
    """Telemetry to InfluxDB (v2 write API): one measurement per device kind."""

    url: str = Field(pattern=r"^https?://")
    org: str = ""
    bucket: str
    token_file: SitePath | None = None  # a file holding the API token (kept out of the site file)
    # at most one point per device this often (0: every reading)
    interval_s: Float = Field(default=60.0, ge=0, le=MAX_INTERVAL_S)
    batch_size: Int = Field(default=1000, ge=1, le=50_000)  # points per write
    # a batch goes at least this often
    flush_interval_s: Annotated[Float, Field(ge=MIN_INTERVAL_S, le=MAX_BACKOFF_S)] = 10.0
    # points kept while the server is away; oldest go first
    buffer_max: Int = Field(default=100_000, ge=100, le=MAX_ROWS)
    timeout_s: Annotated[Float, Field(gt=0, le=MAX_INFLUX_TIMEOUT_S)] = 10.0


class Z2mDeviceConfig(_Strict):
    id: Ident
    friendly_name: Name
    kind: DeviceKind
    location: Text = ""
    model: Text = ""
    commissioned_on: date | None = None
    warranty_months: Int | None = Field(default=None, ge=1, le=600)  # the maker's, where longer


class Zigbee2MqttConfig(_Strict):
    """A Zigbee2MQTT bridge: the coordinator is a host, its devices hang off it. Devices
    the site file does not name are learnt from the bridge's `bridge/devices`."""

    id: Ident
    base_topic: Topic = "zigbee2mqtt"
    location: Text = ""
    profile: Ident = "zigbee2mqtt"  # JSON mapping profile of device state
    interval_s: Interval | None = None  # how often each link's verdict is given
    # A device not heard this long is comm_loss: Zigbee2MQTT's own availability timeout
    # for battery (passive) devices, 1500 min.
    supervision_s: Annotated[Float, Field(gt=0, le=MAX_SUPERVISION_S)] = 25 * 3600.0
    # The broker out of reach, or the bridge silent, this long: the bridge is comm_loss
    # (its devices listed on it). Within EN 54-25's 300 s with a judge and the debounce.
    bridge_supervision_s: Annotated[Float, Field(gt=0, le=MAX_BRIDGE_SUPERVISION_S)] = 240.0
    devices: list[Z2mDeviceConfig] = []


class SiteConfig(_Strict):
    site: SiteInfo
    store: StoreConfig = StoreConfig()
    poll: PollConfig = PollConfig()
    history: HistoryConfig = HistoryConfig()
    escalation: EscalationConfig = EscalationConfig()
    assets: AssetsConfig = AssetsConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    supervision_s: dict[DeviceKind, Annotated[Float, Field(gt=0, le=MAX_SUPERVISION_S)] | None] = {}
    faults_file: SitePath | None = None  # replaces the built-in fault table
    profiles_dir: SitePath | None = None  # looked in before the built-in profiles
    buses: list[SerialBusConfig] = []
    device_broker: BrokerConfig | None = None  # where MQTT devices (Zigbee2MQTT) publish
    uplink: UplinkConfig | None = None
    remote: RemoteConfig | None = None
    http: HttpConfig | None = None
    influxdb: InfluxConfig | None = None
    zigbee2mqtt: list[Zigbee2MqttConfig] = []
    sia_receiver: SiaReceiverConfig | None = None  # for the hosts reached over SIA DC-09
    hosts: list[HostConfig] = []

    @model_validator(mode="after")
    def _something_to_watch(self) -> SiteConfig:
        if not self.hosts and not self.zigbee2mqtt:
            raise ValueError("hosts: a site needs at least one host or zigbee2mqtt bridge")
        if self.remote is not None and self.uplink is None:
            raise ValueError("remote: remote commands come through the uplink's broker; configure uplink")
        if self.zigbee2mqtt and self.device_broker is None:
            raise ValueError("device_broker: required to reach zigbee2mqtt")
        hubs = [h for h in self.hosts if h.sia is not None]
        if hubs and self.sia_receiver is None:
            raise ValueError(
                f"sia_receiver: required for the SIA DC-09 hub {hubs[0].id!r} (bind and port to listen on)"
            )
        if self.sia_receiver is not None and not hubs:
            raise ValueError("sia_receiver: no host is reached over SIA DC-09 (hosts[].sia)")
        if self.sia_receiver is not None and not (self.sia_receiver.tcp or self.sia_receiver.udp):
            raise ValueError("sia_receiver: tcp and udp are both off; the hubs could not reach the gateway")
        accounts: dict[str, str] = {}
        for h in hubs:
            assert h.sia is not None
            account = h.sia.account.upper()
            if account in accounts:
                raise ValueError(f"hosts.{h.id}.sia.account: {h.sia.account!r} already names hub {accounts[account]!r}")
            accounts[account] = h.id
        bases: dict[str, int] = {}
        for zi, z in enumerate(self.zigbee2mqtt):
            base = z.base_topic.rstrip("/")
            if base in bases:
                raise ValueError(f"zigbee2mqtt[{zi}].base_topic: {base!r} already used by zigbee2mqtt[{bases[base]}]")
            bases[base] = zi
            names = [d.friendly_name for d in z.devices]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise ValueError(f"zigbee2mqtt[{zi}].devices: friendly name {dup!r} given twice")
        return self

    @model_validator(mode="after")
    def _topology(self) -> SiteConfig:
        seen: dict[str, str] = {}
        buses = {}
        for bi, bus in enumerate(self.buses):
            if bus.id in seen:
                raise ValueError(f"buses[{bi}].id: {bus.id!r} already used by {seen[bus.id]}")
            seen[bus.id] = f"buses[{bi}]"
            buses[bus.id] = bus
        for zi, z in enumerate(self.zigbee2mqtt):
            for key, ident in [("id", z.id)] + [(f"devices[{di}].id", d.id) for di, d in enumerate(z.devices)]:
                if ident in seen:
                    raise ValueError(f"zigbee2mqtt[{zi}].{key}: {ident!r} already used by {seen[ident]}")
                seen[ident] = f"zigbee2mqtt[{zi}]"
        units: dict[tuple[str, int], str] = {}
        modules: dict[tuple[str, int], str] = {}  # an Envisalink takes one session at a time
        tcp_units: dict[tuple[str, int, int], str] = {}  # hosts behind one Modbus TCP gateway share it
        for hi, host in enumerate(self.hosts):
            if host.bus is not None:
                key = "rtu" if host.rtu else "it100"
                on = buses.get(host.bus)
                want = "modbus_rtu" if host.rtu else "it100"
                if on is None:
                    raise ValueError(f"hosts[{hi}].{key}.bus: no bus {host.bus!r} under buses")
                if on.protocol != want:
                    raise ValueError(f"hosts[{hi}].{key}.bus: bus {host.bus!r} speaks {on.protocol}, not {want}")
                unit = host.rtu.unit if host.rtu else 0
                if (host.bus, unit) in units:
                    what = f"unit {unit}" if host.rtu else "an IT-100 host"
                    raise ValueError(
                        f"hosts[{hi}].{key}: bus {host.bus!r} already has {what} ({units[(host.bus, unit)]})"
                    )
                units[(host.bus, unit)] = host.id
            where = f"hosts[{hi}]"
            if host.envisalink is not None:
                module = (host.envisalink.address.lower(), host.envisalink.port)
                if module in modules:
                    raise ValueError(
                        f"{where}.envisalink: {module[0]}:{module[1]} already serves host {modules[module]!r}"
                    )
                modules[module] = host.id
            if host.modbus is not None:
                mb = host.modbus
                taken = (*mb.where, mb.unit)
                if taken in tcp_units:
                    raise ValueError(
                        f"{where}.modbus.unit: {mb.address}:{mb.port} already has unit {mb.unit} "
                        f"({tcp_units[taken]}); hosts behind one Modbus TCP gateway need their own unit ids"
                    )
                tcp_units[taken] = host.id
            if host.id in seen:
                raise ValueError(f"{where}.id: {host.id!r} already used by {seen[host.id]}")
            seen[host.id] = where
            places: dict[int, str] = {}
            place = "zone" if host.zoned else "slot"
            kinds = {d.id: d.kind for d in host.devices}
            for di, dev in enumerate(host.devices):
                dwhere = f"{where}.devices[{di}]"
                if dev.id in seen:
                    raise ValueError(f"{dwhere}.id: {dev.id!r} already used by {seen[dev.id]}")
                seen[dev.id] = dwhere
                number = getattr(dev, place)
                if number in places:
                    raise ValueError(f"{dwhere}.{place}: {place} {number} already used by {places[number]}")
                places[number] = dev.id
            for di, dev in enumerate(host.devices):
                if dev.parent is None or dev.parent == host.id:
                    continue
                if kinds.get(dev.parent) is not DeviceKind.REPEATER:
                    raise ValueError(
                        f"{where}.devices[{di}].parent: {dev.parent!r} is not a repeater on host {host.id!r}"
                    )
        return self

    def supervision(self) -> dict[str, float | None]:
        out = dict(DEFAULT_SUPERVISION_S)
        out.update({k.value: v for k, v in self.supervision_s.items()})
        return out

    def asset_register(self) -> list[Asset]:
        """Every device's warranty and rated life (buses are wiring, not equipment)."""
        own: dict[str, int | None] = {}
        for h in self.hosts:
            own[h.id] = h.warranty_months
            own.update({d.id: d.warranty_months or h.warranty_months for d in h.devices})
        for z in self.zigbee2mqtt:
            own.update({zd.id: zd.warranty_months for zd in z.devices})
        a = self.assets
        return [
            asset(
                d.id,
                d.kind.value,
                d.commissioned_on,
                maker_warranty_months=own.get(d.id) or a.warranty_months.get(d.kind),
                rated_life_years=a.rated_life_years.get(d.kind, RATED_LIFE_YEARS),
            )
            for d in self.devices()
            if d.kind is not DeviceKind.BUS
        ]

    def devices(self) -> list[Device]:
        """Every device of the site in the common model: buses, then each host and its devices."""
        out = [Device(b.id, DeviceKind.BUS, b.id, None, str(b.port), b.protocol) for b in self.buses]
        for h in self.hosts:
            commissioned = h.commissioned_on or self.site.commissioned_on
            out.append(Device(h.id, DeviceKind.HOST, h.id, h.bus, h.location, h.model, commissioned))
            for d in h.devices:
                out.append(
                    Device(
                        d.id,
                        d.kind,
                        h.id,
                        d.parent or h.id,
                        d.location,
                        d.model or h.model,
                        d.commissioned_on or h.commissioned_on or self.site.commissioned_on,
                    )
                )
        for z in self.zigbee2mqtt:
            out.append(Device(z.id, DeviceKind.HOST, z.id, None, z.location, "zigbee2mqtt", self.site.commissioned_on))
            for zd in z.devices:
                out.append(
                    Device(
                        zd.id,
                        zd.kind,
                        z.id,
                        z.id,
                        zd.location,
                        zd.model,
                        zd.commissioned_on or self.site.commissioned_on,
                    )
                )
        return out
