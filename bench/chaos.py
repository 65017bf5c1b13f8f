"""The standing chaos suite: the gateway under kills, broker outages, hostile input and broken
site files, as separate processes, with a real mosquitto. Not part of CI: it takes minutes.

Each phase starts its own `alarmgw simulate` (Modbus TCP host with 24 detectors, and a
Zigbee2MQTT bridge with 6 devices publishing to a device mosquitto) and `alarmgw run` (with
its uplink to a second mosquitto, the remote desk on `<root>/cmd`, the HTTP API), each with a
fresh store, and drives them from this process:

1. kills: 20 SIGKILLs of the gateway at random moments (seeded: about 30 % aimed at its
   start-up, 0.2-2.5 s after the process starts; the rest 0-8 s, 0-4 s with --short, after
   it says it runs), while faults are injected on the simulator's stdin (permanent ones, and
   short ones that clear and come back) and tickets are moved from the CLI (`alarmgw tickets
   ACTION ID --db`) and the API (POST /api/tickets/ID/ACTION). After a last start: tickets
   expected (one per permanent fault injected) vs present; duplicates (a (device, fault)
   with more than one ticket: no ticket is ever closed here, so every second one is a
   duplicate); lost moves (answered as done: CLI exit 0 or HTTP 200, each with a note of its
   own, but that note is not in the store's ticket log afterwards); `PRAGMA integrity_check`.
2. outage: the uplink broker (persistent, stopped with SIGTERM so it keeps its sessions, as a
   restarted broker does) down for 30 s and for 3 min (60 s with --short), with faults, CLI,
   API and remote-desk moves during each outage and a SIGKILL of the gateway in it. A
   listener with a persistent session on `<root>/#` (it reconnects when the broker is back)
   collects ticket events. Versions expected: every (ticket, version) the store holds at the
   end; received: distinct (ticket id, version) pairs; order: a version arriving for the first
   time after a later one of the same ticket is an order violation; duplicates delivered:
   events received more than once (at-least-once allows them; they are not duplicated
   tickets).
3. junk: 10,000 malformed payloads on the bridge's Zigbee2MQTT topics, 5,000 junk requests on
   `<root>/cmd`, and an HTTP flood (a few thousand unauthenticated and bad-token requests,
   200 at once, from 40 loopback addresses, a few 100 MB bodies among them), each while a
   real fault is injected on a Modbus and a Zigbee device: each fault's ticket latency
   (injection, by the simulator's clock, to the ticket's raised_at), gateway VmRSS before and
   after, audit rows added, tickets no fault explains; afterwards whether every part still
   works (a fresh fault ticketed, the API answering a good token, the remote desk answering).
4. site files: 77 kinds of site file (76 broken, and the good one as a control; a seeded
   45 with --short) given to `alarmgw check-config` and to `alarmgw run`, which either
   refuses the file or is stopped with SIGTERM 3 s after it says it runs: exit codes (0 or 2;
   0 on SIGTERM), tracebacks in stderr (must be 0), and whether the two commands agree.

    .venv/bin/python bench/chaos.py                 # every phase, with the 3-minute outage
    .venv/bin/python bench/chaos.py --short         # every phase, about 5 minutes*
    .venv/bin/python bench/chaos.py --phases 1,4 --seed 3

* more when a part stops answering: the remote desk is asked again for up to 60 s each time.

The last line reads: chaos_lost=N chaos_duplicated=N chaos_tracebacks=N versions_received=N/M
junk_rss_growth_mb=X fault_latency_under_flood_s=Y, then further keys; `na` for a phase not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from alarmgw.gateway.credentials import token_entry  # noqa: E402
from alarmgw.gateway.runtime import free_port  # noqa: E402
from bench._procs import (  # noqa: E402
    ALARMGW,
    TRACEBACK,
    Broker,
    GatewayProc,
    LogLines,
    SimulatorProc,
    http_call,
    parse_utc,
    query,
    run_cli,
    table_exists,
    wait_until,
)

SITE_ID = "chaos-site"
TOPIC_ROOT = f"alarmgw/{SITE_ID}"
TOKEN = "chaos-engineer-token-0123456789abcdef"
ENGINEER = "chaos-eng"
DETECTORS = [f"d{i:02d}" for i in range(1, 25)]  # odd: smoke detectors, even: PIRs
ZIGBEE = [f"z{i}" for i in range(1, 7)]  # z1, z3, z5 smoke, z2, z4, z6 motion
BASE_TOPIC = "zb"
UP = "gateway for site"  # the gateway logs this once it runs


def kind_of(device: str) -> str:
    return "smoke_detector" if int(device[1:]) % 2 else "pir_detector"


def friendly(device: str) -> str:
    return f"zig {device[1:]}"


def say(text: str) -> None:
    print(text, flush=True)


# --- the site ---------------------------------------------------------------------------------


@dataclass
class Engineer:
    """Who makes remote-desk moves: an Ed25519 key pair from `alarmgw keygen` when
    `alarmgw remote` takes --key-file; otherwise a legacy secret only the gateway knows (the
    desk still listens, so junk still reaches it), and no remote moves."""

    users_line: str
    key_file: Path | None
    why_not: str = ""


def make_engineer(folder: Path) -> Engineer:
    helptext = run_cli(["remote", "--help"]).stdout
    if "--key-file" not in helptext:
        secret = secrets.token_hex(16)
        return Engineer(
            f"{ENGINEER}: {{role: engineer, secret: {secret}}}",
            None,
            "`alarmgw remote --help` offers no --key-file: remote-desk moves left out",
        )
    key = folder / "engineer.key"
    made = run_cli(["keygen", ENGINEER, "--role", "engineer", "--out", str(key)])
    line = next(
        (m.group(0) for m in re.finditer(rf"{ENGINEER}: \{{role: engineer, public_key: \S+\}}", made.stdout)), ""
    )
    if made.returncode != 0 or not line:
        raise RuntimeError(f"`alarmgw keygen` failed ({made.returncode}): {made.stdout} {made.stderr}")
    return Engineer(line, key)


@dataclass
class Site:
    folder: Path
    path: Path
    db: Path
    modbus_port: int
    device_port: int
    uplink_port: int
    http_port: int


def write_site(folder: Path, engineer: Engineer, device_port: int, uplink_port: int, seed: int) -> Site:
    """The chaos site: one Modbus TCP host with 24 detectors polled every second, a
    Zigbee2MQTT bridge with 6 devices, the uplink, the remote desk, the HTTP API."""
    folder.mkdir(parents=True, exist_ok=True)
    modbus_port, http_port = free_port(), free_port()
    (folder / "api-tokens.yaml").write_text(f"tokens:\n  {token_entry(ENGINEER, 'engineer', TOKEN)}\n")
    (folder / "engineers.yaml").write_text(f"users:\n  {engineer.users_line}\n")
    lines = [
        f"site: {{id: {SITE_ID}, area: city, commissioned_on: 2026-01-01}}",
        "store: {path: chaos.db}",
        "poll: {interval_s: 1, timeout_s: 0.5, retries: 0, backoff_initial_s: 0.5, backoff_max_s: 2}",
        f"device_broker: {{host: 127.0.0.1, port: {device_port}}}",
        "zigbee2mqtt:",
        f"  - id: zb-bridge\n    base_topic: {BASE_TOPIC}\n    devices:",
        *(f"      - {{id: {z}, friendly_name: {friendly(z)}, kind: {kind_of(z)}}}" for z in ZIGBEE),
        f"uplink:\n  broker: {{host: 127.0.0.1, port: {uplink_port}}}\n  telemetry_interval_s: 30",
        "remote: {users_file: engineers.yaml}",
        f"http: {{port: {http_port}, tokens_file: api-tokens.yaml}}",
        "hosts:",
        f"  - id: panel\n    model: sim-wh100\n    modbus: {{address: 127.0.0.1, port: {modbus_port}}}\n    devices:",
        *(f"      - {{id: {d}, kind: {kind_of(d)}, slot: {i + 1}}}" for i, d in enumerate(DETECTORS)),
    ]
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    # Check-ins every 5 s (the defaults are 60 s): a Zigbee device's state, which is not
    # retained, reaches a gateway that has just started within 5 s.
    (folder / "scenario.yaml").write_text(f"seed: {seed}\nreport_interval_s: {{smoke_detector: 5, pir_detector: 5}}\n")
    return Site(folder, path, folder / "chaos.db", modbus_port, device_port, uplink_port, http_port)


@dataclass
class Running:
    """One phase's processes."""

    site: Site
    sim: SimulatorProc
    gw: GatewayProc
    brokers: list[Broker]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gw.terminate()
        with contextlib.suppress(Exception):
            self.sim.stop()
        for b in self.brokers:
            with contextlib.suppress(Exception):
                b.stop()


