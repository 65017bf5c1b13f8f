"""An MQTT connection (aiomqtt, MQTT 5) that stays up: reconnect with backoff, resubscribe,
hand every message to a callback. TLS problems are errors, never a fallback to plaintext."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    mqtt_version: str = "5"  # "5", or "3.1.1" for brokers that speak nothing newer
    tls: bool = False  # TLS with the system's CAs even when no CA file is given

    def tls_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context when a CA or a client certificate is configured.
        A file that cannot be read raises here, at start-up, not at the first connect."""
        if self.ca_file is None and self.cert_file is None and not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx

    def client(self, *, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt_version == "5" else aiomqtt.ProtocolVersion.V311,
            will=will,
            keepalive=self.keepalive_s,
            tls_context=self.tls_context(),
            timeout=10,
        )


Handler = Callable[[str, bytes], None]


async def subscribe_forever(
    broker: BrokerSpec,
    topics: Sequence[str],
    on_message: Handler,
    clock: Clock,
    *,
    backoff: Backoff | None = None,
    on_connect: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Receive messages on `topics` until cancelled, reconnecting with backoff."""
    backoff = backoff or Backoff()
    while True:
        raise_if_cancelling()
        try:
            async with broker.client() as client:
                for topic in topics:
                    await client.subscribe(topic, qos=1)
                backoff.reset()
                log.info("subscribed to %s on %s:%d", ", ".join(topics), broker.host, broker.port)
                if on_connect is not None:
                    await on_connect()
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    on_message(message.topic.value, payload)
        except aiomqtt.MqttError as exc:
            delay = backoff.next_delay()
            log.warning("broker %s:%d: %s; reconnecting in %.1f s", broker.host, broker.port, exc, delay)
            await clock.sleep_until(clock.monotonic() + delay)
