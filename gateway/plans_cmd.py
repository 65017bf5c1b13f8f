"""`alarmgw assets` and `alarmgw maintenance plan`: what the promise owes a site over time,
from its site file alone. The asset register (each device's warranty and rated life) and the
visits owed (monthly for three months, regular ones in the first year, the visit in the
warranty's last ten days), as of a day (today, UTC, unless `--on`)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path

from rich.table import Table

from alarmgw.diagnostics.assets import Asset, asset, near_end_of_life, warranty_ending
from alarmgw.diagnostics.maintenance import plan
from alarmgw.yamlfile import ConfigError

from .site_file import load_site
from .tables import stdout_console


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("assets", help="each device's warranty and rated life, and what is due")
    _site_args(a)
    a.add_argument("--expiring", metavar="DAYS", type=_count, help="only those whose warranty ends within DAYS")
    a.add_argument("--end-of-life", metavar="MONTHS", type=_count, help="only those at their rated life within MONTHS")
    m = sub.add_parser("maintenance", help="the maintenance visits the site is owed")
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    _site_args(msub.add_parser("plan", help="every visit owed in the warranty, with its window and state"))


def _site_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="SITE.yaml", type=Path, required=True, help="the site file")
    p.add_argument("--on", metavar="YYYY-MM-DD", type=date.fromisoformat, help="as of this day (default: today, UTC)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _count(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"0 to 100000, not {n}")
    return n


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


def maintenance_plan(args: argparse.Namespace) -> int:
    site = load_site(args.config).config
    today = args.on or datetime.now(UTC).date()
    commissioned = site.site.commissioned_on
    if commissioned is None:
        raise ConfigError(str(args.config), "site.commissioned_on is not set: the plan runs from it")
    system = asset(site.site.id, "site", commissioned)  # the system's warranty: the promise's 12 months
    assert system.warranty_until is not None
    visits = plan(commissioned, system.warranty_until, site.maintenance.regular_months)
    rows = [(v, v.state(today)) for v in visits]
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