def start_phase(
    folder: Path, engineer: Engineer, seed: int, uplink: Broker | None = None, start_gateway: bool = True
) -> Running:
    device = Broker().start()
    uplink = uplink or Broker().start()
    site = write_site(folder, engineer, device.port, uplink.port, seed)
    sim = SimulatorProc(site.path, folder / "simulator.log", folder / "scenario.yaml", seed)
    gw = GatewayProc(site.path, folder / "gateway.log")
    running = Running(site, sim, gw, [device, uplink])
    if start_gateway:
        gw.start()
        if not gw.wait_log(UP, 60):
            running.close()
            raise RuntimeError(f"the gateway did not start; see {folder / 'gateway.log'}")
    return running


def tickets_of(db: Path) -> list[tuple[int, str, str, str, int, str]]:
    """(id, device, fault, state, version, raised_at) of every ticket."""
    return query(db, "SELECT id, device_id, fault, state, version, raised_at FROM tickets ORDER BY id")


def raised_at(db: Path, device: str, fault: str) -> datetime | None:
    rows = query(db, "SELECT raised_at FROM tickets WHERE device_id = ? AND fault = ? ORDER BY id", (device, fault))
    return parse_utc(rows[0][0]) if rows else None


def wait_tickets(db: Path, pairs: set[tuple[str, str]], timeout_s: float) -> set[tuple[str, str]]:
    """The pairs of `pairs` that have a ticket, waiting up to `timeout_s` for all of them."""
    have: set[tuple[str, str]] = set()

    def check() -> bool:
        have.clear()
        have.update((d, f) for _, d, f, *_ in tickets_of(db) if (d, f) in pairs)
        return have == pairs

    wait_until(check, timeout_s, 0.2)
    return set(have)


# --- moves: CLI, HTTP API, remote desk ------------------------------------------------------

NEXT = {"open": ["ack"], "acknowledged": ["dispatch", "resolve"], "dispatched": ["arrive"], "on_site": ["resolve"]}


@dataclass
class Move:
    channel: str  # cli | http | remote
    ticket: int
    action: str
    note: str
    outcome: str  # done | refused | busy | unanswered
    detail: str = ""


class Mover:
    """Moves tickets along their lifecycle (never to closed: a closed ticket lets a fault that
    stays on open a second one, which would blur the duplicate count), each move with a note
    of its own so the ticket log can be searched for it afterwards."""

    def __init__(self, site: Site, engineer: Engineer, rng: random.Random) -> None:
        self.site = site
        self.engineer = engineer
        self.rng = rng
        self.moves: list[Move] = []
        self._n = 0
        self._lock = threading.Lock()

    def pick(self) -> tuple[int, str] | None:
        try:
            rows = [(t, s) for t, _, _, s, _, _ in tickets_of(self.site.db) if s in NEXT]
        except Exception:  # a store mid-migration or locked: try again later
            return None
        if not rows:
            return None
        ticket, state = self.rng.choice(rows)
        return ticket, self.rng.choice(NEXT[state])

    def move(self, channel: str) -> Move | None:
        picked = self.pick()
        if picked is None:
            return None
        ticket, action = picked
        with self._lock:
            self._n += 1
            note = f"chaos move {self._n} by {channel}"
        do = {"cli": self._cli, "http": self._http, "remote": self._remote}[channel]
        outcome, detail = do(ticket, action, note)
        m = Move(channel, ticket, action, note, outcome, detail)
        with self._lock:
            self.moves.append(m)
        return m

    def _cli(self, ticket: int, action: str, note: str) -> tuple[str, str]:
        db = str(self.site.db)
        r = run_cli(["tickets", action, str(ticket), "--db", db, "--by", "chaos-cli", "--note", note], 60)
        if r.returncode == 0:
            return "done", r.stdout.strip()
        kind = "refused" if r.returncode == 1 else "unanswered" if r.returncode < 0 else "busy"
        return kind, f"exit {r.returncode}: {r.stderr.strip()[-200:]}"

    def _http(self, ticket: int, action: str, note: str) -> tuple[str, str]:
        status, body = http_call(self.site.http_port, "POST", f"/api/tickets/{ticket}/{action}", TOKEN, {"note": note})
        if status == 200:
            return "done", ""
        if isinstance(status, str):
            return "unanswered", status
        return ("busy" if status in (429, 503) else "refused"), f"{status} {str(body)[:200]}"

    # --- remote desk moves (alarmgw remote, Ed25519 keys) -----------------------------------
    # Signed with the engineer's private key from `alarmgw keygen`; only when `alarmgw remote`
    # offers --key-file (make_engineer). The request travels through the uplink broker: while
    # it is down the tool cannot send, and says so (exit 2), which is not a lost move.
    def _remote(self, ticket: int, action: str, note: str) -> tuple[str, str]:
        assert self.engineer.key_file is not None
        r = run_cli(
            [
                *remote_args(self.site, self.engineer),
                "--json",
                "--note",
                note,
                "--timeout",
                "8",
                action,
                str(ticket),
            ],
            40,
        )
        try:
            reply = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            reply = {}
        if r.returncode == 0 and reply.get("ok"):
            return "done", ""
        if r.returncode == 1:
            return "refused", str(reply.get("error", ""))[:200]
        return "unanswered", f"exit {r.returncode}: {r.stderr.strip()[-200:]}"

    # ---------------------------------------------------------------------------------------

    def lost(self) -> list[Move]:
        """Moves answered as done whose note is not in the ticket log."""
        logged = {(t, n) for t, n in query(self.site.db, "SELECT ticket_id, note FROM ticket_log")}
        return [m for m in self.moves if m.outcome == "done" and (m.ticket, m.note) not in logged]

    def summary(self) -> str:
        by = Counter((m.channel, m.outcome) for m in self.moves)
        parts = []
        for ch in ("cli", "http", "remote"):
            n = sum(v for (c, _), v in by.items() if c == ch)
            if n:
                outs = ", ".join(f"{by[(ch, o)]} {o}" for o in ("done", "refused", "busy", "unanswered") if by[(ch, o)])
                parts.append(f"{ch} {n} ({outs})")
        return "; ".join(parts) or "none"


def remote_args(site: Site, engineer: Engineer) -> list[str]:
    assert engineer.key_file is not None
    broker = f"mqtt://127.0.0.1:{site.uplink_port}"
    return ["remote", "--broker", broker, "--site", SITE_ID, "--user", ENGINEER, "--key-file", str(engineer.key_file)]


def in_thread(loop: Callable[[threading.Event], None]) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=loop, args=(stop,), daemon=True)
    t.start()
    return stop, t


def integrity(db: Path) -> str:
    rows = query(db, "PRAGMA integrity_check")
    return "; ".join(str(r[0]) for r in rows)[:300] or "no answer"


# --- phase 1: kills ---------------------------------------------------------------------------


