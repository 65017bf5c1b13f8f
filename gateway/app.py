"""The composition root: one site's gateway, built from its site file.

It opens the store, builds the site core on it, and around the core the faces the site file
asks for: the uplink and its telemetry, Home Assistant discovery, the remote desk, the HTTP
API with its metrics, the InfluxDB writer. Each face sees the core through `SiteView` and
takes what it needs from the core's one stream of changes. Nothing is opened in the
constructor: `async with Gateway(site) as gw` opens everything, and a start that fails half
way closes what it had opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from alarmgw.clock import Clock, SystemClock
from alarmgw.diagnostics.assets import asset
from alarmgw.diagnostics.engine import FaultCleared, FaultRaised
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.maintenance import plan

from . import permissions
from .changes import Change, TelemetryDue, TicketEvent, VisitEnded
from .core import SiteCore
from .messages import OutboxMessage, asset_messages, telemetry_messages
from .operations import Operations
from .runtime import loop_name
from .scheduler import PollJob, Supervised
from .site_file import LoadedSite
from .store import Store

if TYPE_CHECKING:
    from .http_server import HttpServer
    from .influx import InfluxTelemetry
    from .metrics import GatewayMetrics
    from .remote import RemoteDesk
    from .uplink import Uplink

log = logging.getLogger(__name__)

# Changes that put something in the outbox: the uplink is woken for them.
_QUEUED = (FaultRaised, FaultCleared, TicketEvent, Escalation, TelemetryDue)


class Gateway:
    """One site's gateway. `async with Gateway(site) as gw: await gw.run()`."""

    def __init__(self, site: LoadedSite, clock: Clock | None = None, store: Store | None = None) -> None:
        self.site = site
        self.clock = clock or SystemClock()
        self._given_store = store
        self._stack = contextlib.AsyncExitStack()
        self._core: SiteCore | None = None
        self.metrics: GatewayMetrics | None = None
        self.uplink: Uplink | None = None
        self.remote: RemoteDesk | None = None
        self.influx: InfluxTelemetry | None = None
        self.http: HttpServer | None = None
        self.tasks: list[Supervised] = []
        cfg = site.config
        self.topic_root = ((cfg.uplink.topic_root if cfg.uplink else None) or f"alarmgw/{cfg.site.id}").rstrip("/")

    @property
    def core(self) -> SiteCore:
        if self._core is None:
            raise RuntimeError("the gateway is not open: use `async with Gateway(site) as gw`")
        return self._core

    @property
    def store(self) -> Store:
        return self.core.store

    @classmethod
    async def open(cls, site: LoadedSite, clock: Clock | None = None, store: Store | None = None) -> Gateway:
        """An open gateway, for a caller that closes it later with `aclose()`."""
        return await cls(site, clock, store).__aenter__()

    async def __aenter__(self) -> Gateway:
        try:
            self._open()
        except BaseException:
            await self.aclose()  # whatever was opened before the failure
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._core = None

    def _open(self) -> None:
        cfg, site = self.site.config, self.site
        for warning in permissions.warnings(site):
            log.warning("%s", warning)
        uplinked = cfg.uplink is not None and site.uplink_broker is not None
        store = self._given_store
        if store is None:
            store = Store(site.store_path, outbox_max=cfg.uplink.outbox_max if cfg.uplink else 10_000)
            self._stack.callback(store.close)
        store.outbox.set_root(self.topic_root if uplinked else None)
        core = self._core = SiteCore(site, self.clock, store, uplink_root=self.topic_root if uplinked else None)
        self._stack.push_async_callback(self._close_links)
        long_running: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        feed, broker = core.polling.mqtt_feed, site.device_broker
        if feed is not None and broker is not None:
            long_running.append(("mqtt-devices", functools.partial(feed.run, broker)))
        if core.polling.sia_receiver is not None:
            long_running.append(("sia-receiver", core.polling.sia_receiver.run))
        if uplinked:
            long_running.append(("uplink", self._build_uplink(core, store)))
        ops = Operations(core)
        if cfg.remote is not None and site.users is not None and site.uplink_broker is not None:
            from .remote import RemoteDesk

            self.remote = RemoteDesk(ops, site.uplink_broker, self.topic_root, site.users, cfg.remote.max_skew_s)
            long_running.append(("remote", self.remote.run))
        if cfg.influxdb is not None:
            from .influx import InfluxTelemetry  # aiohttp and influxdb-client: only when used

            links = core.polling.link_of
            self.influx = InfluxTelemetry(cfg.influxdb, site.influx_token, cfg.site.id, core.devices, self.clock, links)
            core.changes.listen(self.influx.on_change)
            long_running.append(("influxdb", self.influx.run))
        if cfg.http is not None and site.api_tokens is not None:
            from .http_api import build_app  # fastapi, uvicorn and prometheus-client: only when used
            from .http_server import HttpServer
            from .metrics import GatewayMetrics

            uplink = self.uplink
            metrics = self.metrics = GatewayMetrics(
                core, self.tasks, self.influx, (lambda: uplink.published) if uplink else None
            )
            core.changes.listen(metrics.on_change)

            app = build_app(ops, site.api_tokens, metrics, cfg.http.metrics_public)
            self.http = HttpServer(app, cfg.http.bind, cfg.http.port)  # binds now: a taken port fails here
            self._stack.callback(self.http.sock.close)
            long_running.append(("http", self.http.run))
        self.tasks.extend(Supervised(name, run, self.clock) for name, run in long_running)

    def _build_uplink(self, core: SiteCore, store: Store) -> Callable[[], Awaitable[None]]:
        from .uplink import Uplink

        cfg, site = self.site.config, self.site
        assert cfg.uplink is not None and site.uplink_broker is not None
        prefix = cfg.uplink.home_assistant_prefix
        uplink = self.uplink = Uplink(site.uplink_broker, self.topic_root, store.outbox, self.clock, ha_prefix=prefix)
        core.changes.listen(lambda change: uplink.wake() if isinstance(change, _QUEUED) else None)
        if prefix:
            from .ha_discovery import HomeAssistant, sensor_fields

            faults = {d: [r.fault for r in core.diagnoser.rules_of(d)] for d in core.devices}
            ha = HomeAssistant(core, store.outbox, prefix, self.topic_root, sensor_fields(site, core.devices), faults)
            uplink.on_ha_online = ha.announce
            core.changes.listen(ha.on_change)
            ha.announce()
        store.outbox.enqueue(self._asset_messages())

        def visit_ended(change: Change) -> None:  # the plan's done visits go to the centre
            if isinstance(change, VisitEnded):
                store.outbox.enqueue(self._asset_messages())
                uplink.wake()

        core.changes.listen(visit_ended)
        interval = cfg.uplink.telemetry_interval_s
        if interval:

            async def send_telemetry() -> None:
                store.outbox.enqueue(telemetry_messages(self.topic_root, cfg.site.id, list(core.latest.values())))
                core.changes.publish(TelemetryDue(self.clock.now()))

            core.jobs.append(PollJob(f"telemetry@{interval:g}s", interval, send_telemetry))
        return uplink.run

    def _asset_messages(self) -> list[OutboxMessage]:
        """The asset register and the maintenance plan for the centre (retained: the newest
        replaces the one queued or kept)."""
        cfg = self.site.config
        system = asset(cfg.site.id, "site", cfg.site.commissioned_on)
        visits = (
            plan(cfg.site.commissioned_on, system.warranty_until, cfg.maintenance.regular_months)
            if cfg.site.commissioned_on is not None and system.warranty_until is not None
            else []
        )
        done = self.core.store.visits.done()
        return asset_messages(
            self.topic_root, cfg.site.id, self.clock.now(), cfg.asset_register(), system.warranty_until, visits, done
        )

    async def _close_links(self) -> None:
        if self._core is not None:
            for link in self._core.links:
                await link.close()

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll, and run every face, until cancelled."""
        core = self.core
        log.info(
            "gateway for site %s: %d devices, %d poll jobs, on the %s event loop",
            self.site.config.site.id,
            len(core.devices),
            len(core.jobs),
            loop_name(asyncio.get_running_loop()),
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(core.run(self.metrics.poll_done if self.metrics else None))
            for task in self.tasks:
                tg.create_task(task(), name=task.name)

    def stats(self) -> dict[str, int]:
        """The core's counters and the uplink's."""
        return {**self.core.stats(), "uplink_published": self.uplink.published if self.uplink else 0}

    def log_stats(self) -> None:
        log.info("stats %s", " ".join(f"{k}={v}" for k, v in self.stats().items()))
