"""An MQTT connection (aiomqtt, MQTT 5) that stays up: reconnect with backoff, resubscribe,
hand every message to a callback. TLS problems are errors, never a fallback to plaintext."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.tasks import raise_if_cancelling

if TYPE_CHECKING:  # aiomqtt and paho load with the first connection: a site without MQTT never loads them
    import aiomqtt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """Where a broker is and how to talk to it. TLS is on when `tls` is set or any of the
    certificate files is given; then the broker's certificate is verified (against `ca_file`,
    or the system's CAs) and its name checked against `host`, and nothing falls back to
    plaintext."""

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
    tls: bool = False  # TLS with the system's CAs even when no file is given

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a client key (key_file) needs its certificate (cert_file)")

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))

    def tls_context(self) -> ssl.SSLContext | None:
        """A verifying, hostname-checking TLS context when TLS is on, else None. A file that
        cannot be read or used raises here (`OSError`, `ssl.SSLError`)."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None)
        # create_default_context's defaults, said out loud: they are the point.
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            # An encrypted key would make OpenSSL prompt on the terminal; a service has none.
            ctx.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None, password=_no_password
            )
        return ctx

    def client(
        self, *, will: aiomqtt.Will | None = None, max_queued: int | None = None, max_packet: int | None = None
    ) -> aiomqtt.Client:
        """A client that tells an MQTT 5 broker the largest packet it takes (default
        `MAX_INCOMING_PACKET`), so an oversized message is dropped at the broker instead of
        reaching this process whole, and keeps at most `max_queued` (default
        `MAX_QUEUED_INCOMING`) messages waiting to be handled."""
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = None
        if self.mqtt_version == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.MaximumPacketSize = max_packet or MAX_INCOMING_PACKET
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
            tls_insecure=False if self.uses_tls else None,  # the broker's name is checked
            timeout=10,
            properties=properties,
            max_queued_incoming_messages=max_queued or MAX_QUEUED_INCOMING,
        )


def _no_password() -> str:
    raise ValueError("the client key is encrypted; give an unencrypted key file readable only by the gateway")


# The largest message any of our subscriptions has a use for: a device payload is at most
# 64 KiB (drivers/json_map.py), an engineer's request 16 KiB; plus room for topic and headers.
MAX_INCOMING_PACKET = 64 * 1024 + 1024
# Messages received and not yet handled, per connection: a flood waits here, bounded, and
# past it aiomqtt drops (and logs) instead of growing without end. At the largest packet
# that is 2,000 x 65 KiB = 130 MB at worst; the device feed takes a bridge's burst after a
# restart (1,000 states). A connection that expects few messages asks for fewer.
MAX_QUEUED_INCOMING = 2_000
# Every subscription of the gateway is QoS 0. A broker that drops a QoS 1 message because it
# is over our Maximum Packet Size keeps its in-flight slot (mosquitto 2.0 does): twenty
# oversized messages from anyone who can publish would then stop all delivery to us. At
# QoS 0 nothing is held back; what we receive is re-sent by its sender anyway (device
# reports, an engineer's request whose tool waits for the answer).
SUBSCRIBE_QOS = 0

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained (an old message kept by the broker)
Session = Callable[["aiomqtt.Client"], Awaitable[None]]


async def stay_connected(
    broker: BrokerSpec,
    session: Session,
    clock: Clock,
    *,
    name: str,
    will: aiomqtt.Will | None = None,
    backoff: Backoff | None = None,
    on_down: Callable[[], None] | None = None,
    max_queued: int | None = None,
    max_packet: int | None = None,
) -> None:
    """Connect, run `session(client)`, and whenever the connection fails wait a backoff
    (reset at each successful connect) and do it again; until cancelled or the session
    returns. The one place MQTT connections are kept up: the device feed, the uplink, the
    remote desk and the simulator's bridge all go through it."""
    import aiomqtt

    backoff = backoff or Backoff()
    while True:
        raise_if_cancelling()
        try:
            async with broker.client(will=will, max_queued=max_queued, max_packet=max_packet) as client:
                backoff.reset()
                await session(client)
                return
        except aiomqtt.MqttError as exc:
            if on_down is not None:
                on_down()
            delay = backoff.next_delay()
            log.warning("%s: broker %s:%d: %s; reconnecting in %.1f s", name, broker.host, broker.port, exc, delay)
            await clock.sleep_until(clock.monotonic() + delay)


def payload_bytes(message: aiomqtt.Message) -> bytes:
    """A message's payload as bytes, whatever type paho handed over."""
    p = message.payload
    return bytes(p) if isinstance(p, bytes | bytearray) else str(p).encode()


async def subscribe_forever(
    broker: BrokerSpec,
    topics: Sequence[str],
    on_message: Handler,
    clock: Clock,
    *,
    backoff: Backoff | None = None,
    on_connect: Callable[[], Awaitable[None]] | None = None,
    on_down: Callable[[], None] | None = None,
    name: str = "device feed",
    max_queued: int | None = None,
    max_packet: int | None = None,
) -> None:
    """Receive messages on `topics` until cancelled, reconnecting with backoff."""

    async def session(client: aiomqtt.Client) -> None:
        for topic in topics:
            await client.subscribe(topic, qos=SUBSCRIBE_QOS)
        log.info("subscribed to %s on %s:%d", ", ".join(topics), broker.host, broker.port)
        if on_connect is not None:
            await on_connect()
        async for message in client.messages:
            on_message(message.topic.value, payload_bytes(message), bool(message.retain))

    await stay_connected(
        broker,
        session,
        clock,
        name=name,
        backoff=backoff,
        on_down=on_down,
        max_queued=max_queued,
        max_packet=max_packet,
    )