def phase_kills(base: Path, engineer: Engineer, seed: int, short: bool) -> dict[str, Any]:
    say("\n== phase 1: 20 SIGKILLs of the gateway while faults happen and tickets move ==")
    rng = random.Random(seed)
    # When each kill comes: 30 % in start-up (0.2-2.5 s after the process starts: store opening,
    # migration, connecting), the rest 0-4 s (0-8 s) after the gateway says it runs.
    most = 4.0 if short else 8.0
    lives = [(True, rng.uniform(0.2, 2.5)) if rng.random() < 0.3 else (False, rng.uniform(0, most)) for _ in range(20)]
    # What fails: permanent faults on distinct (device, fault) pairs, each must end as one
    # ticket; short tamper faults elsewhere, some twice (they restore and recur).
    candidates = [(d, "tamper") for d in DETECTORS] + [(d, "low_battery") for d in DETECTORS]
    candidates += [(d, "fire_trouble") for d in DETECTORS if kind_of(d) == "smoke_detector"]
    candidates += [(z, "tamper") for z in ZIGBEE] + [(z, "low_battery") for z in ZIGBEE]
    rng.shuffle(candidates)
    permanent = candidates[:16]
    busy = {d for d, f in permanent if f == "tamper"}
    transient_devices = [d for d in DETECTORS + ZIGBEE if d not in busy]
    transient: list[tuple[str, str, float | None]] = [
        (d, "tamper", rng.uniform(1.0, 6.0)) for d in rng.sample(transient_devices, 10)
    ]
    plan: list[tuple[str, str, float | None]] = [(d, f, None) for d, f in permanent] + transient
    plan += rng.sample(transient, 5)  # come back: the same ticket must recur, not a second one
    rng.shuffle(plan)
    say(
        f"{len(permanent)} permanent faults, {len(transient)} short tamper faults (1-6 s, 5 of them twice), "
        f"{sum(early for early, _ in lives)} kills aimed at start-up, the others 0-{most:g} s after it "
        f"(seed {seed}); CLI and API moves throughout"
    )

    run = start_phase(base / "kills", engineer, seed, start_gateway=False)
    gw, site = run.gw, run.site
    mover = Mover(site, engineer, random.Random(seed + 1))
    injected: set[tuple[str, str]] = set()
    span = sum(t + (0 if early else 2.5) for early, t in lives)  # about how long the kills take

    def inject(stop: threading.Event) -> None:
        gap = span / (len(plan) + 1)
        for device, fault, duration in plan:
            if stop.wait(gap * rng.uniform(0.5, 1.5)):
                return
            run.sim.inject(device, fault, duration)
            if duration is None:
                injected.add((device, fault))

    def move_by(channel: str, pause: tuple[float, float]) -> Callable[[threading.Event], None]:
        r = random.Random(f"{seed}:{channel}")

        def loop(stop: threading.Event) -> None:
            while not stop.wait(r.uniform(*pause)):
                mover.move(channel)

        return loop

    threads = [in_thread(inject), in_thread(move_by("cli", (0.5, 1.5))), in_thread(move_by("http", (0.2, 0.8)))]
    in_startup = 0
    t0 = time.monotonic()
    try:
        for early, after in lives:
            gw.start()
            if not early:
                gw.wait_log(UP, 60)
            time.sleep(after)
            in_startup += not gw.wait_log(UP, 0)
            gw.kill()
        gw.start()  # the last life: it must put everything right
        threads[0][1].join(span + 60)
        complete = wait_tickets(site.db, set(permanent) & injected, 45)
        for stop, t in threads[1:]:
            stop.set()
            t.join(120)
        gw_ok = gw.alive()
        code = gw.terminate()
    finally:
        for stop, _ in threads:
            stop.set()
        run.close()
    elapsed = time.monotonic() - t0

    tickets = tickets_of(site.db)
    per_pair = Counter((d, f) for _, d, f, *_ in tickets)
    duplicated = sum(n - 1 for n in per_pair.values() if n > 1)
    expected = set(permanent) & injected
    unexplained = [p for p in per_pair if p not in {(d, f) for d, f, _ in plan}]
    restored = query(
        site.db,
        "SELECT t.device_id, t.fault FROM ticket_log l JOIN tickets t ON t.id = l.ticket_id "
        "WHERE l.action = 'restored'",
    )
    false_restores = sum(1 for p in restored if tuple(p) in expected)
    lost = mover.lost()
    check = integrity(site.db)
    tracebacks = gw.log.count(TRACEBACK)
    say(
        f"{len(lives)} kills in {elapsed:.0f} s ({in_startup} during start-up, before `{UP}`); the last life "
        f"{'ran' if gw_ok else 'DIED'} and ended with exit {code} on SIGTERM"
    )
    say(
        f"tickets: {len(complete)}/{len(expected)} expected present; {len(tickets)} in all; "
        f"duplicated {duplicated}; not explained by any injected fault {len(unexplained)} {unexplained[:5]}; "
        f"'restored' on a fault that never cleared {false_restores}"
    )
    say(
        f"moves: {mover.summary()}; lost {len(lost)}"
        + (f": {[(m.channel, m.ticket, m.note) for m in lost[:5]]}" if lost else "")
    )
    say(f"PRAGMA integrity_check: {check}; tracebacks in the gateway's log: {tracebacks}; files in {site.folder}")
    return {
        "lost": len(lost),
        "duplicated": duplicated,
        "present": f"{len(complete)}/{len(expected)}",
        "integrity": "ok" if check == "ok" else "bad",
        "log_tracebacks": tracebacks,
        "unexplained": len(unexplained),
    }


# --- phase 2: uplink broker outages -----------------------------------------------------------


