"""`alarmgw centre migrate|ingest|desk|user -c CENTRE.yaml`: set up the centre's database, run
a worker, serve the desk, add a desk user.

Exit codes as the rest of `alarmgw`: 0 done, 2 bad input (the centre file, naming the file and
the key; a database that cannot be reached), 130 interrupted. `ingest` runs until SIGTERM or
Ctrl-C; any number of workers may run against one database and broker, each with its own
`--worker N` (its client id, and so its broker session, is the file's `client_id` + `-N`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _worker(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= n <= MAX_WORKER:
        raise argparse.ArgumentTypeError(f"{n} is not within 0 to {MAX_WORKER}")
    return n


def run(args: argparse.Namespace) -> int:
    """Run a `centre` subcommand; errors of input are printed and give 2."""
    from .commands import run as run_command

    return run_command(args)
