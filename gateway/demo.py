"""`alarmgw demo`: the demo site simulated, the gateway polling it, a live view of both."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.live import Live

from simulator.runner import Simulator
from simulator.scenario import load_scenario

from .config import HostConfig, LoadedSite, ModbusTcpEndpoint, load_site
from .live import render, tickets_table
from .runtime import free_port, run_until_stopped
from .service import Gateway
from .wiring import simulator_endpoints


def builtin(name: str) -> Path:
    return Path(str(resources.files("alarmgw.config").joinpath(name)))


def demo_site(db: Path | None) -> LoadedSite:
    """The packaged demo site, moved to free loopback ports and the given store."""
    site = load_site(builtin("demo-site.yaml"))
    hosts = [
        h.model_copy(update={"modbus": ModbusTcpEndpoint(address="127.0.0.1", port=free_port(), unit=h.modbus.unit)})
        if h.modbus is not None
        else h
        for h in site.config.hosts
    ]
    config = site.config.model_copy(update={"hosts": [HostConfig.model_validate(h.model_dump()) for h in hosts]})
    moved = LoadedSite(site.path, config)
    moved.store_path = db if db is not None else Path(tempfile.mkdtemp(prefix="alarmgw-demo-")) / "demo.db"
    return moved


async def demo(duration: float | None, db: Path | None, seed: int | None, plain: bool) -> int:
    console = Console() if Console().is_terminal else Console(width=120)
    site = demo_site(db)
    scenario = load_scenario(builtin("scenarios/demo.yaml"))
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    live = not plain and console.is_terminal
    async with Simulator(simulator_endpoints(site), scenario) as sim, Gateway(site) as gw:
        console.print(
            f"demo: {len(gw.devices)} simulated devices on "
            f"{', '.join(f'127.0.0.1:{s.endpoint.port}' for s in sim.servers)}; "
            f"tickets in {site.store_path}; " + ("Ctrl-C to stop" if duration is None else f"{duration:g} s"),
            highlight=False,
        )

        async def view() -> None:
            if live:
                with Live(render(gw), console=console, refresh_per_second=2) as screen:
                    while True:
                        await _tick()
                        screen.update(render(gw))
            async with gw.tickets.subscribe() as events:
                async for ev in events:
                    t = ev.ticket
                    console.print(
                        f"{ev.at:%H:%M:%S} ticket {t.id} {ev.action}: {t.device_id} {t.fault} ({t.state.value}"
                        f"{', restored' if not t.fault_active else ''}"
                        f"{', lost behind it: ' + ', '.join(t.casualties) if t.casualties else ''})",
                        highlight=False,
                    )

        await run_until_stopped([gw.run, view], duration)
        console.print(tickets_table(gw.store.tickets(include_closed=False), gw.clock.now()))
    return 0


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.5)
