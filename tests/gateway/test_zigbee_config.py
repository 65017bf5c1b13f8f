"""The Zigbee2MQTT part of the site file: supervision windows and their bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarmgw.gateway.site_file import load_site
from alarmgw.yamlfile import ConfigError

SITE = """\
site: {{id: z-site}}
device_broker: {{host: 127.0.0.1}}
zigbee2mqtt:
  - {{id: zb, {extra}}}
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(extra=extra))
    return path


def test_the_windows_default_to_zigbee2mqtts_own_and_a_few_minutes(tmp_path: Path) -> None:
    (z,) = load_site(write(tmp_path, "base_topic: zigbee2mqtt")).config.zigbee2mqtt
    assert (z.supervision_s, z.bridge_supervision_s) == (25 * 3600, 240)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("supervision_s: 0", "zigbee2mqtt[0].supervision_s: Input should be greater than 0"),
        ("supervision_s: 700000", "zigbee2mqtt[0].supervision_s: Input should be less than or equal to 604800"),
        ("supervision_s: true", "zigbee2mqtt[0].supervision_s: a number is needed, not true"),
        ("bridge_supervision_s: -1", "zigbee2mqtt[0].bridge_supervision_s: Input should be greater than 0"),
        ("bridge_supervision_s: 90000", "bridge_supervision_s: Input should be less than or equal to 86400"),
        ("bridge_supervision_s: .inf", "bridge_supervision_s: Input should be a finite number"),
    ],
)
def test_windows_out_of_bounds_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_site(write(tmp_path, extra))
    assert message in str(err.value)


def test_two_bridges_on_one_base_topic_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(extra="base_topic: z2m") + "  - {id: zb2, base_topic: z2m/}\n")
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert "zigbee2mqtt[1].base_topic: 'z2m' already used by zigbee2mqtt[0]" in str(err.value)
