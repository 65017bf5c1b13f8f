"""A foreign client against the simulated Envisalink: pyenvisalink, the library Home
Assistant's envisalink integration uses, logs in over TCP on loopback and sees the zone and
trouble states the simulator sets. It keeps its own time (keep-alives, a keypress 5 s after
the login); the simulator's clock is moved by hand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from alarmgw.clock import ManualClock
from alarmgw.drivers.it100 import Message
from alarmgw.gateway.runtime import free_port
from alarmgw.model import Device, DeviceKind
from alarmgw.simulator.envisalink import EnvisalinkEndpoint
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import Scenario

pyenvisalink = pytest.importorskip("pyenvisalink")
dsc_client = pytest.importorskip("pyenvisalink.dsc_client")

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

PASSWORD = "s3cret"
HOST = Device("panel", DeviceKind.HOST, "panel", None)
ZONES = {
    1: Device("z-door", DeviceKind.PIR_DETECTOR, "panel", "panel"),
    5: Device("z-smoke", DeviceKind.SMOKE_DETECTOR, "panel", "panel"),
}


class Foreign:
    """pyenvisalink's panel object on this loop, with what its callbacks said."""

    def __init__(self, port: int, password: str) -> None:
        self.panel = pyenvisalink.EnvisalinkAlarmPanel(
            "127.0.0.1",
            port,
            "DSC",
            4,
            "user",
            password,
            zoneTimerInterval=0,  # no zone timer dumps (008): not part of the IT-100 set
            keepAliveInterval=30,
            eventLoop=asyncio.get_running_loop(),
            connectionTimeout=5,
        )
        self.events: list[str] = []
        for name in ("login_success", "login_failure", "zone_state_change", "keypad_update"):
            setattr(self.panel, f"callback_{name}", self._note(name))

    def _note(self, name: str) -> Callable[[Any], None]:
        return lambda data: self.events.append(name)

    @property
    def zones(self) -> dict[int, dict[str, Any]]:
        return self.panel.alarm_state["zone"]  # type: ignore[no-any-return]

    @property
    def partition(self) -> dict[str, Any]:
        return self.panel.alarm_state["partition"][1]["status"]  # type: ignore[no-any-return]

    async def until(self, what: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not what():  # noqa: ASYNC110 - the foreign client's state: it offers nothing to wait on
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        client = self.panel._client
        self.panel.stop()
        if client is not None:
            client.disconnect()
        # Its keep-alive loop sleeps for 30 s between rounds: end it rather than wait.
        mine = [t for t in asyncio.all_tasks() if "EnvisalinkClient" in repr(t) or "DSCClient" in repr(t)]
        for t in mine:
            t.cancel()
        for t in mine:
            with contextlib.suppress(asyncio.CancelledError):
                await t


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    ep = EnvisalinkEndpoint(HOST, "127.0.0.1", free_port(), PASSWORD, ZONES)
    async with Simulator([], Scenario(seed=4), clock=ManualClock(), envisalinks=[ep]) as s:
        yield s


def advance(sim: Simulator, seconds: float) -> None:
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(seconds)


def test_the_checksums_agree() -> None:
    client = dsc_client.DSCClient.__new__(dsc_client.DSCClient)
    for command, data in [("005", PASSWORD), ("000", ""), ("001", ""), ("505", "3"), ("603", "1005"), ("849", "42")]:
        assert Message(command, data).encode()[-4:-2].decode() == client.get_checksum(command, data)


async def test_pyenvisalink_logs_in_and_sees_zones_and_troubles(sim: Simulator) -> None:
    server = sim.envisalink("panel")
    sim.inject("z-smoke", "tamper")  # active before it connects: it learns it from the status dump
    advance(sim, 1.0)
    foreign = Foreign(server.endpoint.port, PASSWORD)
    foreign.panel.start()
    try:
        await foreign.until(lambda: "login_success" in foreign.events)
        assert server.logins == 1 and server.refused_logins == 0
        await foreign.until(lambda: foreign.zones[5]["status"]["tamper"])
        assert not foreign.zones[1]["status"]["tamper"]

        sim.inject("z-door", "tamper")  # 603 1001, unasked
        sim.inject("z-door", "test_alarm", duration=3)  # zone open (609), then restored (610)
        sim.inject("panel", "mains_loss")  # 802 and 849 with the AC bit
        advance(sim, 1.0)
        await foreign.until(lambda: foreign.zones[1]["status"]["tamper"] and foreign.zones[1]["status"]["open"])
        await foreign.until(lambda: not foreign.partition["ac_present"])
        assert "AC Power Lost" in foreign.partition["alpha"]  # its reading of the verbose trouble bits

        advance(sim, 3.0)
        await foreign.until(lambda: not foreign.zones[1]["status"]["open"])
        sim.inject("z-door", "silent")  # not heard for three check-ins: zone fault (605)
        advance(sim, 3 * sim.site.report_interval("z-door") + 60)
        await foreign.until(lambda: foreign.zones[1]["status"]["fault"])
        assert foreign.zones[1]["status"]["tamper"] and foreign.zones[5]["status"]["tamper"]
        assert "zone_state_change" in foreign.events and "keypad_update" in foreign.events
        assert server.refused_logins == 0 and server.junk_before_login == 0
    finally:
        await foreign.stop()


async def test_pyenvisalink_with_a_wrong_password_is_refused(sim: Simulator) -> None:
    server = sim.envisalink("panel")
    foreign = Foreign(server.endpoint.port, "wrong")
    foreign.panel.start()
    try:
        await foreign.until(lambda: "login_failure" in foreign.events)
        assert (server.logins, server.refused_logins) == (0, 1)
        await foreign.until(lambda: not server.sessions)  # the module closed the connection
    finally:
        await foreign.stop()
