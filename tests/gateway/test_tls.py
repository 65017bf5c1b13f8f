"""`tls:` in a site file means TLS, always: `tls: {}` is TLS verified against the system's
CAs, the broker's name is checked, and a broker that speaks only plaintext is never
talked to. Real mosquitto brokers (one plaintext, some TLS-only with throw-away
certificates), the gateway on a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from alarmgw.clock import ManualClock
from alarmgw.drivers.mqtt_link import subscribe_forever
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.tasks import cancel_and_wait
from tests.broker import Mosquitto, make_ca_and_server_cert
from tests.conftest import Harness, harness_for, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

BACKOFF_MAX_S = 60.0  # the uplink's and the device feed's reconnect backoff is capped here


class ConnectFailures(logging.Handler):
    """Counts the failed connects `stay_connected` logs for one link ("uplink: broker ...:
    ...; reconnecting"), so a test waits for attempts instead of sleeping."""

    def __init__(self, link: str) -> None:
        super().__init__(logging.WARNING)
        self.link = link
        self.count = 0
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(f"{self.link}: broker"):
            self.count += 1
            self.errors.append(message)
            self.changed.set()

    async def wait_for(self, n: int, timeout_s: float = 15) -> None:
        async with asyncio.timeout(timeout_s):
            while self.count < n:
                self.changed.clear()
                await self.changed.wait()


@contextlib.contextmanager
def failures_of(link: str) -> Iterator[ConnectFailures]:
    watcher = ConnectFailures(link)
    logger = logging.getLogger("alarmgw.drivers.mqtt_link")
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)


@contextlib.asynccontextmanager
async def everything_on(port: int, topic: str = "#") -> AsyncIterator[list[tuple[str, bytes]]]:
    """A plaintext subscriber to `topic` on the broker: what anyone managed to publish."""
    seen: list[tuple[str, bytes]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(topic, qos=1)
            ready.set()
            async for m in client.messages:
                seen.append((m.topic.value, bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""))

    task = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield seen
    finally:
        await cancel_and_wait(task)


def uplink(port: int, tls: str) -> str:
    return f"uplink:\n  broker: {{host: 127.0.0.1, port: {port}, tls: {tls}}}\n  telemetry_interval_s: null\n"


async def attempts_refused(h: Harness, failures: ConnectFailures, n: int = 3) -> None:
    """Let the uplink try `n` times: each failure is waited for, then the clock is moved
    past the backoff before the next try."""
    for i in range(1, n + 1):
        await failures.wait_for(i)
        h.clock.advance(BACKOFF_MAX_S)


async def test_tls_with_nothing_given_never_talks_plaintext_to_a_plaintext_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """`tls: {}` against a broker that only speaks plaintext: no connection, nothing sent,
    the messages kept in the outbox."""
    site = write_site(tmp_path, free_port(), extra=uplink(mosquitto.port, "{}"))
    async with everything_on(mosquitto.port, "alarmgw/test-site/#") as seen, harness_for(site) as h:
        with failures_of("uplink") as failures:
            gw = await h.start_gateway()
            assert gw.uplink is not None
            h.sim.inject("pir-2", "tamper")
            await h.cycle(1)
            await attempts_refused(h, failures)
        assert not gw.uplink.connected.is_set()
        assert gw.uplink.published == 0 and gw.store.outbox.depth() > 0  # kept for a broker that speaks TLS
        assert h.tickets(), "the fault was ticketed; only its delivery waits"
    assert seen == []


async def test_the_device_feed_with_tls_never_subscribes_in_plaintext(tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        f"site: {{id: z}}\ndevice_broker: {{host: 127.0.0.1, port: {mosquitto.port}, tls: {{}}}}\n"
        "zigbee2mqtt: [{id: zb, devices: [{id: s1, friendly_name: s1, kind: smoke_detector}]}]\n"
    )
    broker = load_site(site).device_broker
    assert broker is not None
    clock = ManualClock()
    subscribed = asyncio.Event()

    async def on_connect() -> None:
        subscribed.set()

    with failures_of("device feed") as failures:
        feed = asyncio.create_task(
            subscribe_forever(broker, ["zigbee2mqtt/#"], lambda t, p, r: None, clock, on_connect=on_connect)
        )
        try:
            for i in range(1, 4):
                await failures.wait_for(i)
                clock.advance(BACKOFF_MAX_S)
        finally:
            await cancel_and_wait(feed)
    assert not subscribed.is_set()


@pytest.fixture(scope="module")
def centre_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("centre-ca"), "centre")


@pytest.mark.parametrize("system_trusts_the_centre", [False, True])
async def test_tls_with_nothing_given_verifies_against_the_systems_cas(
    tmp_path: Path,
    centre_ca: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    system_trusts_the_centre: bool,
) -> None:
    """`tls: {}` is TLS with the system's certificate store (OpenSSL's, which
    SSL_CERT_FILE points elsewhere for this test): a broker it vouches for is reached, one
    it does not know is refused."""
    ca, cert, key = centre_ca
    if system_trusts_the_centre:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    broker = Mosquitto(tls=(ca, cert, key)).start()
    try:
        site = write_site(tmp_path, free_port(), extra=uplink(broker.port, "{}"))
        async with harness_for(site) as h:
            with failures_of("uplink") as failures:
                gw = await h.start_gateway()
                assert gw.uplink is not None
                h.sim.inject("pir-2", "tamper")
                await h.cycle(1)
                if system_trusts_the_centre:
                    async with asyncio.timeout(10):
                        await gw.uplink.connected.wait()
                        while gw.store.outbox.depth():
                            await gw.uplink.published_event.wait()
                else:
                    await attempts_refused(h, failures, 2)
                    assert "CERTIFICATE_VERIFY_FAILED" in failures.errors[0]
                    assert not gw.uplink.connected.is_set() and gw.uplink.published == 0
    finally:
        broker.stop()


def server_cert_for(folder: Path, ca: Path, ca_key: Path, san: str) -> tuple[Path, Path]:
    """A server certificate for `san`, signed by the CA (openssl, as tests/broker.py does)."""
    key, csr, cert, ext = (folder / f"other{x}" for x in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(f"subjectAltName={san}\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=elsewhere", "-keyout", str(key), "-out", str(csr))
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


async def test_the_brokers_name_is_checked(tmp_path: Path, centre_ca: tuple[Path, Path, Path]) -> None:
    """A certificate from the trusted CA, but for another name, is refused."""
    ca, _, _ = centre_ca
    cert, key = server_cert_for(tmp_path, ca, ca.with_suffix(".key"), "DNS:elsewhere.example")
    broker = Mosquitto(tls=(ca, cert, key)).start()
    try:
        site = write_site(tmp_path, free_port(), extra=uplink(broker.port, f"{{ca_file: {ca}}}"))
        async with harness_for(site) as h:
            with failures_of("uplink") as failures:
                gw = await h.start_gateway()
                assert gw.uplink is not None
                await attempts_refused(h, failures, 2)
            assert any("match" in e or "mismatch" in e or "CERTIFICATE_VERIFY_FAILED" in e for e in failures.errors)
            assert not gw.uplink.connected.is_set() and gw.uplink.published == 0
    finally:
        broker.stop()
