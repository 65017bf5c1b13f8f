"""Site-file validation: each mistake named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarmgw.gateway.config import load_site
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
    ("  - {id: h1, model: sim-wh100}\n", "give exactly one of modbus, rtu, it100 (given: none)"),
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
