"""Site-file validation: each mistake named by its key path; brokers' TLS and passwords."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.gateway.site_file import load_site
from alarmgw.yamlfile import ConfigError

HEAD = (
    "site: {id: s1}\nbuses:\n  - {id: b1, port: ttyB1, protocol: modbus_rtu}\n"
    "  - {id: b2, port: ttyB2, protocol: it100}\nhosts:\n"
)

CASES = [
    ("  - {id: h1, model: sim-wh100, rtu: {bus: b9, unit: 1}}\n", "hosts[0].rtu.bus: no bus 'b9' under buses"),
    ("  - {id: h1, model: sim-wh100, rtu: {bus: b2, unit: 1}}\n", "bus 'b2' speaks it100, not modbus_rtu"),
    (
        "  - {id: h1, model: sim-wh100, rtu: {bus: b1, unit: 1}}\n"
        "  - {id: h2, model: sim-wh100, rtu: {bus: b1, unit: 1}}\n",
        "hosts[1].rtu: bus 'b1' already has unit 1 (h1)",
    ),
    ("  - {id: h1, model: sim-wh100}\n", "give exactly one of modbus, rtu, it100, envisalink, sia (given: none)"),
    ("  - {id: h1, it100: {bus: b2}, devices: [{id: d1, kind: pir_detector, slot: 1}]}\n", "devices[0].zone: required"),
    (
        "  - {id: h1, it100: {bus: b2}, devices: [{id: d1, kind: pir_detector, zone: 1}, "
        "{id: d2, kind: pir_detector, zone: 1}]}\n",
        "hosts[0].devices[1].zone: zone 1 already used by d1",
    ),
    ("  - {id: h1, rtu: {bus: b1, unit: 1}}\n", "model: a Modbus host needs the name of its register profile"),
]


@pytest.mark.parametrize(("hosts", "message"), CASES)
def test_serial_mistakes_are_named(tmp_path: Path, hosts: str, message: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(HEAD + hosts)
    with pytest.raises(ConfigError) as err:
        load_site(f)
    assert message in str(err.value)


def test_bus_ports_are_taken_from_the_site_folder_and_hosts_hang_off_their_bus(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(HEAD + "  - {id: h1, it100: {bus: b2}, devices: [{id: d1, kind: pir_detector, zone: 3}]}\n")
    site = load_site(f)
    assert site.bus_ports["b1"] == tmp_path / "ttyB1"
    devices = {d.id: d for d in site.config.devices()}
    assert devices["h1"].parent == "b2" and devices["b2"].kind == "bus" and devices["d1"].parent == "h1"


def test_missing_tls_file_is_a_config_error_not_plaintext(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(
        HEAD
        + "  - {id: h1, model: sim-wh100, rtu: {bus: b1, unit: 1}}\n"
        + "uplink:\n  broker: {host: centre.example, port: 8883, tls: {ca_file: certs/ca.pem}}\n"
    )
    with pytest.raises(ConfigError, match=r"uplink.broker.tls.ca_file: no such file .*certs/ca.pem"):
        load_site(f)


HOST = "  - {id: h1, model: sim-wh100, rtu: {bus: b1, unit: 1}}\n"
GOOD_HASH = "0" * 64

OUTPUT_CASES = [
    ("http: {tokens_file: api-tokens.yaml}\n", None, "http.tokens_file: no such file"),
    ("http: {port: 0, tokens_file: t.yaml}\n", f"tokens:\n  a: {{role: viewer, sha256: {GOOD_HASH}}}\n", "http.port"),
    ("http: {tokens_file: t.yaml}\n", "tokens:\n  a: {role: boss, sha256: abc}\n", "tokens.a.role"),
    ("http: {tokens_file: t.yaml}\n", "tokens:\n  a: {role: viewer, sha256: abc}\n", "tokens.a.sha256"),
    ("http: {tokens_file: t.yaml, bind: 0.0.0.0, open: yes}\n", None, "http.open: unknown key"),
    ("influxdb: {url: 'localhost:8086', bucket: b}\n", None, "influxdb.url"),
    ("influxdb: {url: 'http://127.0.0.1:8086'}\n", None, "influxdb.bucket"),
    ("influxdb: {url: 'http://127.0.0.1:8086', bucket: b, buffer_max: 5}\n", None, "influxdb.buffer_max"),
    ("influxdb: {url: 'http://127.0.0.1:8086', bucket: b, token_file: no.token}\n", None, "influxdb.token_file"),
]


@pytest.mark.parametrize(("extra", "tokens", "message"), OUTPUT_CASES)
def test_api_and_telemetry_mistakes_are_named(tmp_path: Path, extra: str, tokens: str | None, message: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(HEAD + HOST + extra)
    if tokens is not None:
        (tmp_path / "t.yaml").write_text(tokens)
    with pytest.raises(ConfigError) as err:
        load_site(f)
    assert message in str(err.value)


# --- brokers: TLS and passwords (issue 11, items 1 and 9) ---------------------------------


def site_with_broker(tmp_path: Path, broker: str, **files: str | bytes) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    f = tmp_path / "site.yaml"
    f.write_text(HEAD + HOST + "uplink:\n  broker: {host: centre.example, port: 8883" + broker + "}\n")
    return f


@pytest.mark.parametrize("tls", ["tls: {}", "tls: {ca_file: ca.pem}"])
def test_tls_present_means_a_verifying_hostname_checking_context(tmp_path: Path, tls: str) -> None:
    from tests.broker import make_ca_and_server_cert

    make_ca_and_server_cert(tmp_path, "ca")  # ca.pem, used by the second case
    spec = load_site(site_with_broker(tmp_path, ", " + tls)).uplink_broker
    assert spec is not None and spec.uses_tls
    ctx = spec.tls_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_no_tls_key_is_plaintext(tmp_path: Path) -> None:
    spec = load_site(site_with_broker(tmp_path, "")).uplink_broker
    assert spec is not None and not spec.uses_tls and spec.tls_context() is None


def test_a_client_key_without_its_certificate_is_a_config_error(tmp_path: Path) -> None:
    f = site_with_broker(tmp_path, ", tls: {key_file: client.key}", **{"client.key": "key\n"})
    with pytest.raises(ConfigError, match=r"uplink\.broker\.tls\.key_file: a client key needs its certificate"):
        load_site(f)
    with pytest.raises(ValueError, match="needs its certificate"):
        BrokerSpec("centre.example", key_file=tmp_path / "client.key")


def test_an_encrypted_client_key_is_refused_at_load_not_prompted_for(tmp_path: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=site", "-passout", "pass:secret")  # fmt: skip
    f = site_with_broker(tmp_path, ", tls: {cert_file: client.pem, key_file: client.key}")
    with pytest.raises(ConfigError, match=r"uplink\.broker\.tls: .*encrypted"):
        load_site(f)


def test_broker_passwords_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "uplink.pw").write_text("  s3cret with spaces\n")
    (tmp_path / "devices.pw").write_text("local-pass\n")
    f = tmp_path / "site.yaml"
    f.write_text(
        HEAD
        + HOST
        + "device_broker: {host: 127.0.0.1, username: gw, password_file: devices.pw}\n"
        + "uplink:\n  broker: {host: centre.example, username: site-07, password_file: uplink.pw}\n"
    )
    site = load_site(f)
    assert site.uplink_broker is not None and site.uplink_broker.password == "s3cret with spaces"
    assert site.device_broker is not None and site.device_broker.password == "local-pass"


@pytest.mark.parametrize(
    ("broker", "files", "message"),
    [
        (", password: a, password_file: pw", {"pw": "b\n"}, "uplink.broker.password_file: give either password or"),
        (", password_file: pw", {}, "uplink.broker.password_file: no such file"),
        (", password_file: pw", {"pw": "\n"}, "uplink.broker.password_file: .*pw is empty"),
        (", password_file: pw", {"pw": b"\xff\xfe"}, "uplink.broker.password_file: .*not UTF-8"),
        (", password_file: pw", {"pw": "x" * 70_000}, "uplink.broker.password_file: .*larger than 64 KiB"),
    ],
)
def test_password_file_mistakes_name_the_key(tmp_path: Path, broker: str, files: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_site(site_with_broker(tmp_path, broker, **files))


# --- what `run` refuses, loading refuses (issue 11, item 7) -------------------------------

SITE = HEAD + HOST


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("faults_file: nope.yaml\n", "faults_file: no such file"),
        ("profiles_dir: site.yaml\n", "profiles_dir: .*site.yaml: is a file, not a folder"),
        ("profiles_dir: profiles\n", "profiles_dir: .*profiles: no such folder"),
        ("store: {path: .}\n", "store.path: .* is a folder"),
        ("poll: {backoff_initial_s: 120, backoff_max_s: 60}\n", "poll.backoff_initial_s: 120 is more than"),
    ],
)
def test_what_run_would_refuse_is_refused_at_load(tmp_path: Path, extra: str, message: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(SITE + extra)
    with pytest.raises(ConfigError, match=message):
        load_site(f)


def test_the_fault_table_is_loaded_and_compiled_with_the_site(tmp_path: Path) -> None:
    (tmp_path / "faults.yaml").write_text(
        "faults:\n  weak:\n    title: weak\n    repair: accessory\n    codes: {}\n"
        "    when: [{field: battery_v, below: {smoke_detector: 2.5, default: supervison}}]\n"
    )
    f = tmp_path / "site.yaml"
    f.write_text(SITE + "faults_file: faults.yaml\n")
    with pytest.raises(ConfigError, match=r"faults\.weak: threshold 'supervison' is neither") as err:
        load_site(f)
    assert err.value.path == str(tmp_path / "faults.yaml")
    (tmp_path / "faults.yaml").write_text((tmp_path / "faults.yaml").read_text().replace("supervison", "supervision"))
    assert set(load_site(f).fault_table.faults) == {"weak"}


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("poll: {interval_s: .inf}\n", "poll.interval_s"),
        ("poll: {timeout_s: .inf}\n", "poll.timeout_s"),
        ("poll: {timeout_s: 3600}\n", "poll.timeout_s"),
        ("poll: {backoff_max_s: .nan}\n", "poll.backoff_max_s"),
        ("history: {interval_s: -.inf}\n", "history.interval_s"),
        ("supervision_s: {repeater: 1.0e300}\n", "supervision_s.repeater"),
        ("escalation: {marks: {repair: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}}\n",
         "escalation.marks.repair"),
        ("influxdb: {url: 'http://x', bucket: b, timeout_s: .inf}\n", "influxdb.timeout_s"),
        ("influxdb: {url: 'http://x', bucket: b, flush_interval_s: 0.0001}\n", "influxdb.flush_interval_s"),
        ("zigbee2mqtt: [{id: zb, interval_s: .inf}]\ndevice_broker: {host: 127.0.0.1}\n", "zigbee2mqtt[0].interval_s"),
    ],
)  # fmt: skip
def test_non_finite_and_absurd_numbers_are_refused(tmp_path: Path, extra: str, key: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(SITE + extra)
    with pytest.raises(ConfigError) as err:
        load_site(f)
    assert any(p.startswith(key + ":") for p in err.value.problems), err.value.problems


def test_the_shipped_site_files_are_within_every_bound() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    for name in ("example-site.yaml", "demo-site.yaml"):
        assert load_site(root / name).config.site.id


def test_numbers_written_as_yaml_calls_them_text_still_read_as_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e1` and `"0.5"` as text; they were numbers before the bounds came
    and stay numbers (only true/false are refused where a number belongs)."""
    f = tmp_path / "site.yaml"
    f.write_text(SITE + "poll: {interval_s: 1e1, timeout_s: '0.5', retries: '2'}\n")
    poll = load_site(f).config.poll
    assert (poll.interval_s, poll.timeout_s, poll.retries) == (10.0, 0.5, 2)
