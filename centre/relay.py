"""Engineers act through the desk: a ticket move made at the centre reaches the site's gateway
as a signed remote command, in the engineer's name (the same MQTT 5 request/response and
wire format as `alarmgw remote`, `alarmgw.remote_wire`).

The centre's obligation is the response clock, so a move is recorded in `relay_queue` at the
moment it is made, whether the site is reachable or not, and carries that moment as
`made_at`: a site that was dark takes the move when it is back and stamps its ticket with
the time the engineer made it. Moves of one site go in the order they were made, one at a
time; an answer settles a move (`done`, or `refused` with the gateway's reason, e.g. the
ticket had moved on); no answer leaves it pending, to be tried again after `retry_s`.

The keys: the centre signs with each engineer's own Ed25519 key, kept in `keys_dir` as
`<engineer>.key` (made with `alarmgw keygen NAME`); the sites' users files list the public
halves as for the engineer's own tool. An engineer without a key here cannot act through
the desk, and is told so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from alarmgw.clock import Clock, iso, parse_iso
from alarmgw.diagnostics.tickets import MOVES, STAMP
from alarmgw.drivers.mqtt_link import BrokerSpec, payload_bytes
from alarmgw.remote_wire import make_request
from alarmgw.tasks import raise_if_cancelling
from alarmgw.yamlfile import read_text

from .batch import write_tickets
from .parse import MAX_INT, TicketVersion

log = logging.getLogger(__name__)

MAX_NOTE = 500  # the gateway keeps this much of a note
MAX_RECONCILE_ASKS = 100  # tickets asked for one by one per site and round (those it no longer lists)
# A ticket's stamps, the latest of which is when it last changed.
TICKET_STAMPS = ("opened_at", *STAMP.values(), "restored_at")


class RelayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    keys_dir: Path  # <engineer>.key: each engineer's Ed25519 private key (PEM, unencrypted, 0600)
    timeout_s: float = Field(default=10.0, gt=0, le=300)  # for the gateway's answer
    retry_s: float = Field(default=30.0, gt=0, le=3600)  # before a move without an answer is sent again
    look_s: float = Field(default=2.0, gt=0, le=60)  # how often the queue is looked at
    # How often every online site is asked for its open tickets, to fill in ticket versions
    # the stream lost (0: never); and the user, with a key here and the viewer role at the sites.
    reconcile_s: float = Field(default=600.0, ge=0, le=86_400)
    reconcile_as: str = Field(default="centre", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class RelayRefused(Exception):
    """A move that cannot be sent: an unknown action, an engineer without a key here, or the
    site's gateway refused it; the message says why."""


class RelayUnreachable(Exception):
    """The move could not reach the site's gateway (or its answer did not come back)."""


