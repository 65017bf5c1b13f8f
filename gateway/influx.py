"""Telemetry to InfluxDB through influxdb-client's async write API.

A reading becomes a point (at most one per device every `interval_s`, 60 s by default, so a
fleet of sites does not flood the central server): measurement = device kind, tags site/host/device, fields =
the reading's values (numbers as floats, so a field never changes type between writes;
flags as booleans), plus the request and failure counts of the link a host or bus is
reached over. Points wait in a bounded buffer in memory and go in batches (`batch_size`
points, at least every `flush_interval_s`); a failed write is retried with backoff and the
batch stays at the head of the buffer, so points arrive in order with their own timestamps
once the server is back. When the buffer is full the oldest points are dropped and counted.
A batch the server refuses as malformed (HTTP 400/413/422) is dropped and counted rather
than retried forever. The buffer lives in memory: a restart loses at most what was waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol, cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.model import Device, Reading
from alarmgw.tasks import raise_if_cancelling

from .changes import Change, ReadingsTaken
from .config import InfluxConfig

log = logging.getLogger(__name__)

MS = cast(WritePrecision, WritePrecision.MS)
REFUSED_STATUS = (400, 413, 422)  # the batch itself is wrong: retrying cannot help


class _Counted(Protocol):
    requests: int
    failures: int


class InfluxTelemetry:
    def __init__(
        self,
        cfg: InfluxConfig,
        token: str,
        site_id: str,
        devices: Mapping[str, Device],
        clock: Clock,
        links: Mapping[str, _Counted] | None = None,
    ) -> None:
        self.cfg = cfg
        self.token = token
        self.site_id = site_id
        self.devices = devices
        self.clock = clock
        self.links = links or {}
        self._buf: deque[str] = deque()
        self._last: dict[str, float] = {}  # device -> monotonic time of its last point
        self._full = asyncio.Event()
        self.written = 0
        self.dropped = 0
        self.failures = 0

    def __len__(self) -> int:
        return len(self._buf)

    def on_change(self, change: Change) -> None:
        """Listens to the site's changes: every poll's readings become points."""
        if isinstance(change, ReadingsTaken):
            self.add(change.readings)

    def add(self, readings: Sequence[Reading]) -> None:
        """Queue a point per reading (at most one per device per `interval_s`); never blocks,
        never raises for the server's state."""
        now, every = self.clock.monotonic(), self.cfg.interval_s
        last = self._last
        for r in readings:
            d = self.devices.get(r.device_id)
            if d is None or (every and now - last.get(d.id, -1e18) < every):
                continue
            point = Point(d.kind.value)
            point.tag("site", self.site_id).tag("host", d.host).tag("device", d.id)
            fields = 0
            for name, value in r.values.items():
                point.field(name, value if isinstance(value, bool) else float(value))
                fields += 1
            link = self.links.get(d.id)
            if link is not None:
                point.field("link_requests", float(link.requests)).field("link_failures", float(link.failures))
                fields += 2
            if fields:
                last[d.id] = now
                self._push(point.time(r.at, MS).to_line_protocol())

    def _push(self, line: str) -> None:
        self._buf.append(line)
        if len(self._buf) > self.cfg.buffer_max:
            self._buf.popleft()
            self.dropped += 1
        if len(self._buf) >= self.cfg.batch_size:
            self._full.set()

    async def run(self) -> None:
        """Write batches until cancelled."""
        cfg = self.cfg
        backoff = Backoff(1.0, 60.0)
        async with InfluxDBClientAsync(
            url=cfg.url, token=self.token, org=cfg.org, timeout=int(cfg.timeout_s * 1000)
        ) as client:
            api = client.write_api()
            while True:
                raise_if_cancelling()
                await self._until_due()
                while self._buf:
                    batch = [self._buf.popleft() for _ in range(min(cfg.batch_size, len(self._buf)))]
                    try:
                        await api.write(cfg.bucket, cfg.org, record=batch, write_precision=MS)
                    except ApiException as exc:
                        if exc.status in REFUSED_STATUS:
                            self.dropped += len(batch)
                            log.error("influxdb refused %d points (HTTP %s): %s", len(batch), exc.status, exc.body)
                            continue
                        await self._retry(batch, backoff, f"HTTP {exc.status} {exc.reason}")
                        break
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        await self._retry(batch, backoff, f"{type(exc).__name__}: {exc}")
                        break
                    except Exception as exc:  # anything else: keep the batch, say what broke
                        log.exception("influxdb write raised")
                        await self._retry(batch, backoff, f"{type(exc).__name__}: {exc}")
                        break
                    self.written += len(batch)
                    backoff.reset()

    async def _retry(self, batch: list[str], backoff: Backoff, why: str) -> None:
        """Put the batch back at the head (the buffer's bound still holds), wait, go on."""
        self.failures += 1
        self._buf.extendleft(reversed(batch))
        while len(self._buf) > self.cfg.buffer_max:
            self._buf.popleft()
            self.dropped += 1
        delay = backoff.next_delay()
        log.warning(
            "influxdb at %s: write failed (%s); %d points buffered, retry in %.1f s",
            self.cfg.url,
            why,
            len(self._buf),
            delay,
        )
        await self.clock.sleep_until(self.clock.monotonic() + delay)

    async def _until_due(self) -> None:
        """Until the flush interval has passed or a full batch is waiting."""
        if len(self._buf) >= self.cfg.batch_size:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.monotonic() + self.cfg.flush_interval_s))
        full = asyncio.ensure_future(self._full.wait())
        try:
            await asyncio.wait({sleeper, full}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            full.cancel()
            self._full.clear()
