"""Serving the API: uvicorn inside the gateway's event loop, on a socket the gateway binds
itself (a taken port is a clear error at start, signals stay the gateway's). At most
`http.max_connections` are accepted at once (the rest wait in the listen backlog); a
connection that takes too long to send a request's head is closed; after a 429 its
connection reads nothing more for a while; uvicorn's own warnings are throttled."""

from __future__ import annotations

# at run time.
import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from alarmgw.asgi_guard import MAX_HEAD_BYTES
from alarmgw.clock import Clock

from .http_guard import HOLD, HOLD_MAX_S, Quiet, Tally
from .runtime import listen

if TYPE_CHECKING:
    from .http_api import ApiState

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0  # from connecting (or the last answer) to a complete request line and headers
ACCEPT_RETRY_S = 0.5  # after accept() failed (out of file descriptors): others may close theirs


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals belong to the gateway's process, not to the web server

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        """uvicorn's housekeeping (the Date header, asked to exit?) once a second instead of
        ten times: an idle API costs the box nothing between requests; stop() wakes it."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick renews the Date header at multiples of 10
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()


class _Connection(H11Protocol):
    """uvicorn's HTTP/1.1 connection, which says when it is gone (its place is free again);
    is closed when it has not sent a complete request head `HEAD_TIMEOUT_S` after connecting
    or after its last answer (a slow or silent client holds no place for long); and after a
    429 reads nothing more until its Retry-After (a client that does not wait sends into a
    full buffer, at no cost to the gateway, instead of having each request parsed and refused)."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, gone: Callable[[], None]) -> None:
        super().__init__(config, server_state, app_state={})  # lifespan is off: no state to share
        self._gone: Callable[[], None] | None = gone
        self._head_timer: asyncio.TimerHandle | None = None
        self._hold_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._expect_head()
        hold = self.scope.get(HOLD) if self.scope is not None else None
        if isinstance(hold, float) and not self.transport.is_closing():
            self.flow.pause_reading()
            self._hold_timer = self.loop.call_later(min(hold, HOLD_MAX_S), self._release)

    def _release(self) -> None:
        if not self.transport.is_closing():
            self.flow.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        try:
            super().connection_lost(exc)
        finally:
            self.free_place()

    def free_place(self) -> None:
        """Say, once, that this connection's place is free."""
        gone, self._gone = self._gone, None
        if gone is not None:
            gone()

    def _expect_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_late, self.cycle)

    def _head_late(self, cycle: object) -> None:
        # No request began since: the same cycle, and not one still being answered.
        idle = self.cycle is cycle and (self.cycle is None or self.cycle.response_complete)
        if idle and not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def _itself(connection: _Connection) -> _Connection:
    return connection


class _QuietWarnings(logging.Filter):
    """uvicorn warns once per malformed request; a flood of them is one line a minute per
    kind of warning, with a count (kinds are uvicorn's fixed messages: a bounded set)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.quiet: dict[str, Quiet] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        kind = str(record.msg)
        held = self.quiet.setdefault(kind, Quiet(self.clock)).say()
        if held is None:
            return False
        if held:
            record.msg = f"{kind} ({held} more since the last line)"
        return True


def _quieten_uvicorn(clock: Clock) -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietWarnings) for f in logger.filters):
        logger.addFilter(_QuietWarnings(clock))


class HttpServer:
    """The API, served by uvicorn on a socket bound now (a taken port fails at once).

    This class accepts the connections, at most `http.max_connections` open at once: past
    that it stops accepting and the rest wait in the kernel's listen backlog, costing the
    gateway nothing (refusing them would cost an accept each, and invite a reconnect storm).
    uvicorn runs each accepted connection, and its own start and stop."""

    def __init__(self, app: FastAPI, bind: str, port: int) -> None:
        self.app = app
        self.bind = bind
        self.sock = listen(bind, port)
        self.port: int = self.sock.getsockname()[1]
        state: ApiState = app.state.alarmgw
        self.max_connections = state.settings.max_connections
        self.connections = 0  # open now
        self._crowded = Tally(f"{self.max_connections} open (http.max_connections): more wait", state.clock)
        self._cannot_accept = Tally("cannot be accepted", state.clock)
        _quieten_uvicorn(state.clock)

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}/"

    async def run(self) -> None:
        if self.sock.fileno() < 0:  # started again after a failure: listen again
            self.sock = listen(self.bind, self.port)
        config = uvicorn.Config(
            self.app,
            host=self.bind,
            port=self.port,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        # uvicorn listens on nothing itself (no sockets): connections come from `_accept`.
        serving = asyncio.ensure_future(server.serve(sockets=[]))
        accepting = asyncio.ensure_future(self._accept(config, server.server_state))
        try:
            await asyncio.wait({serving, accepting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            accepting.cancel()
            server.stop()
            await asyncio.wait({serving, accepting})
            self.sock.close()
        for task in (accepting, serving):
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _accept(self, config: uvicorn.Config, server_state: ServerState) -> None:
        loop = asyncio.get_running_loop()
        room = asyncio.Semaphore(self.max_connections)

        def gone() -> None:
            self.connections -= 1
            room.release()

        while True:
            if room.locked():
                self._crowded.note("connections")
            await room.acquire()
            try:
                sock, _ = await loop.sock_accept(self.sock)
            except OSError as exc:  # e.g. out of file descriptors: wait for some to close
                room.release()
                self._cannot_accept.note(f"connection ({exc.strerror or exc})")
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            self.connections += 1
            connection = _Connection(config, server_state, gone)
            try:
                sock.setblocking(False)
                await loop.connect_accepted_socket(functools.partial(_itself, connection), sock)
            except OSError:  # gone before it was taken in
                sock.close()
                connection.free_place()
