"""A PowerSeries-style panel behind an Envisalink (EVL-3/4): a TCP server speaking the TPI.

Each connection is asked for the password (505 3); a client that sends the site's password
(005) gets 505 1 and a session, one that sends another gets 505 0 and the connection
closed, one that sends none within 10 s of the simulated clock gets 505 2 and the same.
A session then carries the same IT-100 messages as the simulated serial panel
(simulator/it100_panel.py, one `PanelModel`): answers to poll and status request, and the
reports of every change, sent to every open session. A hung host sends nothing, not even
the password request.

A client costs bounded memory whatever it sends: a few sessions at once, garbage dropped by
the bounded deframer and counted, a session closed after too much garbage before its
login, and one whose client does not read what it is sent closed before its output grows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from alarmgw.clock import Clock
from alarmgw.drivers.envisalink import LOGIN, PASSWORD_WAIT_S, Login, interaction, password_matches
from alarmgw.drivers.framing import Deframer, FrameError
from alarmgw.drivers.it100 import MAX_FRAME, Message, decode
from alarmgw.model import Device
from alarmgw.tasks import cancel_and_wait

from .errors import SimulatorError
from .it100_panel import PanelModel
from .models import SimSite

log = logging.getLogger(__name__)

MAX_SESSIONS = 4  # connections at once; more are closed as they come
MAX_JUNK_BEFORE_LOGIN = 8  # garbled frames or other commands before the login, then closed
MAX_UNSENT_BYTES = 64 * 1024  # output a client has not read; past it the session is closed


@dataclass(frozen=True, slots=True)
class EnvisalinkEndpoint:
    """Where one simulated Envisalink listens, its password, and the panel behind it."""

    host: Device
    address: str
    port: int
    password: str
    zones: Mapping[int, Device] = field(default_factory=dict)


class _Session(asyncio.Protocol):
    def __init__(self, server: EnvisalinkServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.deframer = Deframer(decode, MAX_FRAME)
        self.logged_in = False
        self.junk = 0
        self._timer: asyncio.Task[None] | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        srv = self.server
        srv.connections += 1
        if len(srv.sessions) >= MAX_SESSIONS:
            srv.turned_away += 1
            transport.close()
            return
        srv.sessions.add(self)
        if srv.model.hung():
            return  # a hung module says nothing; the client's login times out
        self.send(interaction(Login.REQUEST))
        self._timer = asyncio.create_task(self._password_wait(), name=f"envisalink-login:{srv.endpoint.host.id}")

    def data_received(self, data: bytes) -> None:
        for msg in self.deframer.feed(data):
            if self.transport is None or self.transport.is_closing():
                return
            if self.logged_in:
                for reply in self.server.model.answer(msg):
                    self.send(reply)
            else:
                self._login(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.sessions.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the login ----------------------------------------------------------------------

    def _login(self, msg: Message | FrameError) -> None:
        srv = self.server
        if srv.model.hung():
            return
        if isinstance(msg, Message) and msg.command == LOGIN:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if password_matches(msg, srv.endpoint.password):
                self.logged_in = True
                srv.logins += 1
                self.send(interaction(Login.OPEN))
            else:
                srv.refused_logins += 1
                self.send(interaction(Login.REFUSED))
                self.close()
            return
        self.junk += 1
        srv.junk_before_login += 1
        if self.junk > MAX_JUNK_BEFORE_LOGIN:
            self.close()

    async def _password_wait(self) -> None:
        clock = self.server.model.clock
        await clock.sleep_until(clock.monotonic() + PASSWORD_WAIT_S)
        if not self.logged_in and self.transport is not None:
            self.server.login_timeouts += 1
            self.send(interaction(Login.TIMED_OUT))
            self.close()

    # --- output ---------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(msg.encode())
        if t.get_write_buffer_size() > MAX_UNSENT_BYTES:
            self.server.overflows += 1
            t.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class EnvisalinkServer:
    """One simulated Envisalink on its TCP port."""

    def __init__(self, endpoint: EnvisalinkEndpoint, site: SimSite, clock: Clock, t0: float) -> None:
        self.endpoint = endpoint
        self.model = PanelModel(endpoint.host, endpoint.zones, site, clock, t0)
        self.sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None
        self._scanner: asyncio.Task[None] | None = None
        self.connections = 0
        self.turned_away = 0
        self.logins = 0
        self.refused_logins = 0
        self.login_timeouts = 0
        self.junk_before_login = 0
        self.overflows = 0

    @property
    def address(self) -> str:
        return f"{self.endpoint.address}:{self.endpoint.port}"

    def _broadcast(self, msg: Message) -> None:
        for s in list(self.sessions):
            if s.logged_in:
                s.send(msg)

    def drop(self) -> int:
        """Close every connection, as a module does when it restarts; how many there were."""
        sessions = list(self.sessions)
        for s in sessions:
            if s.transport is not None:
                s.transport.abort()
        return len(sessions)

    async def start(self) -> None:
        """Start listening; raises SimulatorError naming the host and address if it cannot."""
        ep = self.endpoint
        try:
            self._server = await asyncio.get_running_loop().create_server(lambda: _Session(self), ep.address, ep.port)
        except OSError as exc:
            raise SimulatorError(f"host {ep.host.id}: cannot listen on {self.address} ({exc})") from exc
        self._scanner = asyncio.create_task(self.model.run_scans(self._broadcast), name=f"envisalink:{ep.host.id}")

    async def stop(self) -> None:
        await cancel_and_wait(self._scanner)
        self._scanner = None
        if self._server is not None:
            self._server.close()
            self.drop()
            await self._server.wait_closed()
            self._server = None
