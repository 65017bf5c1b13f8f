"""Escalations (and maintenance visits' marks) to the engineer on duty, through apprise
(e-mail, webhooks, chat): a contact's secrets, and `Notifier`, which queues messages (bounded,
oldest dropped first), sends them with retries and backoff, never blocks or raises into the
caller, and pages once per (site, ticket, clock, mark), or (site, visit, mark). Who is told,
and what, is `alarmgw.centre.rota`.

Secrets stay out of the config file and out of the logs. A contact's URL holds `{secret}`
where the password or token goes, and `secret_file` or `secret_env` gives it; a password
written into the URL itself is refused. Logs name a contact by engineer, scheme and host
only, and everything apprise and urllib3 log passes a filter that masks every secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import apprise

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.tasks import cancel_and_wait
from alarmgw.yamlfile import ConfigError, read_text

from .rota import SECRET, Notice, NoticeKey, NotifyConfig, body, recipients, title

log = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024  # a password or token file
MAX_PARALLEL_SENDS = 4  # apprise sends in threads; a dead SMTP server holds 4 slots at most
SEEN_MAX = 100_000  # escalations remembered for de-duplication (about a week of a big fleet)
CHATTY_LOGGERS = ("apprise", "urllib3.connectionpool")

# --- contacts with their secrets -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A contact ready to send to; its URL and secret never show in a repr or a log."""

    engineer: str
    label: str  # engineer, scheme and host: what the logs say
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)


def load_targets(
    config: NotifyConfig, base_dir: Path, environ: Mapping[str, str], key: str = "notify"
) -> dict[str, tuple[Target, ...]]:
    """Every engineer's contacts with their secrets read in; ConfigError naming the key."""
    out: dict[str, tuple[Target, ...]] = {}
    for i, e in enumerate(config.engineers):
        targets = []
        for j, c in enumerate(e.urls):
            where, secret = f"{key}.engineers[{i}].urls[{j}]", None
            if c.secret_file is not None:
                path = c.secret_file if c.secret_file.is_absolute() else base_dir / c.secret_file
                try:
                    secret = read_text(path, max_bytes=MAX_SECRET_BYTES, what="secret file").strip()
                except ConfigError as exc:
                    raise ConfigError(path, *(f"{where}.secret_file: {p}" for p in exc.problems)) from None
            elif c.secret_env is not None:
                secret = environ.get(c.secret_env, "").strip()
            if secret == "":
                raise ConfigError(key, f"{where}: the secret is empty or not set")
            url = c.url if secret is None else c.url.replace(SECRET, quote(secret, safe=""))
            parts = urlsplit(c.url)
            targets.append(Target(e.name, f"{e.name} {parts.scheme}://{parts.hostname or ''}", url, secret))
        out[e.name] = tuple(targets)
    return out


