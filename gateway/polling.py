"""From a site file to what polls its equipment: one link per Modbus TCP address and port
(hosts behind one Modbus TCP gateway share its connection), per Envisalink host and per
serial bus; host pollers with their block-read plans; one poll job per host and interval,
on the lane of its link (the jobs of one link run back to back, links are staggered); a
health job per bus; and the MQTT device feed. Nothing here opens anything: links connect on
their first request, the feed when its task starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.drivers.it100_link import EnvisalinkLink, It100Connection, It100Link, It100Poller
from alarmgw.drivers.modbus_client import HostPoller, ModbusLink, rtu_link, tcp_link
from alarmgw.drivers.modbus_map import BlockRead
from alarmgw.drivers.mqtt_devices import MqttDeviceFeed
from alarmgw.drivers.zigbee2mqtt import Zigbee2MqttRouter
from alarmgw.model import Device, Reading

from .scheduler import PollJob

if TYPE_CHECKING:
    from alarmgw.drivers.sia_dc09 import SiaReceiver
from .site_file import LoadedSite

Ingest = Callable[[Sequence[Reading]], None]
Link = ModbusLink | It100Connection


@dataclass
class Polling:
    """Everything that reads the site's equipment, and which job reads which device."""

    jobs: list[PollJob] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    job_of: dict[str, PollJob] = field(default_factory=dict)  # device -> the job that polls it
    poller_of: dict[str, HostPoller] = field(default_factory=dict)  # device -> its Modbus host poller
    link_of: dict[str, Link] = field(default_factory=dict)  # host or bus -> the link that reaches it
    mqtt_feed: MqttDeviceFeed | None = None
    sia_receiver: SiaReceiver | None = None  # the IP hubs' DC-09 messages


def build_polling(
    site: LoadedSite,
    devices: Mapping[str, Device],
    clock: Clock,
    ingest: Ingest,
    *,
    adopt: Callable[[Sequence[Device]], None] | None = None,
) -> Polling:
    """Links, pollers and jobs for every host, bus and MQTT bridge of the site; each job hands
    its readings to `ingest`. Jobs are not staggered yet: the caller adds its own first.
    `adopt` takes the Zigbee devices a bridge tells of that the site file does not name
    (None: they are listed, not monitored)."""
    cfg = site.config
    out = Polling()

    def backoff() -> Backoff:
        return Backoff(cfg.poll.backoff_initial_s, cfg.poll.backoff_max_s)

    def job(
        name: str,
        interval: float,
        poll: Callable[[], Awaitable[list[Reading]]],
        ids: Sequence[str],
        lane: object = None,
    ) -> None:
        async def run() -> None:
            ingest(await poll())

        j = PollJob(name, interval, run, lane=lane)
        out.jobs.append(j)
        for device_id in ids:
            out.job_of[device_id] = j

    bus_links: dict[str, Link] = {}
    for bus in cfg.buses:
        port = str(site.bus_ports[bus.id])
        if bus.protocol == "modbus_rtu":
            link: Link = rtu_link(
                bus.id, port, bus.baud, clock, timeout_s=bus.timeout_s, retries=bus.retries, backoff=backoff()
            )
        else:
            link = It100Link(
                bus.id, port, bus.baud, clock, timeout_s=bus.timeout_s, retries=bus.retries, backoff=backoff()
            )
        bus_links[bus.id] = link
        out.link_of[bus.id] = link
        out.links.append(link)
    # Hosts at one Modbus TCP address and port are units behind one gateway: one connection.
    sharing: dict[tuple[str, int], int] = {}
    for host in cfg.hosts:
        if host.modbus is not None:
            sharing[host.modbus.where] = sharing.get(host.modbus.where, 0) + 1
    tcp_links: dict[tuple[str, int], ModbusLink] = {}
    for host in cfg.hosts:
        host_dev = devices[host.id]
        bus_cfg = next((b for b in cfg.buses if b.id == host.bus), None)
        host_interval = host.poll_interval_s or (bus_cfg and bus_cfg.poll_interval_s) or cfg.poll.interval_s
        if host.sia is not None:
            continue  # it reports by itself (below)
        if host.zoned:
            if host.envisalink is not None:
                ev = host.envisalink
                it_link: Link = EnvisalinkLink(
                    host.id,
                    ev.address,
                    ev.port,
                    site.envisalink_passwords[host.id],
                    clock,
                    timeout_s=cfg.poll.timeout_s,
                    retries=cfg.poll.retries,
                    backoff=backoff(),
                )
                out.links.append(it_link)
                out.link_of[host.id] = it_link
            else:
                assert host.it100 is not None
                it_link = bus_links[host.it100.bus]
            assert isinstance(it_link, It100Connection)
            zones = {d.zone: devices[d.id] for d in host.devices if d.zone is not None}
            panel = It100Poller(host_dev, zones, it_link, clock, ingest)
            ids = [host.id, *(d.id for d in zones.values())]
            job(f"{host.id}@{host_interval:g}s", host_interval, panel.poll, ids, it_link)
            continue
        if host.modbus is not None:
            mb = host.modbus
            where = mb.where
            mb_link: Link | None = tcp_links.get(where)
            if mb_link is None:
                # A link alone at its address keeps its host's name; a shared one is named by where it goes.
                name = host.id if sharing[where] == 1 else f"{mb.address}:{mb.port}"
                mb_link = tcp_links[where] = tcp_link(
                    name,
                    mb.address,
                    mb.port,
                    mb.unit,
                    clock,
                    timeout_s=cfg.poll.timeout_s,
                    retries=cfg.poll.retries,
                    backoff=backoff(),
                )
                out.links.append(mb_link)
            unit = mb.unit
            out.link_of[host.id] = mb_link
        else:
            assert host.rtu is not None
            mb_link, unit = bus_links[host.rtu.bus], host.rtu.unit
        assert isinstance(mb_link, ModbusLink)
        slots: list[tuple[Device, int]] = [(host_dev, 0)]
        groups: dict[float, list[str]] = {host_interval: [host.id]}
        for d in host.devices:
            assert d.slot is not None
            slots.append((devices[d.id], d.slot))
            groups.setdefault(d.poll_interval_s or host_interval, []).append(d.id)
        poller = HostPoller(host_dev, mb_link, site.profiles[host.model], slots, clock, unit)
        for interval, ids in sorted(groups.items()):
            plan = poller.plan(ids)
            job(f"{host.id}@{interval:g}s", interval, _planned(poller, plan), ids, mb_link)
            for device_id in ids:
                out.poller_of[device_id] = poller
    for bus in cfg.buses:
        interval = bus.poll_interval_s or cfg.poll.interval_s
        job(f"{bus.id}@{interval:g}s", interval, _bus_health(bus.id, bus_links[bus.id], clock), [], bus_links[bus.id])
    if cfg.sia_receiver is not None:
        out.sia_receiver = _sia_receiver(site, clock, ingest, job)
    if cfg.zigbee2mqtt:
        supervision = cfg.supervision()
        routers = [
            Zigbee2MqttRouter(
                z.base_topic,
                z.id,
                {d.friendly_name: d.id for d in z.devices},
                site.json_profiles[z.profile],
                window_s=z.supervision_s,
                bridge_window_s=z.bridge_supervision_s,
                # a kind the site does not supervise (remote controls) is not judged by silence here either
                unsupervised=[d.id for d in z.devices if supervision.get(d.kind.value, 0.0) is None],
                adopt=adopt is not None,
                taken=devices.keys(),
            )
            for z in cfg.zigbee2mqtt
        ]
        feed = out.mqtt_feed = MqttDeviceFeed(routers, clock, ingest, adopt=adopt)

        async def judge_links() -> list[Reading]:
            return feed.judge()

        interval = min(z.interval_s or cfg.poll.interval_s for z in cfg.zigbee2mqtt)
        job(f"mqtt-devices@{interval:g}s", interval, judge_links, [])
    return out


