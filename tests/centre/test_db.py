"""The centre's schema: migrations apply once, twice is a no-op, and two workers starting
at once do not both apply them."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from alarmgw.centre import cli, db
from alarmgw.centre.batch import Incoming, SiteBook, write
from alarmgw.centre.parse import Event, parse
from tests.centre.uplink import T0, fault_message

pytestmark = pytest.mark.integration


async def test_migrations_apply_once_and_a_second_run_is_a_no_op(pg: str) -> None:
    async with await db.connect(pg) as conn:
        assert await db.schema_version(conn) == 0
        assert await db.migrate(conn) == [m.name for m in db.migrations()]
    async with await db.connect(pg) as conn:
        assert await db.migrate(conn) == []
        assert await db.schema_version(conn) == len(db.migrations())
        cur = await conn.execute("SELECT count(*) FROM schema_migrations")
        assert (await cur.fetchone()) == (len(db.migrations()),)


async def test_two_workers_migrating_at_once_apply_each_file_once(pg: str) -> None:
    name = f"{pg.rsplit('/', 1)[1]}_race"
    admin = pg.rsplit("/", 1)[0] + "/postgres"
    async with await db.connect(admin) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        target = pg.rsplit("/", 1)[0] + f"/{name}"
        conns = [await db.connect(target) for _ in range(4)]
        try:
            applied = await asyncio.gather(*(db.migrate(c) for c in conns))
        finally:
            for c in conns:
                await c.close()
        names = [n for batch in applied for n in batch]
        assert sorted(names) == sorted(m.name for m in db.migrations())  # each once, by one of them
    finally:
        async with await db.connect(admin) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(db.DatabaseError, match="cannot connect"):
        await db.connect("postgresql://postgres@127.0.0.1:1/nothing")


def test_the_migrate_command_brings_the_database_up_to_date(
    pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "centre.yaml"
    p.write_text(f"database: {{dsn: '{pg}'}}\nbroker: {{host: 127.0.0.1}}\n")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser.add_subparsers(dest="command"))
    assert cli.run(parser.parse_args(["centre", "migrate", "-c", str(p)])) == 0
    assert f"at version {len(db.migrations())}" in capsys.readouterr().out


async def test_a_message_postgresql_refuses_is_a_dead_letter_and_the_rest_of_its_batch_is_stored(
    migrated: str,
) -> None:
    good = [parse("alarmgw", m.topic, m.payload, 1 << 20) for m in (fault_message("s1", n=1), fault_message("s1", n=2))]
    refused = [Event("s1", "fault", "s1:odd", "alarmgw/s1/faults/x", T0, "this is not JSON")]  # past the parser
    batch_ = [
        Incoming("t", b"", good[0]),
        Incoming("alarmgw/s1/faults/x", b"odd", refused),
        Incoming("t", b"", good[1]),
    ]
    book = SiteBook("alarmgw", lambda _: "city")
    async with await db.connect(migrated) as conn:
        written = await write(conn, batch_, T0, book)
        assert (written.stored, written.dead) == (2, 1)
        assert "refused by the database" in written.reasons[0]
        cur = await conn.execute("SELECT count(*) FROM events")
        assert await cur.fetchone() == (2,)
        cur = await conn.execute("SELECT topic, payload FROM dead_letters")
        assert await cur.fetchone() == ("alarmgw/s1/faults/x", b"odd")
