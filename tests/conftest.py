"""Shared fixtures: a small site on a free loopback port, the simulator as its device peer,
and the gateway polling it, both on one manual clock so tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.credentials import token_entry
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import LoadedSite, load_site
from alarmgw.gateway.store import Store
from alarmgw.gateway.wiring import simulator_endpoints
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import Scenario
from alarmgw.tasks import cancel_and_wait
from tests.broker import Mosquitto

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

POLL_S = 5.0

# A test site's settings, before its hosts (format with area, db and poll).
SITE_HEAD = """\
site: {{id: test-site, name: Test site, area: {area}, commissioned_on: 2026-01-01}}
store: {{path: {db}}}
poll: {{interval_s: {poll}, timeout_s: 0.5, retries: 0, backoff_initial_s: 1, backoff_max_s: 10}}
history: {{interval_s: 0}}
supervision_s: {{repeater: 30, smoke_detector: 60, pir_detector: 60}}
hosts:
"""

SITE = (
    SITE_HEAD
    + """\
  - id: host-1
    model: sim-wh100
    location: plant room
    modbus: {{address: 127.0.0.1, port: {port}, unit: 1}}
    devices:
      - {{id: rep-1, kind: repeater, slot: 1, location: hall}}
      - {{id: rep-2, kind: repeater, slot: 2, location: store room}}
      - {{id: smoke-1, kind: smoke_detector, slot: 3, parent: rep-1, location: hall ceiling}}
      - {{id: smoke-2, kind: smoke_detector, slot: 4, parent: rep-2, location: store ceiling}}
      - {{id: smoke-3, kind: smoke_detector, slot: 5, parent: rep-2, location: loading bay}}
      - {{id: pir-1, kind: pir_detector, slot: 6, parent: rep-2, location: store door}}
      - {{id: pir-2, kind: pir_detector, slot: 7, location: office}}
      - {{id: pir-3, kind: pir_detector, slot: 8, location: corridor}}
      - {{id: remote-1, kind: remote_control, slot: 9, location: reception}}
"""
)

# Check-ins faster than the defaults, so supervision plays out in a few dozen polls.
SCENARIO = Scenario(seed=11, report_interval_s={"repeater": 10, "smoke_detector": 20, "pir_detector": 20})  # type: ignore[dict-item]


def write_site(
    folder: Path, port: int, *, db: str = "tickets.db", area: str = "city", poll: float = POLL_S, extra: str = ""
) -> Path:
    path = folder / "site.yaml"
    path.write_text(SITE.format(port=port, db=db, area=area, poll=poll) + extra)
    return path


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One real broker for the session; tests keep to their own topics."""
    broker = Mosquitto().start()
    yield broker
    broker.stop()


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return write_site(tmp_path, free_port())


async def wait_all(events: list[asyncio.Event], timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(e.wait() for e in events))


async def poll_cycles(gw: Gateway, clock: ManualClock, n: int = 1) -> None:
    """Move time on by one poll interval, n times, waiting for each due poll to finish."""
    for _ in range(n):
        done = [j.done for j in gw.core.jobs if j.interval_s <= POLL_S]
        clock.advance(POLL_S)
        await wait_all(done)


class Harness:
    """The simulator and a gateway on one manual clock."""

    def __init__(self, site: LoadedSite, clock: ManualClock, sim: Simulator) -> None:
        self.site = site
        self.clock = clock
        self.sim = sim
        self.gw: Gateway | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def gateway(self) -> Gateway:
        assert self.gw is not None, "gateway not started"
        return self.gw

    async def start_gateway(self, store: Store | None = None) -> Gateway:
        """Start a gateway on the site's store (or `store`) and wait for its first poll."""
        self.gw = await Gateway.open(self.site, clock=self.clock, store=store)
        # Jobs are staggered over the interval: the first runs at once, the others at their
        # phase, which the first cycle reaches.
        first = self.gw.core.jobs[0].done
        self._task = asyncio.create_task(self.gw.run())
        await self._wait([first])
        return self.gw

    async def stop_gateway(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.gw is not None:
            await self.gw.aclose()
            self.gw = None

    async def cycle(self, n: int = 1) -> None:
        await poll_cycles(self.gateway, self.clock, n)

    @staticmethod
    async def _wait(events: list[asyncio.Event]) -> None:
        await wait_all(events)

    def tickets(self) -> list[Ticket]:
        return self.gateway.store.tickets.all()


@pytest.fixture
async def harness(site_file: Path) -> AsyncIterator[Harness]:
    async with harness_for(site_file) as h:
        yield h


@contextlib.asynccontextmanager
async def harness_for(site_file: Path, start: datetime | None = None) -> AsyncIterator[Harness]:
    site = load_site(site_file)
    clock = ManualClock(start)
    sim = Simulator(simulator_endpoints(site), SCENARIO, clock=clock)
    async with sim:
        h = Harness(site, clock, sim)
        try:
            yield h
        finally:
            await h.stop_gateway()


VIEWER_TOKEN, ENGINEER_TOKEN = "viewer-token-0123456789abcdef", "engineer-token-0123456789abcdef"


def http_extra(folder: Path, port: int | None = None, metrics_public: bool = False) -> str:
    """Site-file lines for the HTTP API on a free loopback port, with a tokens file holding
    a viewer (`view-1`) and an engineer (`eng-1`) token."""
    entries = (token_entry("view-1", "viewer", VIEWER_TOKEN), token_entry("eng-1", "engineer", ENGINEER_TOKEN))
    (folder / "api-tokens.yaml").write_text("tokens:\n" + "".join(f"  {e}\n" for e in entries))
    public = "true" if metrics_public else "false"
    return f"http: {{port: {port or free_port()}, tokens_file: api-tokens.yaml, metrics_public: {public}}}\n"


UNIT_TIMEOUT_S = 10  # a unit test has no peer to wait for: a hang fails fast


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests not marked `integration` run under a tight timeout (unless they set their own);
    integration tests keep the suite's 60 s."""
    for item in items:
        if item.get_closest_marker("integration") is None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_S))
