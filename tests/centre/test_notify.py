"""Notifications: who is on duty (tables, DST days included), who an escalation reaches,
the config's refusals, and delivery through apprise to a real SMTP server and a real
webhook receiver, with retries, de-duplication and no secret in any log line."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import ValidationError

from alarmgw.centre.notify import Notifier, Target, _Redact, load_targets
from alarmgw.centre.rota import EscalationNotice, NotifyConfig, body, on_duty, recipients, title
from alarmgw.clock import ManualClock
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.gateway.messages import escalation_messages
from alarmgw.yamlfile import ConfigError

MAIL = {"url": "mailto://127.0.0.1:2525?from=centre@example.com&to=x@example.com&mode=insecure"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def config(**over: Any) -> NotifyConfig:
    doc: dict[str, Any] = {
        "timezone": "Europe/London",
        "engineers": [{"name": n, "urls": [MAIL]} for n in ("alice", "bob", "carol", "sup", "ops")],
        "shifts": [
            {"engineers": ["alice"], "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"},
            {"engineers": ["bob"], "start": "18:00", "end": "08:00"},  # every night, across midnight
            {"engineers": ["carol"], "days": ["sat", "sun"], "start": "08:00", "end": "18:00"},
        ],
        "fallback": ["sup"],
        "routes": [
            {"to": ["on_duty"]},
            {"to": ["sup"], "breached": True},
            {"to": ["ops"], "faults": ["mains_loss"], "clocks": ["response"]},
        ],
    }
    doc.update(over)
    return NotifyConfig.model_validate(doc)


def notice(
    mark_s: float = 600.0, fault: str = "low_battery", clock: str = "response", ticket: int = 42
) -> EscalationNotice:
    due = utc(2026, 1, 5, 9, 0)
    return EscalationNotice("site-17", ticket, "smoke-3", fault, clock, mark_s, due, due - timedelta(seconds=mark_s))


# --- who is on duty -------------------------------------------------------------------------

# Europe/London: GMT in winter; BST (UTC+1) from 01:00 UTC on 29 Mar 2026 to 01:00 UTC on 25 Oct 2026.
ON_DUTY_CASES = [
    ("winter monday, mid-morning", utc(2026, 1, 5, 10, 0), ["alice"]),
    ("winter monday, just before the day shift", utc(2026, 1, 5, 7, 59), ["bob"]),
    ("day shift's end is bob's start", utc(2026, 1, 5, 18, 0), ["bob"]),
    ("friday night, past midnight into saturday", utc(2026, 1, 10, 3, 0), ["bob"]),
    ("saturday daytime", utc(2026, 1, 10, 12, 0), ["carol"]),
    ("summer monday 07:30 UTC is 08:30 BST", utc(2026, 6, 1, 7, 30), ["alice"]),
    ("summer monday 17:30 UTC is 18:30 BST", utc(2026, 6, 1, 17, 30), ["bob"]),
    ("spring-forward sunday 07:30 UTC is 08:30 BST", utc(2026, 3, 29, 7, 30), ["carol"]),
    ("the saturday before, 07:30 UTC is 07:30 GMT", utc(2026, 3, 28, 7, 30), ["bob"]),
    ("spring-forward night: 00:30 UTC is 00:30 GMT", utc(2026, 3, 29, 0, 30), ["bob"]),
    ("spring-forward night: 01:30 UTC is 02:30 BST", utc(2026, 3, 29, 1, 30), ["bob"]),
    ("fall-back sunday 07:30 UTC is 07:30 GMT: night shift runs an hour longer", utc(2026, 10, 25, 7, 30), ["bob"]),
    ("the saturday before, 07:30 UTC is 08:30 BST", utc(2026, 10, 24, 7, 30), ["carol"]),
    ("fall-back sunday 00:30 UTC is the first 01:30 BST", utc(2026, 10, 25, 0, 30), ["bob"]),
    ("fall-back sunday 01:30 UTC is the second 01:30, GMT", utc(2026, 10, 25, 1, 30), ["bob"]),
]


@pytest.mark.parametrize(("case", "at", "expected"), ON_DUTY_CASES, ids=[c[0] for c in ON_DUTY_CASES])
def test_on_duty(case: str, at: datetime, expected: list[str]) -> None:
    assert [e.name for e in on_duty(config(), at)] == expected


NIGHT_ONLY_FRIDAY = [
    ("friday 21:59", utc(2026, 1, 9, 21, 59), ["sup"]),
    ("friday 22:00", utc(2026, 1, 9, 22, 0), ["bob"]),
    ("saturday 05:59, the morning part", utc(2026, 1, 10, 5, 59), ["bob"]),
    ("saturday 06:00", utc(2026, 1, 10, 6, 0), ["sup"]),
    ("friday 05:00 belongs to thursday's night", utc(2026, 1, 9, 5, 0), ["sup"]),
    ("saturday 23:00", utc(2026, 1, 10, 23, 0), ["sup"]),
]


@pytest.mark.parametrize(("case", "at", "expected"), NIGHT_ONLY_FRIDAY, ids=[c[0] for c in NIGHT_ONLY_FRIDAY])
def test_overnight_shift_belongs_to_its_start_day(case: str, at: datetime, expected: list[str]) -> None:
    rota = config(timezone="UTC", shifts=[{"engineers": ["bob"], "days": ["fri"], "start": "22:00", "end": "06:00"}])
    assert [e.name for e in on_duty(rota, at)] == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [(utc(2026, 1, 5, 6, 59), ["sup"]), (utc(2026, 1, 5, 7, 0), ["alice"]), (utc(2026, 1, 6, 6, 59), ["alice"])],
)
def test_start_equal_to_end_is_a_24_hour_shift(at: datetime, expected: list[str]) -> None:
    rota = config(timezone="UTC", shifts=[{"engineers": ["alice"], "days": ["mon"], "start": "07:00", "end": "07:00"}])
    assert [e.name for e in on_duty(rota, at)] == expected


def test_nobody_on_shift_and_no_fallback_is_nobody() -> None:
    rota = config(shifts=[], fallback=[])
    assert on_duty(rota, utc(2026, 1, 5, 10, 0)) == []


def test_two_on_one_shift_come_in_rota_order() -> None:
    rota = config(shifts=[{"engineers": ["carol", "alice"], "start": "00:00", "end": "00:00"}])
    assert [e.name for e in on_duty(rota, utc(2026, 1, 5, 10, 0))] == ["alice", "carol"]


# --- who an escalation reaches ---------------------------------------------------------------

MONDAY = utc(2026, 1, 5, 10, 0)  # alice on duty
SATURDAY_NIGHT = utc(2026, 1, 10, 23, 0)  # bob on duty
RECIPIENT_CASES = [
    ("a warning goes to the one on duty", notice(600), MONDAY, ["alice"]),
    ("a breach also to the supervisor", notice(0), MONDAY, ["alice", "sup"]),
    ("at night to the night shift", notice(600), SATURDAY_NIGHT, ["bob"]),
    ("mains loss on the response clock also to ops", notice(600, fault="mains_loss"), MONDAY, ["alice", "ops"]),
    ("mains loss on the arrival clock: no ops", notice(600, fault="mains_loss", clock="arrival"), MONDAY, ["alice"]),
    ("everything at once, each once", notice(0, fault="mains_loss"), MONDAY, ["alice", "sup", "ops"]),
]


@pytest.mark.parametrize(("case", "n", "at", "expected"), RECIPIENT_CASES, ids=[c[0] for c in RECIPIENT_CASES])
def test_recipients(case: str, n: EscalationNotice, at: datetime, expected: list[str]) -> None:
    assert sorted(e.name for e in recipients(config(), n, at)) == sorted(expected)


def test_on_duty_falls_back_when_nobody_is_on_shift() -> None:
    rota = config(shifts=[], routes=[{"to": ["on_duty"]}])
    assert [e.name for e in recipients(rota, notice(0), MONDAY)] == ["sup"]


def test_supervisor_on_duty_is_not_told_twice() -> None:
    rota = config(shifts=[], fallback=["sup"])
    assert [e.name for e in recipients(rota, notice(0), MONDAY)] == ["sup"]


def test_no_route_matching_is_nobody() -> None:
    rota = config(routes=[{"to": ["sup"], "breached": True}])
    assert recipients(rota, notice(600), MONDAY) == []


# --- the config refuses ---------------------------------------------------------------------


def one(**contact: str) -> dict[str, Any]:
    return {"engineers": [{"name": "a", "urls": [contact]}]}


def shift(**over: Any) -> dict[str, Any]:
    return {"shifts": [{"engineers": ["bob"], "start": "08:00", "end": "18:00"} | over]}


REFUSALS = [
    ("unknown key", {"rota": []}, "rota"),
    ("unknown engineer in a shift", {"shifts": [{"engineers": ["dave"], "start": "08:00", "end": "18:00"}]}, "dave"),
    ("unknown engineer in a route", {"routes": [{"to": ["dave"]}]}, "dave"),
    ("unknown fallback", {"fallback": ["dave"]}, "dave"),
    ("an unquoted time (YAML reads 18:00 as 1080)", shift(start=1080), "quotes"),
    ("a time with an offset", shift(start="08:00+01:00"), "offset"),
    ("a bad day", shift(days=["monday"]), "days"),
    ("a bad timezone", {"timezone": "Europe/Atlantis"}, "timezone"),
    ("on_duty as a name", {"engineers": [{"name": "on_duty", "urls": [MAIL]}]}, "reserved"),
    ("a name twice", {"engineers": [{"name": "a", "urls": [MAIL]}, {"name": "a", "urls": [MAIL]}]}, "twice"),
    ("a password in the URL", one(url="mailtos://a:hunter2@smtp.example.com"), "secret_file"),
    ("{secret} with nothing to fill it", one(url="mailtos://a:{secret}@smtp.example.com"), "go together"),
    ("a secret nowhere used", one(url="json://h.example.com/x", secret_env="T"), "go together"),
    ("two secret sources", one(url="json://h/{secret}", secret_env="T", secret_file="t"), "not both"),
    ("a scheme apprise does not know", one(url="gopher://h.example.com"), "apprise"),
    ("attempts as a bool", {"attempts": True}, "number"),
    ("backoff upside down", {"backoff_initial_s": 60, "backoff_max_s": 10}, "backoff"),
]


@pytest.mark.parametrize(("case", "over", "says"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_config_refuses(case: str, over: dict[str, Any], says: str) -> None:
    doc: dict[str, Any] = {"engineers": [{"name": "bob", "urls": [MAIL]}, {"name": "alice", "urls": [MAIL]}]}
    doc.update(over)
    with pytest.raises(ValidationError) as err:
        NotifyConfig.model_validate(doc)
    assert says in str(err.value)


def test_defaults_route_everything_to_whoever_is_on_duty() -> None:
    rota = NotifyConfig.model_validate({"engineers": [{"name": "bob", "urls": [MAIL]}], "fallback": ["bob"]})
    assert [e.name for e in recipients(rota, notice(600), MONDAY)] == ["bob"]


# --- the escalation as the uplink carries it -------------------------------------------------


def test_reads_the_gateways_escalation_payload() -> None:
    due = utc(2026, 1, 5, 9, 0)
    e = Escalation(42, "rep-1", "mains_loss", "response", 600.0, due, due - timedelta(minutes=10))
    (message,) = escalation_messages("alarmgw/site-17", "site-17", e)
    assert EscalationNotice.from_payload(json.loads(message.payload)) == EscalationNotice.from_escalation("site-17", e)


NINE = "2026-01-05T09:00:00.000Z"
GOOD = {
    "site": "s",
    "ticket": 1,
    "device": "d",
    "fault": "f",
    "clock": "response",
    "mark_s": 0,
    "due": NINE,
    "at": NINE,
}
BAD_PAYLOADS = [
    ("no site", {"site": None}, "site"),
    ("ticket as text", {"ticket": "1"}, "ticket"),
    ("ticket as bool", {"ticket": True}, "ticket"),
    ("mark as text", {"mark_s": "600"}, "mark_s"),
    ("negative mark", {"mark_s": -1}, "mark_s"),
    ("due not a time", {"due": "soon"}, "due"),
    ("at without a zone", {"at": "2026-01-05T09:00:00"}, "at"),
]


@pytest.mark.parametrize(("case", "over", "says"), BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_bad_payloads_are_refused(case: str, over: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        EscalationNotice.from_payload({**GOOD, **over})


def test_message_says_site_ticket_fault_clock_and_time_left() -> None:
    n = notice(600, fault="mains_loss")
    assert title(n) == "site-17: ticket 42 mains_loss, response due in 0:10:00"
    assert title(notice(0)) == "site-17: ticket 42 low_battery, response BREACHED"
    text = body(n, utc(2026, 1, 5, 8, 52, 30))
    for line in ("site: site-17", "ticket: 42", "device: smoke-3", "fault: mains_loss", "clock: response"):
        assert line in text
    assert "due: 2026-01-05T09:00:00.000Z" in text
    assert "time left: 0:07:30" in text
    assert "time left: none, overdue by 0:03:00" in body(n, utc(2026, 1, 5, 9, 3))


# --- secrets --------------------------------------------------------------------------------


def test_targets_take_their_secrets_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "smtp.pass").write_text("p@ss/w:rd\n")
    rota = config(
        engineers=[
            {
                "name": "alice",
                "urls": [{"url": "mailtos://alice:{secret}@smtp.example.com", "secret_file": "smtp.pass"}],
            },
            {"name": "bob", "urls": [{"url": "jsons://hooks.example.com/page/{secret}", "secret_env": "HOOK"}]},
        ],
        shifts=[],
        fallback=[],
        routes=[{"to": ["on_duty"]}],
    )
    targets = load_targets(rota, tmp_path, {"HOOK": "tok3n"})
    (alice,) = targets["alice"]
    assert alice.url == "mailtos://alice:p%40ss%2Fw%3Ard@smtp.example.com"
    assert alice.label == "alice mailtos://smtp.example.com"
    assert "p@ss" not in repr(alice)
    assert targets["bob"][0].url == "jsons://hooks.example.com/page/tok3n"
    with pytest.raises(ConfigError, match=r"urls\[0\]: the secret is empty or not set"):
        load_targets(rota, tmp_path, {})
    with pytest.raises(ConfigError, match=r"secret_file: cannot read"):
        load_targets(rota, tmp_path / "elsewhere", {"HOOK": "x"})


def test_redaction_masks_raw_and_quoted_secrets() -> None:
    record = logging.LogRecord("apprise", logging.DEBUG, "", 0, "POST %s with %s", ("/x/p@ss w", "p%40ss%20w"), None)
    assert _Redact(["p@ss w"]).filter(record)
    assert record.getMessage() == "POST /x/**** with ****"


# --- the queue, without sending -------------------------------------------------------------


def test_full_queue_drops_the_oldest_and_forgets_it() -> None:
    rota = config(queue_max=2, routes=[{"to": ["alice"]}])
    targets = {"alice": (Target("alice", "alice mailto://x", "mailto://x"),)}
    notifier = Notifier(rota, targets, ManualClock(MONDAY))
    assert [notifier.submit(notice(600, ticket=t)) for t in (1, 2, 3)] == [1, 1, 1]
    assert notifier.counters.dropped == 1
    assert notifier.submit(notice(600, ticket=2)) == 0  # still queued: a duplicate
    assert notifier.submit(notice(600, ticket=1)) == 1  # dropped, so nobody was told: taken again
    assert (notifier.counters.duplicates, notifier.counters.accepted) == (1, 4)


def test_a_centre_ticket_is_not_taken_for_the_sites_own_ticket_of_the_same_number() -> None:
    """The centre numbers its tickets (site_offline) apart from each gateway's: ticket 42 of
    the site and the centre's ticket 42 about it are two pages, not a duplicate."""
    rota = config(routes=[{"to": ["alice"]}])
    targets = {"alice": (Target("alice", "alice mailto://x", "mailto://x"),)}
    notifier = Notifier(rota, targets, ManualClock(MONDAY))
    assert notifier.submit(notice(600, fault="low_battery")) == 1
    assert notifier.submit(notice(600, fault="site_offline")) == 1
    assert notifier.submit(notice(600, fault="site_offline")) == 0
    assert (notifier.counters.accepted, notifier.counters.duplicates) == (2, 1)


