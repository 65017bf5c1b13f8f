"""What the gateway's site file tells the simulator: the endpoints to serve."""

from __future__ import annotations

from simulator.modbus_server import HostEndpoint

from .config import LoadedSite


def simulator_endpoints(site: LoadedSite) -> list[HostEndpoint]:
    """One Modbus TCP endpoint per host of the site, with its devices' slots."""
    devices = {d.id: d for d in site.config.devices()}
    out = []
    for h in site.config.hosts:
        slots = [(devices[h.id], 0)] + [(devices[d.id], d.slot) for d in h.devices]
        out.append(
            HostEndpoint(devices[h.id], h.modbus.address, h.modbus.port, h.modbus.unit, site.profiles[h.model], slots)
        )
    return out
