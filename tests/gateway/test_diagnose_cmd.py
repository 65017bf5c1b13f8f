"""`alarmgw diagnose`: the diagnosis from an exported JSON Lines history, and every kind of bad
input refused with the file and line named, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alarmgw.gateway.diagnose_cmd import MAX_HISTORY_BYTES, MAX_LINE_CHARS, add_arguments, run

T0 = datetime(2026, 10, 19, 9, tzinfo=UTC)


def diagnose(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="alarmgw diagnose")
    add_arguments(parser)
    out = io.StringIO()
    return run(parser.parse_args(argv), out), out.getvalue()


def worn_history(path: Path) -> Path:
    """Two weeks of hourly readings of a detector whose battery falls 20 mV a week."""
    lines = []
    for i in range(14 * 24 + 1):
        at = (T0 + timedelta(hours=i)).isoformat().replace("+00:00", "Z")
        volts = round(2.45 - 0.020 * i / (7 * 24) + (0.001 if i % 2 else -0.001), 3)
        lines.append(json.dumps({"at": at, "battery_v": volts, "rssi_dbm": -71 + (i % 3) - 1, "battery_low": True}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_human_output_names_cause_fix_part_repair_confidence_and_evidence(tmp_path: Path) -> None:
    code, out = diagnose("--history", str(worn_history(tmp_path / "h.jsonl")), "--fault", "low_battery")
    assert code == 0
    assert out.splitlines()[:5] == [
        "cause:      battery worn out by normal use",
        "fix:        replace the battery (2.41 V, falling 0.020 V a week)",
        "part:       battery (CR123A or the model's own)",
        "repair:     accessory: 1 day after arrival",
        "confidence: high",
    ]
    assert "  - battery falling 0.020 V a week over 14.0 days" in out


def test_json_output_is_the_ticket_diagnosis(tmp_path: Path) -> None:
    code, out = diagnose("--history", str(worn_history(tmp_path / "h.jsonl")), "--fault", "low_battery", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["cause"] == "battery worn out by normal use" and doc["confidence"] == "high"
    assert doc["evidence"]["battery_drop_v_per_week"] == pytest.approx(0.02, abs=0.001) and doc["findings"]


def test_parent_lost_and_device_kind_reach_the_diagnosis(tmp_path: Path) -> None:
    h = worn_history(tmp_path / "h.jsonl")
    _, out = diagnose("--history", str(h), "--fault", "comm_loss", "--parent-lost", "--json")
    assert json.loads(out)["cause"] == "the repeater or host it reaches the panel through is down"
    _, out = diagnose("--history", str(h), "--fault", "comm_loss", "--device-kind", "host", "--json")
    assert json.loads(out)["cause"] == "device battery ran flat"  # 2.41 V is flat for any kind


def test_a_short_export_says_not_enough_history(tmp_path: Path) -> None:
    # The reported defect: two readings seconds apart gave "falling 36,937 V a week".
    h = tmp_path / "h.jsonl"
    h.write_text(
        '{"at": "2026-11-02T09:00:00Z", "battery_v": 2.93}\n{"at": "2026-11-02T09:00:05Z", "battery_v": 2.41}\n'
    )
    code, out = diagnose("--history", str(h), "--fault", "low_battery")
    assert code == 0 and "falling" not in out and "a week" not in out
    assert "not enough history for a battery trend: 5 s" in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "--history {f}: no such file"),
        ('{"at": "2026-11-02T09:00:00Z"}\n{"at": oops}\n', (), "{f} line 2: not JSON"),
        ('{"battery_v": 2.9}\n', (), "{f} line 1: no `at`"),
        ('{"at": "yesterday", "battery_v": 2.9}\n', (), "{f} line 1: `at` 'yesterday' is not an ISO 8601 time"),
        ('{"at": "2026-11-02T09:00:00", "battery_v": 2.9}\n', (), "{f} line 1: `at` '2026-11-02T09:00:00' has no zone"),
        ('\n{"at": "2026-11-02T09:00:00Z", "battery_v": "2.9"}\n', (), "{f} line 2: field 'battery_v' is \"2.9\""),
        ('{"at": "2026-11-02T09:00:00Z", "battery_v": NaN}\n', (), "{f} line 1: not JSON (NaN is not a number"),
        ("[1, 2]\n", (), "{f} line 1: not a JSON object"),
        ("# nothing\n\n", (), "{f}: no readings in the file"),
        ('{"at": "2026-11-02T09:00:00Z"}\n', ("--fault", "low_batery"), "--fault 'low_batery': unknown fault"),
        ('{"at": "2026-11-02T09:00:00Z"}\n', ("--device-kind", "toaster"), "--device-kind 'toaster': unknown"),
        ("x" * (MAX_LINE_CHARS + 1), (), f"{{f}} line 1: longer than {MAX_LINE_CHARS} characters"),
        (b"\xff\xfe", (), "{f}: history is not UTF-8 text"),
    ],
)
def test_bad_input_is_refused_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, args: tuple[str, ...], message: str
) -> None:
    f = tmp_path / "h.jsonl"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    fault = () if "--fault" in args else ("--fault", "low_battery")
    code, out = diagnose("--history", str(f), *fault, *args)
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message.format(f=f) in " ".join(err.split()), err
    assert "Traceback" not in err


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.jsonl"
    with f.open("wb") as fh:
        fh.truncate(MAX_HISTORY_BYTES + 1)  # sparse: no time or disk spent writing it
    code, _ = diagnose("--history", str(f), "--fault", "low_battery")
    assert code == 2 and "history is larger than" in capsys.readouterr().err


def test_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = diagnose("--history", str(tmp_path), "--fault", "low_battery")
    assert code == 2 and "is a folder" in capsys.readouterr().err
