"""`alarmgw assets` and `alarmgw maintenance`: what the promise owes a site over time. The
asset register (each device's warranty and rated life) and the visits owed (monthly for
three months, regular ones in the first year, the visit in the warranty's last ten days), as
of a day (today, UTC, unless `--on`), with the visits the site's store has recorded as done;
and the visit itself: `start`, `status`, `finish` and `report`, on the site's store (a
running gateway follows within a poll interval)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table

from alarmgw.diagnostics.assets import Asset, asset, near_end_of_life, warranty_ending
from alarmgw.diagnostics.maintenance import plan
from alarmgw.yamlfile import ConfigError

from .site_file import load_site
from .store import Store, VisitConflict
from .tables import stdout_console


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("assets", help="each device's warranty and rated life, and what is due")
    _site_args(a)
    a.add_argument("--expiring", metavar="DAYS", type=_count, help="only those whose warranty ends within DAYS")
    a.add_argument("--end-of-life", metavar="MONTHS", type=_count, help="only those at their rated life within MONTHS")
    m = sub.add_parser("maintenance", help="the maintenance visits the site is owed, and the visit itself")
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    _site_args(msub.add_parser("plan", help="every visit owed in the warranty, with its window and state"))
    start = msub.add_parser("start", help="put the site into maintenance: covers opened are findings, not tickets")
    start.add_argument("--by", metavar="NAME", required=True, help="the engineer on site")
    start.add_argument(
        "--hours", metavar="H", type=_hours, help="it ends by itself after H hours (default: the site's)"
    )
    finish = msub.add_parser("finish", help="close the visit with its report: every device tested, untested or failed")
    finish.add_argument("--by", metavar="NAME", required=True, help="the engineer on site")
    status = msub.add_parser("status", help="the visit running now and what was seen so far")
    rep = msub.add_parser("report", help="a finished visit's report")
    rep.add_argument("id", metavar="ID", type=int, help="visit number")
    for p in (start, finish, status, rep):
        p.add_argument("-c", "--config", metavar="SITE.yaml", type=Path, required=True, help="the site file")
        p.add_argument("--json", action="store_true", help="print JSON")
    for p in (finish, rep):
        p.add_argument("--html", metavar="FILE", type=Path, help="also write the report as a printable HTML page")


def _site_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="SITE.yaml", type=Path, required=True, help="the site file")
    p.add_argument("--on", metavar="YYYY-MM-DD", type=date.fromisoformat, help="as of this day (default: today, UTC)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _count(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"0 to 100000, not {n}")
    return n


def _hours(text: str) -> float:
    from .maintenance import MAX_HOURS

    h = float(text)
    if not 0 < h <= MAX_HOURS:
        raise argparse.ArgumentTypeError(f"more than 0 and at most {MAX_HOURS:g}, not {text}")
    return h


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def assets(args: argparse.Namespace) -> int:
    site = load_site(args.config).config
    today = args.on or datetime.now(UTC).date()
    register = site.asset_register()
    chosen = register
    if args.expiring is not None:
        chosen = warranty_ending(chosen, today, args.expiring)
    if args.end_of_life is not None:
        chosen = near_end_of_life(chosen, today, args.end_of_life)
    if args.json:
        print(
            json.dumps(
                {"site": site.site.id, "on": today.isoformat(), "assets": [_asset_doc(a, today) for a in chosen]}
            )
        )
        return 0
    table = Table(title=f"Assets of {site.site.id} as of {today} ({len(chosen)} of {len(register)})")
    for col in ("device", "kind", "commissioned", "warranty until", "in warranty", "end of life"):
        table.add_column(col)
    for a in chosen:
        inside = a.in_warranty(today)
        table.add_row(
            a.device_id,
            a.kind,
            _iso(a.commissioned_on) or "-",
            _iso(a.warranty_until) or "-",
            "-" if inside is None else "yes" if inside else "no: parts at cost",
            (_iso(a.end_of_life) or "-") + (" (reached)" if a.end_of_life and a.end_of_life <= today else ""),
        )
    stdout_console().print(table)
    return 0


def _asset_doc(a: Asset, today: date) -> dict[str, object]:
    return {
        "device": a.device_id,
        "kind": a.kind,
        "commissioned_on": _iso(a.commissioned_on),
        "warranty_until": _iso(a.warranty_until),
        "in_warranty": a.in_warranty(today),
        "parts_billable": a.parts_billable(today),
        "end_of_life": _iso(a.end_of_life),
    }


def maintenance(args: argparse.Namespace) -> int:
    if args.action == "plan":
        return maintenance_plan(args)
    return visit_command(args)


def done_days(store_path: Path) -> list[date]:
    """The days of the visits the site's store recorded (none if there is no store yet)."""
    if not store_path.exists():
        return []
    with Store(store_path) as store:
        return [v.started_at.date() for v in store.visits.done()]


