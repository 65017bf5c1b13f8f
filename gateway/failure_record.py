"""The failure record the service rules ask for ("the cause of the failure, the time, nature,
type, location, degree of impact, and the measures the user has taken"), with the part
named, the engineers who acted and the clocks, as lines and as a printable HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from alarmgw.clock import iso
from alarmgw.diagnostics.tickets import Ticket

# Log actions that name an engineer at work on the ticket.
ENGINEER_ACTIONS = ("acknowledged", "dispatched", "on_site", "resolved", "closed")


def record(t: Ticket, log: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """The record's lines, label and value, in the order of the integrator's form."""
    d = t.diagnosis
    engineers = sorted({e["actor"] for e in log if e.get("action") in ENGINEER_ACTIONS and e.get("actor")})
    warranty = (
        "unknown" if t.in_warranty is None else "yes: parts and labour free" if t.in_warranty else "no: parts at cost"
    )
    stamps = [
        ("acknowledged", t.acknowledged_at),
        ("dispatched", t.dispatched_at),
        ("on site", t.on_site_at),
        ("resolved", t.resolved_at),
        ("closed", t.closed_at),
    ]
    return [
        ("ticket", f"{t.id} at site {t.site_id} (version {t.version}, {t.state.value})"),
        ("cause", str(d.get("cause") or t.cause or "not diagnosed")),
        ("time", f"detected {iso(t.opened_at)}" + (f", restored {iso(t.restored_at)}" if t.restored_at else "")),
        ("nature", t.title),
        ("type", f"{t.fault} on a {t.device_kind.replace('_', ' ')} ({t.device_id})"),
        ("location", t.location or "-"),
        ("degree of impact", t.impact + (f"; lost behind it: {', '.join(t.casualties)}" if t.casualties else "")),
        ("measures taken by the user", t.user_action or "none recorded"),
        ("part", str(d.get("part") or "-")),
        ("in warranty at detection", warranty),
        ("engineers", ", ".join(engineers) or "-"),
        ("downtime", _downtime(t)),
        ("steps", "; ".join(f"{name} {iso(at)}" for name, at in stamps if at) or "-"),
    ]


def record_html(t: Ticket, rows: Sequence[tuple[str, str]]) -> str:
    """A page that prints on one sheet; every value escaped."""
    body = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    title = html.escape(f"Failure record: ticket {t.id}, site {t.site_id}")
    return (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        f"<title>{title}</title>\n"
        "<style>body{font:11pt sans-serif;margin:2em}th{text-align:left;vertical-align:top;padding:4px 12px 4px 0;"
        "white-space:nowrap}td{padding:4px 0}table{border-collapse:collapse}tr{border-bottom:1px solid #ccc}</style>\n"
        f"<h1>{title}</h1>\n<table>\n{body}\n</table>\n</html>\n"
    )


def _downtime(t: Ticket) -> str:
    """How long the system stopped while the component was replaced (promised: under an hour)."""
    if t.down_since is None:
        return "none: the device was not taken away"
    if t.back_at is None:
        return f"since {iso(t.down_since)}, not back yet"
    minutes = (t.back_at - t.down_since).total_seconds() / 60
    verdict = "within the hour" if minutes <= 60 else "over the hour"
    return f"{minutes:.0f} min ({iso(t.down_since)} to {iso(t.back_at)}), {verdict}"