class _Redact(logging.Filter):
    """Masks known secrets (raw and URL-quoted) in what other libraries log."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {f for s in secrets for f in (s, quote(s, safe=""), quote(s))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self._secrets):
            for s in self._secrets:
                text = text.replace(s, "****")
            record.msg, record.args = text, None
        return True


# --- sending ---------------------------------------------------------------------------------


@dataclass(slots=True)
class NotifyCounters:
    accepted: int = 0  # escalations taken, each as one message per contact
    duplicates: int = 0  # re-delivered escalations not sent again
    unrouted: int = 0  # escalations nobody was to be told of (no route, nobody on duty)
    sent: int = 0  # messages delivered
    failed_attempts: int = 0  # attempts that failed and were tried again later
    given_up: int = 0  # messages still failing after every attempt
    dropped: int = 0  # messages pushed out of a full queue, oldest first


@dataclass(slots=True)
class _Message:
    key: NoticeKey
    target: Target
    title: str
    body: str
    notify_type: str
    backoff: Backoff
    attempts: int = 0
    not_before: float = 0.0  # monotonic


@dataclass(slots=True)
class _Pending:
    messages: int
    delivered: bool = False


class Notifier:
    """Queues and sends notifications; `submit` never blocks, `run` is the sender task."""

    def __init__(
        self,
        config: NotifyConfig,
        targets: Mapping[str, Sequence[Target]],
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._targets = targets
        self._clock = clock
        self._rng = rng or random.Random()
        self._queue: deque[_Message] = deque()
        self._seen: OrderedDict[NoticeKey, None] = OrderedDict()
        self._pending: dict[NoticeKey, _Pending] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._slots = asyncio.Semaphore(MAX_PARALLEL_SENDS)
        self._senders: dict[str, apprise.Apprise] = {}
        self.counters = NotifyCounters()

    def submit(self, notice: Notice) -> int:
        """Queue `notice` for everyone it is routed to now; how many messages were queued
        (0 for a duplicate or when nobody is to be told)."""
        if notice.key in self._seen:
            self.counters.duplicates += 1
            return 0
        now = self._clock.now()
        to = [t for e in recipients(self._config, notice, now) for t in self._targets.get(e.name, ())]
        if not to:
            self.counters.unrouted += 1
            log.warning("nobody to notify of %s: no route, nobody on duty and no fallback", title(notice))
            return 0
        self._seen[notice.key] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        self._pending[notice.key] = _Pending(len(to))
        kind = apprise.NotifyType.FAILURE if notice.breached else apprise.NotifyType.WARNING
        for t in to:
            backoff = Backoff(self._config.backoff_initial_s, self._config.backoff_max_s, rng=self._rng)
            self._enqueue(_Message(notice.key, t, title(notice), body(notice, now), kind, backoff))
        self.counters.accepted += 1
        return len(to)

    async def run(self) -> None:
        """Send queued messages until cancelled; a failure is retried, never raised."""
        redact = _Redact(t.secret for ts in self._targets.values() for t in ts if t.secret)
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).addFilter(redact)
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    message = await self._next()
                    await self._slots.acquire()
                    tg.create_task(self._attempt(message))
        finally:
            for name in CHATTY_LOGGERS:
                logging.getLogger(name).removeFilter(redact)

    async def wait_until(self, done: Callable[[NotifyCounters], bool]) -> None:
        """Return once `done(counters)` holds (for shutdown and tests)."""
        async with self._changed:
            await self._changed.wait_for(lambda: done(self.counters))

    def _enqueue(self, message: _Message) -> None:
        if len(self._queue) >= self._config.queue_max:
            old = self._queue.popleft()
            self.counters.dropped += 1
            log.warning(
                "notification queue full (%d): dropped %r to %s", self._config.queue_max, old.title, old.target.label
            )
            self._settle(old.key, delivered=False)
        self._queue.append(message)
        self._wake.set()

    def _settle(self, key: NoticeKey, delivered: bool) -> None:
        p = self._pending[key]
        p.messages -= 1
        p.delivered |= delivered
        if p.messages == 0:
            del self._pending[key]
            if not p.delivered:  # nobody was told: a re-delivery may try again
                self._seen.pop(key, None)

    async def _next(self) -> _Message:
        while True:
            self._wake.clear()
            now = self._clock.monotonic()
            for i, m in enumerate(self._queue):
                if m.not_before <= now:
                    del self._queue[i]
                    return m
            waits: list[asyncio.Task[object]] = [asyncio.create_task(self._wake.wait())]
            if self._queue:
                deadline = min(m.not_before for m in self._queue)
                waits.append(asyncio.create_task(self._clock.sleep_until(deadline)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    await cancel_and_wait(w)

    async def _attempt(self, m: _Message) -> None:
        try:
            delivered = await self._send(m)
        except Exception as exc:  # a plugin's own error: its text may hold the URL
            log.warning("sending %r to %s raised %s", m.title, m.target.label, type(exc).__name__)
            delivered = False
        finally:
            self._slots.release()
        m.attempts += 1
        if delivered:
            self.counters.sent += 1
            log.info("notified %s: %s", m.target.label, m.title)
            self._settle(m.key, delivered=True)
        elif m.attempts >= self._config.attempts:
            self.counters.given_up += 1
            log.error("gave up notifying %s after %d attempts: %s", m.target.label, m.attempts, m.title)
            self._settle(m.key, delivered=False)
        else:
            delay = m.backoff.next_delay()
            m.not_before = self._clock.monotonic() + delay
            self.counters.failed_attempts += 1
            log.warning(
                "notifying %s failed (attempt %d), again in %.0f s: %s", m.target.label, m.attempts, delay, m.title
            )
            self._enqueue(m)
        async with self._changed:
            self._changed.notify_all()

    async def _send(self, m: _Message) -> bool:
        sender = self._senders.get(m.target.url)
        if sender is None:
            sender = self._senders[m.target.url] = apprise.Apprise()
            if not sender.add(m.target.url):
                return False
        async with asyncio.timeout(self._config.send_timeout_s):
            return bool(await sender.async_notify(body=m.body, title=m.title, notify_type=m.notify_type))