def _sia_receiver(
    site: LoadedSite,
    clock: Clock,
    ingest: Ingest,
    job: Callable[[str, float, Callable[[], Awaitable[list[Reading]]], Sequence[str]], None],
) -> SiaReceiver:
    """The receiver of the site's SIA DC-09 hubs, and the job that judges their reports: a
    slice of hubs at a time, so a large site never holds the loop (an ACK waits meanwhile)."""
    import asyncio

    from alarmgw.drivers.sia_dc09 import Hub, Limits, SiaReceiver
    from alarmgw.drivers.sia_map import CodeMap

    cfg = site.config
    rc = cfg.sia_receiver
    assert rc is not None
    hubs = []
    for h in cfg.hosts:
        if h.sia is not None:
            zones = {d.zone: d.id for d in h.devices if d.zone is not None}
            key = site.sia_keys.get(h.id)
            hubs.append(Hub(h.id, h.sia.account, key, h.sia.report_interval_s, h.sia.report_margin_s, zones))
    interval = rc.interval_s or cfg.poll.interval_s
    limits = Limits(
        max_frame=rc.max_message_bytes,
        max_connections=rc.max_connections,
        max_connections_per_address=rc.max_connections_per_address,
        messages_per_s=rc.messages_per_s,
        burst=rc.burst,
        idle_timeout_s=rc.idle_timeout_s,
        window_past_s=rc.window_past_s,
        window_future_s=rc.window_future_s,
    )
    rx = SiaReceiver(
        hubs,
        CodeMap(site.fault_table),
        clock,
        ingest,
        bind=rc.bind,
        port=rc.port,
        tcp=rc.tcp,
        udp=rc.udp,
        limits=limits,
        stall_s=3 * interval,
    )

    async def judge_hubs() -> list[Reading]:
        for part in rx.judge_slices():
            ingest(part)
            await asyncio.sleep(0)
        return []

    ids = [i for h in hubs for i in (h.id, *h.zones.values())]
    job(f"sia-hubs@{interval:g}s", interval, judge_hubs, ids)
    return rx


def _planned(poller: HostPoller, plan: Sequence[BlockRead]) -> Callable[[], Awaitable[list[Reading]]]:
    async def poll() -> list[Reading]:
        return await poller.poll(plan)

    return poll


def _bus_health(bus_id: str, link: Link, clock: Clock) -> Callable[[], Awaitable[list[Reading]]]:
    """A bus reports whether its port is open and how many recent transactions failed."""

    async def poll() -> list[Reading]:
        values: dict[str, float | int | bool] = {"link_lost": not link.connected and link.requests > 0}
        rate = link.error_rate()
        if rate is not None:
            values["bus_error_rate"] = rate
        return [Reading(bus_id, clock.now(), values)]

    return poll
