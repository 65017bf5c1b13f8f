"""`alarmgw remote`: the engineer's tool. Signs a request with the engineer's private key
(Ed25519; a shared secret only for legacy users), sends it through the service
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
from urllib.parse import unquote, urlparse

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.table import Table

from alarmgw.drivers.mqtt_link import SUBSCRIBE_QOS, BrokerSpec

from .operations import COMMANDS
from .remote_auth import Credential, make_request


class RemoteError(Exception):
    """No answer, or the tool was asked something it cannot send."""


def broker_from_url(url: str, password: str | None = None) -> BrokerSpec:
    """mqtt://[user@]host[:port], or mqtts://... for TLS (the system's CAs, or the CA file
    named by $ALARMGW_CA_FILE). The password never comes in the address, where `ps` and the
    shell's history would show it: `password` is read from a file or the environment."""
    try:
        u = urlparse(url)
        port = u.port
    except ValueError as exc:
        raise RemoteError(f"--broker {url!r}: {exc}") from None
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise RemoteError(f"--broker {url!r}: expected mqtt://[user@]host[:port] or mqtts://[user@]host[:port]")
    if u.password is not None:
        raise RemoteError(
            "--broker: a password in the address shows in `ps` and in the shell's history; "
            "put it in a file and give --broker-password-file FILE (or set $ALARMGW_BROKER_PASSWORD)"
        )
    tls = u.scheme == "mqtts"
    ca = Path(os.environ["ALARMGW_CA_FILE"]) if tls and os.environ.get("ALARMGW_CA_FILE") else None
    user = unquote(u.username) if u.username else None
    return BrokerSpec(u.hostname, port or (8883 if tls else 1883), user, password, None, ca, tls=tls)


async def call(
    broker: BrokerSpec,
    root: str,
    user: str,
    credential: Credential,
    command: str,
    args: dict[str, Any],
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Send one request, signed with the engineer's key (or legacy secret), and wait for its answer."""
    if command not in COMMANDS:
        raise RemoteError(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
    reply_topic = f"{root}/cmd/reply/{uuid.uuid4().hex}"
    correlation = uuid.uuid4().bytes
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = reply_topic
    props.CorrelationData = correlation
    try:
        payload = make_request(user, credential, root, command, args, datetime.now(UTC))
    except ValueError as exc:
        raise RemoteError(f"cannot send that: {exc}") from None
    try:
        async with broker.client() as client:
            await client.subscribe(reply_topic, qos=SUBSCRIBE_QOS)
            await client.publish(f"{root}/cmd", payload, qos=1, properties=props)
            async with asyncio.timeout(timeout_s):
                async for m in client.messages:
                    if getattr(m.properties, "CorrelationData", None) == correlation:
                        raw = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        try:
                            doc = json.loads(raw)
                        except (ValueError, RecursionError):
                            raise RemoteError(f"the answer from {root} is not JSON") from None
                        if not isinstance(doc, dict):
                            raise RemoteError(f"the answer from {root} is not a JSON object")
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
