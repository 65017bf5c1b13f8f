"""The gateway service: wires drivers, diagnostics, tickets and the store for one site."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock, SystemClock
from alarmgw.diagnostics.engine import Diagnoser, FaultChange, FaultRaised
from alarmgw.diagnostics.escalation import Escalation, due_escalations
from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.drivers.errors import DriverError
from alarmgw.drivers.it100_link import It100Link, It100Poller
from alarmgw.drivers.modbus_client import HostPoller, ModbusLink, rtu_link, tcp_link
from alarmgw.drivers.mqtt_devices import MqttDeviceFeed
from alarmgw.drivers.mqtt_link import BrokerSpec, subscribe_forever
from alarmgw.drivers.zigbee2mqtt import Zigbee2MqttRouter
from alarmgw.model import Device, Reading

from . import ha_discovery
from .bus import Bus
from .config import LoadedSite
from .metrics import GatewayMetrics
from .remote import RemoteDesk
from .scheduler import PollJob, Supervised, run_jobs, stagger
from .store import Store
from .ticketing import TicketDesk
from .uplink import Uplink

if TYPE_CHECKING:
    from .http_api import HttpServer
    from .influx import InfluxTelemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A ticket was opened or changed by the gateway (published on the bus)."""

    action: str  # opened | changed
    ticket: Ticket
    at: datetime


