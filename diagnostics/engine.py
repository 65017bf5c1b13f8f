"""Turn readings into fault episodes: debounce, hysteresis and root cause.

A fault is raised when its condition has held for `raise_after` consecutive observations
and `raise_after_s` seconds, and cleared when it has been gone for `clear_after` and
`clear_after_s`. A device that loses its link while the repeater or host it talks through
is silent too is not a fault of its own: it is listed under its ancestor's episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from alarmgw.model import Device, DeviceKind, Event, Reading

from .rules import GONE, HOLDS, CompiledRule, FaultTable, compile_rules, judge
from .topology import Topology

COMM_LOSS = "comm_loss"
BUS_ERRORS = "bus_errors"
# Faults of an ancestor that explain a device behind it going quiet.
ROOT_FAULTS = (COMM_LOSS, BUS_ERRORS)
# What the diagnoser keeps of a device's last values: the fields that make it a suspect root
# cause for the devices below it (the rest is the core's to keep).
SUSPECT_FIELDS = ("link_lost", "bus_error_rate", "link_age_s")
# Faults that cut the gateway off from whatever is behind the device, so their ticket lists
# the devices behind it (`affected`): the root faults, a host that refuses every read, and
# the gateway's own watch finding nothing arrives.
SLOT_REFUSED = "slot_refused"
UNMONITORED = "unmonitored"
CUTTING_FAULTS = (*ROOT_FAULTS, SLOT_REFUSED, UNMONITORED)
# A bus that failed any of its recent transactions may well be why a unit on it is silent:
# the unit waits for the bus's own verdict before it is blamed, but for no more than this
# many observations past its own debounce; then it is raised on its own. A dead unit on a
# slightly noisy line is late by that much, never unmonitored.
BUS_VERDICT_GRACE = 4


@dataclass(frozen=True, slots=True)
class FaultRaised:
    device_id: str
    fault: str
    detected_at: datetime  # first observation of the condition in this episode
    raised_at: datetime  # when the debounce was satisfied
    root_id: str | None = None  # set when the device is a casualty of this ancestor's fault
    root_fault: str | None = None  # ... and this is that fault
    affected: tuple[str, ...] = ()  # devices behind this one, for a root-cause fault
    evidence: Mapping[str, float | int | bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultCleared:
    device_id: str
    fault: str
    at: datetime


FaultChange = FaultRaised | FaultCleared


class _State:
    __slots__ = ("active", "run", "since")

    def __init__(self) -> None:
        self.active = False
        self.run = 0  # consecutive observations towards the next transition
        self.since: datetime | None = None  # first observation of that run


class Diagnoser:
    """Holds the fault state of one site; feed it readings, get fault changes back."""

    def __init__(
        self,
        devices: Iterable[Device],
        table: FaultTable,
        supervision: Mapping[str, float | None],
    ) -> None:
        self.topology = Topology(devices)
        self._supervision = supervision
        self._table = table
        self._by_kind: dict[DeviceKind, tuple[CompiledRule, ...]] = {}
        self._rules: dict[str, tuple[CompiledRule, ...]] = {}
        self._compile(self.topology.devices.values())
        self._state: dict[tuple[str, str], _State] = {}
        self.last_values: dict[str, dict[str, float | int | bool]] = {}

    def _compile(self, devices: Iterable[Device]) -> None:
        for d in devices:
            if d.kind not in self._by_kind:
                self._by_kind[d.kind] = compile_rules(self._table, d.kind, self._supervision)
            self._rules[d.id] = self._by_kind[d.kind]

    def add(self, devices: Iterable[Device]) -> None:
        """Devices that joined the site while running (e.g. paired on a Zigbee bridge)."""
        new = [d for d in devices if d.id not in self.topology.devices]
        if new:
            self.topology = Topology([*self.topology.devices.values(), *new])
            self._compile(new)

    def restore(self, active: Iterable[tuple[str, str]]) -> None:
        """Mark (device, fault) pairs as already raised, e.g. open episodes after a restart."""
        for key in active:
            if key[0] in self._rules:
                self._state.setdefault(key, _State()).active = True

    def rules_of(self, device_id: str) -> tuple[CompiledRule, ...]:
        """The fault rules that apply to a device."""
        return self._rules.get(device_id, ())

    def is_active(self, device_id: str, fault: str) -> bool:
        st = self._state.get((device_id, fault))
        return st is not None and st.active

    def active(self) -> list[tuple[str, str]]:
        return [k for k, s in self._state.items() if s.active]

    def observe_event(self, event: Event) -> list[FaultChange]:
        """An unsolicited report counts as a reading of that one field."""
        return self.observe(Reading(event.device_id, event.at, {event.field: event.active}))

    def observe(self, reading: Reading) -> list[FaultChange]:
        rules = self._rules.get(reading.device_id)
        if rules is None:
            return []
        values = reading.values
        for name in SUSPECT_FIELDS:
            if name in values:
                self.last_values.setdefault(reading.device_id, {})[name] = values[name]
        changes: list[FaultChange] = []
        state = self._state
        for rule in rules:
            verdict = judge(rule, values)
            if verdict < GONE:
                continue  # nothing in this reading speaks to this rule
            key = (reading.device_id, rule.fault)
            st = state.get(key)
            if st is None:
                if verdict != HOLDS:
                    continue  # quiet and staying so: no state kept (most devices, most faults)
                st = state[key] = _State()
            toward = verdict == (GONE if st.active else HOLDS)
            if not toward:
                if not st.active:
                    del state[key]  # back to quiet
                else:
                    st.run, st.since = 0, None
                continue
            if st.run == 0:
                st.since = reading.at
            st.run += 1
            assert st.since is not None
            held_s = (reading.at - st.since).total_seconds()
            if st.active:
                if st.run >= rule.clear_after and held_s >= rule.clear_after_s:
                    del state[key]
                    changes.append(FaultCleared(reading.device_id, rule.fault, reading.at))
            elif st.run >= rule.raise_after and held_s >= rule.raise_after_s:
                patient = st.run < rule.raise_after + BUS_VERDICT_GRACE
                raised = self._raise(reading, rule.fault, st.since, values, patient)
                if raised is not None:
                    st.active, st.run, st.since = True, 0, None
                    changes.append(raised)
        return changes

    def _raise(
        self,
        reading: Reading,
        fault: str,
        since: datetime,
        values: Mapping[str, float | int | bool],
        patient: bool,
    ) -> FaultRaised | None:
        device_id = reading.device_id
        root: tuple[str, str] | None = None
        if fault == COMM_LOSS:
            for ancestor in self.topology.ancestors(device_id):
                active = next((f for f in ROOT_FAULTS if self.is_active(ancestor, f)), None)
                if active is not None:
                    root = (ancestor, active)
                    break
                if patient and self._suspect(ancestor):
                    return None  # wait: the ancestor is probably the root cause
        affected = tuple(self.topology.descendants(device_id)) if fault in CUTTING_FAULTS else ()
        return FaultRaised(
            device_id, fault, since, reading.at, root and root[0], root and root[1], affected, dict(values)
        )

    def _suspect(self, device_id: str) -> bool:
        """Silent for half its supervision window, on its way to comm loss or bus errors,
        or a bus that failed some of its recent transactions."""
        for fault in ROOT_FAULTS:
            st = self._state.get((device_id, fault))
            if st is not None and st.run > 0:
                return True
        last = self.last_values.get(device_id, {})
        if last.get("link_lost") or float(last.get("bus_error_rate", 0.0)) > 0:
            return True
        window = self._supervision.get(self.topology.devices[device_id].kind.value)
        age = last.get("link_age_s")
        return window is not None and age is not None and age > window / 2


__all__ = [
    "COMM_LOSS",
    "CUTTING_FAULTS",
    "SLOT_REFUSED",
    "UNMONITORED",
    "Diagnoser",
    "FaultChange",
    "FaultCleared",
    "FaultRaised",
]
