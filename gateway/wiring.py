"""What the gateway's site file tells the simulator: the endpoints to serve."""

from __future__ import annotations

from simulator.modbus_server import HostEndpoint
from simulator.runner import RtuUnit, SerialBusEndpoint

from .config import LoadedSite


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
