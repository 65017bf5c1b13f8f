"""`alarmgw diagnose`: the remote diagnosis, offline, from an exported history.

The history is JSON Lines, one reading a line, oldest or newest first:
`{"at": "2026-11-02T09:00:00Z", "battery_v": 2.93, "rssi_dbm": -71}`. Blank lines and lines
starting with `#` are skipped. Exit codes as the rest of the command: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape

from alarmgw.clock import parse_iso
from alarmgw.diagnostics.diagnosis import MAX_SAMPLES, Diagnosis, Sample, diagnose, load_causes
from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.model import DeviceKind
from alarmgw.yamlfile import ConfigError, read_text

MAX_HISTORY_BYTES = 16 * 1024 * 1024  # 30 days at one reading per 300 s is about 1 MiB
MAX_LINE_CHARS = 4096  # a reading is a few dozen fields; a longer line is not a reading
MAX_LINES = MAX_SAMPLES  # the diagnosis looks at no more readings than this


class HistoryError(Exception):
    """The history file cannot be used; the message names the file and the line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options, on the parser the CLI made for it."""
    parser.add_argument(
        "--history", required=True, type=Path, metavar="FILE", help="JSON Lines: one reading a line, with `at`"
    )
    parser.add_argument(
        "--fault", required=True, metavar="FAULT", help="the fault to explain, e.g. low_battery, comm_loss"
    )
    parser.add_argument(
        "--device-kind", metavar="KIND", help="the device's kind, e.g. smoke_detector (sets what a flat battery is)"
    )
    parser.add_argument(
        "--parent-lost", action="store_true", help="the repeater or host the device talks through is in comm loss"
    )
    parser.add_argument("--json", action="store_true", help="print the diagnosis as a JSON object")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Diagnose `--fault` from `--history`; 0 done, 2 bad input (reported on stderr)."""
    try:
        kind = _kind(args.device_kind)
        fault = _fault(args.fault)
        history = read_history(args.history)
    except HistoryError as exc:
        Console(stderr=True).print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    found = diagnose(load_causes(), fault, history, parent_lost=args.parent_lost, device_kind=kind)
    if args.json:
        print(json.dumps(found.as_dict(), indent=2, ensure_ascii=False), file=out)
    else:
        show(found, out)
    return 0


def show(d: Diagnosis, out: TextIO) -> None:
    """The diagnosis for a person: what, what to do, with what, how sure, and why."""
    repair = "accessory: 1 day after arrival" if d.repair == "accessory" else "equipment: 3 days after arrival"
    print(f"cause:      {d.cause}", file=out)
    print(f"fix:        {d.fix}", file=out)
    print(f"part:       {d.part}", file=out)
    print(f"repair:     {repair}", file=out)
    print(f"confidence: {d.confidence}", file=out)
    print("evidence:", file=out)
    for finding in d.findings:
        print(f"  - {finding}", file=out)


def read_history(path: Path) -> list[Sample]:
    """The readings of a JSON Lines history, or HistoryError naming the file and line."""
    if not path.exists():
        raise HistoryError(f"--history {path}: no such file")
    try:
        text = read_text(path, max_bytes=MAX_HISTORY_BYTES, what="history")
    except ConfigError as exc:
        raise HistoryError(f"--history {path}: {'; '.join(exc.problems)}") from None
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(samples) >= MAX_LINES:
            raise HistoryError(f"{path} line {number}: more than {MAX_LINES:,} readings; export a shorter span")
        samples.append(_reading(line, f"{path} line {number}"))
    if not samples:
        raise HistoryError(f"{path}: no readings in the file")
    return samples


def _reading(line: str, where: str) -> Sample:
    if len(line) > MAX_LINE_CHARS:
        raise HistoryError(f"{where}: longer than {MAX_LINE_CHARS} characters; not a reading")
    try:
        doc = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise HistoryError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise HistoryError(f"{where}: not a JSON object")
    at = doc.pop("at", None)
    if not isinstance(at, str):
        raise HistoryError(f"{where}: no `at` (an ISO 8601 UTC time, e.g. 2026-11-02T09:00:00Z)")
    values: dict[str, float | int | bool] = {}
    for name, v in doc.items():
        if isinstance(v, bool) or (isinstance(v, int | float) and math.isfinite(v)):
            values[name] = v
        else:
            raise HistoryError(f"{where}: field {name!r} is {json.dumps(v)[:40]}, not a number")
    return _time(at, where), values


def _time(text: str, where: str) -> datetime:
    try:
        at = parse_iso(text)
    except ValueError:
        raise HistoryError(f"{where}: `at` {text[:40]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise HistoryError(f"{where}: `at` {text[:40]!r} has no zone; give UTC with a Z")
    return at.astimezone(UTC)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _fault(name: str) -> str:
    known = sorted(set(load_fault_table().faults) | set(load_causes().faults) - {"default"})
    if name not in known:
        raise HistoryError(f"--fault {name!r}: unknown fault; one of {', '.join(known)}")
    return name


def _kind(name: str | None) -> str | None:
    kinds = [k.value for k in DeviceKind]
    if name is not None and name not in kinds:
        raise HistoryError(f"--device-kind {name!r}: unknown device kind; one of {', '.join(kinds)}")
    return name
