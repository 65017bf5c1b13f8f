"""The monthly service report as a printable page: one HTML file with its style, its charts
(matplotlib, as inline SVG, loaded only when a page is made) and its text escaped, no script
and nothing fetched; and that page as PDF, laid out by WeasyPrint."""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from alarmgw.clock import parse_iso
from alarmgw.diagnostics.sla import CLOCK_NAMES, PROMISE

from .desk_store import TREND_KEYS
from .service_report import COUNTS, MAX_CHARTS, UNITS, Month, ReportError, duration_text, stamp_text


class PdfUnavailable(ReportError):
    """The PDF needs WeasyPrint, which this installation lacks."""


_chart_lock = threading.Lock()  # matplotlib's font and text caches are shared by its figures
_ID = re.compile(r'(\bid="|href="#|url\(#)')
_PROLOGUE = re.compile(r"^.*?(?=<svg\b)|<metadata>.*?</metadata>", re.DOTALL)

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font: 10pt/1.35 "DejaVu Sans", Helvetica, Arial, sans-serif; color: #111; margin: 0 auto; max-width: 190mm; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12.5pt; margin: 6mm 0 2mm; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 4mm 0 1mm; break-after: avoid; }
header p, .note { color: #444; margin: 1mm 0; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; font-size: 8.5pt; }
th, td { border: 0.4pt solid #999; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
thead { display: table-header-group; } tr, figure { break-inside: avoid; }
.breached { color: #a00; font-weight: bold; } .met, .done { color: #060; } .overdue { color: #a00; }
table.tickets { font-size: 7.5pt; } table.tickets td { padding: 0.8mm 1mm; overflow-wrap: break-word; }
figure { margin: 2mm 0 4mm; } figcaption { font-size: 9pt; font-weight: bold; }
figure svg { width: 100%; height: auto; }
@media print { a { color: inherit; text-decoration: none; } }
"""


def _e(value: object) -> str:
    return html.escape("—" if value is None else str(value))


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), css: str = "") -> str:
    """Cells are already escaped HTML."""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    cls = f' class="{css}"' if css else ""
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table{cls}><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>"


def _short(text: object) -> str:
    """A time in the ticket table, whose month is the report's or the next: `02-03 08:00`."""
    return stamp_text(text)[5:16] if text else "—"


def _state(value: object) -> str:
    text = _e(str(value).replace("_", " ") if value else None)
    return f'<span class="{_e(value)}">{text}</span>' if value else text


def _share(share: object) -> str:
    return "—" if share is None else f"{float(str(share)):.0%}"


def _span(t: timedelta) -> str:
    days, rest = divmod(int(t.total_seconds()), 86400)
    return f"{days} day{'s' if days > 1 else ''}" if days and not rest else duration_text(t.total_seconds())


def _tickets(t: Mapping[str, Any]) -> str:
    out = [f"<p>{t['total']} ticket(s) opened in the month.</p>"]
    if t["by_fault"]:
        out.append(_table(("fault", "tickets"), ((_e(f), str(n)) for f, n in t["by_fault"].items()), (1,)))
    p = PROMISE
    promise = {
        "response": f"within {_span(p.response)} of detection",
        "arrival": f"within {_span(p.arrival_city)} (city) or {_span(p.arrival_suburb)} (suburb) of detection",
        "repair": f"within {_span(p.repair_equipment)} (equipment) or {_span(p.repair_accessory)} (accessory)"
        " of arrival",
        "downtime": f"system stopped under {_span(p.downtime)}",
    }
    rows = (
        (_e(name), _e(promise.get(name, "")), *(str(c[k]) for k in COUNTS), _share(c["share_met"]))
        for name, c in t["clocks"].items()
    )
    out.append("<h3>Service clocks</h3>")
    out.append(
        _table(("clock", "promise", "met", "breached", "running", "not needed", "share met"), rows, (2, 3, 4, 5, 6))
    )
    out.append(
        '<p class="note">A clock still running past its due time counts as breached;'
        " the share met is of the clocks decided.</p>"
    )
    if t["list"]:
        out.append("<h3>Tickets</h3>")
        head = ("ticket", "fault", "device", "opened", "acknowledged", "on site", "resolved", "closed", *CLOCK_NAMES)
        rows = (
            (
                _e(x["ref"]),
                _e(x["fault"]),
                _e(x["device"]),
                *(_e(_short(x[k])) for k in ("opened_at", "acknowledged_at", "on_site_at", "resolved_at", "closed_at")),
                *(_state(x["clocks"].get(c)) for c in CLOCK_NAMES),
            )
            for x in t["list"]
        )
        out.append(_table(head, rows, css="tickets"))
        out.append('<p class="note">Times as month-day hour:minute, UTC.</p>')
        if t["listed"] < t["total"]:
            out.append(f'<p class="note">The first {t["listed"]} of {t["total"]} tickets are counted and listed.</p>')
    return "".join(out)


def _downtime(d: Mapping[str, Any]) -> str:
    out = [
        f"<p>Total downtime in the month: <b>{_e(duration_text(d['total_s']))}</b>"
        f" (the promise: under {_e(duration_text(d['promise_s']))} while a component is repaired or replaced).</p>"
    ]
    if d["tickets"]:
        rows = (
            (
                _e(x["ref"]),
                _e(x["device"]),
                _e(stamp_text(x["down_since"])),
                _e(stamp_text(x["back_at"]) if x["back_at"] else "not yet"),
                _e(duration_text(x["in_month_s"])),
            )
            for x in d["tickets"]
        )
        out.append(_table(("ticket", "device", "down since", "back at", "in this month"), rows, (4,)))
    else:
        out.append("<p>No device was down during a repair in the month.</p>")
    return "".join(out)


def _visits(v: Mapping[str, Any]) -> str:
    if not v["register"]:
        return "<p>The site has sent no maintenance plan.</p>"
    out = []
    if v["planned"]:
        rows = (
            (
                str(p["n"]),
                _e(p["kind"].replace("_", " ")),
                _e(p["opens"]),
                _e(p["closes"]),
                _e(p["done_on"]),
                _state(p["state"]),
            )
            for p in v["planned"]
        )
        out.append(_table(("visit", "kind", "window opens", "closes", "done on", "state"), rows, (0,)))
    else:
        out.append("<p>No visit of the maintenance plan falls in the month.</p>")
    out.append("<h3>Visits recorded</h3>")
    if v["recorded"] is None:
        out.append("<p>None recorded: the site's gateway does not record its visits.</p>")
    elif not v["recorded"]:
        out.append("<p>No visit recorded in the month.</p>")
    else:

        def names(n: Mapping[str, Any] | None) -> str:
            if n is None:
                return "—"
            shown = ", ".join(n["devices"])
            return _e(
                f"{n['count']}"
                + (f": {shown}" if shown else "")
                + (" …" if len(n["devices"]) < n["count"] and n["devices"] else "")
            )

        rows = (
            (
                _e(stamp_text(r["started_at"])),
                _e(stamp_text(r["finished_at"])),
                _e(r["by"]),
                names(r["tested"]),
                names(r["untested"]),
                names(r["failed"]),
            )
            for r in v["recorded"]
        )
        out.append(_table(("started", "finished", "by", "tested", "untested", "failed"), rows))
    return "".join(out)


def _end_of_life(e: Mapping[str, Any]) -> str:
    if not e["devices"]:
        return f"<p>No device reaches its rated life within {e['within_months']} months of the month's end.</p>"
    rows = (
        (
            _e(d["device"]),
            _e(d["kind"]),
            _e(d["commissioned_on"]),
            _e(d["warranty_until"]),
            {True: "yes", False: "no", None: "—"}[d["in_warranty"]],
            _e(d["end_of_life"]),
            '<span class="overdue">reached</span>' if d["reached"] else f"within {e['within_months']} months",
        )
        for d in e["devices"]
    )
    out = _table(("device", "kind", "commissioned", "warranty until", "in warranty", "rated life ends", ""), rows)
    if e["total"] > len(e["devices"]):
        out += f'<p class="note">The first {len(e["devices"])} of {e["total"]} devices are listed.</p>'
    return out


def _fmt(cell: Mapping[str, Any] | None, key: str) -> tuple[str, str]:
    if cell is None:
        return "—", "—"
    unit = UNITS[key]
    return f"{cell['min']:g} {unit}", f"{cell['last']:g} {unit}"


def _readings(r: Mapping[str, Any], charts: list[str] | None) -> str:
    out = [
        "<p>From the readings the service centre keeps: "
        + _e("; ".join(r["sources"]))
        + ". The site's own history holds every reading.</p>"
    ]
    if not r["devices"]:
        return out[0] + "<p>No battery or signal reading of the month.</p>"
    if any("daily" in d for d in r["devices"]):
        out.append('<p class="note">Charted per UTC day: the lowest reading of the day and the last.</p>')
    rows = []
    for d in r["devices"]:
        cells = [_e(d["device"]), _e(d["kind"])]
        for key in TREND_KEYS:
            cells += [_e(x) for x in _fmt(d.get(key), key)]
        rows.append(cells)
    head = (
        "device",
        "kind",
        "battery min",
        "battery last",
        "battery % min",
        "battery % last",
        "signal min",
        "signal last",
    )
    out.append(_table(head, rows))
    if r["total"] > len(r["devices"]):
        out.append(f'<p class="note">The first {len(r["devices"])} of {r["total"]} devices are listed.</p>')
    if charts is None:
        out.append('<p class="note">Charts need matplotlib, which this installation lacks.</p>')
    else:
        out += charts
        if r["total"] > len(charts):
            out.append(
                f'<p class="note">The {len(charts)} devices with the lowest readings are charted, of {r["total"]}.</p>'
            )
    return "".join(out)


def _charts(report: Mapping[str, Any]) -> list[str] | None:
    """One figure per device (the lowest first, at most MAX_CHARTS): battery and signal over
    the month, as inline SVG with ids of its own; None without matplotlib."""
    try:
        import matplotlib as mpl  # heavy: only when a page is made
        from matplotlib.figure import Figure
    except ImportError:
        return None
    start, end = parse_iso(report["from"]), parse_iso(report["to"])
    ticks = [t for t in (start + timedelta(days=d) for d in range(0, 29, 7)) if t < end]  # 1st, 8th, ... 29th
    out = []
    with _chart_lock, mpl.rc_context({"svg.fonttype": "path", "font.size": 8, "svg.hashsalt": "alarmgw"}):
        for i, d in enumerate(report["readings"]["devices"][:MAX_CHARTS]):
            fig = Figure(figsize=(7.2, 1.9), layout="constrained")
            axes = fig.subplots(1, 2)
            daily = d.get("daily", {})
            battery = "battery_pct" if "battery_pct" in d["series"] or "battery_pct" in daily else "battery_v"
            for ax, key, label in ((axes[0], battery, "battery"), (axes[1], "rssi_dbm", "signal")):
                points = d["series"].get(key, [])
                ax.set_title(f"{label} ({UNITS[key]})", fontsize=8, loc="left")
                ax.set_xlim(start, end)
                ax.set_xticks(ticks, labels=[f"{t.day}" for t in ticks])
                ax.grid(True, linewidth=0.3)
                if days := daily.get(key):
                    # [day, min, max, last, readings]: each day's lowest and its last, at the day's middle
                    at = [parse_iso(f"{x[0]}T12:00:00Z") for x in days]
                    ax.plot(at, [x[1] for x in days], marker="v", markersize=3, linewidth=1, label="lowest")
                    ax.plot(at, [x[3] for x in days], marker="o", markersize=3, linewidth=1, label="last")
                    ax.legend(fontsize=6, loc="best", frameon=False)
                elif points:
                    ax.plot(
                        [parse_iso(at) for at, _ in points],
                        [v for _, v in points],
                        marker="o",
                        markersize=3,
                        linewidth=1,
                    )
                else:
                    ax.text(0.5, 0.5, "no readings", transform=ax.transAxes, ha="center", va="center")
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
            svg = _ID.sub(rf"\g<1>c{i}-", _PROLOGUE.sub("", buf.getvalue()))  # ids of its own in the page
            out.append(f"<figure><figcaption>{_e(d['device'])}</figcaption>{svg}</figure>")
    return out


def render_html(report: Mapping[str, Any], charts: bool = True) -> str:
    """The printable page: one file, no script, nothing fetched, every text escaped."""
    month = Month.parse(str(report["month"]))
    area = f" ({_e(report['area'])})" if report["area"] else ""
    to_date = "" if report["complete"] else " Month to date."
    sections = (
        ("Faults and service clocks", _tickets(report["tickets"])),
        ("Downtime", _downtime(report["downtime"])),
        ("Maintenance visits", _visits(report["visits"])),
        ("Devices at or near their rated life", _end_of_life(report["end_of_life"])),
        ("Battery and signal", _readings(report["readings"], _charts(report) if charts else None)),
    )
    body = "".join(f"<section><h2>{_e(title)}</h2>{part}</section>" for title, part in sections)
    cut = report["truncated"]
    note = f'<p class="note">Cut to their bounds: {_e(", ".join(cut))}.</p>' if cut else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        # Opened from a file, the page still runs nothing and fetches nothing.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>Service report {_e(report['site'])} {_e(month)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>Service report — {_e(month.title())}</h1>"
        f"<p>Site <b>{_e(report['site'])}</b>{area}. From {_e(stamp_text(report['from']))}"
        f" to {_e(stamp_text(report['to']))} (times in UTC). Made {_e(stamp_text(report['as_of']))}.{to_date}</p>"
        f"{note}</header>"
        f"{body}</body></html>\n"
    )


def render_pdf(page: str) -> bytes:
    """The page as PDF (WeasyPrint lays it out; it is given nothing it may fetch)."""
    try:
        import weasyprint  # heavy: only when a PDF is made
        from weasyprint.urls import URLFetcher
    except ImportError:
        raise PdfUnavailable("a PDF needs WeasyPrint: install alarmgw[report]") from None
    pdf = weasyprint.HTML(string=page, url_fetcher=URLFetcher(allowed_protocols=())).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf
