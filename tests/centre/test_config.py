"""The centre file: strict like the site file, errors naming the file and the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from alarmgw.centre import cli
from alarmgw.centre.config import load_centre
from alarmgw.yamlfile import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "example-centre.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "centre.yaml"
    p.write_text(text)
    return p


def parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_example_loads_with_its_defaults() -> None:
    c = load_centre(EXAMPLE)
    assert c.config.ingest.batch_max == 500 and c.config.sites.offline_after_s == 300
    assert c.config.sites.area_of("example-site") == "suburb" and c.config.sites.area_of("other") == "city"
    assert c.worker_id(3) == "alarmgw-centre-3" and c.worker_id(None) == "alarmgw-centre"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("database: {dsn: x}\nbroker: {host: h}\n", "database.dsn"),
        (
            "database: {dsn: postgresql://a/b}\nbroker: {host: h}\ningest: {batchmax: 5}\n",
            "ingest.batchmax: unknown key",
        ),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h}\ningest: {batch_max: 0}\n", "ingest.batch_max"),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h}\ningest: {batch_wait_s: true}\n", "ingest.batch_wait_s"),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h}\ningest: {topic_root: a/#}\n", "ingest.topic_root"),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h}\nsites: {areas: {s1: town}}\n", "sites.areas.s1"),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h, password_file: nope}\n", "broker.password_file"),
        ("database: {dsn: postgresql://a/b}\nbroker: {host: h, tls: {ca_file: nope.pem}}\n", "broker.tls.ca_file"),
        ("database: {dsn: postgresql://a/b}\n", "broker: Field required"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_centre(write(tmp_path, text))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_the_password_comes_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    c = load_centre(
        write(tmp_path, "database: {dsn: postgresql://a/b}\nbroker: {host: h, username: u, password_file: pw}\n")
    )
    assert c.broker.password == "s3cret" and c.broker.username == "u"


def test_the_command_exits_2_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "database: {dsn: postgresql://a/b}\nbroker: {host: h, prot: 1}\n")
    assert cli.run(parse_args("centre", "migrate", "-c", str(p))) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "broker.prot: unknown key" in err


def test_a_worker_number_out_of_range_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args("centre", "ingest", "-c", "x.yaml", "--worker", "-1")


def test_an_unreachable_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "database: {dsn: 'postgresql://postgres@127.0.0.1:1/x'}\nbroker: {host: h}\n")
    assert cli.run(parse_args("centre", "migrate", "-c", str(p))) == 2
    assert "cannot connect" in capsys.readouterr().err
