"""The centre's commands themselves, imported only when one runs (so `alarmgw --help` and
the site's commands do not load the database driver and the worker)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime
from pathlib import Path

from alarmgw.clock import Clock, SystemClock
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.yamlfile import ConfigError, read_text

from . import db, service_report, service_report_page
from .config import LoadedCentre, load_centre
from .desk_auth import UserError
from .desk_auth import add_user as desk_add_user
from .ingest import IngestWorker
from .liveness import LivenessRunner
from .notify import Notifier, load_targets
from .relay import Relay, load_keys
from .rota import EscalationNotice, VisitNotice
from .service_report import Month, ReportError

log = logging.getLogger("alarmgw.centre")


def run(args: argparse.Namespace) -> int:
    """Run a `centre` subcommand; errors of input are printed and give 2."""
    try:
        loaded = load_centre(args.config)
        if args.centre_command == "migrate":
            return asyncio.run(migrate(loaded))
        if args.centre_command == "ingest":
            return asyncio.run(ingest(loaded, args.worker))
        if args.centre_command == "desk":
            return asyncio.run(desk(loaded))
        if args.centre_command == "user":
            return asyncio.run(add_user(loaded, args.name, args.role, _password(args.password_file)))
        if args.centre_command == "report":
            return report(loaded, args.site, args.month, args.html, args.pdf, as_json=args.json)
    except ConfigError as exc:
        print(f"config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except db.DatabaseError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 2
    except (UserError, ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled centre command {args.centre_command}")


async def migrate(loaded: LoadedCentre) -> int:
    async with await db.connect(loaded.config.database.dsn, loaded.db_password) as conn:
        applied = await db.migrate(conn)
        version = await db.schema_version(conn)
    print(f"centre database at version {version}" + (f" (applied {', '.join(applied)})" if applied else ""))
    return 0


async def ingest(loaded: LoadedCentre, worker: int | None, clock: Clock | None = None, signals: bool = True) -> int:
    """Migrate, then run one worker and its share of the liveness judging until stopped (by
    SIGTERM, or with `signals` off only by being cancelled: inside a demo that owns them)."""
    clock = clock or SystemClock()
    cfg = loaded.config
    async with await db.connect(cfg.database.dsn, loaded.db_password) as conn:
        await db.migrate(conn)
    client_id = loaded.worker_id(worker)
    async with db.pool(cfg.database.dsn, cfg.database.pool_max, loaded.db_password) as pool:
        w = IngestWorker(loaded.broker, client_id, cfg.ingest, cfg.sites, pool, clock)
        runner = LivenessRunner(pool, cfg.sites, clock, ready=w.subscribed.is_set)
        jobs = [w.run(), runner.run()]
        if cfg.notify is not None:
            notifier = Notifier(cfg.notify, load_targets(cfg.notify, loaded.path.parent, os.environ), clock)
            w.on_escalations = lambda docs: _notify(notifier, docs)
            runner.on_escalations = lambda reached: _notify_centre(notifier, reached)
            runner.on_visits = lambda visits: _notify_visits(notifier, visits)
            jobs.append(notifier.run())
        log.info("ingest %s: starting (batch %d, %.2f s)", client_id, cfg.ingest.batch_max, cfg.ingest.batch_wait_s)
        await _until_stopped(*jobs, signals=signals)
        log.info("ingest %s: stopped; %s", client_id, w.counters)
    return 0


async def desk(loaded: LoadedCentre, clock: Clock | None = None, signals: bool = True) -> int:
    """Serve the desk (and, with `relay:`, send engineers' moves to the sites) until stopped."""
    from . import desk_api  # FastAPI and uvicorn: only for the desk

    clock = clock or SystemClock()
    cfg = loaded.config
    async with await db.connect(cfg.database.dsn, loaded.db_password) as conn:
        await db.migrate(conn)
    async with db.pool(cfg.database.dsn, cfg.database.pool_max, loaded.db_password) as pool:
        jobs: list[Coroutine[object, object, None]] = []
        relay = None
        if cfg.relay is not None:
            keys_dir = loaded.path.parent / cfg.relay.keys_dir
            keys = load_keys(keys_dir)
            log.info("relay: engineers who may act through the desk: %s", ", ".join(keys) or "nobody")
            broker = dataclasses.replace(loaded.broker, client_id=f"{cfg.ingest.client_id}-relay")
            relay = Relay(pool, broker, cfg.ingest.topic_root, keys, clock, cfg.relay)
            jobs.append(relay.run())
        log.info("desk on http://%s:%d/", cfg.desk.bind, cfg.desk.port)
        await _until_stopped(desk_api.serve(pool, cfg.desk, clock, relay), *jobs, signals=signals)
    return 0


async def add_user(loaded: LoadedCentre, name: str, role: str, password: str) -> int:
    cfg = loaded.config
    async with await db.connect(cfg.database.dsn, loaded.db_password) as conn:
        await db.migrate(conn)
    async with db.pool(cfg.database.dsn, 1, loaded.db_password) as pool:
        user = await desk_add_user(pool, name, role, password)
    print(f"desk user {user.name} ({user.role}) added")
    return 0


def report(
    loaded: LoadedCentre,
    site: str,
    month: Month | None,
    html: Path | None,
    pdf: Path | None,
    *,
    as_json: bool = False,
    clock: Clock | None = None,
) -> int:
    """A site's monthly report: a summary (or the JSON) on stdout, the page and its PDF to files."""
    now = (clock or SystemClock()).now()
    month = month or Month.before(now)
    month.check(now)
    made = service_report.build(asyncio.run(_month_facts(loaded, site, month, now)))
    print(json.dumps(made, indent=2) if as_json else "\n".join(service_report.summary_lines(made)))
    if html is not None or pdf is not None:
        page = service_report_page.render_html(made)
        if html is not None:
            html.write_text(page, encoding="utf-8")
            print(f"page written to {html}", file=sys.stderr)
        if pdf is not None:
            pdf.write_bytes(service_report_page.render_pdf(page))
            print(f"PDF written to {pdf}", file=sys.stderr)
    return 0


async def _month_facts(loaded: LoadedCentre, site: str, month: Month, now: datetime) -> service_report.Facts:
    cfg = loaded.config
    async with await db.connect(cfg.database.dsn, loaded.db_password) as conn:
        await db.migrate(conn)
        facts = await service_report.gather(conn, site, month, now)
    if facts is None:
        raise ReportError(f"no site {site!r} at the centre")
    return facts


def _password(path: Path | None) -> str:
    """From a file (its first line), or typed twice at a terminal, or one line on stdin."""
    if path is not None:
        return read_text(path, max_bytes=4096, what="password file").splitlines()[0] if path.stat().st_size else ""
    if sys.stdin.isatty():
        first, again = getpass.getpass("password: "), getpass.getpass("again: ")
        if first != again:
            raise UserError("the two passwords differ")
        return first
    return sys.stdin.readline(4096).rstrip("\n")


def _notify(notifier: Notifier, docs: Sequence[str]) -> None:
    """Escalations new to the centre, to the engineer on duty; a payload the notice cannot be
    made of (it passed its schema, so this is rare) is logged, never raised into the worker."""
    for doc in docs:
        try:
            notifier.submit(EscalationNotice.from_payload(json.loads(doc)))
        except ValueError as exc:
            log.warning("escalation not notified: %s", exc)


def _notify_centre(notifier: Notifier, reached: Sequence[tuple[str, Escalation]]) -> None:
    """Marks reached by the centre's own tickets (a site gone dark), to the engineer on duty."""
    for site, e in reached:
        notifier.submit(EscalationNotice.from_escalation(site, e))


def _notify_visits(notifier: Notifier, visits: Sequence[VisitNotice]) -> None:
    """Marks reached by the sites' planned maintenance visits with none done, to the engineer on duty."""
    for v in visits:
        notifier.submit(v)


async def _until_stopped(*jobs: Coroutine[object, object, None], signals: bool = True) -> None:
    """Run the jobs until SIGTERM (or, with `signals` off, until cancelled)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(j) for j in jobs]
            await stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        if signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
