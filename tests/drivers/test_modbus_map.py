"""Register decoding against the reference profile, from hand-written register tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.drivers.modbus_map import (
    MODBUS_MAX_READ_REGISTERS,
    compile_layout,
    decode_slot,
    encode_slot,
    load_profile,
    plan_reads,
)
from alarmgw.model import DeviceKind
from alarmgw.yamlfile import ConfigError

PROFILE = load_profile(Path(__file__).parents[2] / "config/profiles/sim-wh100.yaml")
DETECTOR = compile_layout(PROFILE.layout_for(DeviceKind.SMOKE_DETECTOR), PROFILE.slot_registers)
HOST = compile_layout(PROFILE.layout_for(DeviceKind.HOST), PROFILE.slot_registers)

# (slot words as the reference map documents them, expected fields)
DETECTOR_VECTORS = [
    # present, battery 3.012 V, -67 dBm (0xFFBD), heard 12 s ago, chamber 23.5 %, 4 RF errors
    (
        [0x0001, 3012, 0xFFBD, 12, 235, 0, 4, 0],
        {
            "present": True,
            "tamper": False,
            "battery_low": False,
            "battery_v": 3.012,
            "rssi_dbm": -67,
            "link_age_s": 12,
            "contamination_pct": 23.5,
            "rf_errors": 4,
        },
    ),
    # present + tamper (bit 1) + battery low (bit 2): 0b111; 2.41 V; -98 dBm; link age saturated
    (
        [0x0007, 2410, 0xFF9E, 0xFFFF, 0, 0, 0, 0],
        {"present": True, "tamper": True, "battery_low": True, "battery_v": 2.41, "rssi_dbm": -98, "link_age_s": 65535},
    ),
    # sensor fault (bit 5), fire trouble (bit 6), alarm (bit 7): 0xE1
    (
        [0x00E1, 3000, 0xFFC4, 0, 0, 0, 0, 0],
        {"sensor_fault": True, "fire_trouble": True, "alarm": True, "jamming": False, "mains_fail": False},
    ),
]


@pytest.mark.parametrize(("words", "expected"), DETECTOR_VECTORS)
def test_detector_slot_decodes_to_documented_fields(words: list[int], expected: dict[str, object]) -> None:
    got = decode_slot(DETECTOR, words)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_host_slot_has_host_fields_only() -> None:
    # mains fail (bit 3) + battery missing (bit 8) = 0x0109, standby battery 11.8 V
    got = decode_slot(HOST, [0x0109, 11800, 0, 0, 0, 0, 77, 0])
    assert got["mains_fail"] is True
    assert got["battery_missing"] is True
    assert got["tamper"] is False
    assert got["battery_v"] == pytest.approx(11.8)
    assert got["rf_errors"] == 77
    assert "rssi_dbm" not in got


def test_slot_inside_a_block_is_found_by_its_offset() -> None:
    block = [0] * 8 + DETECTOR_VECTORS[0][0] + [0] * 8
    assert decode_slot(DETECTOR, block, 8)["battery_v"] == pytest.approx(3.012)


def test_short_block_is_an_error_not_garbage() -> None:
    with pytest.raises(ValueError, match="needs 8 registers"):
        decode_slot(DETECTOR, [1, 2, 3], 0)


@pytest.mark.parametrize(("words", "_"), DETECTOR_VECTORS)
def test_encode_is_the_inverse_of_decode(words: list[int], _: object) -> None:
    assert encode_slot(DETECTOR, decode_slot(DETECTOR, words)) == [
        w if i not in (5, 7) else 0 for i, w in enumerate(words)
    ]


def test_encode_saturates_instead_of_wrapping() -> None:
    words = encode_slot(DETECTOR, {"link_age_s": 1e9, "rssi_dbm": -40000, "battery_v": -1})
    assert words[3] == 0xFFFF
    assert words[2] == 0x8000
    assert words[1] == 0


def test_adjacent_slots_merge_into_one_read() -> None:
    reads = plan_reads([("a", 8), ("b", 16), ("c", 24)], 8, 120, 16)
    assert [(r.address, r.count) for r in reads] == [(8, 24)]
    assert reads[0].members == (("a", 0), ("b", 8), ("c", 16))


def test_far_slots_and_full_blocks_split() -> None:
    reads = plan_reads([("a", 0), ("b", 200)], 8, 120, 16)
    assert [(r.address, r.count) for r in reads] == [(0, 8), (200, 8)]
    many = plan_reads([(str(i), i * 8) for i in range(40)], 8, 120, 16)
    assert [r.count for r in many] == [120, 120, 80]


@given(
    addrs=st.sets(st.integers(0, 400), min_size=1, max_size=60).map(sorted),
    size=st.integers(1, 16),
    limit=st.integers(16, MODBUS_MAX_READ_REGISTERS),
    gap=st.integers(0, 32),
)
def test_plan_covers_every_slot_within_limits(addrs: list[int], size: int, limit: int, gap: int) -> None:
    slots = [(f"d{a}", a * size) for a in addrs]
    reads = plan_reads(slots, size, limit, gap)
    covered = {}
    for r in reads:
        assert r.count <= limit
        for key, off in r.members:
            assert off >= 0 and off + size <= r.count
            covered[key] = r.address + off
    assert covered == dict(slots)


def test_profile_with_unknown_field_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nslot_registers: 4\nlayouts:\n  default:\n    fields:\n      batery_v: {offset: 1, type: u16}\n"
    )
    with pytest.raises(ConfigError, match="unknown field 'batery_v'"):
        load_profile(bad)


def test_profile_field_outside_slot_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nslot_registers: 4\nlayouts:\n  default:\n    fields:\n      battery_v: {offset: 4}\n")
    with pytest.raises(ConfigError, match="outside the 4-register slot"):
        load_profile(bad)
