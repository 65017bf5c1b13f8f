"""What the gateway's site file tells the simulator: the endpoints to serve."""

from __future__ import annotations

from typing import Any

from alarmgw.simulator.envisalink import EnvisalinkEndpoint
from alarmgw.simulator.modbus_server import HostEndpoint
from alarmgw.simulator.runner import RtuUnit, SerialBusEndpoint, Simulator, Z2mEndpoint
from alarmgw.simulator.scenario import Scenario
from alarmgw.simulator.sia_hub import SiaHubSpec

from .site_file import LoadedSite


def simulator_endpoints(site: LoadedSite) -> list[HostEndpoint]:
    """One Modbus TCP endpoint per TCP host of the site, with its devices' slots."""
    devices = {d.id: d for d in site.config.devices()}
    out = []
    for h in site.config.hosts:
        if h.modbus is None:
            continue
        slots = [(devices[h.id], 0)] + [(devices[d.id], d.slot) for d in h.devices if d.slot is not None]
        ep = h.modbus
        out.append(HostEndpoint(devices[h.id], ep.address, ep.port, ep.unit, site.profiles[h.model], slots))
    return out


def simulator_buses(site: LoadedSite) -> list[SerialBusEndpoint]:
    """One simulated serial line per bus of the site, with the hosts that answer on it."""
    devices = {d.id: d for d in site.config.devices()}
    out = []
    for bus in site.config.buses:
        units = []
        panel = None
        zones = {}
        for h in site.config.hosts:
            if h.bus != bus.id:
                continue
            if h.rtu is not None:
                slots = [(devices[h.id], 0)] + [(devices[d.id], d.slot) for d in h.devices if d.slot is not None]
                units.append(RtuUnit(devices[h.id], h.rtu.unit, site.profiles[h.model], tuple(slots)))
            else:
                panel = devices[h.id]
                zones = {d.zone: devices[d.id] for d in h.devices if d.zone is not None}
        out.append(SerialBusEndpoint(bus.id, site.bus_ports[bus.id], bus.baud, tuple(units), panel, zones))
    return out


def simulator_envisalinks(site: LoadedSite) -> list[EnvisalinkEndpoint]:
    """One simulated Envisalink per Envisalink host of the site, with its password and zones."""
    devices = {d.id: d for d in site.config.devices()}
    return [
        EnvisalinkEndpoint(
            devices[h.id],
            h.envisalink.address,
            h.envisalink.port,
            site.envisalink_passwords[h.id],
            {d.zone: devices[d.id] for d in h.devices if d.zone is not None},
        )
        for h in site.config.hosts
        if h.envisalink is not None
    ]


def simulator_sia_hubs(site: LoadedSite) -> list[SiaHubSpec]:
    """One simulated IP hub per SIA DC-09 host of the site, reporting to the site's receiver
    (on loopback when the receiver listens on every address), over TCP unless it is off."""
    rc = site.config.sia_receiver
    if rc is None:
        return []
    devices = {d.id: d for d in site.config.devices()}
    address = "127.0.0.1" if rc.bind in ("0.0.0.0", "::") else rc.bind
    out = []
    for h in site.config.hosts:
        if h.sia is not None:
            out.append(
                SiaHubSpec(
                    devices[h.id],
                    {d.zone: devices[d.id] for d in h.devices if d.zone is not None},
                    site.fault_table,
                    h.sia.account,
                    (address, rc.port),
                    site.sia_keys.get(h.id),
                    "tcp" if rc.tcp else "udp",
                    h.sia.report_interval_s,
                )
            )
    return out


def simulator_zigbee(site: LoadedSite) -> list[Z2mEndpoint]:
    """One simulated Zigbee2MQTT bridge per bridge of the site, on the site's device broker."""
    if site.device_broker is None:
        return []
    devices = {d.id: d for d in site.config.devices()}
    return [
        Z2mEndpoint(
            site.device_broker, z.base_topic, devices[z.id], {d.friendly_name: devices[d.id] for d in z.devices}
        )
        for z in site.config.zigbee2mqtt
    ]


def simulator_for(site: LoadedSite, scenario: Scenario | None = None, **kw: Any) -> Simulator:
    """The whole simulated site of a site file: TCP hosts, serial buses, Envisalinks, Zigbee2MQTT."""
    return Simulator(
        simulator_endpoints(site),
        scenario,
        buses=simulator_buses(site),
        zigbee=simulator_zigbee(site),
        envisalinks=simulator_envisalinks(site),
        sia_hubs=simulator_sia_hubs(site),
        **kw,
    )
