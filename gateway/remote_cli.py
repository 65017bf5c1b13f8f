"""`alarmgw remote`: the engineer's tool. Signs a request, sends it through the service
centre's broker to one site's gateway (MQTT 5 request/response), prints the answer: tables
for people, `--json` for scripts."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.table import Table

from alarmgw.drivers.mqtt_link import BrokerSpec

from .operations import COMMANDS
from .remote_auth import make_request


class RemoteError(Exception):
    """No answer, or the tool was asked something it cannot send."""


def broker_from_url(url: str) -> BrokerSpec:
    """mqtt://[user:password@]host[:port], or mqtts://... for TLS (the system's CAs, or the
    CA file named by $ALARMGW_CA_FILE)."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise RemoteError(f"broker {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = u.scheme == "mqtts"
    ca = Path(os.environ["ALARMGW_CA_FILE"]) if tls and "ALARMGW_CA_FILE" in os.environ else None
    spec = BrokerSpec(u.hostname, u.port or (8883 if tls else 1883), u.username, u.password, None, ca)
    if tls and ca is None:
        import ssl

        spec = BrokerSpec(u.hostname, spec.port, u.username, u.password)
        object.__setattr__(
            spec, "ca_file", Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
        )
    return spec


async def call(
    broker: BrokerSpec, root: str, user: str, secret: str, command: str, args: dict[str, Any], timeout_s: float = 10.0
) -> dict[str, Any]:
    """Send one request and wait for its answer."""
    if command not in COMMANDS:
        raise RemoteError(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
    reply_topic = f"{root}/cmd/reply/{uuid.uuid4().hex}"
    correlation = uuid.uuid4().bytes
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = reply_topic
    props.CorrelationData = correlation
    payload = make_request(user, secret, command, args, datetime.now(UTC))
    try:
        async with broker.client() as client:
            await client.subscribe(reply_topic, qos=1)
            await client.publish(f"{root}/cmd", payload, qos=1, properties=props)
            async with asyncio.timeout(timeout_s):
                async for m in client.messages:
                    if getattr(m.properties, "CorrelationData", None) == correlation:
                        raw = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        doc: dict[str, Any] = json.loads(raw)
                        return doc
    except TimeoutError:
        raise RemoteError(f"no answer from {root} within {timeout_s:g} s (is the gateway connected?)") from None
    except aiomqtt.MqttError as exc:
        raise RemoteError(f"broker {broker.host}:{broker.port}: {exc}") from None
    raise RemoteError("connection closed before the answer came")


def show(console: Console, result: Any) -> None:
    """A result for people: lists of objects as a table, objects as key: value."""
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        cols = [k for k in result[0] if not isinstance(result[0][k], dict | list)][:9]
        table = Table()
        for c in cols:
            table.add_column(c)
        for row in result:
            table.add_row(*(str(row.get(c, "")) for c in cols))
        console.print(table)
    elif isinstance(result, dict):
        for k, v in result.items():
            console.print(f"[bold]{k}[/]: {json.dumps(v) if isinstance(v, dict | list) else v}", highlight=False)
    else:
        console.print(json.dumps(result, indent=2))