def maintenance_plan(args: argparse.Namespace) -> int:
    loaded = load_site(args.config)
    site = loaded.config
    today = args.on or datetime.now(UTC).date()
    commissioned = site.site.commissioned_on
    if commissioned is None:
        raise ConfigError(str(args.config), "site.commissioned_on is not set: the plan runs from it")
    system = asset(site.site.id, "site", commissioned)  # the system's warranty: the promise's 12 months
    assert system.warranty_until is not None
    visits = plan(commissioned, system.warranty_until, site.maintenance.regular_months)
    done = done_days(loaded.store_path)
    rows = [(v, v.state(today, done)) for v in visits]
    if args.json:
        doc = {
            "site": site.site.id,
            "on": today.isoformat(),
            "warranty_until": system.warranty_until.isoformat(),
            "visits": [
                {"n": v.n, "kind": v.kind, "opens": v.opens.isoformat(), "closes": v.closes.isoformat(), "state": st}
                for v, st in rows
            ],
        }
        print(json.dumps(doc))
        return 0
    table = Table(
        title=f"Maintenance visits owed to {site.site.id} as of {today} (warranty until {system.warranty_until})"
    )
    for col in ("#", "visit", "window opens", "window closes", "state"):
        table.add_column(col)
    for v, st in rows:
        table.add_row(str(v.n), v.kind.replace("_", "-"), v.opens.isoformat(), v.closes.isoformat(), st.value)
    stdout_console().print(table)
    return 0


def visit_command(args: argparse.Namespace) -> int:
    from .maintenance import close, infos, report_html

    loaded = load_site(args.config)
    cfg = loaded.config
    out = stdout_console()
    now = datetime.now(UTC)
    with Store(loaded.store_path) as store:
        if args.action == "start":
            hours = args.hours if args.hours is not None else cfg.maintenance.max_hours
            row = store.visits.start(args.by, now, now + timedelta(hours=hours))
            doc: dict[str, Any] | None = row.head(cfg.site.id)
        elif args.action == "status":
            running = store.visits.running()
            doc = (
                None
                if running is None
                else running.head(cfg.site.id) | {"findings": {d: f.to_json() for d, f in running.findings.items()}}
            )
        elif args.action == "finish":
            running = store.visits.running()
            if running is None:
                raise VisitConflict("no maintenance visit runs")
            faulty: dict[str, list[str]] = {}
            for device, fault in store.tickets.active_faults():
                faulty.setdefault(device, []).append(fault)
            row = close(
                store, cfg.site.id, infos(cfg.devices()), running, now, args.by, "finished", running.findings, faulty
            )
            doc = row.report
        else:
            row = store.visits.get(args.id)
            doc = row.report or row.head(cfg.site.id)
    if args.json:
        print(json.dumps(doc))
        return 0
    if doc is None:
        out.print("no maintenance visit runs")
        return 0
    if getattr(args, "html", None) is not None and "devices" in doc:
        args.html.write_text(report_html(doc), encoding="utf-8")
    out.print(
        f"visit {doc['visit']} at {doc['site']}: started {doc['started_at']} by {doc['started_by']}", highlight=False
    )
    if "devices" not in doc:
        ends = f"finished {doc['finished_at']}" if doc.get("finished_at") else f"ends by {doc['ends_by']} at the latest"
        out.print(f"running; {ends}; {len(doc.get('findings', {}))} devices heard from so far", highlight=False)
        return 0
    table = Table(title=f"{doc['ended']} {doc['finished_at']} by {doc['finished_by']}: {doc['counts']}")
    for col in ("device", "kind", "verdict", "why"):
        table.add_column(col)
    for d in doc["devices"]:
        table.add_row(d["device"], d["kind"], d["verdict"], "; ".join(d["why"]))
    out.print(table)
    return 0
