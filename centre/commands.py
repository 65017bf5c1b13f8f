"""The centre's commands themselves, imported only when one runs (so `alarmgw --help` and
the site's commands do not load the database driver and the worker)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine

from alarmgw.clock import Clock, SystemClock
from alarmgw.yamlfile import ConfigError

from . import db
from .config import LoadedCentre, load_centre
from .ingest import IngestWorker
from .liveness import LivenessRunner

log = logging.getLogger("alarmgw.centre")


def run(args: argparse.Namespace) -> int:
    """Run a `centre` subcommand; errors of input are printed and give 2."""
    try:
        loaded = load_centre(args.config)
        if args.centre_command == "migrate":
            return asyncio.run(migrate(loaded))
        if args.centre_command == "ingest":
            return asyncio.run(ingest(loaded, args.worker))
    except ConfigError as exc:
        print(f"config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except db.DatabaseError as exc:
        print(f"database error: {exc}", file=sys.stderr)
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


async def ingest(loaded: LoadedCentre, worker: int | None, clock: Clock | None = None) -> int:
    """Migrate, then run one worker and its share of the liveness judging until stopped."""
    clock = clock or SystemClock()
    cfg = loaded.config
    async with await db.connect(cfg.database.dsn, loaded.db_password) as conn:
        await db.migrate(conn)
    client_id = loaded.worker_id(worker)
    async with db.pool(cfg.database.dsn, cfg.database.pool_max, loaded.db_password) as pool:
        w = IngestWorker(loaded.broker, client_id, cfg.ingest, cfg.sites, pool, clock)
        runner = LivenessRunner(pool, cfg.sites, clock, ready=w.subscribed.is_set)
        log.info("ingest %s: starting (batch %d, %.2f s)", client_id, cfg.ingest.batch_max, cfg.ingest.batch_wait_s)
        await _until_stopped(w.run(), runner.run())
        log.info("ingest %s: stopped; %s", client_id, w.counters)
    return 0


async def _until_stopped(*jobs: Coroutine[object, object, None]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(j) for j in jobs]
            await stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
