"""`alarmgw centre migrate|ingest|desk|user|report -c CENTRE.yaml`: set up the centre's
database, run a worker, serve the desk, add a desk user, make a site's monthly report.

Exit codes as the rest of `alarmgw`: 0 done, 2 bad input (the centre file, naming the file and
the key; a database that cannot be reached), 130 interrupted. `ingest` runs until SIGTERM or
Ctrl-C; any number of workers may run against one database and broker, each with its own
`--worker N` (its client id, and so its broker session, is the file's `client_id` + `-N`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service_report import Month

MAX_WORKER = 9999


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `centre` command and its subcommands, on the `alarmgw` parser's subparsers."""
    centre = sub.add_parser("centre", help="the service centre: its database and its ingest workers")
    csub = centre.add_subparsers(dest="centre_command", required=True)
    m = csub.add_parser("migrate", help="create or bring up to date the centre's PostgreSQL schema")
    m.add_argument("-c", "--config", type=Path, required=True, metavar="CENTRE.yaml")
    i = csub.add_parser("ingest", help="run an ingest worker (migrates first) until SIGTERM or Ctrl-C")
    i.add_argument("-c", "--config", type=Path, required=True, metavar="CENTRE.yaml")
    i.add_argument("--worker", type=_worker, metavar="N", help="this worker's number (0-9999): its client id suffix")
    d = csub.add_parser("desk", help="serve the desk (and relay engineers' moves to the sites) until SIGTERM or Ctrl-C")
    d.add_argument("-c", "--config", type=Path, required=True, metavar="CENTRE.yaml")
    u = csub.add_parser("user", help="add a desk user")
    u.add_argument("action", choices=["add"])
    u.add_argument("name", help="the user's name (1-64 letters, digits, _ . @ -)")
    u.add_argument("--role", choices=["viewer", "engineer", "dispatcher"], default="viewer", help="(default: viewer)")
    u.add_argument("-c", "--config", type=Path, required=True, metavar="CENTRE.yaml")
    u.add_argument(
        "--password-file", type=Path, metavar="FILE", help="the password (first line); else typed, or a line on stdin"
    )
    r = csub.add_parser("report", help="a site's monthly service report, for its customer (times in UTC)")
    r.add_argument("site", help="the site's id")
    r.add_argument("-c", "--config", type=Path, required=True, metavar="CENTRE.yaml")
    r.add_argument("--month", type=_month, metavar="YYYY-MM", help="the calendar month, UTC (default: last month)")
    r.add_argument("--html", type=Path, metavar="FILE", help="write the printable page (one file, charts inline)")
    r.add_argument("--pdf", type=Path, metavar="FILE", help="write the page as PDF")
    r.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")


def _worker(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= n <= MAX_WORKER:
        raise argparse.ArgumentTypeError(f"{n} is not within 0 to {MAX_WORKER}")
    return n


def _month(text: str) -> Month:
    from .service_report import Month, ReportError

    try:
        return Month.parse(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run a `centre` subcommand; errors of input are printed and give 2."""
    from .commands import run as run_command

    return run_command(args)
