"""Who is told of an escalation: the `notify:` section of the centre's config (a rota of
engineers, their shifts, and routes saying which escalation marks reach whom), who is on
duty at a moment (`on_duty`), who a notice goes to (`recipients`) and the message text, of a
ticket's clock (`EscalationNotice`) or of a maintenance visit not done (`VisitNotice`).
Pure: no I/O; `alarmgw.centre.notify` sends.

Shifts are wall-clock times in the rota's timezone: "08:00-18:00 Europe/London" is 08:00
local on the day of a change of clocks too, so a night shift is an hour shorter or longer
that night. A shift whose end is at or before its start runs past midnight into the next
day; `days` names the day it starts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alarmgw.clock import iso, parse_iso
from alarmgw.diagnostics.escalation import Escalation

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ON_DUTY = "on_duty"  # in a route's `to`: whoever is on shift, else the fallback
SECRET = "{secret}"  # where a contact's password or token goes in its URL
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
MAX_URL = 2000  # longer than any real apprise URL
# Libraries that log request URLs and headers (webhook tokens) at debug level.

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a number is needed, not {str(value).lower()}")
    return value


def _quoted_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080.
    if not isinstance(value, str | time):
        raise ValueError('a time of day in quotes, e.g. "18:00"')
    return value


def _naive(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a wall-clock time without an offset; the rota's timezone applies")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value[:60]!r} is not a timezone name like 'Europe/London'") from None
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
WallTime = Annotated[time, BeforeValidator(_quoted_time), AfterValidator(_naive)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Contact(_Strict):
    """One way to reach an engineer: an apprise URL, with `{secret}` where its password or
    token goes, given by `secret_file` (relative to the config file) or `secret_env`."""

    url: Annotated[str, Field(min_length=3, max_length=MAX_URL)]
    secret_file: Path | None = None
    secret_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret_in_its_place(self) -> Contact:
        sources = (self.secret_file is not None) + (self.secret_env is not None)
        if sources > 1:
            raise ValueError("give secret_file or secret_env, not both")
        if (SECRET in self.url) != (sources == 1):
            raise ValueError(f"url: {SECRET} and a secret_file or secret_env go together")
        parts = urlsplit(self.url)
        if parts.password and parts.password != SECRET:
            raise ValueError(f"url: a password written in the URL; put {SECRET} there and the password in secret_file")
        if apprise.Apprise.instantiate(self.url.replace(SECRET, "x")) is None:
            raise ValueError(f"url: apprise cannot send to {parts.scheme or '?'}://{parts.hostname or ''}")
        return self


class Engineer(_Strict):
    name: Name
    urls: Annotated[list[Contact], Field(min_length=1, max_length=10)]


class Shift(_Strict):
    """Who is on duty from `start` to `end` (local wall time) on the days it starts."""

    engineers: Annotated[list[Name], Field(min_length=1)]
    days: list[Day] = list(DAYS)
    start: WallTime
    end: WallTime  # at or before start: the shift ends the next day


class Route(_Strict):
    """Escalations matching every filter given (none given: all) go to `to`."""

    to: Annotated[list[Name], Field(min_length=1)]  # engineer names, or on_duty
    clocks: list[Name] | None = None  # response, arrival, repair
    breached: bool | None = None  # true: only breaches; false: only warnings before due
    faults: list[Name] | None = None


class NotifyConfig(_Strict):
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    engineers: Annotated[list[Engineer], Field(min_length=1)]
    shifts: list[Shift] = []
    fallback: list[Name] = []  # on duty whenever no shift covers the moment
    routes: list[Route] = [Route(to=[ON_DUTY])]
    queue_max: Int = Field(default=1000, ge=1, le=10_000)  # each pick scans the queue once
    attempts: Int = Field(default=5, ge=1, le=20)
    backoff_initial_s: Float = Field(default=5.0, gt=0, le=3600)
    backoff_max_s: Float = Field(default=300.0, gt=0, le=3600)
    send_timeout_s: Float = Field(default=30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _names_known(self) -> NotifyConfig:
        names = [e.name for e in self.engineers]
        if len(set(names)) != len(names):
            raise ValueError("engineers: a name given twice")
        if ON_DUTY in names:
            raise ValueError(f"engineers: {ON_DUTY!r} is reserved for routes")
        used = [("shifts", n) for s in self.shifts for n in s.engineers] + [("fallback", n) for n in self.fallback]
        used += [("routes", n) for r in self.routes for n in r.to if n != ON_DUTY]
        for where, n in used:
            if n not in names:
                raise ValueError(f"{where}: {n!r} is not one of the engineers")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s is more than backoff_max_s")
        return self


# --- the pure part -------------------------------------------------------------------------


NoticeKey = tuple[str, int, str, str, float]  # site, ticket, fault, clock, mark_s


@dataclass(frozen=True, slots=True)
class EscalationNotice:
    """An escalation as the uplink carries it (`<root>/escalations/<ticket>`)."""

    site: str
    ticket: int
    device: str
    fault: str
    clock: str
    mark_s: float  # seconds before due; 0 = breached
    due: datetime
    at: datetime  # when the mark was reached

    @property
    def breached(self) -> bool:
        return self.mark_s == 0

    @property
    def key(self) -> NoticeKey:
        """Paged once per key. The fault is in it because a site's gateway tickets and the
        centre's tickets about that site (site_offline) are numbered apart."""
        return (self.site, self.ticket, self.fault, self.clock, self.mark_s)

    @classmethod
    def from_escalation(cls, site: str, e: Escalation) -> EscalationNotice:
        return cls(site, e.ticket_id, e.device_id, e.fault, e.clock, e.mark_s, e.due, e.at)

    @classmethod
    def from_payload(cls, doc: Mapping[str, object]) -> EscalationNotice:
        """From the uplink's escalation JSON; ValueError naming the field that is wrong."""
        site, device, fault, clock, due, at = (_text(doc, n) for n in ("site", "device", "fault", "clock", "due", "at"))
        ticket, mark_s = doc.get("ticket"), doc.get("mark_s")
        if not isinstance(ticket, int) or isinstance(ticket, bool):
            raise ValueError("escalation: ticket is not a whole number")
        if not isinstance(mark_s, int | float) or isinstance(mark_s, bool) or not 0 <= mark_s < float("inf"):
            raise ValueError("escalation: mark_s is not a number of seconds")
        return cls(site, ticket, device, fault, clock, float(mark_s), _moment(due, "due"), _moment(at, "at"))


