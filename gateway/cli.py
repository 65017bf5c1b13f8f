"""The `alarmgw` command: run, simulate, demo, tickets, remote, keygen, sla-report, api-token,
diagnose, check-config.

Exit codes: 0 done, 1 operation refused (e.g. an illegal ticket move), 2 bad input
(config file, arguments, unknown ticket), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from alarmgw import __version__
from alarmgw.clock import iso
from alarmgw.diagnostics.tickets import MOVES, TicketError, ticket_json
from alarmgw.simulator.errors import SimulatorError
from alarmgw.yamlfile import ConfigError, read_text

from .config import MAX_SECRET_BYTES
from .credentials import RANK, Role
from .runtime import DEMO_DATABASE, LOOPS, DemoError, HttpError, LoopError, loop_factory, run_until_stopped
from .site_file import LoadedSite, load_site
from .store import Store, StoreError, VisitConflict

if TYPE_CHECKING:
    from .remote_auth import Credential

log = logging.getLogger("alarmgw")


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: at (UTC, ISO 8601), level, logger, message, and the error."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alarmgw", description="Site gateway for wireless fire and burglar alarm systems.")
    p.add_argument("--version", action="version", version=f"alarmgw {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line (for journald / log shippers)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run the gateway against a site's equipment (in the foreground, until SIGTERM or Ctrl-C)"
    )
    run.add_argument("-c", "--config", metavar="SITE.yaml", required=True, type=Path, help="site file (YAML)")
    run.add_argument("--db", metavar="PATH", type=Path, help="ticket store; overrides store.path of the site file")
    run.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop where it is installed (auto, the default), or the one named",
    )

    sim = sub.add_parser("simulate", help="run the hardware simulator for a site file")
    sim.add_argument("-c", "--config", metavar="SITE.yaml", required=True, type=Path, help="site file (YAML)")
    sim.add_argument("--scenario", metavar="FILE", type=Path, help="fault scenario (YAML)")
    sim.add_argument("--seed", metavar="N", type=int, default=1, help="model seed when the scenario names none")
    sim.add_argument("--duration", metavar="S", type=float, help="stop after this many seconds")

    demo = sub.add_parser("demo", help="simulated site + gateway + live view in one process")
    demo.add_argument("--duration", metavar="S", type=float, help="stop after this many seconds")
    demo.add_argument(
        "--db", metavar="PATH", type=Path, help="ticket store (default: a fresh file in a temporary folder)"
    )
    demo.add_argument("--seed", metavar="N", type=int, help="override the demo scenario's seed")
    demo.add_argument("--plain", action="store_true", help="print ticket events as lines instead of the live view")
    demo.add_argument(
        "--broker", metavar="HOST:PORT", help="MQTT broker for the Zigbee2MQTT devices (default: built in)"
    )
    demo.add_argument(
        "--http-port", metavar="N", type=int, default=0, help="port of the dashboard on 127.0.0.1 (default: any free)"
    )
    demo.add_argument(
        "--sites",
        metavar="N",
        type=int,
        help="a fleet: N simulated sites with their gateways and the service centre's desk (needs PostgreSQL "
        "and mosquitto, or --broker with MQTT 5)",
    )
    demo.add_argument(
        "--database",
        metavar="DSN",
        help=f"with --sites: the PostgreSQL server, where a database is made for the run (default: {DEMO_DATABASE})",
    )

    tk = sub.add_parser("tickets", help="read and move tickets in the local store")
    tsub = tk.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = tsub.add_parser("list", help="tickets with their clocks")
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.add_argument("--open", action="store_true", help="leave closed tickets out")
    _store_args(lst)
    show = tsub.add_parser("show", help="one ticket with its history")
    show.add_argument("id", metavar="ID", type=int, help="ticket number")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    _store_args(show)
    ua = tsub.add_parser("user-action", help="record what the customer did about the failure")
    ua.add_argument("id", metavar="ID", type=int, help="ticket number")
    ua.add_argument("text", metavar="TEXT", help="what the customer did, in their words or yours")
    ua.add_argument("--by", metavar="NAME", default="cli", help="who talked to the customer (default: cli)")
    _store_args(ua)
    for name, help_ in (
        ("out-of-service", "the ticket's device is out of service: its downtime runs from now"),
        ("in-service", "the ticket's device is back in service: its next reading ends the downtime"),
    ):
        oos = tsub.add_parser(name, help=help_)
        oos.add_argument("id", metavar="ID", type=int, help="ticket number")
        oos.add_argument("--by", metavar="NAME", default="cli", help="who did it (default: cli)")
        _store_args(oos)
    rec = tsub.add_parser("record", help="the failure record: cause, time, nature, type, location, impact, ...")
    rec.add_argument("id", metavar="ID", type=int, help="ticket number")
    rec.add_argument("--html", metavar="FILE", type=Path, help="also write it as a printable HTML page")
    _store_args(rec)
    for name, state in MOVES.items():
        mv = tsub.add_parser(name, help=f"move a ticket to {state.value}")
        mv.add_argument("id", metavar="ID", type=int, help="ticket number")
        mv.add_argument("--note", metavar="TEXT", default="", help="what was done or said")
        mv.add_argument("--by", metavar="NAME", default="cli", help="who did it (default: cli)")
        _store_args(mv)

    rem = sub.add_parser("remote", help="the engineer's tool: ask a site's gateway through the broker")
    rem.add_argument(
        "--broker", required=True, help="mqtt://[user@]host[:port] (or mqtts://) of the service centre's broker"
    )
    rem.add_argument(
        "--broker-password-file",
        metavar="FILE",
        type=Path,
        help="file holding the broker password (or $ALARMGW_BROKER_PASSWORD); never in the --broker address",
    )
    rem.add_argument(
        "--site", metavar="ID", required=True, help="site id (the topic root is alarmgw/<site> unless --root)"
    )
    rem.add_argument("--root", metavar="TOPIC", help="topic root, if the site's uplink sets another")
    rem.add_argument(
        "--user", metavar="NAME", default=os.environ.get("ALARMGW_USER"), help="engineer name (or $ALARMGW_USER)"
    )
    rem.add_argument(
        "--key-file",
        metavar="FILE",
        type=Path,
        help="the engineer's Ed25519 private key, from `alarmgw keygen` (or $ALARMGW_KEY_FILE)",
    )
    rem.add_argument(
        "--secret-file",
        metavar="FILE",
        type=Path,
        help="legacy: file holding a shared HMAC secret (or $ALARMGW_SECRET)",
    )
    rem.add_argument("--json", action="store_true", help="print the answer as JSON")
    rem.add_argument("--note", metavar="TEXT", default="", help="note for a ticket move")
    rem.add_argument("--text", metavar="TEXT", help="user_action: what the customer did about the failure")
    rem.add_argument("--all", action="store_true", help="tickets: include closed ones")
    rem.add_argument(
        "--timeout", metavar="S", type=float, default=10.0, help="how long to wait for the answer (default: 10)"
    )
    rem.add_argument(
        "remote_command",
        metavar="COMMAND",
        help="status, devices, device ID, faults, poll ID, selftest ID, tickets, ticket ID, "
        "ack|dispatch|arrive|resolve|close ID, user_action ID --text TEXT, out_of_service|in_service ID",
    )
    rem.add_argument("target", metavar="ID", nargs="?", help="device or ticket id")

    key = sub.add_parser("keygen", help="make an engineer's key pair for remote commands")
    key.add_argument("name", help="the engineer's name, as in the users file")
    key.add_argument("--role", choices=list(RANK), default="engineer", help="(default: engineer)")
    key.add_argument(
        "--out", metavar="FILE", type=Path, help="private key file to write (default: NAME.key); never overwritten"
    )

    rep = sub.add_parser("sla-report", help="share of tickets that met each service clock, per fault kind")
    rep.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        required=True,
        type=date.fromisoformat,
        help="first day (UTC) of tickets opened",
    )
    rep.add_argument("--json", action="store_true", help="print a JSON object")
    _store_args(rep)

    tok = sub.add_parser("api-token", help="make a bearer token for the HTTP API and dashboard")
    tok.add_argument("name", help="who or what will hold it (shown in the audit log)")
    tok.add_argument("--role", choices=list(RANK), default="viewer", help="(default: viewer)")

    from . import diagnose_cmd  # its options; the command itself runs in _dispatch

    diagnose_cmd.add_arguments(
        sub.add_parser("diagnose", help="remote diagnosis of a fault, offline, from a device's JSON Lines history")
    )

    from . import plans_cmd  # assets, maintenance

    plans_cmd.add_arguments(sub)

    from alarmgw.centre import cli as centre_cli  # the service centre's commands

    centre_cli.add_arguments(sub)

    chk = sub.add_parser("check-config", help="validate a site file")
    chk.add_argument("file", metavar="SITE.yaml", type=Path, help="site file (YAML), and every file it names")
    return p


def _store_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--db", metavar="PATH", type=Path, help="ticket store file (default: alarmgw.db here)")
    g.add_argument("-c", "--config", metavar="SITE.yaml", type=Path, help="take the store path from this site file")


MAX_DEMO_SITES = 200  # each site is a simulator and a gateway in the one process


class UsageError(Exception):
    """The command line asks for something that cannot be done as given."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The demo's screen is its output; elsewhere the log is (journald picks up stderr).
    quiet = args.command in (
        "demo",
        "tickets",
        "check-config",
        "remote",
        "sla-report",
        "api-token",
        "keygen",
        "diagnose",
        "assets",
        "maintenance",
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if args.log_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO, handlers=[handler]
    )
    # pymodbus logs every missed answer at error level; our links report those themselves.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except tuple(ERRORS) as exc:
        from rich.console import Console  # rich loads for what prints: `run` never does
        from rich.markup import escape

        heading, code = next(v for k, v in ERRORS.items() if isinstance(exc, k))
        err = Console(stderr=True)
        if isinstance(exc, ConfigError):
            err.print(f"[bold red]{heading}[/] in {escape(str(exc.path))}:", highlight=False)
            for problem in exc.problems:
                err.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        else:
            err.print(f"[bold red]{heading}[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        return code


# What each kind of error is called on the terminal, and the exit code it ends with.
ERRORS: dict[type[Exception], tuple[str, int]] = {
    ConfigError: ("config error", 2),
    VisitConflict: ("refused", 1),
    StoreError: ("store error", 2),
    HttpError: ("http error", 2),
    SimulatorError: ("simulator error", 2),
    UsageError: ("error", 2),
    LoopError: ("error", 2),
    DemoError: ("demo", 2),
    TicketError: ("refused", 1),
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "api-token":
        return cmd_api_token(args.name, args.role)
    if args.command == "tickets":
        return cmd_tickets(args)
    if args.command == "remote":
        return cmd_remote(args)
    if args.command == "keygen":
        return cmd_keygen(args.name, args.role, args.out)
    if args.command == "sla-report":
        return cmd_sla_report(args)
    if args.command == "assets":
        from .plans_cmd import assets

        return assets(args)
    if args.command == "maintenance":
        from .plans_cmd import maintenance

        return maintenance(args)
    if args.command == "diagnose":
        from .diagnose_cmd import run

        return run(args, sys.stdout)
    if args.command == "centre":
        from alarmgw.centre.cli import run as run_centre

        return run_centre(args)
    if args.command == "run":
        site = load_site(args.config)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            return runner.run(cmd_run(site, args.db))
    if args.command == "simulate":
        from .simulate import simulate

        return asyncio.run(simulate(load_site(args.config), args.scenario, args.seed, args.duration))
    if args.command == "demo" and args.sites is not None:
        if not 1 <= args.sites <= MAX_DEMO_SITES:
            raise UsageError(f"--sites: 1 to {MAX_DEMO_SITES}, not {args.sites}")
        if args.db is not None or args.seed is not None:
            raise UsageError("--db and --seed are for one site; with --sites every site has its own")
        from .fleet_demo import fleet_demo

        return asyncio.run(fleet_demo(args.sites, args.duration, args.database, args.broker, args.http_port))
    if args.command == "demo":
        from .demo import demo

        return asyncio.run(demo(args.duration, args.db, args.seed, args.plain, args.broker, args.http_port))
    raise AssertionError(f"unhandled command {args.command}")


def read_secret(path: Path, option: str = "--secret-file") -> str:
    """A secret from its file (the same bounded reader as every file the gateway reads), or
    UsageError naming the option, the file and what is wrong."""
    if not path.exists():
        raise UsageError(f"{option} {path}: no such file")
    try:
        return read_text(path, max_bytes=MAX_SECRET_BYTES, what="it").strip()
    except ConfigError as exc:
        raise UsageError(f"{option} {path}: {'; '.join(exc.problems)}") from None


def _credential(args: argparse.Namespace) -> Credential:
    """The engineer's private key (--key-file, $ALARMGW_KEY_FILE), or a legacy shared secret."""
    from .credentials import KeyFileError, load_private_key

    key_file = args.key_file or (Path(os.environ["ALARMGW_KEY_FILE"]) if os.environ.get("ALARMGW_KEY_FILE") else None)
    if key_file is not None and args.secret_file is not None:
        raise UsageError("remote: give --key-file or --secret-file, not both")
    if key_file is not None:
        passphrase = os.environ.get("ALARMGW_KEY_PASSPHRASE")
        try:
            key = load_private_key(key_file, passphrase.encode() if passphrase else None)
        except KeyFileError as exc:
            raise UsageError(f"--key-file {exc}") from None
        with contextlib.suppress(OSError):
            if key_file.stat().st_mode & 0o077:
                log.warning("--key-file %s can be read by others: chmod 600 it", key_file)
        return key
    secret = read_secret(args.secret_file) if args.secret_file else os.environ.get("ALARMGW_SECRET", "")
    if not secret:
        raise UsageError("remote: give --key-file (or $ALARMGW_KEY_FILE); a legacy user: --secret-file")
    return secret


def _broker_password(args: argparse.Namespace) -> str | None:
    if args.broker_password_file is not None:
        return read_secret(args.broker_password_file, "--broker-password-file")
    return os.environ.get("ALARMGW_BROKER_PASSWORD") or None


def cmd_remote(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from .remote_cli import RemoteError, broker_from_url, call, show
    from .tables import stdout_console

    err, out = Console(stderr=True), stdout_console()
    if not args.user:
        raise UsageError("remote: give --user (or $ALARMGW_USER)")
    try:
        broker = broker_from_url(args.broker, _broker_password(args))
    except RemoteError as exc:
        raise UsageError(f"remote: {exc}") from None
    credential = _credential(args)
    req: dict[str, object] = {}
    if args.target is not None:
        req["id"] = args.target
    if args.note:
        req["note"] = args.note
    if args.text is not None:
        req["text"] = args.text
    if args.all:
        req["all"] = True
    try:
        reply = asyncio.run(
            call(
                broker,
                args.root or f"alarmgw/{args.site}",
                args.user,
                credential,
                args.remote_command,
                req,
                args.timeout,
            )
        )
    except RemoteError as exc:
        raise UsageError(f"remote: {exc}") from None
    if args.json:
        print(json.dumps(reply, indent=2))
    elif reply.get("ok"):
        show(out, reply.get("result"))
    if not reply.get("ok"):
        if not args.json:
            err.print(f"[bold red]refused[/]: {escape(str(reply.get('error')))}", highlight=False, soft_wrap=True)
        return 1
    return 0


def cmd_keygen(name: str, role: Role, out: Path | None) -> int:
    from .credentials import new_key_pair, user_entry, write_private_key

    path = out or Path(f"{name}.key")
    pem, public = new_key_pair()
    try:
        write_private_key(path, pem)
    except FileExistsError:
        raise UsageError(f"keygen: {path} exists; it is not overwritten (give --out for another file)") from None
    except OSError as exc:
        raise UsageError(f"keygen: cannot write {path}: {exc.strerror or exc}") from None
    print(f"private key for {name} in {path} (readable by you only); keep it, give it to nobody:")
    print(f"  alarmgw remote --user {name} --key-file {path} ...")
    print("add under users: in the users file the service centre delivers to the sites:")
    print(f"  {user_entry(name, role, public)}")
    return 0


def cmd_sla_report(args: argparse.Namespace) -> int:
    from alarmgw.diagnostics.sla import CLOCK_NAMES, share_report

    now = datetime.now(UTC)
    since = datetime.combine(args.since, datetime.min.time(), tzinfo=UTC)
    with _open_store(args) as store:
        tickets = [t for t in store.tickets.all() if t.opened_at >= since]
    report = share_report((t.fault, t.clocks(now)) for t in tickets)
    if args.json:
        print(json.dumps({"since": since.isoformat(), "tickets": len(tickets), "faults": report}, indent=2))
        return 0
    from rich.table import Table

    from .tables import stdout_console

    table = Table(title=f"Service clocks of {len(tickets)} tickets opened since {args.since} (UTC)")
    for col in ("fault", "clock", "met", "breached", "running", "not needed", "share met"):
        table.add_column(col)
    for fault, clocks in sorted(report.items()):
        for name in CLOCK_NAMES:
            c = clocks.get(name)
            if c is None:
                continue
            share = "-" if c["share_met"] != c["share_met"] else f"{c['share_met']:.0%}"
            table.add_row(fault, name, *(str(int(c[k])) for k in ("met", "breached", "running", "not_needed")), share)
    stdout_console().print(table)
    return 0


def cmd_api_token(name: str, role: Role) -> int:
    from .credentials import new_api_token, token_entry

    token = new_api_token()
    print(f"token for {name} ({role}); give it to them, it is not kept anywhere:\n  {token}")
    print(f"add under tokens: in the site's tokens file:\n  {token_entry(name, role, token)}")
    return 0


def cmd_check_config(path: Path) -> int:
    site = load_site(path)
    cfg = site.config
    n = len(cfg.devices())
    print(f"{path}: ok: site {cfg.site.id}, {len(cfg.hosts)} host(s), {n} devices, store {site.store_path}")
    return 0


async def cmd_run(site: LoadedSite, db: Path | None) -> int:
    from .app import Gateway

    async with contextlib.AsyncExitStack() as stack:
        store = stack.enter_context(Store(db)) if db else None
        gw = await stack.enter_async_context(Gateway(site, store=store))
        if gw.http is not None:
            log.info("dashboard and API on %s", gw.http.url)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, gw.log_stats)  # `kill -USR1 PID` logs the counters
        try:
            await run_until_stopped([gw.run], None)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
            gw.log_stats()
    return 0


def _open_store(args: argparse.Namespace) -> Store:
    if args.db is not None:
        path = args.db
    elif args.config is not None:
        path = load_site(args.config).store_path
    else:
        path = Path("alarmgw.db")
    if not path.exists():
        raise StoreError(f"{path}: no such ticket store (give --db PATH or -c SITE.yaml)")
    return Store(path)


def cmd_tickets(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .live import tickets_table
    from .tables import stdout_console

    out = stdout_console()
    with _open_store(args) as store:
        if args.action == "list":
            tickets = store.tickets.all(include_closed=not args.open)
            if args.json:
                print(json.dumps([ticket_json(t, datetime.now(UTC)) for t in tickets], indent=2))
            else:
                table = tickets_table(tickets, datetime.now(UTC))
                table.title = "Open tickets" if args.open else "Tickets"
                out.print(table)
            return 0
        if args.action == "show":
            t = store.tickets.get(args.id)
            data = ticket_json(t, datetime.now(UTC))
            data["history"] = store.tickets.log(args.id)
            if args.json:
                print(json.dumps(data, indent=2))
            else:
                for k, v in data.items():
                    out.print(f"[bold]{k}[/]: {v}", highlight=False)
            return 0
        if args.action == "user-action":
            text = args.text.strip()
            if not text:
                raise UsageError("TEXT: say what the customer did (it may not be empty)")
            t = store.tickets.set_user_action(args.id, text, datetime.now(UTC), actor=args.by)
            out.print(f"ticket {t.id}: the user's measures recorded (version {t.version})", highlight=False)
            return 0
        if args.action in ("out-of-service", "in-service"):
            out_ = args.action == "out-of-service"
            t = store.tickets.set_out_of_service(args.id, out_, datetime.now(UTC), actor=args.by)
            said = "out of service since" if t.out_of_service else "back in service; down since"
            since = iso(t.down_since) if t.down_since else "-"
            out.print(f"ticket {t.id}: {t.device_id} {said} {since} (version {t.version})", highlight=False)
            return 0
        if args.action == "record":
            from .failure_record import record, record_html

            t = store.tickets.get(args.id)
            rows = record(t, store.tickets.log(args.id))
            for label, value in rows:
                out.print(f"[bold]{escape(label)}[/]: {escape(value)}", highlight=False)
            if args.html is not None:
                args.html.write_text(record_html(t, rows), encoding="utf-8")
            return 0
        before = store.tickets.get(args.id)
        # The store queues the move for the uplink itself, in the same transaction.
        moved = store.tickets.move(args.id, MOVES[args.action], datetime.now(UTC), actor=args.by, note=args.note)
        out.print(f"ticket {moved.id}: {before.state.value} -> {moved.state.value}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
