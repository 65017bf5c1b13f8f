"""Secrets and records stay the gateway user's: a new store is created 0600 (its -wal and -shm
too), the shipped unit creates every file private, and the gateway says at start which secret
files others can read."""

from __future__ import annotations

import configparser
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alarmgw.gateway.permissions import warnings
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.store import Store
from tests.conftest import http_extra, write_site

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_and_its_journal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tickets.db"
    with Store(path) as store:
        store.history.add([("smoke-1", datetime(2026, 3, 2, tzinfo=UTC), {"battery_v": 2.9})])
        made = [p for p in (path, path.with_name("tickets.db-wal"), path.with_name("tickets.db-shm")) if p.exists()]
        assert len(made) == 3
        assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}


def test_an_existing_store_readable_by_others_is_said_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tickets.db"
    Store(path).close()
    path.chmod(0o644)
    Store(path).close()
    assert "can be read by other users" in caplog.text
    assert mode(path) == 0o644  # the operator's choice is left as it is


def test_the_unit_creates_private_files() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "deploy" / "alarmgw.service")
    assert unit["Service"]["UMask"] == "0077"
    assert unit["Service"]["StateDirectoryMode"] == "0700"


def test_secret_files_others_can_read_are_named_at_start(tmp_path: Path) -> None:
    extra = http_extra(tmp_path) + (
        "uplink: {broker: {host: 127.0.0.1, port: 1883, username: site-7, password: not-in-here-please}}\n"
    )
    site_file = write_site(tmp_path, 1502, extra=extra)
    tokens = tmp_path / "api-tokens.yaml"
    tokens.chmod(0o644)
    site_file.chmod(0o640)
    found = warnings(load_site(site_file))
    assert len(found) == 2
    assert found[0].startswith(f"http.tokens_file: {tokens} holds a secret and anyone on the box can read it")
    assert "uplink.broker.password is written in it" in found[1] and "its group can read it" in found[1]
    tokens.chmod(0o600)
    site_file.chmod(0o600)
    assert warnings(load_site(site_file)) == []


def test_an_envisalink_password_file_others_can_read_is_named(tmp_path: Path) -> None:
    extra = (
        "  - id: evl-1\n    envisalink: {address: 127.0.0.1, password_file: evl.password}\n"
        "    devices:\n      - {id: zone-1, kind: pir_detector, zone: 1}\n"
    )
    site_file = write_site(tmp_path, 1502, extra=extra)
    password = tmp_path / "evl.password"
    password.write_text("user\n")
    password.chmod(0o640)
    site_file.chmod(0o600)
    (found,) = warnings(load_site(site_file))
    assert found.startswith(f"hosts[1].envisalink.password_file: {password} holds a secret and its group can read it")
    password.chmod(0o600)
    assert warnings(load_site(site_file)) == []


def test_an_sia_hub_key_file_others_can_read_is_named(tmp_path: Path) -> None:
    extra = (
        "  - id: hub-1\n    sia: {account: 1234AB, key_file: hub.key}\n"
        "    devices:\n      - {id: zone-1, kind: pir_detector, zone: 1}\n"
        "sia_receiver: {bind: 127.0.0.1, port: 12128}\n"
    )
    site_file = write_site(tmp_path, 1502, extra=extra)
    key = tmp_path / "hub.key"
    key.write_text("0123456789ABCDEF0123456789ABCDEF\n")
    key.chmod(0o644)
    site_file.chmod(0o600)
    (found,) = warnings(load_site(site_file))
    assert found.startswith(f"hosts[1].sia.key_file: {key} holds a secret and anyone on the box can read it")
    key.chmod(0o600)
    assert warnings(load_site(site_file)) == []
