"""The site core: readings in, fault episodes, tickets and their outbox messages out.

One straight way from the wire to the outbox: a driver's readings reach `ingest`, the
diagnoser turns them into fault changes, the ticket desk says what each change does to the
tickets, and one store call writes the ticket, its log line, its uplink message and the
fault event in one transaction, or none of them. A change the store cannot take now (a
lock held too long, a full disk) waits, in order and with its detection time, and is
written on the next reading: nothing is reported twice and no clock starts late.
What was stored is then published on one stream of typed changes for whoever listens.

The core builds no front end: no HTTP, remote commands, InfluxDB or Home Assistant here.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from alarmgw.clock import Clock, iso
from alarmgw.diagnostics.engine import COMM_LOSS, CUTTING_FAULTS, UNMONITORED, Diagnoser, FaultChange, FaultRaised
from alarmgw.diagnostics.escalation import due_escalations
from alarmgw.diagnostics.tickets import Ticket, TicketError, TicketState
from alarmgw.diagnostics.visits import VISIT_FAULTS
from alarmgw.diagnostics.watch import Watch
from alarmgw.drivers.errors import DriverError
from alarmgw.model import Device, Reading

from .bus import Bus
from .changes import Change, DevicesJoined, ReadingsTaken, TicketEvent, VisitEnded
from .downtime import DowntimeWatch
from .maintenance import Visit, infos
from .messages import escalation_messages, fault_messages
from .polling import Link, build_polling
from .refusals import Conflict, Invalid, NotFound, Unavailable
from .scheduler import PollJob, RunObserver, run_jobs, stagger
from .site_file import LoadedSite
from .store import Store, StoreError, TicketNotFound, VisitConflict, VisitNotFound
from .store.records import AUDIT_RETENTION_DAYS, MIN_AUDIT_RETENTION_DAYS
from .store.visits import VisitRow
from .ticketing import TicketDesk

log = logging.getLogger(__name__)

# Fault changes waiting for a store that cannot take them. Each (device, fault) flips at most
# once per debounce, so this many means the store has been gone for a long time; past it the
# oldest are given up, loudly.
MAX_UNRECORDED = 10_000
# A polled device with no reading for this many of its poll intervals is unmonitored (or
# sooner, at its supervision window).
WATCH_POLLS = 3
# A move made earlier (recorded at the service centre while the site was offline) may be
# stamped this far in the future, for clocks a little apart, and this far in the past.
MOVE_SKEW = timedelta(seconds=60)
MOVE_MAX_AGE = timedelta(days=30)


class SiteCore:
    """One site's devices, diagnostics and tickets on an open store. It opens nothing: the
    caller owns the store and the links' lifetimes."""

    def __init__(self, site: LoadedSite, clock: Clock, store: Store, *, uplink_root: str | None = None) -> None:
        cfg = site.config
        self.site = site
        self.clock = clock
        self.store = store
        self.uplink_root = uplink_root  # fault and escalation events are queued only with an uplink
        self.devices: dict[str, Device] = {d.id: d for d in cfg.devices()}
        self._kinds = {d.id: d.kind for d in self.devices.values()}
        self.table = site.fault_table  # loaded and checked with the site file
        self.diagnoser = Diagnoser(self.devices.values(), self.table, cfg.supervision())
        self.diagnoser.restore(store.tickets.active_faults())
        self.desk = TicketDesk(store.tickets, store.history, cfg.site, self.devices, self.table)
        self.changes: Bus[Change] = Bus()
        self.latest: dict[str, Reading] = {}
        self.readings_seen = 0
        self.record_failures = 0
        self._unrecorded: deque[FaultChange] = deque()
        self._sampled: dict[str, float] = {}
        polling = build_polling(site, self.devices, clock, self.ingest, adopt=self.adopt)
        self.polling = polling
        if polling.sia_receiver is not None:
            polling.sia_receiver.on_unknown = self._keep_unknown
        self.links: list[Link] = polling.links
        self.jobs: list[PollJob] = polling.jobs
        # The watch looks every poll interval: a much longer gap is the gateway's own absence.
        self.watch = Watch(clock.monotonic(), stall_s=3 * cfg.poll.interval_s)
        for d in self.devices.values():
            self.watch.add(d.id, self._window(d), clock.monotonic())
        self.watch.flag(dev for dev, fault in self.diagnoser.active() if fault == UNMONITORED)
        self.downtime = DowntimeWatch(store, self._gone_s, self._write_ticket)
        self.visit = Visit(store, cfg.site.id, infos(self.devices.values()))
        retention = timedelta(days=cfg.history.retention_days)
        # The operator's retention for the audit log (remote.audit_retention_days), never
        # under the floor the store itself enforces.
        audit_days = cfg.remote.audit_retention_days if cfg.remote is not None else AUDIT_RETENTION_DAYS
        audit_retention = timedelta(days=max(audit_days, MIN_AUDIT_RETENTION_DAYS))

        async def prune() -> None:
            now = self.clock.now()
            try:
                self.store.history.prune(now - retention)
            finally:
                self.store.audit.prune(now - audit_retention)

        self.jobs.append(PollJob("history-prune@1h", 3600.0, prune))
        self.jobs.append(PollJob(f"watch@{cfg.poll.interval_s:g}s", cfg.poll.interval_s, self.watch_now))
        self.jobs.append(
            PollJob(f"escalation@{cfg.escalation.interval_s:g}s", cfg.escalation.interval_s, self.escalate)
        )

    # --- from readings to the store -----------------------------------------------------

    def ingest(self, readings: Sequence[Reading]) -> None:
        """Feed readings through diagnostics into tickets. Called by every driver."""
        observe = self.diagnoser.observe
        latest, sampled = self.latest, self._sampled
        every = self.site.config.history.interval_s
        now = self.clock.monotonic()
        heard = self.watch.heard
        back = [
            Reading(r.device_id, r.at, {UNMONITORED: False})
            for r in readings
            if r.values and UNMONITORED not in r.values and heard(r.device_id, now)
        ]
        if back:
            readings = [*back, *readings]
        samples = []
        changes: list[FaultChange] = []
        for r in readings:
            # What each device last said of every field: a reading that says one thing (a
            # pushed message, a link verdict) keeps what the others said.
            last = latest.get(r.device_id)
            latest[r.device_id] = r if last is None or last.values.keys() <= r.values.keys() else r.merged_over(last)
            if r.values and now - sampled.get(r.device_id, -1e18) >= every:
                sampled[r.device_id] = now
                samples.append((r.device_id, r.at, r.values))
            found = observe(r)
            if found:
                changes.extend(found)
        self.readings_seen += len(readings)
        if self.downtime.watched():
            self.downtime.heard(readings)
        if self.visit.running:
            self.visit.observe(readings)
        if changes or self._unrecorded:
            self._record(changes)
        self.changes.publish(ReadingsTaken(readings))
        if samples:
            try:
                self.store.history.add(samples)  # one transaction for the whole poll
            except StoreError as exc:
                log.warning("could not keep %d history samples: %s", len(samples), exc)

    def _keep_unknown(self, unknown: Any, at: datetime) -> None:
        """A report the gateway does not map (an IP hub's unknown code or zone): kept in the
        device's history for a person to look at, never guessed at."""
        try:
            self.store.history.add([(unknown.device_id, at, unknown.sample())])
        except StoreError as exc:
            log.warning("could not keep an unknown report of %s: %s", unknown.device_id, exc)

    def _record(self, changes: Sequence[FaultChange]) -> None:
        """Write fault changes in order; what cannot be written now waits for the next try."""
        self._unrecorded.extend(changes)
        while len(self._unrecorded) > MAX_UNRECORDED:
            lost = self._unrecorded.popleft()
            log.error("store unwritable for too long: gave up %s", lost)
        while self._unrecorded:
            change = self._unrecorded[0]
            try:
                event = self._record_one(change)
            except Exception as exc:
                self.record_failures += 1
                waiting = len(self._unrecorded)
                if isinstance(exc, StoreError):
                    log.warning("could not record %s (%s); %d fault changes wait for the store", change, exc, waiting)
                else:
                    log.exception("could not record %s; %d fault changes wait", change, waiting)
                return
            self._unrecorded.popleft()
            self.changes.publish(change)
            if event is not None:
                self.changes.publish(event)

    def _record_one(self, change: FaultChange) -> TicketEvent | None:
        """One transaction: the fault event and what it does to a ticket."""
        root = self.uplink_root
        site_id = self.site.config.site.id
        messages = fault_messages(root, site_id, [change], self.table, self._kinds) if root else []
        if self.visit.takes(change):  # the engineer's own doing during a visit: a finding
            self.store.outbox.enqueue(messages)
            return None
        ticket_change = self.desk.apply(change)
        if ticket_change is None:
            self.store.outbox.enqueue(messages)
            return None
        stored = self.store.tickets.write(
            ticket_change.ticket, ticket_change.action, ticket_change.at, note=ticket_change.note, messages=messages
        )
        log.info("ticket %s %s: %s %s", stored.id, ticket_change.action, stored.device_id, stored.fault)
        return TicketEvent(ticket_change.action, stored, self.clock.now())

    # --- never silently unmonitored ------------------------------------------------------

    def _window(self, d: Device) -> float | None:
        """How long the device may go without any reading: its supervision window, or a few
        of its poll intervals if sooner; None for a device nothing is expected from."""
        windows = [self.site.config.supervision().get(d.kind.value)]
        job = self.polling.job_of.get(d.id)
        if job is not None:
            windows.append(WATCH_POLLS * job.interval_s)
        known = [w for w in windows if w is not None]
        return min(known) if known else None

    def _explained(self, device_id: str, overdue: set[str]) -> bool:
        """Not hearing the device is already accounted for: it is lost itself, or something
        above it is cut off (in a fault, or overdue in the same look)."""
        active = self.diagnoser.is_active
        if active(device_id, COMM_LOSS):
            return True
        return any(
            a in overdue or any(active(a, f) for f in CUTTING_FAULTS)
            for a in self.diagnoser.topology.ancestors(device_id)
        )

    def _gone_s(self, device_id: str) -> float:
        """How long a device may go unheard before its downtime starts: its radio
        supervision window, or a few of its poll intervals."""
        d = self.devices.get(device_id)
        window = self.site.config.supervision().get(d.kind.value) if d is not None else None
        if window is None and d is not None:
            window = self._window(d)
        return window if window is not None else WATCH_POLLS * self.site.config.poll.interval_s

    def _write_ticket(self, ticket: Ticket, action: str, at: datetime, note: str) -> Ticket | None:
        """Store a ticket the gateway changed itself and publish it; None if the store
        cannot take it now (the caller tries again later)."""
        try:
            stored = self.store.tickets.write(ticket, action, at, note=note)
        except StoreError as exc:
            log.warning("could not record ticket %s %s: %s", ticket.id, action, exc)
            return None
        log.info("ticket %s %s: %s", stored.id, action, note)
        self.changes.publish(TicketEvent(action, stored, self.clock.now()))
        return stored

    async def watch_now(self) -> None:
        """Raise `unmonitored` on every device no reading has reached within its window,
        and start the downtime of a device being repaired that went away."""
        now = self.clock.now()
        try:
            self.downtime.look(now, self.latest)
        except StoreError as exc:
            log.warning("could not look at the tickets being repaired: %s", exc)
        try:
            ended_elsewhere, expired = self.visit.look(now)
            if expired:
                self.finish_visit("gateway", ended="expired")
            elif ended_elsewhere is not None:
                self._after_visit(now)
                self.changes.publish(VisitEnded(ended_elsewhere, now))
        except (StoreError, Conflict) as exc:
            log.warning("could not look after the maintenance visit: %s", exc)
        overdue = set(self.watch.overdue(self.clock.monotonic()))
        raise_on = sorted(d for d in overdue if not self._explained(d, overdue))
        if raise_on:
            self.watch.flag(raise_on)
            log.warning("no reading of %s within its window: unmonitored", ", ".join(raise_on))
            at = self.clock.now()
            self.ingest([Reading(d, at, {UNMONITORED: True}) for d in raise_on])

    def adopt(self, devices: Sequence[Device]) -> None:
        """Devices that joined while running (paired on a bridge): diagnosed and watched
        from now on, like those of the site file."""
        new = [d for d in devices if d.id not in self.devices]
        if not new:
            return
        for d in new:
            self.devices[d.id] = d
            self._kinds[d.id] = d.kind
        self.diagnoser.add(new)
        now = self.clock.monotonic()
        for d in new:
            self.watch.add(d.id, self._window(d), now)
        log.info("now monitoring %s", ", ".join(d.id for d in new))
        self.changes.publish(DevicesJoined(new))

    # --- service clocks -------------------------------------------------------------------

    async def escalate(self) -> None:
        """Warn about every service clock that reached a mark, once per ticket, clock and mark."""
        marks = {str(k): v for k, v in self.site.config.escalation.marks.items()}
        now = self.clock.now()
        root, site_id = self.uplink_root, self.site.config.site.id
        open_tickets = self.store.tickets.all(include_closed=False)
        for e in due_escalations(open_tickets, now, marks, self.store.escalations.sent()):
            messages = escalation_messages(root, site_id, e) if root else None
            if self.store.escalations.record(e.ticket_id, e.clock, e.mark_s, now, messages):
                log.warning("escalation: %s", e.describe())
                self.changes.publish(e)

    # --- what people ask -------------------------------------------------------------------

    def move(
        self, ticket_id: int, to: TicketState, *, actor: str, note: str = "", made_at: datetime | None = None
    ) -> Ticket:
        """A person moves a ticket along its lifecycle (its uplink message goes with it).
        `made_at`: when the move was made, if earlier than now: a move the service centre
        recorded while the site was offline keeps its time, and so its clocks."""
        now = self.clock.now()
        at = now if made_at is None else self._made_at(ticket_id, made_at, now)
        try:
            stored = self.store.tickets.move(ticket_id, to, at, actor=actor, note=note)
        except TicketNotFound as exc:
            raise NotFound(str(exc)) from exc
        except TicketError as exc:
            raise Conflict(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"{exc}; try again") from exc
        self.changes.publish(TicketEvent(to.value, stored, now))
        return stored

    def set_user_action(self, ticket_id: int, text: str, *, actor: str) -> Ticket:
        """Record what the customer did about the failure; raises NotFound or Unavailable."""
        now = self.clock.now()
        try:
            stored = self.store.tickets.set_user_action(ticket_id, text, now, actor=actor)
        except TicketNotFound as exc:
            raise NotFound(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"{exc}; try again") from exc
        self.changes.publish(TicketEvent("user_action", stored, now))
        return stored

    def out_of_service(self, ticket_id: int, out: bool, *, actor: str) -> Ticket:
        """An engineer takes the ticket's device out of service (its downtime runs from its
        last reading) or puts it back (its next reading ends the downtime)."""
        now = self.clock.now()
        try:
            before = self.store.tickets.get(ticket_id)
            heard = self.downtime.last_heard(before.device_id, now)
            stored = self.store.tickets.set_out_of_service(ticket_id, out, now, actor=actor, last_heard=heard)
        except TicketNotFound as exc:
            raise NotFound(str(exc)) from exc
        except TicketError as exc:
            raise Conflict(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"{exc}; try again") from exc
        if stored.version == before.version:
            return stored
        action = "out_of_service" if out else "in_service"
        self.changes.publish(TicketEvent(action, stored, now))
        with contextlib.suppress(StoreError):  # else the next look takes it up
            self.downtime.look(now, self.latest)
        return stored

    # --- maintenance visits -------------------------------------------------------------------

    def start_visit(self, by: str, hours: float) -> VisitRow:
        """Put the site into maintenance: covers opened and batteries taken out are findings of
        the visit, not tickets, until it is finished or `hours` have passed."""
        try:
            return self.visit.start(by, self.clock.now(), hours)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        except VisitConflict as exc:
            raise Conflict(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"{exc}; try again") from exc

    def finish_visit(self, by: str, *, ended: str = "finished") -> VisitRow:
        """Close the running visit with its report, then ticket what it leaves behind."""
        now = self.clock.now()
        try:
            done = self.visit.finish(by, now, ended, self.active_faults())
        except VisitConflict as exc:
            raise Conflict(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable(f"{exc}; try again") from exc
        self._after_visit(now)
        self.changes.publish(VisitEnded(done.id, now))
        return done

    def visit_report(self, visit_id: int) -> VisitRow:
        try:
            return self.store.visits.get(visit_id)
        except VisitNotFound as exc:
            raise NotFound(str(exc)) from exc

    def _after_visit(self, at: datetime) -> None:
        """A cover still open or a battery still out once the visit is over is a fault like
        any other: ticketed now, detected at the visit's end."""
        left = [
            (d, f) for d, f in self.diagnoser.active() if f in VISIT_FAULTS and self.store.tickets.live(d, f) is None
        ]
        for device, fault in left:
            change = self.desk.apply(FaultRaised(device, fault, at, at))
            if change is not None:
                self._write_ticket(change.ticket, change.action, change.at, change.note)

    def _made_at(self, ticket_id: int, made_at: datetime, now: datetime) -> datetime:
        if made_at > now + MOVE_SKEW:
            raise Invalid(f"made_at {iso(made_at)} is in the future (the gateway's time is {iso(now)})")
        if made_at < now - MOVE_MAX_AGE:
            raise Invalid(f"made_at {iso(made_at)} is older than {MOVE_MAX_AGE.days} days")
        try:
            last = self.store.tickets.get(ticket_id).last_stamp()
        except TicketNotFound as exc:
            raise NotFound(str(exc)) from exc
        if made_at < last:
            raise Conflict(f"ticket {ticket_id} last moved at {iso(last)}, after made_at {iso(made_at)}")
        return min(made_at, now)

    async def poll_now(self, device_id: str) -> dict[str, Any]:
        """Poll the device's group at once (a remote engineer's request); its latest reading."""
        self._device(device_id)
        job = self.polling.job_of.get(device_id)
        if job is None:
            raise Invalid(f"{device_id} is not polled by this gateway; it reports by itself")
        await job.run()
        r = self.latest.get(device_id)
        return {"device": device_id, "at": iso(r.at) if r else None, "values": dict(r.values) if r else {}}

    async def self_test(self, device_id: str) -> dict[str, Any]:
        """Ask the device to run its self-test, then poll it for the result."""
        self._device(device_id)
        poller = self.polling.poller_of.get(device_id)
        if poller is None:
            raise Invalid(f"{device_id}: its host offers no self-test command to this gateway")
        try:
            await poller.command(device_id, "self_test")
        except DriverError as exc:
            raise Invalid(str(exc)) from exc
        polled = await self.poll_now(device_id)
        values = polled["values"] if isinstance(polled["values"], dict) else {}
        self.visit.self_tested(device_id, self.clock.now(), values.get("sensor_fault") is not True)
        return polled

    def _device(self, device_id: str) -> Device:
        d = self.devices.get(device_id)
        if d is None:
            raise NotFound(f"no device {device_id!r}")
        return d

    # --- what it knows ---------------------------------------------------------------------

    def active_faults(self) -> dict[str, list[str]]:
        active: dict[str, list[str]] = {}
        for dev, fault in self.diagnoser.active():
            active.setdefault(dev, []).append(fault)
        return active

    def stats(self) -> dict[str, int]:
        """Counters since start, for the log and for benchmarks."""
        feed = self.polling.mqtt_feed
        return {
            "readings": self.readings_seen,
            "polls": sum(j.runs for j in self.jobs),
            "poll_errors": sum(j.errors for j in self.jobs),
            "polls_skipped": sum(j.skipped for j in self.jobs),
            "requests": sum(link.requests for link in self.links),
            "link_failures": sum(link.failures for link in self.links),
            "link_refusals": sum(link.refusals for link in self.links),
            "active_faults": len(self.diagnoser.active()),
            "mqtt_messages": feed.messages if feed else 0,
            "mqtt_malformed": feed.malformed if feed else 0,
            "record_failures": self.record_failures,
            "unrecorded": len(self._unrecorded),
            "outbox_depth": self.store.outbox.depth(),
            "outbox_evicted": self.store.outbox.evicted,
            "outbox_overflowing": int(self.store.outbox.overflowing),
            **(self.polling.sia_receiver.stats() if self.polling.sia_receiver is not None else {}),
        }

    async def run(self, on_run: RunObserver | None = None) -> None:
        """Run every poll job, phases staggered, until cancelled."""
        stagger(self.jobs)
        await run_jobs(self.jobs, self.clock, on_run)