class TicketListener:
    """The service centre: a persistent MQTT 5 session on `<root>/#` that keeps reconnecting,
    noting every ticket event as (ticket id, version) in arrival order."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[int, int]] = []
        self.other = 0
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"chaos-centre-{os.getpid()}", protocol=paho.MQTTv5
        )
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _connected(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(f"{TOPIC_ROOT}/#", qos=1)

    def _message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not re.fullmatch(rf"{re.escape(TOPIC_ROOT)}/tickets/\d+", msg.topic):
            self.other += 1
            return
        try:
            t = json.loads(msg.payload)["ticket"]
            pair = (int(t["id"]), int(t["version"]))
        except (ValueError, KeyError, TypeError):
            pair = (-1, -1)
        with self._lock:
            self.events.append(pair)

    def received(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def expected_versions(db: Path) -> set[tuple[int, int]]:
    return {(t, v) for t, _, _, _, version, _ in tickets_of(db) for v in range(1, version + 1)}


def phase_outage(base: Path, engineer: Engineer, seed: int, short: bool) -> dict[str, Any]:
    outages = [30.0, 60.0 if short else 180.0]
    say(f"\n== phase 2: the uplink broker down for {' s and '.join(f'{o:g}' for o in outages)} s ==")
    if engineer.key_file is None:
        say(f"remote desk: {engineer.why_not}")
    rng = random.Random(seed + 2)
    uplink = Broker(persistent=True).start()
    listener = TicketListener(uplink.port)
    run = start_phase(base / "outage", engineer, seed, uplink=uplink)
    gw, site = run.gw, run.site
    mover = Mover(site, engineer, rng)
    channels = ["cli", "http"] + (["remote"] if engineer.key_file else [])
    devices = iter(rng.sample([(d, "tamper") for d in DETECTORS] + [(z, "tamper") for z in ZIGBEE], 20))
    remote_during = remote_after = 0
    delivery: list[str] = []

    def faults(n: int) -> None:
        for _ in range(n):
            run.sim.inject(*next(devices))

    def all_delivered(timeout_s: float) -> float | None:
        t = time.monotonic()
        ok = wait_until(lambda: expected_versions(site.db) <= set(listener.received()), timeout_s, 0.5)
        return time.monotonic() - t if ok else None

    try:
        faults(4)
        wait_until(lambda: len(tickets_of(site.db)) >= 4, 30)
        for ch in channels:
            mover.move(ch)
        all_delivered(30)
        for length in outages:
            t0 = time.monotonic()
            uplink.pause()
            say(f"broker down for {length:g} s: faults, moves, and a SIGKILL of the gateway half way")

            def until(share: float, start: float = t0, span: float = length) -> None:
                time.sleep(max(0.0, start + share * span - time.monotonic()))

            until(0.1)
            faults(2)
            until(0.2)
            for ch in channels:
                m = mover.move(ch)
                remote_during += ch == "remote" and m is not None
            until(0.5)
            gw.kill()
            gw.start()
            gw.wait_log(UP, 30)
            until(0.6)
            faults(1)
            for ch in ("cli", "http", "cli", "http"):
                mover.move(ch)
            until(1.0)
            uplink.resume()
            took = all_delivered(150)
            delivery.append("not all within 150 s" if took is None else f"{took:.1f} s after it came back")
            say(f"broker back: every ticket version stored so far received {delivery[-1]}")
            # The remote desk reconnects with its own backoff: try until one move is answered.
            if "remote" in channels:
                t = time.monotonic()
                while time.monotonic() < t + 90:
                    m = mover.move("remote")
                    remote_after += m is not None
                    if m is not None and m.outcome == "done":
                        say(f"remote desk: a move answered {time.monotonic() - t:.1f} s after the broker came back")
                        break
                all_delivered(30)
        gw_ok = gw.alive()
        gw.terminate()
    finally:
        run.close()
        listener.close()

    expected = expected_versions(site.db)
    events = listener.received()
    received = set(events) & expected
    duplicates = len(events) - len(set(events))
    order_violations = 0
    highest: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    for t, v in events:
        if (t, v) not in seen and v < highest.get(t, 0):
            order_violations += 1
        seen.add((t, v))
        highest[t] = max(highest.get(t, 0), v)
    tickets = tickets_of(site.db)
    per_pair = Counter((d, f) for _, d, f, *_ in tickets)
    duplicated = sum(n - 1 for n in per_pair.values() if n > 1)
    lost = mover.lost()
    missing = sorted(expected - received)
    say(
        f"ticket versions: {len(received)}/{len(expected)} received ({len(tickets)} tickets), "
        f"missing {missing[:8]}; order violations {order_violations}; "
        f"delivered more than once {duplicates} (at-least-once: allowed); other events on the root {listener.other}"
    )
    remote_note = (
        f"; remote desk: {remote_during} tried during outages (the broker is their way in), {remote_after} after"
        if engineer.key_file
        else f"; {engineer.why_not}"
    )
    say(f"moves: {mover.summary()}; lost {len(lost)}{remote_note}")
    say(
        f"tickets duplicated {duplicated}; gateway {'running' if gw_ok else 'DEAD'} at the end; "
        f"tracebacks in its log {gw.log.count(TRACEBACK)}; integrity {integrity(site.db)}; files in {site.folder}"
    )
    return {
        "lost": len(lost),
        "duplicated": duplicated,
        "versions": f"{len(received)}/{len(expected)}",
        "versions_complete": len(received) == len(expected),
        "order_violations": order_violations,
        "duplicates_delivered": duplicates,
        "log_tracebacks": gw.log.count(TRACEBACK),
    }


# --- phase 3: hostile input on the three doors --------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def device_junk(rng: random.Random, i: int) -> tuple[str, bytes]:
    """One malformed message for the bridge: a real device's topic with a payload no real
    Zigbee2MQTT sends (nothing here is a valid reading, so nothing may change)."""
    name = friendly(rng.choice(ZIGBEE))
    state, avail, bridge = f"{BASE_TOPIC}/{name}", f"{BASE_TOPIC}/{name}/availability", f"{BASE_TOPIC}/bridge/state"
    kind = i % 20
    if kind == 0:
        return state, rng.randbytes(rng.randint(1, 300))
    if kind == 1:
        return state, b'{"battery": 90, "tamper": fal'
    if kind == 2:
        return state, json.dumps({"battery": True}).encode()
    if kind == 3:
        return state, json.dumps({"battery": rng.choice(["50", "low", None, [], {}])}).encode()
    if kind == 4:
        return state, json.dumps({"tamper": rng.choice(["yes", "true", [], {"a": 1}, 2])}).encode()
    if kind == 5:
        return state, json.dumps({"battery": rng.choice([250, -5, 101, 1e308]), "linkquality": 100000}).encode()
    if kind == 6:
        return state, b'{"battery": ' + b"9" * rng.choice([400, 4400, 20000]) + b"}"
    if kind == 7:
        return state, b'{"voltage": 1e999, "battery": -1e999}'
    if kind == 8:
        return state, b'{"battery": NaN, "voltage": Infinity}'
    if kind == 9:
        return state, b'{"battery": 90, "x": ' + nested(rng.choice([500, 5000, 100_000])) + b"}"
    if kind == 10:
        return state, rng.choice([b"[]", b"42", b'"online"', b"null", b"true", b""])
    if kind == 11:
        return avail, rng.choice([b"maybe", b'{"state": 5}', b'{"state": null}', b"\x00\xff", nested(20_000)])
    if kind == 12:
        return bridge, rng.choice([b'{"state": ["online"]}', b"{", b"\xfe\xff", b'{"state": {"state": 1}}'])
    if kind == 13:
        return state, json.dumps({"linkquality": "x", "voltage": "3000"}).encode()
    if kind == 14:
        return state, b"\xef\xbb\xbf" + b'{"battery": 9\xff0}'
    if kind == 15 and i % 200 == 15:
        # oversized: 100 KiB to 2 MiB of otherwise harmless JSON
        return state, b'{"battery": 90, "pad": "' + b"x" * rng.randint(100_000, 2_000_000) + b'"}'
    if kind == 16:
        return f"{BASE_TOPIC}/{secrets.token_hex(4)}", b'{"battery": 1}'  # a device the site does not know
    if kind == 17:
        return state, json.dumps({"battery": 90, "tamper": None, "battery_low": "false"}).encode()
    return state, json.dumps({"battery": {"$gt": 0}, "voltage": [3000]}).encode()


def cmd_junk(rng: random.Random, i: int, signer: Callable[[str, str, dict[str, Any], datetime], bytes] | None) -> bytes:
    """One request on `<root>/cmd` that must be refused, never run."""
    now = datetime.now(UTC)
    good = {
        "user": ENGINEER,
        "to": TOPIC_ROOT,
        "ts": now.isoformat(),
        "nonce": secrets.token_hex(12),
        "command": "status",
        "args": {},
        "sig": secrets.token_hex(64),
    }
    kind = i % 14
    if kind == 0:
        return rng.randbytes(rng.randint(1, 500))
    if kind == 1:
        return json.dumps(good).encode()  # a signature that is not the engineer's
    if kind == 2:
        return json.dumps({**good, "user": f"mallory-{secrets.token_hex(6)}"}).encode()  # a name chosen by the sender
    if kind == 3:
        return json.dumps({**good, "sig": "é" * 64}, ensure_ascii=False).encode()
    if kind == 4:
        return b'{"user": "x", "args": ' + nested(rng.choice([1000, 50_000])) + b"}"
    if kind == 5:
        return b'{"user": "x", "ts": ' + b"9" * rng.choice([4400, 30_000]) + b"}"
    if kind == 6:
        return json.dumps({**good, "user": 5, "args": [], "ts": 12}).encode()
    if kind == 7 and i % 1000 == 7:
        return b'{"user": "' + b"A" * rng.choice([1_000_000, 8_000_000]) + b'"}'  # huge
    if kind == 8:
        return json.dumps({**good, "to": "alarmgw/another-site"}).encode()
    if kind == 9 and signer is not None:
        # signed by the engineer, but 10 minutes old: stale
        return signer("status", TOPIC_ROOT, {}, datetime.fromtimestamp(now.timestamp() - 600, UTC))
    if kind == 10:
        return json.dumps({**good, "command": "shell", "args": {"cmd": "rm -rf /"}}).encode()
    if kind == 11:
        return json.dumps({**good, "args": {f"k{j}": "x" * 3000 for j in range(20)}}).encode()
    if kind == 12:
        return b"\x00" * 64
    return json.dumps({**good, "nonce": "short", "sig": "zz"}).encode()


def request_props(correlation: bytes, topic: str | None) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if topic is not None:
        props.ResponseTopic = topic
    props.CorrelationData = correlation
    return props


@dataclass
class Stage:
    name: str
    sent: int = 0
    detail: str = ""
    faults: dict[tuple[str, str], datetime] = field(default_factory=dict)
    latency: dict[str, float | None] = field(default_factory=dict)
    rss: tuple[float, float] = (0.0, 0.0)
    audit: tuple[int, int] = (0, 0)
    refusals: tuple[int, int] = (0, 0)


def safe_stats(gw: GatewayProc) -> dict[str, int]:
    """The gateway's counters, or none if it cannot say (dead, or deaf to SIGUSR1)."""
    try:
        return gw.stats() if gw.alive() else {}
    except (RuntimeError, OSError):
        return {}


def audit_counts(db: Path) -> tuple[int, int]:
    """(rows of the audit table, refusals only counted per minute)."""
    rows = query(db, "SELECT COUNT(*) FROM audit")
    counted = (
        query(db, "SELECT COALESCE(SUM(count), 0) FROM audit_refusals") if table_exists(db, "audit_refusals") else []
    )
    return (rows[0][0] if rows else 0), (counted[0][0] if counted else 0)


async def pace(sent: int, rate: float, t0: float) -> None:
    await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))


async def flood_mqtt(
    port: int,
    total: int,
    rate: float,
    make: Callable[[int], tuple[str, bytes, Properties | None]],
    at_third: Callable[[], Awaitable[None]],
    qos: Callable[[int], int],
) -> None:
    """Publish `total` messages made by `make`, about `rate` a second, message i at QoS
    `qos(i)`; `at_third` runs a third of the way in (the real fault)."""
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, max_queued_outgoing_messages=200_000
    ) as client:
        t0 = time.monotonic()
        for i in range(total):
            if i == total // 3:
                await at_third()
            topic, payload, props = make(i)
            await client.publish(topic, payload, qos=qos(i), properties=props)
            if i % 50 == 0:
                await pace(i, rate, t0)