class Gateway:
    """One site's gateway. `async with Gateway(site) as gw: await gw.run()`."""

    def __init__(self, site: LoadedSite, clock: Clock | None = None, store: Store | None = None) -> None:
        self.site = site
        self.clock = clock or SystemClock()
        cfg = site.config
        self.devices: dict[str, Device] = {d.id: d for d in cfg.devices()}
        self._kinds = {d.id: d.kind.value for d in self.devices.values()}
        self.table = load_fault_table(site.faults_file)
        self.diagnoser = Diagnoser(self.devices.values(), self.table, cfg.supervision())
        self.store = store or Store(site.store_path, outbox_max=cfg.uplink.outbox_max if cfg.uplink else 10_000)
        self.uplink: Uplink | None = None
        self._ha_faults: dict[str, list[str]] = {}
        if cfg.uplink is not None and site.uplink_broker is not None:
            root = cfg.uplink.topic_root or f"alarmgw/{cfg.site.id}"
            self.uplink = Uplink(site.uplink_broker, root, cfg.site.id, self.store, self.clock)
            if cfg.uplink.home_assistant_prefix:
                self._setup_home_assistant(cfg.uplink.home_assistant_prefix, root)
        self.remote: RemoteDesk | None = None
        if cfg.remote is not None and site.users is not None and site.uplink_broker is not None:
            root = (cfg.uplink.topic_root if cfg.uplink else None) or f"alarmgw/{cfg.site.id}"
            self.remote = RemoteDesk(self, site.uplink_broker, root, site.users, cfg.remote.max_skew_s)
        self.desk = TicketDesk(self.store, cfg.site, self.devices, self.table)
        self.diagnoser.restore(self.store.active_faults())
        self.latest: dict[str, Reading] = {}
        self.tickets: Bus[TicketEvent] = Bus()
        self.faults: Bus[FaultChange] = Bus()
        self.escalations: Bus[Escalation] = Bus()
        self.readings_seen = 0
        self._sampled: dict[str, float] = {}
        self.record_failures = 0
        self.links: list[ModbusLink | It100Link] = []
        self.jobs: list[PollJob] = []
        self._job_of: dict[str, PollJob] = {}
        self._poller_of: dict[str, HostPoller] = {}
        self.mqtt_feed: MqttDeviceFeed | None = None
        self._build_pollers()
        self.metrics = GatewayMetrics(self)
        self.influx: InfluxTelemetry | None = None
        if cfg.influxdb is not None:
            from .influx import InfluxTelemetry  # aiohttp and influxdb-client: only when used

            links = {link.name: link for link in self.links}
            self.influx = InfluxTelemetry(cfg.influxdb, site.influx_token, cfg.site.id, self.devices, self.clock, links)
        self.http: HttpServer | None = None
        if cfg.http is not None and site.api_tokens is not None:
            from .http_api import HttpServer, build_app  # fastapi and uvicorn: only when used

            app = build_app(self, site.api_tokens, self.metrics, cfg.http.metrics_public)
            self.http = HttpServer(app, cfg.http.bind, cfg.http.port)  # binds now: a taken port fails here
        self.tasks = [Supervised(name, run, self.clock) for name, run in self._long_running()]

    def _long_running(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """What runs beside the poll jobs for as long as the gateway does."""
        out: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        feed, broker = self.mqtt_feed, self.site.device_broker
        if feed is not None and broker is not None:
            out.append(("mqtt-devices", lambda: self._listen(broker, feed)))
        for name, part in (("uplink", self.uplink), ("remote", self.remote), ("influxdb", self.influx)):
            if part is not None:
                out.append((name, part.run))
        if self.http is not None:
            out.append(("http", self.http.run))
        return out

    def _build_pollers(self) -> None:
        cfg = self.site.config

        def backoff() -> Backoff:
            return Backoff(cfg.poll.backoff_initial_s, cfg.poll.backoff_max_s)

        bus_links: dict[str, ModbusLink | It100Link] = {}
        for bus in cfg.buses:
            port = str(self.site.bus_ports[bus.id])
            common = {"timeout_s": bus.timeout_s, "retries": bus.retries, "backoff": backoff()}
            link: ModbusLink | It100Link = (
                rtu_link(bus.id, port, bus.baud, self.clock, **common)  # type: ignore[arg-type]
                if bus.protocol == "modbus_rtu"
                else It100Link(bus.id, port, bus.baud, self.clock, **common)  # type: ignore[arg-type]
            )
            bus_links[bus.id] = link
            self.links.append(link)
        for host in cfg.hosts:
            host_dev = self.devices[host.id]
            bus_cfg = next((b for b in cfg.buses if b.id == host.bus), None)
            host_interval = host.poll_interval_s or (bus_cfg and bus_cfg.poll_interval_s) or cfg.poll.interval_s
            if host.it100 is not None:
                it_link = bus_links[host.it100.bus]
                assert isinstance(it_link, It100Link)
                zones = {d.zone: self.devices[d.id] for d in host.devices if d.zone is not None}
                panel = It100Poller(host_dev, zones, it_link, self.clock, self.ingest)
                job = PollJob(f"{host.id}@{host_interval:g}s", host_interval, self._run(panel.poll))
                self.jobs.append(job)
                for device_id in (host.id, *(d.id for d in zones.values())):
                    self._job_of[device_id] = job
                continue
            if host.modbus is not None:
                mb_link: ModbusLink | It100Link = tcp_link(
                    host.id,
                    host.modbus.address,
                    host.modbus.port,
                    host.modbus.unit,
                    self.clock,
                    timeout_s=cfg.poll.timeout_s,
                    retries=cfg.poll.retries,
                    backoff=backoff(),
                )
                self.links.append(mb_link)
                unit = None
            else:
                assert host.rtu is not None
                mb_link, unit = bus_links[host.rtu.bus], host.rtu.unit
            assert isinstance(mb_link, ModbusLink)
            slots: list[tuple[Device, int]] = [(host_dev, 0)]
            groups: dict[float, list[str]] = {host_interval: [host.id]}
            for d in host.devices:
                assert d.slot is not None
                slots.append((self.devices[d.id], d.slot))
                groups.setdefault(d.poll_interval_s or host_interval, []).append(d.id)
            poller = HostPoller(host_dev, mb_link, self.site.profiles[host.model], slots, self.clock, unit)
            for interval, ids in sorted(groups.items()):
                self.jobs.append(self._job(f"{host.id}@{interval:g}s", interval, poller, ids))
        for bus in cfg.buses:
            interval = bus.poll_interval_s or cfg.poll.interval_s
            self.jobs.append(PollJob(f"{bus.id}@{interval:g}s", interval, self._bus_health(bus.id, bus_links[bus.id])))
        self._build_mqtt_devices()
        retention = timedelta(days=cfg.history.retention_days)

        async def prune() -> None:
            self.store.prune_history(self.clock.now() - retention)

        self.jobs.append(PollJob("history-prune@1h", 3600.0, prune))
        esc = cfg.escalation
        self.jobs.append(PollJob(f"escalation@{esc.interval_s:g}s", esc.interval_s, self.escalate))
        if self.uplink is not None and cfg.uplink is not None and cfg.uplink.telemetry_interval_s:
            uplink = self.uplink

            async def send_telemetry() -> None:
                uplink.telemetry(list(self.latest.values()))
                self._publish_states(list(self.latest))

            interval = cfg.uplink.telemetry_interval_s
            self.jobs.append(PollJob(f"telemetry@{interval:g}s", interval, send_telemetry))
        stagger(self.jobs)

    def _build_mqtt_devices(self) -> None:
        cfg = self.site.config
        if not cfg.zigbee2mqtt:
            return
        routers = []
        for z in cfg.zigbee2mqtt:
            names = {d.friendly_name: d.id for d in z.devices}
            routers.append(Zigbee2MqttRouter(z.base_topic, z.id, names, self.site.json_profiles[z.profile]))
        self.mqtt_feed = MqttDeviceFeed(routers, self.clock, self.ingest)
        interval = min(z.interval_s or cfg.poll.interval_s for z in cfg.zigbee2mqtt)
        feed = self.mqtt_feed

        async def judge_latch() -> None:
            self.ingest(feed.readings())

        self.jobs.append(PollJob(f"mqtt-devices@{interval:g}s", interval, judge_latch))

    def _run(self, poll: Callable[[], Awaitable[list[Reading]]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.ingest(await poll())

        return run

    def _bus_health(self, bus_id: str, link: ModbusLink | It100Link) -> Callable[[], Awaitable[None]]:
        """A bus reports whether its port is open and how many recent transactions failed."""

        async def run() -> None:
            values: dict[str, float | int | bool] = {"link_lost": not link.connected and link.requests > 0}
            rate = link.error_rate()
            if rate is not None:
                values["bus_error_rate"] = rate
            self.ingest([Reading(bus_id, self.clock.now(), values)])

        return run

    def _job(self, name: str, interval: float, poller: HostPoller, ids: Sequence[str]) -> PollJob:
        plan = poller.plan(ids)
        job = PollJob(name, interval, self._run(lambda: poller.poll(plan)))
        for device_id in ids:
            self._job_of[device_id] = job
            self._poller_of[device_id] = poller
        return job

    async def self_test(self, device_id: str) -> dict[str, object]:
        """Ask the device to run its self-test, then poll it for the result."""
        if device_id not in self.devices:
            raise KeyError(f"no device {device_id!r}")
        poller = self._poller_of.get(device_id)
        if poller is None:
            raise ValueError(f"{device_id}: its host offers no self-test command to this gateway")
        try:
            await poller.command(device_id, "self_test")
        except DriverError as exc:
            raise ValueError(str(exc)) from exc
        return await self.poll_now(device_id)

    def _setup_home_assistant(self, prefix: str, root: str) -> None:
        assert self.uplink is not None
        cfg = self.site.config
        fields: dict[str, list[str]] = {}
        for host in cfg.hosts:
            if host.it100 is not None:
                continue
            profile = self.site.profiles[host.model]
            for d in [self.devices[host.id]] + [self.devices[x.id] for x in host.devices]:
                layout = profile.layout_for(d.kind)
                fields[d.id] = [n for n in layout.fields if n in ha_discovery.SENSORS]
        for z in cfg.zigbee2mqtt:
            mapped = [fm.field for fm in self.site.json_profiles[z.profile].paths.values()]
            for zd in z.devices:
                fields[zd.id] = [f for f in dict.fromkeys(mapped) if f in ha_discovery.SENSORS]
        self._ha_faults = {d: [r.fault for r in self.diagnoser.rules_of(d)] for d in self.devices}
        self.uplink.ha_prefix = prefix
        self.uplink.discovery = ha_discovery.discovery(
            prefix, root, cfg.site.id, self.devices.values(), fields, self._ha_faults
        )
        self.uplink.announce()

    def _publish_states(self, device_ids: Iterable[str]) -> None:
        if self.uplink is None or self.uplink.ha_prefix is None:
            return
        active: dict[str, list[str]] = {}
        for dev, fault in self.diagnoser.active():
            active.setdefault(dev, []).append(fault)
        states = []
        for d in device_ids:
            r = self.latest.get(d)
            states.append((d, ha_discovery.state(r.values if r else {}, active.get(d, []), self._ha_faults.get(d, []))))
        self.uplink.device_states(states)

    async def escalate(self) -> None:
        """Warn about every service clock that reached a mark, once per ticket, clock and mark."""
        marks = {str(k): v for k, v in self.site.config.escalation.marks.items()}
        now = self.clock.now()
        for e in due_escalations(self.store.tickets(include_closed=False), now, marks, self.store.escalations_sent()):
            messages = self.uplink.escalation_messages(e) if self.uplink else None
            if self.store.record_escalation(e.ticket_id, e.clock, e.mark_s, now, messages):
                log.warning("escalation: %s", e.describe())
                self.escalations.publish(e)

    async def poll_now(self, device_id: str) -> dict[str, object]:
        """Poll the device's group at once (a remote engineer's request); its latest reading."""
        if device_id not in self.devices:
            raise KeyError(f"no device {device_id!r}")
        job = self._job_of.get(device_id)
        if job is None:
            raise ValueError(f"{device_id} is not polled by this gateway; it reports by itself")
        await job.run()
        r = self.latest.get(device_id)
        return {"device": device_id, "at": r.at.isoformat() if r else None, "values": dict(r.values) if r else {}}

    def ingest(self, readings: Sequence[Reading]) -> None:
        """Feed readings through diagnostics into tickets. Called by every driver."""
        observe = self.diagnoser.observe
        latest = self.latest
        sampled = self._sampled
        every = self.site.config.history.interval_s
        now = self.clock.monotonic()
        samples = []
        for r in readings:
            latest[r.device_id] = r
            if now - sampled.get(r.device_id, -1e18) >= every and r.values:
                sampled[r.device_id] = now
                samples.append((r.device_id, r.at, r.values))
            changes = observe(r)
            if changes:
                self._apply(changes)
        self.readings_seen += len(readings)
        if self.influx is not None:
            self.influx.add(readings)
        if samples:
            try:
                self.store.add_history(samples)  # one transaction for the whole poll
            except Exception:
                log.exception("could not keep %d history samples", len(samples))

    def _apply(self, changes: Sequence[FaultChange]) -> None:
        if self.uplink is not None:
            try:
                self.uplink.fault_changes(changes, self.table, self._kinds)
                self._publish_states({c.device_id for c in changes})
            except Exception:
                log.exception("could not queue fault events for the uplink")
        for change in changes:
            self.faults.publish(change)
            try:
                before = self.store.live_ticket(change.device_id, change.fault)
                ticket = self.desk.apply(change)
            except Exception:
                # Never let a store hiccup stop polling, and never lose the fault: a raise
                # that was not written is taken back, so the next reading raises it again.
                log.exception("could not record %s; will retry on the next reading", change)
                if isinstance(change, FaultRaised):
                    self.diagnoser.retract(change.device_id, change.fault)
                self.record_failures += 1
                continue
            if ticket is not None:
                action = "opened" if before is None and ticket.device_id == change.device_id else "changed"
                if action == "opened":
                    self.metrics.ticket_opened(ticket.opened_at, self.clock.now())
                log.info("ticket %s %s: %s %s", ticket.id, action, ticket.device_id, ticket.fault)
                self.tickets.publish(TicketEvent(action, ticket, self.clock.now()))

    def stats(self) -> dict[str, int]:
        """Counters since start, for the log and for benchmarks."""
        return {
            "readings": self.readings_seen,
            "polls": sum(j.runs for j in self.jobs),
            "poll_errors": sum(j.errors for j in self.jobs),
            "polls_skipped": sum(j.skipped for j in self.jobs),
            "requests": sum(link.requests for link in self.links),
            "link_failures": sum(link.failures for link in self.links),
            "active_faults": len(self.diagnoser.active()),
            "mqtt_messages": self.mqtt_feed.messages if self.mqtt_feed else 0,
            "mqtt_malformed": self.mqtt_feed.malformed if self.mqtt_feed else 0,
            "record_failures": self.record_failures,
            "outbox_depth": self.store.outbox_depth(),
            "uplink_published": self.uplink.published if self.uplink else 0,
        }

    def log_stats(self) -> None:
        log.info("stats %s", " ".join(f"{k}={v}" for k, v in self.stats().items()))

    async def run(self) -> None:
        """Poll, and listen to MQTT devices, until cancelled."""
        log.info(
            "gateway for site %s: %d devices, %d poll jobs", self.site.config.site.id, len(self.devices), len(self.jobs)
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_jobs(self.jobs, self.clock, self.metrics.poll_done))
            for task in self.tasks:
                tg.create_task(task(), name=task.name)

    async def _listen(self, broker: BrokerSpec, feed: MqttDeviceFeed) -> None:
        async def connected() -> None:
            feed.subscribed.set()

        try:
            await subscribe_forever(broker, feed.subscriptions, feed.on_message, self.clock, on_connect=connected)
        finally:
            feed.subscribed.clear()

    async def aclose(self) -> None:
        if self.http is not None:
            self.http.sock.close()
        for link in self.links:
            await link.close()
        self.store.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
