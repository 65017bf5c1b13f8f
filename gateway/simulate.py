"""`alarmgw simulate`: the simulator alone, as a separate process from the gateway.

It prints one JSON line when it is serving (with its start time, so scenario offsets can be
turned into UTC, and the MQTT broker its Zigbee2MQTT bridges publish to: the site file's
`device_broker`, which it expects to find running, as on a site), and takes run-time
injections on standard input, one per line: `inject DEVICE FAULT [DURATION_S]`,
`unplug BUS`, `plug BUS`, `noise BUS SHARE`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from alarmgw.clock import iso
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import FaultName, Scenario, load_scenario
from alarmgw.yamlfile import describe

from .runtime import run_until_stopped
from .site_file import LoadedSite
from .wiring import simulator_for

log = logging.getLogger(__name__)


async def simulate(site: LoadedSite, scenario_path: Path | None, seed: int, duration: float | None) -> int:
    scenario = load_scenario(scenario_path) if scenario_path else Scenario()
    sim = simulator_for(site, scenario, seed=seed)
    async with sim:
        ready = {
            "event": "ready",
            "started_at": iso(sim.started_at),
            "seed": sim.seed,
            "hosts": [f"{s.endpoint.address}:{s.endpoint.port}" for s in sim.servers]
            + [s.address for s in sim.envisalinks],
            "buses": {bus_id: str(line.line.link_path) for bus_id, line in sim.lines.items()},
        }
        broker = site.device_broker
        if site.config.zigbee2mqtt and broker is not None:
            # The simulated Zigbee2MQTT bridges publish there; the site's broker is not simulated.
            ready["device_broker"] = f"{broker.host}:{broker.port}"
        print(json.dumps(ready), flush=True)
        await run_until_stopped([lambda: read_commands(sim)], duration)
    return 0


async def read_commands(sim: Simulator) -> None:
    """Apply `inject` lines from stdin until it closes; then keep serving."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue(maxsize=100)

    def reader() -> None:
        # A daemon thread: a blocking read must not hold the process open at exit.
        for raw in sys.stdin:
            asyncio.run_coroutine_threadsafe(lines.put(raw), loop).result()
        asyncio.run_coroutine_threadsafe(lines.put(""), loop).result()

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while True:
        line = await lines.get()
        if not line:
            await asyncio.Event().wait()  # stdin closed: serve until stopped
        reply = await apply_command(sim, line)
        if reply:
            print(json.dumps(reply), flush=True)


USAGE = "inject DEVICE FAULT [DURATION_S] | unplug BUS | plug BUS | noise BUS SHARE"


async def apply_command(sim: Simulator, line: str) -> dict[str, object] | None:
    """One command line -> a JSON-able reply; bad input is answered, never raised."""
    words = line.split()
    if not words:
        return None
    verb, args = words[0], words[1:]
    try:
        if verb == "inject" and len(args) in (2, 3):
            device, fault = args[:2]
            if fault not in get_args(FaultName):
                return _error(f"unknown fault {fault!r}; one of {', '.join(get_args(FaultName))}")
            duration = _number(args[2], "duration") if len(args) == 3 else None
            injection = sim.inject(device, fault, duration)  # type: ignore[arg-type]
            return {"event": "injected", "device": device, "fault": fault, "at_s": round(injection.at, 3)}
        if verb in ("unplug", "plug") and len(args) == 1:
            await (sim.unplug(args[0]) if verb == "unplug" else sim.plug(args[0]))
            return {"event": verb + "ged", "bus": args[0]}
        if verb == "noise" and len(args) == 2:
            sim.set_noise(args[0], _number(args[1], "noise share"))
            return {"event": "noise", "bus": args[0], "share": float(args[1])}
    except ValueError as exc:
        return _error(str(exc))
    except ValidationError as exc:
        return _error(describe(exc))
    except KeyError as exc:
        return _error(str(exc.args[0]))
    return _error(f"unknown command {line.strip()!r}; use: {USAGE}")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


def _error(message: str) -> dict[str, object]:
    return {"event": "error", "error": message}
