"""Maintenance visits escalate like a clock, at the centre: each planned visit of a site's
retained assets doc (`site_assets`) with no visit done in its window is escalated at marks
before the window closes and at the moment it is overdue, each (site, visit, mark) once.

A window closes at the end of its last day (`closes`), 00:00 UTC the day after: that is the
visit's due time, and mark `d` (days, `sites.visit_marks_days`, default 7 and 0) is reached
`d` days before it; 0 is the moment the visit is overdue. A visit is judged from the day its
window opens (a mark passed before then is reached at the opening) until it is done, and no
longer once its window closed more than 90 days ago: that is history, as the desk's plans say.
When the centre finds several marks of one visit reached at once (a visit first seen late),
all are recorded and only the nearest the due time is sent: one message saying how it stands.

`reached`, `judge` and `time_to_judge` are pure; `escalate` reads the candidate visits and
what was recorded, records what is new in `visit_escalations` and returns the notices to send
once the turn commits. The liveness turn calls it, one worker at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg

from alarmgw.diagnostics.maintenance import Visit, VisitState

from .rota import VisitNotice

Conn = psycopg.AsyncConnection[tuple[object, ...]]

HISTORY = timedelta(days=90)  # a visit whose window closed longer ago is history, not a plan
# Marks fall on UTC midnights (a window's end, or its opening), so the liveness turn judges
# visits on its first turn of each UTC day, and otherwise every this many seconds for the
# assets docs that came meanwhile: judging reads every site's doc (about 0.25 s at 10,000 sites).
EVERY_S = 300.0
MAX_VISIT_N = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Planned:
    """One visit of a site's plan as its gateway sent it."""

    site: str
    visit: Visit
    done_on: date | None  # the day a visit was recorded at the site in this window, if any


def due_at(closes: date) -> datetime:
    """The end of a window whose last day is `closes`: the next day, 00:00 UTC."""
    return datetime.combine(closes + timedelta(days=1), time(0), UTC)


def reached(visit: Visit, done_on: date | None, marks: Iterable[int], now: datetime) -> list[int]:
    """The marks (days before the window closes) `visit` has reached at `now`, the nearest the
    due time last; none for a visit done, not open yet, or history."""
    today = now.astimezone(UTC).date()
    state = visit.state(today, [] if done_on is None else [done_on])
    if state in (VisitState.DONE, VisitState.UPCOMING) or visit.closes < today - HISTORY:
        return []
    due = due_at(visit.closes)
    return sorted((d for d in marks if now >= due - timedelta(days=d)), reverse=True)


def judge(
    planned: Iterable[Planned],
    now: datetime,
    marks: Sequence[int],
    recorded: Mapping[tuple[str, int, date], set[int]],
) -> list[tuple[VisitNotice, bool]]:
    """Each mark reached and not recorded yet, with whether to send it: only the nearest the
    due time of those new, and only if no nearer one was recorded before."""
    out = []
    for p in planned:
        v = p.visit
        seen = recorded.get((p.site, v.n, v.closes), set())
        new = [d for d in reached(v, p.done_on, marks, now) if d not in seen]
        if not new:
            continue
        nearest = min(new)
        send = nearest < min(seen, default=nearest + 1)
        opened = datetime.combine(v.opens, time(0), UTC)
        due = due_at(v.closes)
        for d in new:
            at = max(due - timedelta(days=d), opened)
            notice = VisitNotice(p.site, v.n, v.kind, v.opens, v.closes, d, due, at)
            out.append((notice, send and d == nearest))
    return sorted(out, key=lambda x: (x[0].at, x[0].site, x[0].visit, -x[0].mark_days))


def time_to_judge(last: tuple[date, float] | None, now: datetime, monotonic: float) -> bool:
    """Whether a turn at `now` judges the visits, given the UTC day and the monotonic time of
    the last turn that did: the first turn of a UTC day does, and one `EVERY_S` after the last."""
    if last is None:
        return True
    day, at = last
    return now.astimezone(UTC).date() != day or monotonic - at >= EVERY_S


def _day(text: object) -> date | None:
    try:
        return date.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:  # the schema checks the shape, not the calendar: 2026-02-30
        return None