@dataclass(frozen=True, slots=True)
class VisitNotice:
    """A planned maintenance visit with none done reaching a mark before its window closes
    (the end of its last day, UTC), or the moment it is overdue (mark 0). Routes see it as
    fault `maintenance_visit`, clock `visit`; overdue counts as breached."""

    fault: ClassVar[str] = "maintenance_visit"
    clock: ClassVar[str] = "visit"

    site: str
    visit: int  # its number in the site's plan
    kind: str  # monthly, regular, pre_expiry
    opens: date
    closes: date  # the window's last day
    mark_days: int  # days before the window closes; 0 = overdue
    due: datetime  # the window's end: the day after `closes`, 00:00 UTC
    at: datetime  # when the mark was reached

    @property
    def breached(self) -> bool:
        return self.mark_days == 0

    @property
    def mark_s(self) -> float:
        return self.mark_days * 86_400.0

    @property
    def key(self) -> NoticeKey:
        """Paged once per site, visit (its number and window) and mark; apart from tickets."""
        return (self.site, self.visit, f"{self.fault} {self.closes.isoformat()}", self.clock, self.mark_s)


Notice = EscalationNotice | VisitNotice


def _text(doc: Mapping[str, object], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"escalation: {name} is missing or not text")
    return value


def _moment(text: str, name: str) -> datetime:
    try:
        at = parse_iso(text)
    except ValueError:
        raise ValueError(f"escalation: {name} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"escalation: {name} has no timezone")
    return at


def _in_shift(shift: Shift, local: datetime) -> bool:
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    now = local.time().replace(tzinfo=None)
    if shift.start < shift.end:
        return today in shift.days and shift.start <= now < shift.end
    # Past midnight (or 24 h when end == start): the evening part today, the morning part
    # belongs to a shift that started yesterday.
    return (today in shift.days and now >= shift.start) or (yesterday in shift.days and now < shift.end)


def on_duty(rota: NotifyConfig, at: datetime) -> list[Engineer]:
    """Engineers whose shift covers the moment `at` (aware), in the rota's order; nobody on
    shift gives the fallback."""
    local = at.astimezone(ZoneInfo(rota.timezone))
    names = {n for s in rota.shifts if _in_shift(s, local) for n in s.engineers}
    if not names:
        names = set(rota.fallback)
    return [e for e in rota.engineers if e.name in names]


def _matches(route: Route, notice: Notice) -> bool:
    return (
        (route.clocks is None or notice.clock in route.clocks)
        and (route.breached is None or route.breached == notice.breached)
        and (route.faults is None or notice.fault in route.faults)
    )


def recipients(config: NotifyConfig, notice: Notice, at: datetime) -> list[Engineer]:
    """Everyone the routes send `notice` to at the moment `at`, each once, in rota order."""
    names: set[str] = set()
    for route in config.routes:
        if _matches(route, notice):
            names.update(route.to)
    if ON_DUTY in names:
        names.update(e.name for e in on_duty(config, at))
    return [e for e in config.engineers if e.name in names]


def _span(d: timedelta) -> str:
    return str(timedelta(seconds=round(abs(d.total_seconds()))))


def title(notice: Notice) -> str:
    if isinstance(notice, VisitNotice):
        visit = f"{notice.site}: maintenance visit {notice.visit} ({notice.kind.replace('_', ' ')})"
        if notice.breached:
            return f"{visit} OVERDUE: none done, its window closed on {notice.closes.isoformat()}"
        days = f"{notice.mark_days} day{'s' if notice.mark_days > 1 else ''}"
        return f"{visit} not done, its window closes within {days} (last day {notice.closes.isoformat()})"
    when = "BREACHED" if notice.breached else f"due in {_span(timedelta(seconds=notice.mark_s))}"
    return f"{notice.site}: ticket {notice.ticket} {notice.fault}, {notice.clock} {when}"


def body(notice: Notice, now: datetime) -> str:
    """The message: site, ticket, device, fault, clock, due time and time left at `now`; for a
    visit: site, visit, its window, due time and time left."""
    left = notice.due - now
    time_left = _span(left) if left > timedelta(0) else f"none, overdue by {_span(left)}"
    if isinstance(notice, VisitNotice):
        return "\n".join(
            [
                f"site: {notice.site}",
                f"maintenance visit: {notice.visit} ({notice.kind.replace('_', ' ')})",
                f"window: {notice.opens.isoformat()} to {notice.closes.isoformat()} (UTC days, both included)",
                "done: no visit recorded in the window",
                f"due: {iso(notice.due)}",
                f"time left: {time_left}",
                f"mark reached: {iso(notice.at)}",
            ]
        )
    return "\n".join(
        [
            f"site: {notice.site}",
            f"ticket: {notice.ticket}",
            f"device: {notice.device}",
            f"fault: {notice.fault}",
            f"clock: {notice.clock}",
            f"due: {iso(notice.due)}",
            f"time left: {time_left}",
            f"mark reached: {iso(notice.at)}",
        ]
    )
