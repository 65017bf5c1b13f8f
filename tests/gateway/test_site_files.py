"""Broken site files, as a slip of the hand or a hostile one makes them: every kind is
refused with a message naming the file and what is wrong, at a bounded cost; through the
real command line, with exit code 2 and never a traceback, by `check-config` and `run`
alike (both load through `load_site`).

The kinds are one table; the pure tests load each in this process, the command-line test
runs `alarmgw check-config` on each as a user would.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarmgw.gateway.site_file import load_site
from alarmgw.yamlfile import MAX_PROBLEM_CHARS, MAX_PROBLEMS, ConfigError, read_yaml

ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]

BASE = """\
site: {id: s1}
store: {path: t.db}
hosts:
  - id: h1
    model: sim-wh100
    modbus: {address: 127.0.0.1, port: 1}
    devices:
      - {id: d1, kind: smoke_detector, slot: 1}
"""
UPLINK = "uplink:\n  broker: {host: 127.0.0.1, port: 1883"  # closed by each case
# A second host, reached through an Envisalink: `{}` takes the rest of its `envisalink:` map.
EVL = (
    "  - id: e1\n    envisalink: {{address: 127.0.0.1{}}}\n"
    "    devices:\n      - {{id: z1, kind: pir_detector, zone: 1}}\n"
)
# A second host, an IP hub over SIA DC-09: `{}` takes the rest of its `sia:` map; RX its receiver.
SIA = "  - id: hub\n    sia: {{account: 12AB{}}}\n    devices:\n      - {{id: z9, kind: pir_detector, zone: 1}}\n"
RX = "sia_receiver: {port: 12128}\n"
GOOD_FAULT = "    title: weak\n    repair: accessory\n    codes: {}\n"

Build = Callable[[Path], Path]


def text(body: str | bytes, **files: str | bytes) -> Build:
    """A site file of exactly `body`, with other files beside it."""

    def build(folder: Path) -> Path:
        for name, content in {"site.yaml": body, **files}.items():
            f = folder / name.replace("__", ".")
            f.write_bytes(content.encode() if isinstance(content, str) else content)
        return folder / "site.yaml"

    return build


def extra(lines: str, **files: str | bytes) -> Build:
    """The good base site with `lines` added."""
    return text(BASE + lines, **files)


def folder_itself(folder: Path) -> Path:
    return folder


def missing(folder: Path) -> Path:
    return folder / "no-such-site.yaml"


def fifo(folder: Path) -> Path:
    os.mkfifo(folder / "site.yaml")
    return folder / "site.yaml"


def laughs() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def deep_block(levels: int) -> str:
    return "".join("  " * i + "a:\n" for i in range(levels)) + "  " * levels + "b: 1\n"


# (kind, how the file is made, a fragment the message must hold)
KINDS: list[tuple[str, Build, str]] = [
    # --- bytes and encodings
    ("invalid-utf8", text(b"site: {id: s\xff1}\n"), "not UTF-8 text: byte 0xff at line 1, column 13"),
    ("binary", text(random.Random(7).randbytes(4096)), "not UTF-8 text"),
    ("utf16", text(BASE.encode("utf-16")), "not UTF-8 text: byte 0xff at line 1, column 1"),
    ("latin1", text(BASE.replace("h1\n", "Küche\n").encode("latin-1")), "not UTF-8 text: byte 0xfc at line 4"),
    ("nul-byte", text(BASE.encode() + b"\0"), "character U+0000 is not allowed"),
    ("escape-char", text("site: {id: s1, name: \x1b[2J}\n"), "character U+001B is not allowed"),
    ("bell-after-accents", text('site: {id: s1, name: "ééééé\x07"}\n'), "line 1, column 28: character U+0007"),
    ("empty", text(b""), "file is empty"),
    ("only-comments", text("# a site file\n"), "file is empty"),
    ("scalar-document", text("just words\n"), "valid dictionary"),
    ("list-document", text("- site\n- hosts\n"), "valid dictionary"),
    # --- YAML structure
    ("unclosed-bracket", text("site: {id: s1\nhosts: []\n"), "not valid YAML at line"),
    ("tab-indent", text("site:\n\tid: s1\n"), "not valid YAML at line 2"),
    ("two-documents", text(BASE + "---\n" + BASE), "expected a single document"),
    ("python-tag", text("site: !!python/object/apply:os.system ['true']\n"), "could not determine a constructor"),
    ("unhashable-key", text("site: {[1, 2]: x}\n"), "unhashable"),
    ("undefined-alias", text("site: *nowhere\n"), "undefined alias"),
    ("deep-flow", text("site: " + "[" * 5000 + "]" * 5000 + "\n"), "nest"),
    ("deep-mapping", text("site: " + "{a: " * 200 + "1" + "}" * 200 + "\n"), "nested more than 64 levels deep"),
    ("deep-block", text(deep_block(300)), "nested more than 64 levels deep"),
    ("billion-laughs", text(laughs()), "more than 500,000 values"),
    ("self-alias", text("site: &s {id: s1, again: *s}\n"), "refers to a node that contains it"),
    ("duplicate-key", text(BASE + "site: {id: s2}\n"), "found key 'site' twice (first at line 1)"),
    ("huge", text(BASE + "# " + "x" * (5 * 1024 * 1024) + "\n"), "larger than 4 MiB"),
    ("long-integer", extra("poll: {retries: " + "9" * 5000 + "}\n"), "an integer of 5000 digits"),
    ("impossible-date", text("site: {id: s1, commissioned_on: 2026-13-45}\n"), "cannot read '2026-13-45'"),
    # --- numbers
    ("interval-inf", extra("poll: {interval_s: .inf}\n"), "poll.interval_s: Input should be a finite number"),
    ("timeout-nan", extra("poll: {timeout_s: .nan}\n"), "poll.timeout_s: Input should be a finite number"),
    ("backoff-minus-inf", extra("poll: {backoff_max_s: -.inf}\n"), "poll.backoff_max_s"),
    ("float-overflow", extra("poll: {interval_s: 1.0e+999}\n"), "poll.interval_s: Input should be a finite number"),
    ("interval-absurd", extra("poll: {interval_s: 1.0e12}\n"), "poll.interval_s: Input should be less than or equal"),
    ("interval-tiny", extra("poll: {interval_s: 1.0e-9}\n"), "poll.interval_s: Input should be greater than or equal"),
    ("retries-absurd", extra("poll: {retries: 1000000}\n"), "poll.retries"),
    ("bool-for-a-number", extra("poll: {retries: true}\n"), "poll.retries: a number is needed, not true"),
    ("bool-for-a-float", extra("poll: {interval_s: yes}\n"), "poll.interval_s: a number is needed, not true"),
    ("word-for-a-number", extra("poll: {interval_s: five}\n"), "poll.interval_s: Input should be a valid number"),
    ("backoff-upside-down", extra("poll: {backoff_initial_s: 100, backoff_max_s: 10}\n"), "backoff_initial_s: 100"),
    ("supervision-inf", extra("supervision_s: {smoke_detector: .inf}\n"), "supervision_s.smoke_detector"),
    ("retention-absurd", extra("history: {retention_days: 1.0e9}\n"), "history.retention_days"),
    ("escalation-mark-inf", extra("escalation: {marks: {response: [.inf]}}\n"), "escalation.marks.response[0]"),
    ("escalation-check-nan", extra("escalation: {interval_s: .nan}\n"), "escalation.interval_s"),
    (
        "device-interval-nan",
        text(BASE.replace("slot: 1}", "slot: 1, poll_interval_s: .nan}")),
        "hosts[0].devices[0].poll_interval_s",
    ),
    (
        "bus-timeout-absurd",
        extra("buses: [{id: b1, port: p, protocol: it100, timeout_s: 1.0e6}]\n"),
        "buses[0].timeout_s",
    ),
    ("outbox-absurd", extra(UPLINK + "}\n  outbox_max: 1000000000000\n"), "uplink.outbox_max"),
    ("telemetry-nan", extra(UPLINK + "}\n  telemetry_interval_s: .nan\n"), "uplink.telemetry_interval_s"),
    (
        "skew-inf",
        extra(UPLINK + "}\nremote: {users_file: e.yaml, max_skew_s: .inf}\n", e__yaml="users: {}\n"),
        "remote.max_skew_s",
    ),
    ("influx-buffer-absurd", extra("influxdb: {url: 'http://x:8086', bucket: b, buffer_max: 1.0e12}\n"), "buffer_max"),
    # --- the files a site file names
    ("faults-file-missing", extra("faults_file: nope.yaml\n"), "faults_file: no such file"),
    ("faults-file-is-folder", extra("faults_file: .\n"), "is a folder, not a file"),
    (
        "faults-file-bad-threshold",
        extra(
            "faults_file: f.yaml\n",
            f__yaml=f"faults:\n  weak:\n{GOOD_FAULT}    when: [{{field: battery_v, below: lots}}]\n",
        ),
        "faults.weak: threshold 'lots' is neither a number nor 'supervision'",
    ),
    (
        "faults-file-nan-threshold",
        extra(
            "faults_file: f.yaml\n",
            f__yaml=f"faults:\n  weak:\n{GOOD_FAULT}    when: [{{field: battery_v, below: .nan}}]\n",
        ),
        "faults.weak: battery_v: a threshold must be a finite number",
    ),
    ("faults-file-binary", extra("faults_file: f.yaml\n", f__yaml=b"\xfe\xff\x00f"), "not UTF-8 text"),
    ("profiles-dir-is-a-file", extra("profiles_dir: site.yaml\n"), "profiles_dir: "),
    ("profiles-dir-missing", extra("profiles_dir: profiles\n"), "no such folder"),
    ("store-is-a-folder", text(BASE.replace("path: t.db", "path: .")), "store.path: "),
    ("path-with-nul", text(BASE.replace("path: t.db", 'path: "t\\0.db"')), "store.path: a path cannot hold a NUL"),
    ("users-file-binary", extra(UPLINK + "}\nremote: {users_file: e.yaml}\n", e__yaml=b"\x80\x81"), "not UTF-8 text"),
    ("site-file-is-a-folder", folder_itself, "is a folder, not a file"),
    ("site-file-missing", missing, "cannot read file: No such file or directory"),
    ("site-file-is-a-pipe", fifo, "not a regular file"),
    # --- brokers, TLS and secrets
    (
        "tls-key-without-certificate",
        extra(UPLINK + ", tls: {key_file: k.pem}}\n", k__pem="-----BEGIN PRIVATE KEY-----\n"),
        "uplink.broker.tls.key_file: a client key needs its certificate (cert_file)",
    ),
    (
        "tls-ca-not-a-certificate",
        extra(UPLINK + ", tls: {ca_file: ca.pem}}\n", ca__pem="not a certificate\n"),
        "uplink.broker.tls: cannot use the certificate files",
    ),
    (
        "password-twice",
        extra(UPLINK + ", password: a, password_file: pw}\n", pw="b\n"),
        "uplink.broker.password_file: give either password or password_file, not both",
    ),
    ("password-file-missing", extra(UPLINK + ", password_file: pw}\n"), "uplink.broker.password_file: no such file"),
    ("password-file-empty", extra(UPLINK + ", password_file: pw}\n", pw="\n"), "uplink.broker.password_file: "),
    (
        "password-file-binary",
        extra("device_broker: {host: 127.0.0.1, password_file: pw}\n", pw=b"\xff\xfe"),
        "device_broker.password_file: ",
    ),
    # --- an IP hub over SIA DC-09 and its key file
    ("sia-without-a-receiver", extra(SIA.format("")), "sia_receiver: required for the SIA DC-09 hub 'hub'"),
    ("sia-receiver-without-a-hub", extra(RX), "sia_receiver: no host is reached over SIA DC-09"),
    ("sia-account-not-hex", extra(SIA.format("").replace("12AB", "12XY") + RX), "hosts[1].sia.account"),
    (
        "sia-account-twice",
        extra(
            SIA.format("")
            + SIA.format("").replace("id: hub", "id: hub2").replace("z9", "z8").replace("12AB", "12ab")
            + RX
        ),
        "hosts.hub2.sia.account: '12ab' already names hub 'hub'",
    ),
    (
        "sia-key-file-missing",
        extra(SIA.format(", key_file: hub.key") + RX),
        "hosts[1].sia.key_file: no such file",
    ),
    (
        "sia-key-wrong-length",
        extra(SIA.format(", key_file: hub.key") + RX, hub__key="0123456789ABCDEF01\n"),
        "hosts[1].sia.key_file: the hub's key is 16, 24 or 32 hex characters",
    ),
    (
        "sia-receiver-deaf",
        extra(SIA.format("") + "sia_receiver: {port: 12128, tcp: false, udp: false}\n"),
        "sia_receiver: tcp and udp are both off",
    ),
    ("sia-receiver-port-absurd", extra(SIA.format("") + "sia_receiver: {port: 0}\n"), "sia_receiver.port"),
    # --- an Envisalink host and its password file
    (
        "envisalink-inline-password",
        extra(EVL.format(", password: user")),
        "hosts[1].envisalink.password: the Envisalink's password is read from a file only",
    ),
    ("envisalink-no-password-file", extra(EVL.format("")), "hosts[1].envisalink.password_file: Field required"),
    (
        "envisalink-password-file-missing",
        extra(EVL.format(", password_file: evl.pw")),
        "hosts[1].envisalink.password_file: no such file",
    ),
    (
        "envisalink-password-file-empty",
        extra(EVL.format(", password_file: evl.pw"), evl__pw="\n"),
        "hosts[1].envisalink.password_file: ",
    ),
    (
        "envisalink-password-too-long",
        extra(EVL.format(", password_file: evl.pw"), evl__pw="0123456789a\n"),
        "hosts[1].envisalink.password_file: a password of 11 characters (the module takes at most 10)",
    ),
    (
        "envisalink-password-with-a-space",
        extra(EVL.format(", password_file: evl.pw"), evl__pw="pass word\n"),
        "hosts[1].envisalink.password_file: the password holds U+0020",
    ),
    (
        "envisalink-port-absurd",
        extra(EVL.format(", port: 70000, password_file: evl.pw"), evl__pw="user\n"),
        "hosts[1].envisalink.port",
    ),
    (
        "envisalink-address-garbage",
        extra(EVL.format(", password_file: evl.pw").replace("127.0.0.1", "'not a host!'"), evl__pw="user\n"),
        "hosts[1].envisalink.address",
    ),
    (
        "envisalink-and-modbus",
        text(BASE.replace("port: 1}", "port: 1}\n    envisalink: {address: 127.0.0.1, password_file: evl.pw}")),
        "hosts[0]: give exactly one of modbus, rtu, it100, envisalink, sia (given: modbus, envisalink)",
    ),
    (
        "envisalink-device-in-a-slot",
        extra(EVL.format(", password_file: evl.pw").replace("zone: 1", "slot: 1"), evl__pw="user\n"),
        "hosts[1].devices[0].zone: required for a device on a host reached over envisalink",
    ),
    (
        "envisalink-one-module-two-hosts",
        extra(
            EVL.format(", password_file: evl.pw")
            + EVL.format(", port: 4025, password_file: evl.pw").replace("e1", "e2").replace("z1", "z2"),
            evl__pw="user\n",
        ),
        "hosts[2].envisalink: 127.0.0.1:4025 already serves host 'e1'",
    ),
    # --- names and keys
    ("escape-sequence-in-a-name", text(BASE.replace("{id: s1}", '{id: s1, name: "\\e[31mred"}')), "site.name: holds"),
    ("misspelt-key", extra("poll: {intervall_s: 5}\n"), "poll.intervall_s: unknown key"),
    ("very-long-key", extra("poll: {" + "k" * 1000 + ": 1}\n"), "unknown key"),
    (
        "thousands-of-problems",
        text("site: {id: s1, " + ", ".join(f"k{i}: 1" for i in range(5000)) + "}\n"),
        "more problems",
    ),
    ("broker-host-garbage", extra(UPLINK.replace("127.0.0.1", "'not a host!'") + "}\n"), "uplink.broker.host"),
    ("topic-with-wildcard", extra(UPLINK + "}\n  topic_root: centre/#\n"), "uplink.topic_root"),
    (
        "bind-garbage",
        extra("http: {bind: 'ex ample', tokens_file: t.yaml}\n", t__yaml="tokens: {}\n"),
        "http.bind",
    ),
    ("profile-outside-the-folders", text(BASE.replace("sim-wh100", "../../etc/passwd")), "hosts[0].model"),
]
# A key that reads as rich markup breaks the command line's error printing (gateway/cli.py
# prints problems with markup on); the loader's own message is fine.
MARKUP_KIND = ("markup-in-a-key", extra('poll: {"[/x]": 1}\n'), "unknown key")


def test_there_are_at_least_forty_kinds() -> None:
    assert len({k for k, _, _ in KINDS}) == len(KINDS) >= 40


@pytest.mark.parametrize(
    ("kind", "build", "fragment"), [*KINDS, MARKUP_KIND], ids=[k for k, _, _ in [*KINDS, MARKUP_KIND]]
)
def test_the_loader_refuses_naming_what_is_wrong(tmp_path: Path, kind: str, build: Build, fragment: str) -> None:
    site = build(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_site(site)
    message = "\n".join(err.value.problems)
    assert fragment in message, message[:2000]
    wrong = Path(err.value.path)  # the site file, or the file it names that is wrong
    assert wrong == tmp_path or wrong.parent == tmp_path
    assert len(err.value.problems) <= MAX_PROBLEMS + 1
    assert all(len(p) <= MAX_PROBLEM_CHARS for p in err.value.problems)


def test_a_big_real_file_still_loads(tmp_path: Path) -> None:
    """The bounds are far from a real site: 2,000 devices written with an anchor and merge
    keys, text in any script, the largest intervals allowed."""
    first = "      - &dev {id: d1, kind: smoke_detector, slot: 1, location: hall}\n"
    devices = "".join(f"      - {{<<: *dev, id: d{i}, slot: {i}}}\n" for i in range(2, 2001))
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {id: s1, name: 'Küche — 厨房'}\npoll: {interval_s: 86400, timeout_s: 60, backoff_max_s: 3600}\n"
        "hosts:\n  - id: h1\n    model: sim-wh100\n    modbus: {address: 127.0.0.1, port: 1}\n    devices:\n"
        + first
        + devices
    )
    site = load_site(f)
    assert len(site.config.devices()) == 2001 and site.config.site.name == "Küche — 厨房"
    assert {d.location for d in site.config.devices() if d.id.startswith("d")} == {"hall"}


def test_aliases_and_merge_keys_are_still_yaml(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("base: &b {kind: pir_detector, location: hall}\nd: {<<: *b, id: p1, location: door}\nl: [*b, *b]\n")
    data = read_yaml(f)
    assert data["d"] == {"kind": "pir_detector", "location": "door", "id": "p1"} and data["l"] == [data["base"]] * 2


def test_a_key_or_short_value_written_many_times_is_kept_once(tmp_path: Path) -> None:
    """A large site file repeats `id`, `kind` and `smoke_detector` thousands of times: one
    string each, not one per line (and errors still name the line a value starts on)."""
    f = tmp_path / "x.yaml"
    f.write_text("devices:\n" + "".join(f"  - {{id: d{i}, kind: smoke_detector}}\n" for i in range(3)))
    devices = read_yaml(f)["devices"]
    kinds = [d["kind"] for d in devices]
    keys = [next(iter(d)) for d in devices]
    assert kinds[0] is kinds[1] is kinds[2] and keys[0] is keys[1] is keys[2]
    f.write_text("devices:\n  - {id: d1, kind: smoke_detector}\n  - {id: d2, id: d3}\n")
    with pytest.raises(ConfigError, match="line 3"):
        read_yaml(f)


# Pieces that make YAML do things: the fuzzer splices them into a good site file.
PIECES = [
    "{", "}", "[", "]", ":", ": ", ",", "-", "- ", "&a ", "*a", "!!", "!!python/name:os.system", "<<: ", "'", '"',
    "\\", "\n", "\t", "  ", "#", "|", ">", "%YAML 1.1\n", "---\n", "...", ".inf", ".nan", "-.inf", "1e999",
    "9" * 80, "0x", "0o7", "1:2:3", "2026-02-30", "~", "null", "\x00", "\x1b", "\ufeff", "\ud800", "é", "?", "@", "`",
]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(BASE)), st.sampled_from(PIECES), st.integers(0, 3)), max_size=6))
def test_a_mangled_site_file_loads_or_is_refused_and_nothing_else(
    tmp_path: Path, edits: list[tuple[int, str, int]]
) -> None:
    body = BASE
    for at, piece, cut in edits:
        at = min(at, len(body))
        body = body[:at] + piece + body[at + cut :]
    f = tmp_path / "site.yaml"
    f.write_bytes(body.encode("utf-8", "surrogatepass"))
    try:
        load_site(f)
    except ConfigError as exc:
        assert exc.problems and all(len(p) <= MAX_PROBLEM_CHARS for p in exc.problems)


# --- through the command line -------------------------------------------------------


async def _run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *ALARMGW, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "no answer in 60 s"
    return proc.returncode or 0, (out + err).decode(errors="replace")


async def _refusals(tmp_path: Path, command: list[str], kinds: list[tuple[str, Build, str]]) -> list[str]:
    """Run `alarmgw COMMAND... SITE` on every kind, a few at a time; what went wrong."""
    gate = asyncio.Semaphore(max(2, os.cpu_count() or 2))
    failures: list[str] = []

    async def one(kind: str, build: Build, fragment: str) -> None:
        folder = tmp_path / kind
        folder.mkdir()
        site = build(folder)
        args = [a.replace("{site}", str(site)).replace("{folder}", str(folder)) for a in command]
        async with gate:
            code, output = await _run_cli(args, folder)
        if code != 2 or "Traceback" in output or fragment not in output:
            failures.append(f"{kind}: exit {code}\n{output[-1500:]}")

    async with asyncio.TaskGroup() as tg:
        for kind, build, fragment in kinds:
            tg.create_task(one(kind, build, fragment))
    return failures


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_check_config_refuses_every_kind_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    failures = await _refusals(tmp_path, ["check-config", "{site}"], KINDS)
    assert not failures, "\n\n".join(failures)


# The kinds `check-config` used to pass or crash on while `run` refused or crashed: `run`
# must refuse each the same way, before it starts anything.
RUN_KINDS = {
    "faults-file-missing",
    "profiles-dir-is-a-file",
    "interval-inf",
    "timeout-nan",
    "faults-file-bad-threshold",
    "backoff-upside-down",
    "invalid-utf8",
    "deep-mapping",
    "tls-key-without-certificate",
    "envisalink-inline-password",
    "envisalink-password-too-long",
}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_run_refuses_what_check_config_refuses(tmp_path: Path) -> None:
    kinds = [k for k in KINDS if k[0] in RUN_KINDS]
    assert len(kinds) == len(RUN_KINDS)
    failures = await _refusals(tmp_path, ["run", "-c", "{site}", "--db", "{folder}/run.db"], kinds)
    assert not failures, "\n\n".join(failures)


@pytest.mark.integration
async def test_a_key_that_looks_like_markup_is_printed_not_interpreted(tmp_path: Path) -> None:
    failures = await _refusals(tmp_path, ["check-config", "{site}"], [MARKUP_KIND])
    assert not failures, "\n\n".join(failures)
