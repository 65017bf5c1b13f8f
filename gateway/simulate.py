"""`alarmgw simulate`: the simulator alone, as a separate process from the gateway.

It prints one JSON line when it is serving (with its start time, so scenario offsets can be
turned into UTC), and takes run-time injections on standard input, one per line:
`inject DEVICE FAULT [DURATION_S]`.
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

from alarmgw.yamlfile import describe
from simulator.runner import Simulator
from simulator.scenario import FaultName, Scenario, load_scenario

from .config import LoadedSite
from .runtime import run_until_stopped
from .store import iso
from .wiring import simulator_endpoints

log = logging.getLogger(__name__)


async def simulate(site: LoadedSite, scenario_path: Path | None, seed: int, duration: float | None) -> int:
    scenario = load_scenario(scenario_path) if scenario_path else Scenario()
    sim = Simulator(simulator_endpoints(site), scenario, seed=seed)
    async with sim:
        ready = {
            "event": "ready",
            "started_at": iso(sim.started_at),
            "seed": sim.seed,
            "hosts": [f"{s.endpoint.address}:{s.endpoint.port}" for s in sim.servers],
        }
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
        reply = apply_command(sim, line)
        if reply:
            print(json.dumps(reply), flush=True)


def apply_command(sim: Simulator, line: str) -> dict[str, object] | None:
    """One command line -> a JSON-able reply; bad input is answered, never raised."""
    words = line.split()
    if not words:
        return None
    if words[0] != "inject" or len(words) not in (3, 4):
        return {"event": "error", "error": f"unknown command {line.strip()!r}; use: inject DEVICE FAULT [DURATION_S]"}
    _, device, fault = words[:3]
    if fault not in get_args(FaultName):
        return {"event": "error", "error": f"unknown fault {fault!r}; one of {', '.join(get_args(FaultName))}"}
    try:
        duration = float(words[3]) if len(words) == 4 else None
        injection = sim.inject(device, fault, duration)  # type: ignore[arg-type]
    except ValueError:
        return {"event": "error", "error": f"duration {words[3]!r} is not a number of seconds"}
    except ValidationError as exc:
        return {"event": "error", "error": describe(exc)}
    except KeyError as exc:
        return {"event": "error", "error": str(exc.args[0])}
    return {"event": "injected", "device": device, "fault": fault, "at_s": round(injection.at, 3)}