def load_keys(folder: Path) -> dict[str, Ed25519PrivateKey]:
    """Every `<name>.key` in `folder`; a file that is not an unencrypted Ed25519 key is skipped
    with a warning naming it, so one bad file does not take every engineer off the desk."""
    keys: dict[str, Ed25519PrivateKey] = {}
    for path in sorted(folder.glob("*.key")):
        try:
            key = load_pem_private_key(read_text(path, max_bytes=16 * 1024).encode(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            log.warning("relay: %s is not an unencrypted private key (%s); skipped", path, type(exc).__name__)
            continue
        if not isinstance(key, Ed25519PrivateKey):
            log.warning("relay: %s is not an Ed25519 key; skipped", path)
            continue
        keys[path.stem] = key
    return keys


class Relay:
    """Queues moves made at the desk and delivers them to the sites' gateways."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        broker: BrokerSpec,
        topic_root: str,
        keys: Mapping[str, Ed25519PrivateKey],
        clock: Clock,
        config: RelayConfig,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.root = topic_root
        self.keys = dict(keys)
        self.clock = clock
        self.cfg = config
        self._wake = asyncio.Event()
        self.delivered = 0
        self.refused = 0
        self.reconciled = 0  # ticket versions the stream had lost, filled in from the sites
        self.reconcile_rounds = 0
        self._next_reconcile = clock.monotonic() + config.reconcile_s

    async def move(
        self, site: str, ticket_id: int, action: str, engineer: str, note: str = "", made_at: datetime | None = None
    ) -> int:
        """Record a move now (its `made_at`) and have it delivered; the queue row's id."""
        if action not in MOVES:
            raise RelayRefused(f"unknown move {action!r}; one of {', '.join(MOVES)}")
        if engineer not in self.keys:
            raise RelayRefused(f"{engineer} has no key at the centre ({self.cfg.keys_dir}/{engineer}.key)")
        at = made_at or self.clock.now()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO relay_queue (site_id, ticket_id, action, engineer, note, made_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (site, ticket_id, action, engineer, note[:MAX_NOTE], at),
            )
            row = await cur.fetchone()
        assert row is not None
        self._wake.set()
        return int(row[0])

    async def run(self) -> None:
        """Deliver until cancelled, reconnecting to the broker as needed."""
        while True:
            try:
                async with self.broker.client() as client:
                    await client.subscribe(f"{self.root}/+/cmd/reply/+", qos=1)
                    await self._deliver(client)
            except aiomqtt.MqttError as exc:
                log.warning("relay: broker %s:%d: %s; again in %.0f s", self.broker.host, self.broker.port, exc, 5)
                await self.clock.sleep_until(self.clock.monotonic() + 5.0)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        answers: asyncio.Queue[tuple[bytes, dict[str, Any]]] = asyncio.Queue(maxsize=256)

        async def listen() -> None:
            async for m in client.messages:
                correlation = getattr(m.properties, "CorrelationData", None)
                try:
                    doc = json.loads(payload_bytes(m))
                except (ValueError, RecursionError):
                    continue
                if isinstance(correlation, bytes) and isinstance(doc, dict) and not answers.full():
                    answers.put_nowait((correlation, doc))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(listen())
            while True:
                raise_if_cancelling()  # a publish (wait_for inside aiomqtt) may have eaten one
                for row in await self._due():
                    await self._send(client, row, answers)
                if self.cfg.reconcile_s and self.clock.monotonic() >= self._next_reconcile:
                    await self._reconcile(client, answers)
                    self._next_reconcile = self.clock.monotonic() + self.cfg.reconcile_s
                self._wake.clear()
                wait = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({wait}, timeout=self.cfg.look_s)
                finally:
                    wait.cancel()

    async def _due(self) -> list[tuple[Any, ...]]:
        """The oldest pending move of each online site whose last try is older than retry_s."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (q.site_id) q.id, q.site_id, q.ticket_id, q.action, q.engineer, q.note,"
                " q.made_at, q.last_try_at FROM relay_queue q JOIN sites s ON s.id = q.site_id"
                " WHERE q.state = 'pending' AND s.status = 'online' ORDER BY q.site_id, q.id"
            )
            rows = await cur.fetchall()
        now = self.clock.now()
        return [r for r in rows if r[7] is None or (now - r[7]).total_seconds() >= self.cfg.retry_s]

    async def _send(
        self, client: aiomqtt.Client, row: tuple[Any, ...], answers: asyncio.Queue[tuple[bytes, dict[str, Any]]]
    ) -> None:
        qid, site, ticket_id, action, engineer, note, made_at, _ = row
        args: dict[str, Any] = {"id": ticket_id, "made_at": iso(made_at)}
        if note:
            args["note"] = note
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE relay_queue SET attempts = attempts + 1, last_try_at = %s WHERE id = %s",
                (self.clock.now(), qid),
            )
        doc = await self._ask(client, answers, site, engineer, action, args, f"relay-{qid}")
        if doc is None:
            log.info("relay: no answer from %s to %s of ticket %s yet; it stays queued", site, action, ticket_id)
            return
        state = "done" if doc.get("ok") is True else "refused"
        if state == "done":
            self.delivered += 1
        else:
            self.refused += 1
            log.warning(
                "relay: %s refused %s's %s of ticket %s: %s", site, engineer, action, ticket_id, doc.get("error")
            )
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE relay_queue SET state = %s, answer = %s, done_at = %s WHERE id = %s",
                (state, Jsonb(doc), self.clock.now(), qid),
            )

    async def _ask(
        self,
        client: aiomqtt.Client,
        answers: asyncio.Queue[tuple[bytes, dict[str, Any]]],
        site: str,
        user: str,
        command: str,
        args: dict[str, Any],
        reply: str,
    ) -> dict[str, Any] | None:
        """One signed request to a site's gateway and its answer, or None within `timeout_s`."""
        root = f"{self.root}/{site}"
        payload = make_request(user, self.keys[user], root, command, args, self.clock.now())
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"{root}/cmd/reply/{reply}"
        props.CorrelationData = correlation
        await client.publish(f"{root}/cmd", payload, qos=1, properties=props)
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                while True:
                    got, doc = await answers.get()
                    if got == correlation:
                        return doc
        except TimeoutError:
            return None

    async def _reconcile(self, client: aiomqtt.Client, answers: asyncio.Queue[tuple[bytes, dict[str, Any]]]) -> None:
        """Ask every online site for its open tickets, and for each ticket the centre holds open
        that the site no longer lists; keep what is newer than the centre's copy. The stream is
        at least once only while the broker keeps its queues (docs/benchmarks.md): this makes
        the tickets whole whatever was lost on the way."""
        who = self.cfg.reconcile_as
        if who not in self.keys:
            if self.reconcile_rounds == 0:
                log.warning(
                    "relay: no key for %s (%s/%s.key): ticket versions the stream lost are not filled in",
                    who,
                    self.cfg.keys_dir,
                    who,
                )
            self.reconcile_rounds += 1
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM sites WHERE status = 'online' ORDER BY id")
            sites = [str(r[0]) for r in await cur.fetchall()]
        log.debug("relay: reconciling the tickets of %d online site(s)", len(sites))
        for site in sites:
            doc = await self._ask(client, answers, site, who, "tickets", {}, "reconcile")
            if doc is None or doc.get("ok") is not True or not isinstance(doc.get("result"), list):
                log.info("relay: %s gave no ticket list to reconcile with: %s", site, (doc or {}).get("error"))
                continue
            listed = {t["id"]: t for t in doc["result"] if isinstance(t, dict) and isinstance(t.get("id"), int)}
            async with self.pool.connection() as conn:
                cur = await conn.execute("SELECT ticket_id, version, state FROM tickets WHERE site_id = %s", (site,))
                held = {int(r[0]): (int(r[1]), str(r[2])) for r in await cur.fetchall()}
            gone = [i for i, (_v, st) in held.items() if st not in ("resolved", "closed") and i not in listed]
            for ticket_id in gone[:MAX_RECONCILE_ASKS]:
                one = await self._ask(client, answers, site, who, "ticket", {"id": ticket_id}, "reconcile")
                if one is not None and one.get("ok") is True and isinstance(one.get("result"), dict):
                    listed[ticket_id] = one["result"]
            newer = {}
            for ticket_id, t in listed.items():
                v = _version(site, t)
                if v is not None and (ticket_id not in held or v.version > held[ticket_id][0]):
                    newer[(site, ticket_id)] = v
            if newer:
                async with self.pool.connection() as conn:
                    await write_tickets(conn, newer, self.clock.now())
                self.reconciled += len(newer)
                log.warning(
                    "relay: %s: %d ticket version(s) the stream lost, filled in from the site: %s",
                    site,
                    len(newer),
                    ", ".join(f"{i} v{v.version}" for (_s, i), v in sorted(newer.items())[:20]),
                )
        self.reconcile_rounds += 1


def _version(site: str, t: dict[str, Any]) -> TicketVersion | None:
    """A ticket as the gateway answers it, as the centre keeps it; None if it is not one."""
    try:
        stamps = [parse_iso(str(t[k])) for k in TICKET_STAMPS if t.get(k)]
        doc = {k: v for k, v in t.items() if k != "actions"}
        version = t["version"]
        if t["site"] != site or type(version) is not int or not 0 <= version <= MAX_INT:
            return None
        return TicketVersion(
            site,
            int(t["id"]),
            version,
            str(t["state"]),
            str(t["fault"]),
            str(t["device"]),
            bool(t["fault_active"]),
            parse_iso(str(t["opened_at"])),
            max(stamps),
            json.dumps(doc),
        )
    except (KeyError, ValueError, TypeError):
        return None