def planned_visit(site: str, n: object, kind: object, opens: object, closes: object, done_on: object) -> Planned | None:
    """A visit as the doc holds it; None if it cannot be judged (a day not in the calendar)."""
    o, c = _day(opens), _day(closes)
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # 4.0 is the schema's whole number too
    whole = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_VISIT_N
    if not whole or o is None or c is None or kind is None:
        return None
    return Planned(site, Visit(n, str(kind), o, c), _day(done_on))  # type: ignore[arg-type]


# The visits that may have reached a mark: open by today, closing before the farthest mark is
# passed, not history, at sites whose gateway records its visits (`visits_done`; an older one
# could never say a visit was done, and would be paged for every window). Days compare as
# text (the schema's YYYY-MM-DD), so a day not in the calendar cannot fail the turn; such a
# visit is dropped in Python.
CANDIDATES = """
SELECT s.site_id, v -> 'n', v ->> 'kind', v ->> 'opens', v ->> 'closes', v ->> 'done_on'
FROM site_assets s
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(s.doc -> 'visits') = 'array' THEN s.doc -> 'visits' ELSE '[]'::jsonb END) v
WHERE s.doc ? 'visits_done' AND jsonb_typeof(v) = 'object' AND jsonb_typeof(v -> 'n') = 'number'
  AND v ->> 'opens' <= %(today)s AND v ->> 'closes' >= %(oldest)s AND v ->> 'closes' < %(latest)s
"""


async def escalate(conn: Conn, now: datetime, marks: Sequence[int]) -> list[VisitNotice]:
    """Record the marks reached by the sites' planned visits, each once; the notices to send.
    Forgets the records of visits that are history. The caller holds the transaction."""
    today = now.astimezone(UTC).date()
    oldest = today - HISTORY
    await conn.execute("DELETE FROM visit_escalations WHERE closes < %s", (oldest,))
    if not marks:
        return []
    span = {"today": today.isoformat(), "oldest": oldest.isoformat()}
    span["latest"] = (today + timedelta(days=max(marks))).isoformat()
    cur = await conn.execute(CANDIDATES, span)
    planned = []
    for site, n, kind, opens, closes, done_on in await cur.fetchall():
        p = planned_visit(str(site), n, kind, opens, closes, done_on)
        if p is not None:
            planned.append(p)
    if not planned:
        return []
    cur = await conn.execute(
        "SELECT site_id, visit_n, closes, mark_days FROM visit_escalations WHERE closes >= %s", (oldest,)
    )
    recorded: dict[tuple[str, int, date], set[int]] = {}
    for site, n, closes, mark in await cur.fetchall():
        recorded.setdefault((str(site), int(str(n)), closes), set()).add(int(str(mark)))  # type: ignore[arg-type]
    judged = judge(planned, now, marks, recorded)
    if not judged:
        return []
    cur = await conn.execute(
        """
        INSERT INTO visit_escalations (site_id, visit_n, closes, mark_days, kind, opens, due, at, noticed_at, notified)
        SELECT u.s, u.n, u.c, u.d, u.k, u.o, u.due, u.at, %s, u.send
        FROM unnest(%s::text[], %s::integer[], %s::date[], %s::integer[], %s::text[], %s::date[],
                    %s::timestamptz[], %s::timestamptz[], %s::boolean[]) AS u(s, n, c, d, k, o, due, at, send)
        ON CONFLICT DO NOTHING
        RETURNING site_id, visit_n, closes, mark_days
        """,
        (
            now,
            [n.site for n, _ in judged],
            [n.visit for n, _ in judged],
            [n.closes for n, _ in judged],
            [n.mark_days for n, _ in judged],
            [n.kind for n, _ in judged],
            [n.opens for n, _ in judged],
            [n.due for n, _ in judged],
            [n.at for n, _ in judged],
            [send for _, send in judged],
        ),
    )
    taken = {(str(s), int(str(n)), c, int(str(d))) for s, n, c, d in await cur.fetchall()}
    return [n for n, send in judged if send and (n.site, n.visit, n.closes, n.mark_days) in taken]
