"""The simulated Envisalink over TCP on loopback, from a raw socket: the login, the same
IT-100 messages as the serial panel, and what a client that misbehaves costs (counted,
bounded, closed; never the server)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.drivers.it100 import Message, decode
from alarmgw.gateway.runtime import free_port
from alarmgw.model import Device, DeviceKind
from alarmgw.simulator.envisalink import MAX_JUNK_BEFORE_LOGIN, MAX_SESSIONS, EnvisalinkEndpoint, EnvisalinkServer
from alarmgw.simulator.it100_panel import It100Panel
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import Scenario

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

PASSWORD = "user"
HOST = Device("panel", DeviceKind.HOST, "panel", None)
ZONES = {
    1: Device("z-door", DeviceKind.PIR_DETECTOR, "panel", "panel"),
    2: Device("z-smoke", DeviceKind.SMOKE_DETECTOR, "panel", "panel"),
}


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> Message:
        async with asyncio.timeout(5):
            line = await self.reader.readuntil(b"\r\n")
        return decode(line)[0]

    async def send(self, msg: Message | bytes) -> None:
        self.writer.write(msg if isinstance(msg, bytes) else msg.encode())
        await self.writer.drain()

    async def ask(self, msg: Message, n: int = 1) -> list[Message]:
        await self.send(msg)
        return [await self.read() for _ in range(n)]

    async def closed(self) -> bool:
        """True once the server has closed the connection (what it still sends is skipped)."""
        async with asyncio.timeout(5):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


class Module:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.clock = sim.clock
        assert isinstance(self.clock, ManualClock)

    @property
    def server(self) -> EnvisalinkServer:
        return self.sim.envisalink("panel")

    async def connect(self, sock: socket.socket | None = None) -> Client:
        ep = self.server.endpoint
        if sock is None:
            reader, writer = await asyncio.open_connection(ep.address, ep.port)
        else:
            sock.connect((ep.address, ep.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return Client(reader, writer)

    async def login(self) -> Client:
        c = await self.connect()
        assert await c.read() == Message("505", "3")
        assert await c.ask(Message("005", PASSWORD)) == [Message("505", "1")]
        return c

    def advance(self, seconds: float) -> None:
        assert isinstance(self.clock, ManualClock)
        self.clock.advance(seconds)


@pytest.fixture
async def module() -> AsyncIterator[Module]:
    ep = EnvisalinkEndpoint(HOST, "127.0.0.1", free_port(), PASSWORD, ZONES)
    async with Simulator([], Scenario(seed=3), clock=ManualClock(), envisalinks=[ep]) as sim:
        yield Module(sim)


async def test_login_then_the_same_messages_as_the_serial_panel(module: Module, tmp_path: Path) -> None:
    c = await module.login()
    assert await c.ask(Message("000")) == [Message("500", "000")]
    assert await c.ask(Message("001")) == [Message("500", "001")]  # nothing active: the acknowledge only
    module.sim.inject("z-door", "tamper")
    module.sim.inject("panel", "mains_loss")
    module.advance(1.0)  # the panel's next scan reports the changes unasked
    assert [await c.read() for _ in range(3)] == [Message("603", "1001"), Message("802"), Message("849", "22")]
    # The status dump lists what is active now, as the serial panel's does for the same state.
    dump = await c.ask(Message("001"), 3)
    serial = It100Panel(tmp_path / "unused", 9600, HOST, ZONES, module.sim.site, module.clock, module.sim.t0)
    assert dump == serial.model.answer(Message("001"))
    assert dump == [Message("500", "001"), Message("603", "1001"), Message("802")]
    assert await c.ask(Message("074")) == [Message("502", "022")]  # not something this panel supports
    assert await c.ask(b"0009F\r\n") == [Message("501")]  # a bad checksum: command error
    module.sim.inject("z-smoke", "test_alarm", duration=2)  # zone open, then restored
    module.advance(1.0)
    assert await c.read() == Message("609", "002")
    module.advance(2.0)
    assert await c.read() == Message("610", "002")
    module.sim.inject("panel", "keybus_fault")
    module.advance(1.0)
    assert await c.read() == Message("896")
    c.close()


async def test_a_wrong_password_is_refused_and_the_connection_closed(module: Module) -> None:
    c = await module.connect()
    assert await c.read() == Message("505", "3")
    assert await c.ask(Message("005", "User")) == [Message("505", "0")]
    assert await c.closed()
    assert (module.server.refused_logins, module.server.logins) == (1, 0)
    ok = await module.login()  # the module goes on serving
    assert await ok.ask(Message("000")) == [Message("500", "000")]
    ok.close()


async def test_no_password_within_10_s_times_out(module: Module) -> None:
    c = await module.connect()
    assert await c.read() == Message("505", "3")
    module.advance(9.9)
    await asyncio.sleep(0.05)
    assert module.server.login_timeouts == 0
    module.advance(0.2)
    assert await c.read() == Message("505", "2")
    assert await c.closed() and module.server.login_timeouts == 1


async def test_nothing_but_a_login_is_heard_before_it(module: Module) -> None:
    c = await module.connect()
    assert await c.read() == Message("505", "3")
    await c.send(Message("001"))  # no status for a stranger
    await c.send(b"garbage\r\n" * MAX_JUNK_BEFORE_LOGIN)
    assert await c.closed()
    assert module.server.junk_before_login == MAX_JUNK_BEFORE_LOGIN + 1
    assert module.server.model.commands == 0


async def test_a_flood_of_garbage_after_the_login_costs_bounded_memory(module: Module) -> None:
    c = await module.login()
    await c.send(b"x" * 1_000_000)  # no CR LF anywhere
    await c.send(b"\r\n" + Message("000").encode())
    errors = 0
    while (msg := await c.read()) == Message("501"):  # a command error per bad frame dropped
        errors += 1
    assert msg == Message("500", "000")  # and the poll after it is answered
    (session,) = module.server.sessions
    assert errors == session.deframer.bad_frames >= 1 and session.deframer.buffered == 0
    c.close()


async def test_a_client_that_does_not_read_is_cut_off(module: Module) -> None:
    c = await module.login()
    sock = c.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = Message("001").encode() * 10_000
    module.sim.inject("z-door", "tamper")  # so every status request is answered with a dump
    module.sim.inject("panel", "mains_loss")
    async with asyncio.timeout(20):
        while module.server.overflows == 0:
            try:
                c.writer.write(chunk)
                await c.writer.drain()
            except ConnectionError:
                break
    assert module.server.overflows == 1 and not module.server.sessions
    ok = await module.login()
    assert await ok.ask(Message("000")) == [Message("500", "000")]
    ok.close()


async def test_sessions_are_bounded(module: Module) -> None:
    clients = [await module.login() for _ in range(MAX_SESSIONS)]
    extra = await module.connect()
    assert await extra.closed()
    assert module.server.turned_away == 1 and len(module.server.sessions) == MAX_SESSIONS
    module.sim.inject("z-door", "tamper")
    module.advance(1.0)
    for c in clients:  # every open session hears the report
        assert await c.read() == Message("603", "1001")
    assert module.server.drop() == MAX_SESSIONS
    for c in clients:
        assert await c.closed()


async def test_a_hung_module_says_nothing(module: Module) -> None:
    module.sim.inject("panel", "offline", duration=5)
    c = await module.connect()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await c.reader.readuntil(b"\r\n")
    c.close()
    module.advance(6)
    ok = await module.login()
    ok.close()
