"""`alarmgw demo`: the demo site simulated, the gateway polling it, a live view of both."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.live import Live

from alarmgw.simulator.scenario import load_scenario

from .app import Gateway
from .changes import TicketEvent
from .config import BrokerConfig, HostConfig, HttpConfig, ModbusTcpEndpoint
from .credentials import new_api_token, token_entry
from .live import render, tickets_table
from .runtime import free_port, run_until_stopped
from .site_file import LoadedSite, load_site
from .tables import FitTables
from .wiring import simulator_for


def builtin(name: str) -> Path:
    return Path(str(resources.files("alarmgw.config").joinpath(name)))


def demo_site(db: Path | None, broker: tuple[str, int, str], http_port: int = 0) -> tuple[LoadedSite, str]:
    """The packaged demo site, moved to free loopback ports, the given broker and store, with
    the dashboard on `http_port` (0: any free port); and an engineer's token for it."""
    site = load_site(builtin("demo-site.yaml"))
    folder = Path(tempfile.mkdtemp(prefix="alarmgw-demo-"))
    token = new_api_token()
    tokens_file = folder / "api-tokens.yaml"
    tokens_file.touch(mode=0o600)  # a secret, like any tokens file: the gateway's user's alone
    tokens_file.write_text(f"tokens:\n  {token_entry('demo', 'engineer', token)}\n")
    hosts = [
        h.model_copy(update={"modbus": ModbusTcpEndpoint(address="127.0.0.1", port=free_port(), unit=h.modbus.unit)})
        if h.modbus is not None
        else h
        for h in site.config.hosts
    ]
    host, port, version = broker
    config = site.config.model_copy(
        update={
            "hosts": [HostConfig.model_validate(h.model_dump()) for h in hosts],
            "device_broker": BrokerConfig(host=host, port=port, mqtt_version=version),
            "http": HttpConfig(bind="127.0.0.1", port=http_port or free_port(), tokens_file=tokens_file),
        }
    )
    moved = LoadedSite(site.path, config)
    moved.store_path = db if db is not None else folder / "demo.db"
    return moved, token


@contextlib.asynccontextmanager
async def embedded_broker() -> AsyncIterator[tuple[str, int, str]]:
    """An MQTT broker inside the demo's process (amqtt; it speaks MQTT 3.1.1), so the demo
    needs nothing beyond the package. Sites and tests use a real broker."""
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield "127.0.0.1", port, "3.1.1"
    finally:
        await broker.shutdown()


async def demo(
    duration: float | None,
    db: Path | None,
    seed: int | None,
    plain: bool,
    broker: str | None = None,
    http_port: int = 0,
) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            where = await stack.enter_async_context(embedded_broker())
        else:
            host, _, port = broker.rpartition(":")
            where = (host or "127.0.0.1", int(port), "5")
        return await _demo(duration, db, seed, plain, where, http_port)


async def _demo(
    duration: float | None,
    db: Path | None,
    seed: int | None,
    plain: bool,
    broker: tuple[str, int, str],
    http_port: int,
) -> int:
    console = Console() if Console().is_terminal else Console(width=120)
    console.push_render_hook(FitTables(console))  # the closing table too: names whole
    site, token = demo_site(db, broker, http_port)
    scenario = load_scenario(builtin("scenarios/demo.yaml"))
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    live = not plain and console.is_terminal
    async with simulator_for(site, scenario) as sim, Gateway(site) as gw:
        core = gw.core
        console.print(
            f"demo: {len(core.devices)} simulated devices on "
            f"{', '.join(f'127.0.0.1:{s.endpoint.port}' for s in sim.servers)}; "
            f"tickets in {site.store_path}; " + ("Ctrl-C to stop" if duration is None else f"{duration:g} s"),
            highlight=False,
        )
        assert gw.http is not None
        console.print(f"dashboard: {gw.http.url}#token={token}  (engineer token 'demo')", highlight=False)

        async def view() -> None:
            if live:
                with Live(render(core, console), console=console, refresh_per_second=2) as screen:
                    while True:
                        await _tick()
                        screen.update(render(core, console))
            async with core.changes.subscribe() as changes:
                async for ev in changes:
                    if not isinstance(ev, TicketEvent):
                        continue
                    t = ev.ticket
                    console.print(
                        f"{ev.at:%H:%M:%S} ticket {t.id} {ev.action}: {t.device_id} {t.fault} ({t.state.value}"
                        f"{', restored' if not t.fault_active else ''}"
                        f"{', lost behind it: ' + ', '.join(t.casualties) if t.casualties else ''})",
                        highlight=False,
                    )

        await run_until_stopped([gw.run, view], duration)
        console.print(tickets_table(core.store.tickets.all(include_closed=False), core.clock.now()))
    return 0


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.5)
