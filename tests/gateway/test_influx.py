"""Telemetry to a real InfluxDB-protocol server: VictoriaMetrics on a free loopback port
accepts InfluxDB's v2 write API; the tests read the points back through its export API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alarmgw.gateway.influx import InfluxTelemetry
from alarmgw.gateway.runtime import free_port
from tests.conftest import Harness, harness_for, write_site
from tests.services import VictoriaMetrics

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(folder=tmp_path / "vm").start()
    yield server
    server.stop()


def influx_extra(url: str, buffer_max: int = 100_000, interval_s: float = 0) -> str:
    return (
        f"influxdb: {{url: '{url}', org: alarm, bucket: site-telemetry, token_file: influx.token,"
        f" batch_size: 50, flush_interval_s: 5, buffer_max: {buffer_max}, interval_s: {interval_s}}}\n"
    )


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def points(vm: VictoriaMetrics, metric: str, device: str) -> dict[int, float]:
    """timestamp (ms) -> value of one device's series, as the server has it."""
    series = await asyncio.to_thread(vm.export, f'{metric}{{device="{device}",site="test-site"}}')
    out: dict[int, float] = {}
    for s in series:
        out.update(zip(s["timestamps"], s["values"], strict=True))
    return out


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    """Poll an outside server until `check()` is true (it has nothing to wait on)."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - the server is another process
            await asyncio.sleep(0.2)


def telemetry_of(h: Harness) -> InfluxTelemetry:
    assert h.gateway.influx is not None
    return h.gateway.influx


async def test_readings_arrive_as_points_per_device_kind(tmp_path: Path, vm: VictoriaMetrics) -> None:
    (tmp_path / "influx.token").write_text("not-checked-by-this-server\n")
    path = write_site(tmp_path, free_port(), extra=influx_extra(vm.url))
    async with harness_for(path, start=datetime.now(UTC)) as h:
        await h.start_gateway()
        seen: dict[int, tuple[float, float]] = {}
        for _ in range(3):
            await h.cycle(1)
            r = h.gateway.core.latest["smoke-1"]
            seen[ms(r.at)] = (float(r.values["battery_v"]), float(r.values["rssi_dbm"]))
        await h.cycle(1)  # past the flush interval
        influx = telemetry_of(h)

        async def battery_all_there() -> bool:
            got = await points(vm, "smoke_detector_battery_v", "smoke-1")
            return all(t in got for t in seen)

        await until(battery_all_there)
        battery = await points(vm, "smoke_detector_battery_v", "smoke-1")
        rssi = await points(vm, "smoke_detector_rssi_dbm", "smoke-1")
        for t, (volts, dbm) in seen.items():
            assert battery[t] == pytest.approx(volts) and rssi[t] == pytest.approx(dbm)
        # tags: site, host, device; one measurement per kind; the host's link counts
        (series,) = await asyncio.to_thread(vm.export, 'pir_detector_tamper{device="pir-2"}')
        assert {k: series["metric"][k] for k in ("site", "host", "device")} == {
            "site": "test-site",
            "host": "host-1",
            "device": "pir-2",
        }
        assert set(series["values"]) == {0}
        requests = await points(vm, "host_link_requests", "host-1")
        assert requests and max(requests.values()) > 0
        assert influx.written > 0 and influx.failures == 0 and influx.dropped == 0


async def test_points_wait_while_the_server_is_away_and_arrive_with_their_own_time(tmp_path: Path) -> None:
    port = free_port()
    path = write_site(tmp_path, free_port(), extra=influx_extra(f"http://127.0.0.1:{port}"))
    (tmp_path / "influx.token").write_text("t\n")
    async with harness_for(path, start=datetime.now(UTC)) as h:
        await h.start_gateway()
        influx = telemetry_of(h)
        outage: list[int] = []
        for _ in range(6):  # nobody listens: every write fails and is retried later
            await h.cycle(1)
            outage.append(ms(h.gateway.core.latest["smoke-1"].at))
        assert influx.failures >= 1 and influx.written == 0 and len(influx) > 0
        vm = VictoriaMetrics(port=port, folder=tmp_path / "vm").start()
        try:
            for _ in range(30):  # backoff (1, 2, 4 ... s) runs on the gateway's clock
                await h.cycle(1)
                if len(influx) == 0 and influx.written > 0:
                    break
            assert influx.dropped == 0

            async def all_there() -> bool:
                got = await points(vm, "smoke_detector_battery_v", "smoke-1")
                return all(t in got for t in outage)

            await until(all_there)
        finally:
            vm.stop()


async def test_buffer_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    path = write_site(tmp_path, free_port(), extra=influx_extra(f"http://127.0.0.1:{free_port()}", buffer_max=100))
    (tmp_path / "influx.token").write_text("t\n")
    async with harness_for(path, start=datetime.now(UTC)) as h:
        await h.start_gateway()
        influx = telemetry_of(h)
        await h.cycle(15)  # 10 devices a poll, nobody listening
        queued = h.gateway.core.readings_seen  # every reading with values is one point
        assert len(influx) == 100
        assert influx.dropped == queued - 100 > 0
        first = h.gateway.core.latest["smoke-1"].at
        assert str(ms(first)) in influx._buf[-1]  # the newest are kept


async def test_one_point_per_device_per_interval(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    path = write_site(tmp_path, free_port(), extra=influx_extra(url, interval_s=12))
    (tmp_path / "influx.token").write_text("t\n")
    async with harness_for(path, start=datetime.now(UTC)) as h:
        await h.start_gateway()  # first poll at t=0: one point per device
        influx = telemetry_of(h)
        await h.cycle(5)  # polls at 5 ... 25 s: a point at 15 s (12 s after 0), none at 25 s (10 s after 15)
        smoke = [line for line in influx._buf if "device=smoke-1" in line]
        stamps = [int(line.rsplit(" ", 1)[1]) for line in smoke]
        assert [round((t - stamps[0]) / 1000) for t in stamps] == [0, 15]