@dataclass
class HttpFlood:
    port: int
    total: int
    concurrency: int = 200
    statuses: Counter[str] = field(default_factory=Counter)
    good: list[tuple[int | str, float]] = field(default_factory=list)
    slow_closed: int = 0
    slow_held: int = 0
    seconds: float = 0.0

    SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 42))  # the attacker's addresses; a user's is 127.0.0.1

    def request(self, rng: random.Random, i: int) -> tuple[str, bytes, int]:
        """(kind, head and small body, bytes of body still to send)."""
        host = f"Host: 127.0.0.1:{self.port}\r\n"
        bad = f"Authorization: Bearer {secrets.token_urlsafe(rng.choice([8, 32, 300]))}\r\n"
        k = i % 40
        if i in (5, 1005):  # 100 MB bodies, unauthenticated, really sent
            return (
                "noauth_100MB_post",
                f"POST /api/tickets/1/ack HTTP/1.1\r\n{host}Content-Length: {100 << 20}\r\n\r\n".encode(),
                100 << 20,
            )
        if k < 12:
            return "noauth_get", f"GET /api/tickets HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode(), 0
        if k < 24:
            return "bad_token_get", f"GET /api/site HTTP/1.1\r\n{host}{bad}Connection: close\r\n\r\n".encode(), 0
        if k < 30:
            body = b'{"note": "' + b"n" * rng.choice([10, 400, 5000]) + b'"}'
            head = (
                f"POST /api/tickets/1/ack HTTP/1.1\r\n{host}{bad}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            return "bad_token_post", head.encode() + body, 0
        if k < 32:
            return (
                "noauth_2MB_post",
                f"POST /api/tickets/1/ack HTTP/1.1\r\n{host}Content-Length: {2 << 20}\r\n\r\n".encode(),
                2 << 20,
            )
        if k < 34:
            return "wrong_host", b"GET /api/site HTTP/1.1\r\nHost: rebind.example:80\r\nConnection: close\r\n\r\n", 0
        if k < 36:
            return "garbage", rng.randbytes(rng.randint(1, 2000)) + b"\r\n\r\n", 0
        if k < 37:
            return "huge_header", f"GET /api/site HTTP/1.1\r\n{host}X-Junk: {'j' * 100_000}\r\n\r\n".encode(), 0
        if k < 38:
            head = f"POST /api/tickets/1/ack HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"
            return "noauth_chunked", head.encode() + b"10000\r\n" + b"c" * 65536 + b"\r\n", 0
        return "openapi", f"GET /api/openapi.json HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode(), 0

    async def one(self, rng: random.Random, i: int) -> None:
        kind, data, more = self.request(rng, i)
        # A quarter from one noisy address (past its rate limit), the rest spread over 40.
        src = self.SOURCES[0] if i % 4 == 0 else self.SOURCES[i % len(self.SOURCES)]
        writer = None
        try:
            async with asyncio.timeout(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(src, 0))
                writer.write(data)
                sender = asyncio.create_task(self._send_body(writer, more)) if more else None
                try:
                    line = await reader.readline()
                finally:
                    if sender is not None:
                        sender.cancel()
                        with contextlib.suppress(BaseException):
                            await sender
            parts = line.split()
            status = parts[1].decode() if len(parts) > 1 and line.startswith(b"HTTP/") else "closed"
        except TimeoutError:
            status = "timeout"
        except OSError as exc:
            status = type(exc).__name__
        finally:
            if writer is not None:
                writer.close()
        self.statuses[f"{kind} {status}"] += 1

    @staticmethod
    async def _send_body(writer: asyncio.StreamWriter, size: int) -> None:
        chunk = b"b" * (256 << 10)
        with contextlib.suppress(OSError):
            while size > 0:
                writer.write(chunk[: min(size, len(chunk))])
                size -= len(chunk)
                await writer.drain()

    async def slowloris(self, held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], n: int) -> None:
        for j in range(n):
            with contextlib.suppress(OSError):
                src = self.SOURCES[j % len(self.SOURCES)]
                r, w = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(src, 0))
                w.write(b"GET /api/site HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the head
                held.append((r, w))

    @staticmethod
    async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
        """Whether the gateway has closed (or answered and closed) a held connection."""
        try:
            async with asyncio.timeout(0.2):
                data = await reader.read(1024)
        except TimeoutError:
            return False
        except OSError:
            return True
        return data == b"" or data.startswith(b"HTTP/")

    async def probe(self, stop: asyncio.Event) -> None:
        """A dashboard user at 127.0.0.1 with a good token, twice a second, during the flood."""
        while not stop.is_set():
            t = time.monotonic()
            status, _ = await asyncio.to_thread(http_call, self.port, "GET", "/api/site", TOKEN, None, 15)
            self.good.append((status, time.monotonic() - t))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def run(self, rng: random.Random, on_start: Callable[[], Awaitable[None]], done: Callable[[], bool]) -> None:
        counter = iter(range(10**9))
        t0 = time.monotonic()
        stop = asyncio.Event()
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        finished = {"at": 0.0, "done": False}

        def over() -> bool:
            # Past `total`, the flood goes on until the fault is ticketed (asked twice a second).
            if time.monotonic() - t0 > 60:
                return True
            if time.monotonic() - finished["at"] > 0.5:
                finished["at"], finished["done"] = time.monotonic(), done()
            return bool(finished["done"])

        async def worker() -> None:
            for i in counter:
                if i >= self.total and over():
                    return
                await self.one(rng, i)

        probe = asyncio.create_task(self.probe(stop))
        await self.slowloris(held, 50)
        await on_start()
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        stop.set()
        await probe
        self.seconds = time.monotonic() - t0
        for r, w in held:
            self.slow_closed += await self.closed_by_peer(r)
            w.close()
        self.slow_held = len(held)


def desk_answers(site: Site, engineer: Engineer, within_s: float = 60.0) -> str:
    """Whether the remote desk answers an engineer's `status`, asked again until it does."""
    if engineer.key_file is None:
        return "left out"
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < within_s:
        r = run_cli([*remote_args(site, engineer), "--json", "--timeout", "10", "status"], 40)
        if r.returncode == 0:
            return f"answered after {time.monotonic() - t0:.1f} s"
        last = f"exit {r.returncode}: {r.stderr.strip()[-100:]}"
    return f"NO ANSWER within {within_s:g} s ({last})"


def phase_junk(base: Path, engineer: Engineer, seed: int, short: bool) -> dict[str, Any]:
    say("\n== phase 3: hostile input on the three doors, each while a real fault happens ==")
    rng = random.Random(seed + 3)
    run = start_phase(base / "junk", engineer, seed)
    gw, site, sim = run.gw, run.site, run.sim
    stages: list[Stage] = []
    detectors = iter(rng.sample(DETECTORS, 8))
    zigbee = iter(rng.sample(ZIGBEE, 5))
    api_first = http_call(site.http_port, "GET", "/api/site", TOKEN)[0]
    signer = None
    if engineer.key_file is not None:
        with contextlib.suppress(Exception):
            from alarmgw.gateway.credentials import load_private_key
            from alarmgw.gateway.remote_auth import make_request

            key = load_private_key(engineer.key_file)

            def signer(command: str, to: str, args: dict[str, Any], at: datetime) -> bytes:
                return make_request(ENGINEER, key, to, command, args, at)

    def begin(name: str) -> Stage:
        stage = Stage(name)
        stage.rss = (gw.rss_mb(), 0.0)
        rows, counted = audit_counts(site.db)
        stage.audit, stage.refusals = (rows, 0), (counted, 0)
        stages.append(stage)
        return stage

    async def inject(stage: Stage) -> None:
        for device, fault in ((next(detectors), "tamper"), (next(zigbee), "tamper")):
            stage.faults[(device, fault)] = await asyncio.to_thread(sim.inject, device, fault)

    def finish(stage: Stage) -> None:
        have = wait_tickets(site.db, set(stage.faults), 30)
        for (device, fault), at in stage.faults.items():
            raised = raised_at(site.db, device, fault) if (device, fault) in have else None
            stage.latency[device] = None if raised is None else (raised - at).total_seconds()
        rows, counted = audit_counts(site.db)
        stage.rss = (stage.rss[0], gw.rss_mb())
        stage.audit, stage.refusals = (stage.audit[0], rows), (stage.refusals[0], counted)

    def show(stage: Stage) -> None:
        lat = ", ".join(
            f"{d} ({'Modbus' if d.startswith('d') else 'Zigbee'}) {'NOT TICKETED' if v is None else f'{v:.2f} s'}"
            for d, v in stage.latency.items()
        )
        say(
            f"{stage.name}: {stage.sent} sent{stage.detail}; fault latency {lat}; RSS {stage.rss[0]:.1f} -> "
            f"{stage.rss[1]:.1f} MB; audit rows +{stage.audit[1] - stage.audit[0]} "
            f"(refusals only counted: +{stage.refusals[1] - stage.refusals[0]} so far; counts reach the store "
            "each minute)"
        )

    try:
        stats0 = safe_stats(gw)
        rss0 = gw.rss_mb()
        say(f"gateway up, API answers a good token with {api_first}; RSS {rss0:.1f} MB; files in {site.folder}")

        # 1. the device broker
        # Half at QoS 0 as Zigbee2MQTT publishes, half at QoS 1: anyone on the site network may.
        stage = begin("device broker: 10,000 malformed Zigbee2MQTT payloads at ~1,250/s, QoS 0 and 1")

        def device_message(i: int) -> tuple[str, bytes, Properties | None]:
            topic, payload = device_junk(rng, i)
            return topic, payload, None

        asyncio.run(flood_mqtt(site.device_port, 10_000, 1250, device_message, lambda: inject(stage), lambda i: i % 2))
        stage.sent = 10_000
        finish(stage)
        s = safe_stats(gw)
        stage.detail = (
            f" (gateway counted {s.get('mqtt_messages', 0) - stats0.get('mqtt_messages', 0)} messages, "
            f"{s.get('mqtt_malformed', 0) - stats0.get('mqtt_malformed', 0)} malformed)"
        )
        show(stage)

        # 2. the remote desk's cmd topic
        stage = begin("cmd topic: 5,000 junk requests at ~500/s, QoS 1")
        replies = Counter[str]()
        reply_prefix = f"{TOPIC_ROOT}/cmd/reply/chaos-{secrets.token_hex(4)}"

        async def cmd_flood() -> None:
            async with aiomqtt.Client("127.0.0.1", site.uplink_port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
                await sub.subscribe(f"{TOPIC_ROOT}/#", qos=1)

                async def collect() -> None:
                    async for m in sub.messages:
                        topic = m.topic.value
                        if topic.startswith(reply_prefix):
                            try:
                                ok = json.loads(bytes(m.payload)).get("ok")
                            except (ValueError, AttributeError, TypeError):
                                ok = "?"
                            replies["ok" if ok is True else "refused" if ok is False else "garbled"] += 1
                        elif "/cmd" not in topic and b'"ok"' in bytes(m.payload)[:20]:
                            replies["answer published outside cmd/reply"] += 1

                collector = asyncio.create_task(collect())

                def message(i: int) -> tuple[str, bytes, Properties | None]:
                    where = i % 10
                    topic = None if where == 0 else f"{TOPIC_ROOT}/tickets/1" if where == 1 else f"{reply_prefix}/{i}"
                    return f"{TOPIC_ROOT}/cmd", cmd_junk(rng, i, signer), request_props(i.to_bytes(4, "big"), topic)

                await flood_mqtt(site.uplink_port, 5_000, 500, message, lambda: inject(stage), lambda i: 1)
                await asyncio.sleep(3)  # the last answers on their way back
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector

        asyncio.run(cmd_flood())
        stage.sent = 5_000
        finish(stage)
        asked = sum(1 for i in range(5_000) if i % 10 > 1)
        stage.detail = (
            f" (answers: {dict(replies) or 'none'}, to {asked} that gave a usable response topic; 1 in 10 gave "
            f"none, 1 in 10 a forbidden one; then an engineer's status request: {desk_answers(site, engineer)})"
        )
        show(stage)

        # 3. the HTTP API
        total = 2_000 if short else 4_000
        stage = begin(f"HTTP flood: {total:,} requests, 200 at once, from 40 addresses, + 50 held-open connections")
        flood = HttpFlood(site.http_port, total)

        def ticketed() -> bool:
            return bool(stage.faults) and all(raised_at(site.db, d, f) for d, f in stage.faults)

        asyncio.run(flood.run(rng, lambda: inject(stage), ticketed))
        stage.sent = sum(flood.statuses.values())
        finish(stage)
        by_status = Counter[str]()
        for kind_status, n in flood.statuses.items():
            by_status[kind_status.rsplit(" ", 1)[1]] += n
        good = Counter(str(s) for s, _ in flood.good)
        slowest = max((d for _, d in flood.good), default=float("nan"))
        stage.detail = (
            f" in {flood.seconds:.1f} s (answers {dict(by_status.most_common())}; good-token user during it: "
            f"{dict(good)}, slowest {slowest:.2f} s; connections that never finished their head, closed by the "
            f"gateway within the flood's {flood.seconds:.0f} s: {flood.slow_closed}/{flood.slow_held})"
        )
        show(stage)
        say("  by kind: " + ", ".join(f"{k}: {n}" for k, n in sorted(flood.statuses.items())))

        # Still working?
        after: dict[tuple[str, str], datetime] = {}
        for device in (next(detectors), next(zigbee)):
            after[(device, "tamper")] = sim.inject(device, "tamper")
        fresh = wait_tickets(site.db, set(after), 30)
        api = None
        for _ in range(10):
            api = http_call(site.http_port, "GET", "/api/site", TOKEN)[0]
            if api != 429:
                break
            time.sleep(1)
        desk = desk_answers(site, engineer)
        alive = gw.alive()
        rss1 = gw.rss_mb()
        stats1 = safe_stats(gw)
        junk_pairs = {p for st in stages for p in st.faults} | set(after)
        unexplained = [(d, f) for _, d, f, *_ in tickets_of(site.db) if (d, f) not in junk_pairs]
        working = alive and len(fresh) == len(after) and api == 200 and not desk.startswith("NO ANSWER")
        say(
            f"afterwards: gateway {'running' if alive else 'DEAD'}; fresh faults ticketed {len(fresh)}/{len(after)}; "
            f"API with a good token {api}; remote desk {desk}; tickets no injected fault explains "
            f"{len(unexplained)} {unexplained[:6]}"
        )
        say(
            f"RSS {rss0:.1f} -> {rss1:.1f} MB over the three floods; "
            f"audit rows +{audit_counts(site.db)[0] - stages[0].audit[0]}; "
            f"poll errors {stats1.get('poll_errors', 0) - stats0.get('poll_errors', 0)}, skipped polls "
            f"{stats1.get('polls_skipped', 0) - stats0.get('polls_skipped', 0)}; tracebacks in the gateway's log "
            f"{gw.log.count(TRACEBACK)}"
        )
        flood_lat = [v for d, v in stages[2].latency.items()]
    finally:
        run.close()
    worst = None if any(v is None for v in flood_lat) else max(v for v in flood_lat if v is not None)
    return {
        "rss_growth": rss1 - rss0,
        "flood_latency": worst,
        "audit_growth": audit_counts(site.db)[0] - stages[0].audit[0],
        "false_tickets": len(unexplained),
        "still_working": working,
        "log_tracebacks": gw.log.count(TRACEBACK),
    }


# --- phase 4: broken site files ------------------------------------------------------------------


def base_doc(folder: Path) -> dict[str, Any]:
    """A good site file's content (every section that names a file), for one fuzz case."""
    (folder / "api-tokens.yaml").write_text(f"tokens:\n  {token_entry('fuzz', 'viewer', TOKEN)}\n")
    return {
        "site": {"id": "fuzz-site", "area": "city"},
        "store": {"path": "fuzz.db"},
        "poll": {"interval_s": 5, "timeout_s": 0.5, "retries": 0},
        "http": {"port": free_port(), "tokens_file": "api-tokens.yaml"},
        "hosts": [
            {
                "id": "panel",
                "model": "sim-wh100",
                "modbus": {"address": "127.0.0.1", "port": free_port()},
                "devices": [
                    {"id": "rep-1", "kind": "repeater", "slot": 1},
                    {"id": "smoke-1", "kind": "smoke_detector", "slot": 2, "parent": "rep-1"},
                    {"id": "pir-1", "kind": "pir_detector", "slot": 3},
                ],
            }
        ],
    }


def with_uplink(folder: Path, doc: dict[str, Any], users: str | None = None, **broker: Any) -> dict[str, Any]:
    (folder / "engineers.yaml").write_text(users or f"users:\n  fuzz: {{role: viewer, secret: {'s' * 20}}}\n")
    doc["uplink"] = {"broker": {"host": "127.0.0.1", "port": free_port(), **broker}}
    doc["remote"] = {"users_file": "engineers.yaml"}
    return doc


def dump(folder: Path, doc: Any) -> Path:
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def raw(folder: Path, data: bytes) -> Path:
    path = folder / "site.yaml"
    path.write_bytes(data)
    return path


def good_text(folder: Path) -> bytes:
    return yaml.safe_dump(base_doc(folder), sort_keys=False).encode()


Case = Callable[[Path, random.Random, bool], Path]


def _set(path: str, value: Any) -> Case:
    """A case that sets one key (dotted path, [i] for list items) of the good file."""

    def case(folder: Path, rng: random.Random, short: bool) -> Path:
        doc = base_doc(folder)
        keys = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        node: Any = doc
        for k in keys[:-1]:
            node = node[int(k[1:-1])] if k.startswith("[") else node.setdefault(k, {})
        last = keys[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value
        return dump(folder, doc)

    return case


def _edit(change: Callable[[Path, dict[str, Any]], object]) -> Case:
    """A case that changes the good file's content in place (what `change` returns is ignored)."""

    def case(folder: Path, rng: random.Random, short: bool) -> Path:
        doc = base_doc(folder)
        change(folder, doc)
        return dump(folder, doc)

    return case


def _bytes(make: Callable[[Path, random.Random, bool], bytes]) -> Case:
    def case(folder: Path, rng: random.Random, short: bool) -> Path:
        return raw(folder, make(folder, rng, short))

    return case


def _file(name: str, content: bytes | None) -> Callable[[Path], Path]:
    """Make a side file (None: a folder of that name)."""

    def make(folder: Path) -> Path:
        p = folder / name
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
        return p

    return make


def _devices(n: int) -> Callable[[Path, dict[str, Any]], None]:
    def change(folder: Path, doc: dict[str, Any]) -> None:
        doc["hosts"][0]["devices"] = [{"id": f"d{i}", "kind": "pir_detector", "slot": i + 1} for i in range(n)]

    return change


def _case_site_is_folder(folder: Path, rng: random.Random, short: bool) -> Path:
    (folder / "site.yaml").mkdir()
    return folder / "site.yaml"


def _case_fifo(folder: Path, rng: random.Random, short: bool) -> Path:
    os.mkfifo(folder / "site.yaml")
    return folder / "site.yaml"


def _case_symlink_loop(folder: Path, rng: random.Random, short: bool) -> Path:
    (folder / "site.yaml").symlink_to(folder / "site.yaml")
    return folder / "site.yaml"


MARKER = "PWNED-by-a-site-file"


def fuzz_cases() -> dict[str, Case]:
    def set_ref(key: str, make: Callable[[Path], Path], uplink: bool = False) -> Case:
        def change(folder: Path, doc: dict[str, Any]) -> None:
            if uplink:
                with_uplink(folder, doc)
            node = doc
            *parents, last = key.split(".")
            for k in parents:
                node = node.setdefault(k, {})
            node[last] = str(make(folder))

        return _edit(change)

    cases: dict[str, Case] = {
        "good file (control)": _edit(lambda f, d: None),
        "empty file": _bytes(lambda f, r, s: b""),
        "only comments": _bytes(lambda f, r, s: b"# nothing here\n\n   \n"),
        "null document": _bytes(lambda f, r, s: b"~\n"),
        "invalid UTF-8": _bytes(lambda f, r, s: good_text(f).replace(b"fuzz-site", b"fuzz-\xff\xfe-site")),
        "binary": _bytes(lambda f, r, s: r.randbytes(8192)),
        "UTF-16 with BOM": _bytes(lambda f, r, s: good_text(f).decode().encode("utf-16")),
        "UTF-8 BOM": _bytes(lambda f, r, s: b"\xef\xbb\xbf" + good_text(f)),
        "CRLF line ends": _bytes(lambda f, r, s: good_text(f).replace(b"\n", b"\r\n")),
        "NUL bytes": _bytes(lambda f, r, s: good_text(f).replace(b"area", b"ar\x00ea")),
        "control characters in a name": _set("site.name", "\x1b[31mred\x07\x08"),
        "lone surrogate escape": _bytes(
            lambda f, r, s: good_text(f).replace(b"site:\n", b'site:\n  name: "\\ud800"\n', 1)
        ),
        "deep nesting (flow)": _bytes(lambda f, r, s: b"site: " + nested(100_000) + b"\n"),
        "deep nesting (block)": _bytes(
            lambda f, r, s: b"".join(b"  " * i + b"a:\n" for i in range(1000)) + b"  " * 1000 + b"b: 1\n"
        ),
        "billion laughs": _bytes(
            lambda f, r, s: (
                b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
                + b"".join(
                    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n".encode() for i in range(9)
                )
            )
        ),
        "huge file": _bytes(lambda f, r, s: good_text(f) + b"# " + b"x" * ((12 if s else 60) << 20) + b"\n"),
        "one very long value": _set("site.name", "n" * 2_000_000),
        "unknown top-level key": _edit(lambda f, d: d.update(sites={"id": "x"})),
        "unknown nested key": _set("poll.intervall_s", 5),
        "wrong type: text for a number": _set("poll.interval_s", "fast"),
        "wrong type: map for a list": _set("hosts", {"id": "panel"}),
        "wrong type: bool for a number": _set("poll.retries", True),
        "poll.interval_s: .inf": _set("poll.interval_s", float("inf")),
        "poll.timeout_s: .nan": _set("poll.timeout_s", float("nan")),
        "poll.timeout_s: .inf": _set("poll.timeout_s", float("inf")),
        "negative interval": _set("poll.interval_s", -5),
        "absurd number 1e308": _set("poll.interval_s", 1e308),
        "tiny interval": _set("poll.interval_s", 1e-9),
        "integer of 5,000 digits": _bytes(
            lambda f, r, s: good_text(f).replace(b"slot: 1", b"slot: 1" + b"0" * 4999, 1)
        ),
        "port 70000": _set("hosts[0].modbus.port", 70000),
        "bad site id": _set("site.id", "../../etc/passwd"),
        "site section missing": _edit(lambda f, d: d.pop("site")),
        "top level is a list": _bytes(lambda f, r, s: yaml.safe_dump([base_doc(f)]).encode()),
        "top level is a string": _bytes(lambda f, r, s: b"just some text\n"),
        "duplicate keys": _bytes(lambda f, r, s: good_text(f) + b"poll: {interval_s: 1}\n"),
        "YAML syntax error": _bytes(lambda f, r, s: good_text(f) + b"hosts: [\n  - {id: x\n\tkind: }\n"),
        "two YAML documents": _bytes(lambda f, r, s: good_text(f) + b"---\n" + good_text(f)),
        "python object tag": _bytes(
            lambda f, r, s: good_text(f).replace(
                b"site:\n", f'site:\n  name: !!python/object/apply:os.system ["touch {f / MARKER}"]\n'.encode(), 1
            )
        ),
        "impossible date": _set("site.commissioned_on", "2026-13-45"),
        "path with a NUL": _set("store.path", "fuzz\x00.db"),
        "host with no transport": _edit(lambda f, d: d["hosts"][0].pop("modbus")),
        "parent not a repeater": _set("hosts[0].devices[2].parent", "pir-1"),
        "duplicate device ids": _edit(lambda f, d: d["hosts"][0]["devices"].append(dict(d["hosts"][0]["devices"][1]))),
        "duplicate slots": _set("hosts[0].devices[2].slot", 2),
        "unknown device kind": _set("hosts[0].devices[2].kind", "toaster"),
        "bad host address": _set("hosts[0].modbus.address", "not a host!"),
        "unknown register profile": _set("hosts[0].model", "no-such-panel"),
        "8,000 devices": _edit(_devices(8000)),
        "faults_file missing": set_ref("faults_file", lambda f: f / "missing-faults.yaml"),
        "faults_file is a folder": set_ref("faults_file", _file("faults", None)),
        "faults_file is /dev/zero": set_ref("faults_file", lambda f: Path("/dev/zero")),
        "faults_file is binary": set_ref("faults_file", _file("faults.yaml", bytes(range(256)) * 10)),
        "faults_file with an .inf threshold": set_ref(
            "faults_file",
            _file(
                "faults.yaml",
                (ROOT / "diagnostics" / "faults.yaml").read_bytes().replace(b"default: 2.6}", b"default: .inf}"),
            ),
        ),
        "profiles_dir names a file": set_ref("profiles_dir", _file("profiles", b"not a folder\n")),
        "profiles_dir missing": set_ref("profiles_dir", lambda f: f / "no-profiles"),
        "store.path is a folder": set_ref("store.path", _file("store", None)),
        "tokens_file missing": set_ref("http.tokens_file", lambda f: f / "no-tokens.yaml"),
        "tokens_file is a folder": set_ref("http.tokens_file", _file("tokens", None)),
        "tokens_file is binary": set_ref("http.tokens_file", _file("tokens.bin", b"\x00\xff" * 500)),
        "tokens_file with a bad hash": set_ref(
            "http.tokens_file", _file("bad-tokens.yaml", b"tokens:\n  x: {role: viewer, sha256: xyz}\n")
        ),
        "users_file missing": set_ref("remote.users_file", lambda f: f / "nobody.yaml", uplink=True),
        "users_file with a bad public key": _edit(
            lambda f, d: with_uplink(f, d, "users:\n  eve: {role: engineer, public_key: 'not base64!!'}\n")
        ),
        "tls ca_file missing": _edit(lambda f, d: with_uplink(f, d, tls={"ca_file": "no-ca.pem"})),
        "tls ca_file not a certificate": _edit(
            lambda f, d: (_file("ca.pem", b"hello\n")(f), with_uplink(f, d, tls={"ca_file": "ca.pem"}))
        ),
        "tls key_file without cert_file": _edit(
            lambda f, d: (_file("k.pem", b"key\n")(f), with_uplink(f, d, tls={"key_file": "k.pem"}))
        ),
        "password_file missing": _edit(lambda f, d: with_uplink(f, d, username="u", password_file="no-pass")),
        "password_file empty": _edit(
            lambda f, d: (_file("pass", b"\n")(f), with_uplink(f, d, username="u", password_file="pass"))
        ),
        "remote without uplink": _edit(lambda f, d: (with_uplink(f, d), d.pop("uplink"))),
        "zigbee2mqtt without device_broker": _edit(
            lambda f, d: d.update(
                zigbee2mqtt=[{"id": "zb", "devices": [{"id": "z", "friendly_name": "z", "kind": "pir_detector"}]}]
            )
        ),
        "topic root with a wildcard": _edit(lambda f, d: (with_uplink(f, d), d["uplink"].update(topic_root="a/#"))),
        "influxdb url not http": _edit(lambda f, d: d.update(influxdb={"url": "ftp://x", "bucket": "b"})),
        "10,000 escalation marks": _set("escalation.marks.response", [60.0] * 10_000),
        "site file is a folder": _case_site_is_folder,
        "site file missing": lambda f, r, s: f / "missing.yaml",
        "site file is a FIFO": _case_fifo,
        "site file is /dev/zero": lambda f, r, s: Path("/dev/zero"),
        "site file is a symlink loop": _case_symlink_loop,
    }
    return cases


@dataclass
class Outcome:
    kind: str
    check: int | str
    run: int | str
    tracebacks: int
    note: str = ""


def limit_memory() -> None:
    """A broken file must not take this machine down with it: 3 GiB of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


SHORT_KINDS = 45
START_S = 60.0  # `run` refuses a file or logs that it runs within this (start-up is about 2 s)


def try_file(kind: str, case: Case, folder: Path, rng: random.Random, short: bool, run_s: float) -> Outcome:
    """One broken file to `check-config`, then to `run`: either `run` refuses it (its exit
    code), or it starts (it logs that it runs), runs `run_s` seconds and is stopped with
    SIGTERM, which must end it with 0."""
    folder.mkdir(parents=True)
    site = case(folder, rng, short)
    wide = {**os.environ, "COLUMNS": "1000"}  # one line per message, as a log would keep it
    chk = run_cli(["check-config", str(site)], START_S, preexec_fn=limit_memory, env=wide)
    check: int | str = "hang" if chk.returncode == -9 else chk.returncode
    log = LogLines(folder / "run.stderr")
    proc = subprocess.Popen(
        [*ALARMGW, "run", "-c", str(site)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        preexec_fn=limit_memory,
        env=wide,
    )
    assert proc.stderr is not None
    reader = log.follow(proc.stderr)
    deadline = time.monotonic() + START_S
    started = False
    while proc.poll() is None and time.monotonic() < deadline and not started:
        started = log.wait_for(UP, 0, 0.2) is not None
    ran: int | str
    if proc.poll() is not None:
        ran = proc.returncode
    else:
        if started:
            time.sleep(run_s)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
            how = f"exit {code} on SIGTERM"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            how = "deaf to SIGTERM"
        if started:
            ran = "running" if how == "exit 0 on SIGTERM" else f"running, {how}"
        else:
            ran = f"neither refused nor started in {START_S:g} s, {how}"
    reader.join(5)
    log.close()
    err = "".join(log.lines)
    tb = (TRACEBACK in chk.stderr) + (TRACEBACK in err)
    said = " ".join(chk.stderr.replace(str(folder) + "/", "").split())
    (folder / "check-config.stderr").write_text(chk.stderr)
    return Outcome(kind, check, ran, tb, said[:110])


def phase_site_files(base: Path, seed: int, short: bool) -> dict[str, Any]:
    cases = fuzz_cases()
    rng = random.Random(seed + 4)
    seeds = {kind: rng.randrange(1 << 30) for kind in cases}
    every = len(cases)
    if short:  # the good file and a seeded sample of the broken ones: each costs two start-ups
        control, *broken = cases
        cases = {k: cases[k] for k in [control, *rng.sample(broken, SHORT_KINDS - 1)]}
    run_s = 3.0
    say(
        f"\n== phase 4: {len(cases)} kinds of site file (of {every}), each to `check-config` and to `run` "
        f"(once it runs: {run_s:g} s, then SIGTERM) =="
    )
    results: list[Outcome] = []
    lock = threading.Lock()
    queue = iter(sorted(cases.items()))
    t0 = time.monotonic()

    def worker() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            kind, case = item
            slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
            try:
                out = try_file(kind, case, base / "site-files" / slug, random.Random(seeds[kind]), short, run_s)
            except Exception as exc:  # the bench's own trouble with a case: shown, not hidden
                out = Outcome(kind, "bench error", "-", 0, f"{type(exc).__name__}: {exc}"[:100])
            with lock:
                results.append(out)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.sort(key=lambda o: o.kind)
    disagree = []
    bad_exit = []
    for o in results:
        accepted_run = (isinstance(o.run, str) and o.run.startswith("running")) or o.run == 0
        if (o.check == 0) != accepted_run or (o.check != 0 and o.run not in (o.check, 2)):
            disagree.append(o.kind)
        if o.check not in (0, 2) or not (accepted_run or o.run == 2):
            bad_exit.append(o.kind)
        flag = " <-- TRACEBACK" if o.tracebacks else " <-- disagree" if o.kind in disagree else ""
        say(f"  {o.kind:38} check-config {o.check!s:>4}  run {o.run!s:>8}  {o.note}{flag}")
    tracebacks = sum(o.tracebacks for o in results)
    pwned = any((base / "site-files").rglob(MARKER))
    say(
        f"{len(results)} kinds in {time.monotonic() - t0:.0f} s: "
        f"accepted by check-config {sum(o.check == 0 for o in results)}; "
        f"stderr with a traceback {tracebacks}; check-config and run disagree on {len(disagree)} {disagree[:6]}; "
        f"exit codes other than 0/2 (or still running) {len(bad_exit)} {bad_exit[:6]}; "
        f"python tag executed: {'YES' if pwned else 'no'}"
    )
    return {"tracebacks": tracebacks, "kinds": len(results), "disagree": len(disagree), "bad_exit": len(bad_exit)}


# --- the whole run -------------------------------------------------------------------------------


def guarded(name: str, phase: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """A phase that fails in the bench itself (not in the gateway) is reported and skipped."""
    try:
        return phase()
    except Exception as exc:
        say(f"phase {name} could not finish: {type(exc).__name__}: {exc}")
        return None


def fmt(value: Any, spec: str = "") -> str:
    return "na" if value is None else format(value, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="a quicker run of every phase (shorter outage and lives)")
    ap.add_argument("--phases", default="1,2,3,4", help="which phases, e.g. 1,3")
    args = ap.parse_args()
    phases = {int(p) for p in args.phases.split(",") if p.strip()}
    base = Path(tempfile.mkdtemp(prefix="alarmgw-chaos-"))
    t0 = time.monotonic()
    say(f"chaos suite, seed {args.seed}{', short' if args.short else ''}, phases {sorted(phases)}; files in {base}")
    engineer = make_engineer(base)
    say(
        "remote desk: Ed25519 key pair from `alarmgw keygen`; remote moves included"
        if engineer.key_file
        else f"remote desk: {engineer.why_not}"
    )
    r1 = r2 = r3 = r4 = None
    if 1 in phases:
        r1 = guarded("1", lambda: phase_kills(base, engineer, args.seed, args.short))
    if 2 in phases:
        r2 = guarded("2", lambda: phase_outage(base, engineer, args.seed, args.short))
    if 3 in phases:
        r3 = guarded("3", lambda: phase_junk(base, engineer, args.seed, args.short))
    if 4 in phases:
        r4 = guarded("4", lambda: phase_site_files(base, args.seed, args.short))
    say(f"\nall phases in {time.monotonic() - t0:.0f} s")

    def total(key: str, *results: dict[str, Any] | None) -> int | None:
        ran = [r for r in results if r is not None]
        return sum(r[key] for r in ran) if ran else None

    lost = total("lost", r1, r2)
    duplicated = total("duplicated", r1, r2)
    tracebacks = r4["tracebacks"] if r4 else None
    versions = r2["versions"] if r2 else None
    rss = r3["rss_growth"] if r3 else None
    latency = r3["flood_latency"] if r3 else None
    log_tb = total("log_tracebacks", r1, r2, r3)
    say(
        f"chaos_lost={fmt(lost)} chaos_duplicated={fmt(duplicated)} chaos_tracebacks={fmt(tracebacks)} "
        f"versions_received={fmt(versions)} junk_rss_growth_mb={fmt(rss, '.1f')} "
        f"fault_latency_under_flood_s={fmt(latency, '.2f')} "
        f"tickets_present={fmt(r1 and r1['present'])} integrity={fmt(r1 and r1['integrity'])} "
        f"order_violations={fmt(r2 and r2['order_violations'])} "
        f"duplicates_delivered={fmt(r2 and r2['duplicates_delivered'])} "
        f"false_tickets={fmt(r3 and r3['false_tickets'])} audit_growth_rows={fmt(r3 and r3['audit_growth'])} "
        f"still_working={fmt(r3 and ('yes' if r3['still_working'] else 'no'))} "
        f"config_kinds={fmt(r4 and r4['kinds'])} config_disagreements={fmt(r4 and r4['disagree'])} "
        f"gateway_log_tracebacks={fmt(log_tb)} remote_moves={'yes' if engineer.key_file else 'no'}"
    )
    finished = all(r is not None for p, r in ((1, r1), (2, r2), (3, r3), (4, r4)) if p in phases)
    ok = (
        finished
        and not lost
        and not duplicated
        and not tracebacks
        and (r2 is None or r2["versions_complete"])
        and (r3 is None or r3["still_working"])
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
