"""Site topology: who reaches the host through whom. Pure lookups over `Device`s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from alarmgw.model import Device


class Topology:
    """Parent/child relations of one site's devices."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self.devices: Mapping[str, Device] = {d.id: d for d in devices}
        children: dict[str, list[str]] = {}
        for d in self.devices.values():
            if d.parent is not None:
                children.setdefault(d.parent, []).append(d.id)
        self._children = {k: tuple(v) for k, v in children.items()}

    def ancestors(self, device_id: str) -> list[str]:
        """Nearest first: repeater(s), then the host. Stops on a loop in bad data."""
        out: list[str] = []
        parent = self.devices[device_id].parent
        while parent is not None and parent not in out and parent in self.devices:
            out.append(parent)
            parent = self.devices[parent].parent
        return out

    def descendants(self, device_id: str) -> list[str]:
        """Every device that reaches the host through `device_id`, breadth first."""
        out: list[str] = []
        queue = list(self._children.get(device_id, ()))
        while queue:
            d = queue.pop(0)
            if d in out:
                continue
            out.append(d)
            queue.extend(self._children.get(d, ()))
        return out
