"""Process plumbing shared by the long-running commands: stop on SIGTERM or after a while,
ports to listen on, the event loop to run on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

# The event loops `alarmgw run` can poll on: uvloop (libuv; a few per cent less CPU per
# poll, docs/benchmarks.md) where it is installed, else asyncio's own.
LOOPS = ("auto", "uvloop", "asyncio")


class LoopError(Exception):
    """The event loop asked for cannot be had."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the event loop for `choice` (None: asyncio's own). `auto` is uvloop when
    it is installed; `uvloop` when it is not raises LoopError."""
    if choice not in LOOPS:
        raise LoopError(f"--loop: {choice!r} is not one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopError(
                "--loop uvloop: uvloop is not installed (pip install 'alarmgw[fast]', or run with --loop asyncio)"
            ) from None
        return None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`, for the start-up log."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class HttpError(Exception):
    """The HTTP API cannot be served (e.g. its port is taken)."""


def listen(bind: str, port: int) -> socket.socket:
    """A listening socket, or HttpError naming the address."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    # IPPROTO_TCP said, not left 0: asyncio sets TCP_NODELAY only on sockets that say it, and
    # without it every answer's body waits for the client's delayed ACK (40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise HttpError(f"cannot serve the API on {bind}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def free_ports(n: int, address: str = "127.0.0.1") -> list[int]:
    """`n` distinct TCP ports that were free a moment ago on `address`.

    All are held open until every one is chosen: the kernel would otherwise happily hand
    out a port it has just given back."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((address, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `address`."""
    return free_ports(1, address)[0]


async def run_until_stopped(tasks: Sequence[Callable[[], Awaitable[object]]], duration: float | None) -> None:
    """Run the tasks together until one fails, `duration` passes, or SIGTERM arrives.

    Ctrl-C (SIGINT) cancels the main task through asyncio.run, which ends here the same way.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                async with asyncio.TaskGroup() as tg:
                    for t in tasks:
                        tg.create_task(t())  # type: ignore[arg-type]
                    tg.create_task(_raise_when(stop))
    except* _Stopped:
        pass
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


DEMO_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"  # the fleet demo's server by default


class DemoError(Exception):
    """What a demo needs and did not find (a broker, a database); the message says what to do."""


class _Stopped(Exception):
    pass


async def _raise_when(event: asyncio.Event) -> None:
    await event.wait()
    raise _Stopped


__all__ = ["free_port", "free_ports", "run_until_stopped"]