def test_nobody_to_tell_is_counted() -> None:
    rota = config(shifts=[], fallback=[], routes=[{"to": ["on_duty"]}])
    notifier = Notifier(rota, {}, ManualClock(MONDAY))
    assert notifier.submit(notice(0)) == 0
    assert notifier.counters.unrouted == 1


# --- delivery to real peers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(self, server: object, session: object, envelope: object, mechanism: str, data: Any) -> AuthResult:
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"p@ss/w:rd")


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    server = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, auth_require_tls=False)
    server.start()
    yield box, port
    server.stop()


class Webhook:
    """A small HTTP server answering each POST with the next status of its script (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, payload))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def webhook_factory() -> AsyncIterator[Any]:
    servers: list[asyncio.Server] = []

    async def start(statuses: list[int]) -> tuple[Webhook, int]:
        hook = Webhook(statuses)
        server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
        servers.append(server)
        return hook, server.sockets[0].getsockname()[1]

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


def one_contact_rota(contact: dict[str, Any], **over: Any) -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "engineers": [{"name": "alice", "urls": [contact]}],
            "fallback": ["alice"],
            "backoff_initial_s": 1,
            "backoff_max_s": 4,
        }
        | over
    )


@pytest.fixture
async def running() -> AsyncIterator[Any]:
    tasks: list[asyncio.Task[None]] = []

    def start(notifier: Notifier) -> Notifier:
        tasks.append(asyncio.create_task(notifier.run()))
        return notifier

    yield start
    for t in tasks:
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t


@pytest.mark.integration
async def test_mail_arrives_once_with_the_facts(
    smtp: tuple[Mailbox, int], running: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    box, port = smtp
    (tmp_path / "smtp.pass").write_text("p@ss/w:rd\n")
    url = f"mailto://alice:{{secret}}@127.0.0.1:{port}?from=centre@example.com&to=alice@example.com&mode=insecure"
    rota = one_contact_rota({"url": url, "secret_file": "smtp.pass"})
    clock = ManualClock(utc(2026, 1, 5, 8, 52, 30))
    notifier = running(Notifier(rota, load_targets(rota, tmp_path, {}), clock))

    n = notice(600, fault="mains_loss")
    assert notifier.submit(n) == 1
    async with asyncio.timeout(10):
        await notifier.wait_until(lambda c: c.sent == 1)
    assert notifier.submit(n) == 0  # the broker delivers it again: nobody is paged twice

    (mail,) = box.messages
    assert mail["Subject"] == "site-17: ticket 42 mains_loss, response due in 0:10:00"
    assert mail["To"] == "alice@example.com"
    text = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    for line in ("site: site-17", "ticket: 42", "fault: mains_loss", "clock: response", "time left: 0:07:30"):
        assert line in text
    assert box.logins == [(b"alice", b"p@ss/w:rd")]
    assert notifier.counters.duplicates == 1
    assert "p@ss" not in caplog.text and "p%40ss" not in caplog.text
    assert "alice mailto://127.0.0.1" in caplog.text


@pytest.mark.integration
async def test_webhook_failing_twice_is_retried_and_delivered_once(
    webhook_factory: Any, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook, port = await webhook_factory([500, 500])
    url = f"json://127.0.0.1:{port}/page/{{secret}}?+Authorization=Bearer%20{{secret}}"
    rota = one_contact_rota({"url": url, "secret_env": "HOOK_TOKEN"})
    clock = ManualClock(utc(2026, 1, 5, 8, 52, 30))
    notifier = running(Notifier(rota, load_targets(rota, Path("."), {"HOOK_TOKEN": "t0k3n-xyz"}), clock))

    assert notifier.submit(notice(0)) == 1
    async with asyncio.timeout(10):
        await notifier.wait_until(lambda c: c.failed_attempts == 1)
        assert len(hook.requests) == 1
        clock.advance(5)  # past the first backoff (1 s +- 10 %)
        await notifier.wait_until(lambda c: c.failed_attempts == 2)
        clock.advance(5)
        await notifier.wait_until(lambda c: c.sent == 1)

    assert len(hook.requests) == 3
    headers, payload = hook.requests[-1]
    doc = json.loads(payload)
    assert doc["title"] == "site-17: ticket 42 low_battery, response BREACHED"
    assert "site: site-17" in doc["message"] and "ticket: 42" in doc["message"]
    assert headers["authorization"] == "Bearer t0k3n-xyz"
    assert (notifier.counters.sent, notifier.counters.given_up) == (1, 0)
    assert "t0k3n" not in caplog.text
    assert "again in 1 s" in caplog.text and "again in 2 s" in caplog.text  # the backoff doubles


@pytest.mark.integration
async def test_a_peer_that_never_answers_is_given_up_and_may_be_tried_again(webhook_factory: Any, running: Any) -> None:
    hook, port = await webhook_factory([500] * 4)
    closed = free_port()  # nothing listens here: the SMTP server is down
    rota = NotifyConfig.model_validate(
        {
            "engineers": [
                {"name": "alice", "urls": [{"url": f"json://127.0.0.1:{port}/page"}]},
                {"name": "bob", "urls": [{"url": f"mailto://127.0.0.1:{closed}?from=c@example.com&to=b@example.com"}]},
            ],
            "fallback": ["alice", "bob"],
            "attempts": 2,
            "backoff_initial_s": 1,
            "backoff_max_s": 1,
        }
    )
    clock = ManualClock(utc(2026, 1, 5, 8, 52, 30))
    notifier = running(Notifier(rota, load_targets(rota, Path("."), {}), clock))
    assert notifier.submit(notice(0)) == 2
    async with asyncio.timeout(10):
        await notifier.wait_until(lambda c: c.failed_attempts == 2)
        clock.advance(2)
        await notifier.wait_until(lambda c: c.given_up == 2)
    assert notifier.counters.sent == 0
    assert len(hook.requests) == 2
    assert notifier.submit(notice(0)) == 2  # nobody was told: a re-delivery is taken
