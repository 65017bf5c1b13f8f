"""Engineers' requests, as the gateway checks them before anything runs: Ed25519 signatures
(HMAC only for legacy users), meant for this site, fresh and first seen; and whatever anyone
may put on the `cmd` topic is refused with a message naming what was wrong, without parsing
more than the size limit, recursing without bound or reading giant numbers. No I/O but small
files: the users file, key files."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alarmgw import remote_wire
from alarmgw.gateway import remote_auth
from alarmgw.gateway.cli import main
from alarmgw.gateway.credentials import (
    KeyFileError,
    Users,
    UsersFile,
    UsersFileError,
    load_private_key,
    load_users,
    public_key_text,
)
from alarmgw.gateway.remote_auth import MAX_REQUEST, Unverified, make_request, printable, verify
from alarmgw.gateway.remote_cli import RemoteError, broker_from_url
from alarmgw.yamlfile import ConfigError

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROOT = "alarmgw/site-a"
ENG_KEY = Ed25519PrivateKey.generate()
VIEW_KEY = Ed25519PrivateKey.generate()
LEGACY_SECRET = "a-long-legacy-secret-1234"


def users(revoked: tuple[str, ...] = ()) -> Users:
    return Users.model_validate(
        {
            "users": {
                "eng-1": {"role": "engineer", "public_key": public_key_text(ENG_KEY)},
                "view-1": {"role": "viewer", "public_key": public_key_text(VIEW_KEY)},
                "legacy-1": {"role": "engineer", "secret": LEGACY_SECRET},
            },
            "revoked": list(revoked),
        }
    )


class Nonces:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, nonce: str) -> bool:
        new = nonce not in self.seen
        self.seen.add(nonce)
        return new


def check(payload: bytes, who: Users | None = None, claim: Callable[[str], bool] | None = None) -> Any:
    return verify(payload, who or users(), ROOT, NOW, 60.0, claim or Nonces())


def refusal(payload: bytes, **kw: Any) -> Unverified:
    with pytest.raises(Unverified) as refused:
        check(payload, **kw)
    return refused.value


def signed(fields: dict[str, Any], key: Ed25519PrivateKey = ENG_KEY) -> bytes:
    """A request with any fields at all, properly signed: the signature is not what is tested."""
    body = {k: v for k, v in fields.items() if k != "sig"}
    return remote_wire.canonical({**body, "sig": key.sign(remote_wire.canonical(body)).hex()})


def fields(**changes: Any) -> dict[str, Any]:
    base = {"user": "eng-1", "to": ROOT, "ts": NOW.isoformat(), "nonce": "n" * 24, "command": "status", "args": {}}
    return {**base, **changes}


# --- who signed it ---------------------------------------------------------------------------


def test_a_request_signed_with_the_engineers_key_is_admitted() -> None:
    req = check(make_request("eng-1", ENG_KEY, ROOT, "ack", {"id": "7", "note": "café ☕"}, NOW))
    assert (req.user, req.role, req.command, req.args) == ("eng-1", "engineer", "ack", {"id": "7", "note": "café ☕"})


def test_a_legacy_user_still_signs_with_the_shared_secret() -> None:
    assert check(make_request("legacy-1", LEGACY_SECRET, ROOT, "status", {}, NOW)).user == "legacy-1"


@pytest.mark.parametrize(
    "payload",
    [
        make_request("eng-1", VIEW_KEY, ROOT, "status", {}, NOW),  # another engineer's key
        make_request("eng-1", Ed25519PrivateKey.generate(), ROOT, "status", {}, NOW),  # a stranger's
        make_request("eng-1", LEGACY_SECRET, ROOT, "status", {}, NOW),  # HMAC for a key user: no mixing
        make_request("legacy-1", ENG_KEY, ROOT, "status", {}, NOW),  # a signature for a secret user
        make_request("legacy-1", "not-the-secret-at-all-000", ROOT, "status", {}, NOW),
    ],
)
def test_a_wrong_signature_is_refused(payload: bytes) -> None:
    r = refusal(payload)
    assert (r.kind, str(r)) == ("bad_signature", "unknown user or bad signature")


def test_an_unknown_user_is_told_no_more_than_a_bad_signature() -> None:
    r = refusal(make_request("nobody", ENG_KEY, ROOT, "status", {}, NOW))
    assert (r.kind, str(r), r.user) == ("unknown_user", "unknown user or bad signature", "nobody")


def test_a_signed_field_changed_on_the_way_is_refused() -> None:
    doc = json.loads(make_request("view-1", VIEW_KEY, ROOT, "ack", {"id": "7"}, NOW))
    doc["user"] = "eng-1"  # a viewer's request passed off as an engineer's
    assert refusal(json.dumps(doc).encode()).kind == "bad_signature"


def test_a_request_for_another_site_is_refused_there() -> None:
    r = refusal(make_request("eng-1", ENG_KEY, "alarmgw/site-b", "ack", {"id": "7"}, NOW))
    assert r.kind == "wrong_site" and "'alarmgw/site-b', not this site (alarmgw/site-a)" in str(r)


def test_a_revoked_key_is_refused_whoever_it_is_listed_under() -> None:
    r = refusal(make_request("eng-1", ENG_KEY, ROOT, "status", {}, NOW), who=users(revoked=(public_key_text(ENG_KEY),)))
    assert (r.kind, str(r)) == ("revoked", "eng-1's key is revoked")


def test_stale_and_replayed_requests_are_refused_and_burn_no_nonce_unsigned() -> None:
    claim = Nonces()
    old = make_request("eng-1", ENG_KEY, ROOT, "status", {}, NOW - timedelta(minutes=10))
    assert refusal(old, claim=claim).kind == "stale"
    fresh = make_request("eng-1", ENG_KEY, ROOT, "status", {}, NOW)
    check(fresh, claim=claim)
    assert refusal(fresh, claim=claim).kind == "replayed"
    forged = json.loads(make_request("eng-1", VIEW_KEY, ROOT, "status", {}, NOW))
    refusal(json.dumps(forged).encode(), claim=claim)
    assert forged["nonce"] not in claim.seen  # only requests proven authentic claim a nonce


# --- what anyone may send ----------------------------------------------------------------------


def test_a_payload_over_the_limit_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*_: object, **__: object) -> None:
        raise AssertionError("parsed a payload over the limit")

    monkeypatch.setattr(remote_auth.Request, "model_validate_json", parse)
    r = refusal(b"{" * (50 * 1024 * 1024))
    assert (r.kind, r.why) == ("too_large", "invalid")
    assert str(r) == f"request of {50 * 1024 * 1024} bytes is over the {MAX_REQUEST}-byte limit"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        # found by issue 11: each of these crashed the remote desk
        (signed(fields()).replace(b'"sig":"', b'"sig":"\xc3\xa9'), "sig: String should match pattern"),
        (b'{"a":' * 1500 + b"1" + b"}" * 1500, "Invalid JSON: recursion limit exceeded"),
        (b"[" * 5000 + b"]" * 5000, "Invalid JSON: recursion limit exceeded"),
        (b'{"user":' + b"9" * 5000 + b"}", "Invalid JSON: number out of range"),
        (signed(fields(args={"id": 7})).replace(b'"id":7', b'"id":' + b"9" * 4400), "number out of range"),
        # not JSON, not an object, missing or extra fields, wrong types
        (b"\x00garbage", "Invalid JSON"),
        (b"\xff\xfe{}", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (b"{}", "user: Field required"),
        (signed({**fields(), "extra": 1}), "extra: Extra inputs are not permitted"),
        (signed(fields(user=5)), "user: Input should be a valid string"),
        (signed(fields(user="x" * 65)), "user: String should have at most 64 characters"),
        (signed(fields(args=[])), "args: Input should be an object"),
        (signed(fields(args={"id": 1.5})), "args.id"),
        (signed(fields(args={"id": None})), "args.id"),
        (signed(fields(args={"id": {"nested": 1}})), "args.id"),
        (signed(fields(args={str(i): 1 for i in range(9)})), "args: Dictionary should have at most 8 items"),
        (signed(fields(nonce="short")), "nonce: String should match pattern"),
        (signed(fields(ts=123)), "ts: Input should be a valid string"),
        (signed(fields(ts="yesterday")), "ts is not an ISO 8601 time"),
        (signed(fields(command=["status"])), "command: Input should be a valid string"),
    ],
    ids=lambda v: v[:40].decode("ascii", "replace") if isinstance(v, bytes) else v[:30],
)
def test_malformed_requests_are_refused_saying_what_is_wrong(payload: bytes, says: str) -> None:
    r = refusal(payload)
    assert r.kind == "malformed" and says in str(r), str(r)
    assert len(str(r)) < 300  # the message names the problem, never echoes the payload


def test_the_huge_integer_needs_no_int_conversion_to_refuse() -> None:
    # Python's json would raise ValueError (int_max_str_digits) from inside the parser
    payload = b'{"user":"eng-1","args":{"id":' + b"7" * 4301 + b"}}"
    assert "number out of range" in str(refusal(payload))


def test_a_bool_is_not_a_number_and_a_number_not_a_string() -> None:
    req = check(signed(fields(args={"all": True, "id": 7, "note": "x"})))
    assert req.args == {"all": True, "id": 7, "note": "x"}
    assert type(req.args["all"]) is bool and type(req.args["id"]) is int


def test_claimed_names_are_made_printable_for_the_audit_log() -> None:
    r = refusal(signed(fields(user="eve\n2026-01-01 INFO forged line\x1b[31m")))
    assert "\n" not in r.user and "\x1b" not in r.user and r.user.startswith("eve?2026")
    assert printable("é" * 100) == ("\\xe9" * 16)
    assert len(printable("x" * 1000)) == 64


def test_the_tool_refuses_to_sign_what_the_gateway_would_refuse() -> None:
    with pytest.raises(ValueError, match=r"args\.id"):
        make_request("eng-1", ENG_KEY, ROOT, "ack", {"id": 1.5}, NOW)


# --- the users file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("{role: engineer}", "give exactly one of public_key (Ed25519) or secret (legacy HMAC)"),
        (f"{{role: engineer, public_key: {public_key_text(ENG_KEY)}, secret: {LEGACY_SECRET}}}", "exactly one"),
        ("{role: engineer, public_key: not-base64!}", "not base64"),
        ("{role: engineer, public_key: " + base64.b64encode(b"x" * 31).decode() + "}", "is 31"),
        ("{role: engineer, secret: short}", "at least 16 characters"),
    ],
)
def test_a_wrong_users_file_names_the_user_and_the_problem(tmp_path: Path, entry: str, says: str) -> None:
    path = tmp_path / "engineers.yaml"
    path.write_text(f"users:\n  eng-1: {entry}\n")
    with pytest.raises(ConfigError) as err:
        load_users(path)
    assert any(p.startswith("users.eng-1") and says in p for p in err.value.problems), err.value.problems


def test_a_mistyped_revocation_is_an_error_not_a_silent_no_op(tmp_path: Path) -> None:
    path = tmp_path / "engineers.yaml"
    path.write_text(f"users: {{}}\nrevoked: [{public_key_text(ENG_KEY)[:-4]}]\n")
    with pytest.raises(ConfigError, match=r"revoked\[0\]: an Ed25519 public key is 32 bytes"):
        load_users(path)


def test_a_key_revoked_by_a_delivered_users_file_stops_working_at_once(tmp_path: Path) -> None:
    path = tmp_path / "engineers.yaml"
    good = f"users:\n  eng-1: {{role: engineer, public_key: {public_key_text(ENG_KEY)}}}\n"
    path.write_text(good)
    live = UsersFile(load_users(path))
    request = make_request("eng-1", ENG_KEY, ROOT, "status", {}, NOW)
    assert check(request, who=live.current()).user == "eng-1"

    # the service centre delivers a new file (written aside, renamed over the old one)
    new = tmp_path / "engineers.yaml.new"
    new.write_text(good + f"revoked: [{public_key_text(ENG_KEY)}]\n")
    os.replace(new, path)
    assert refusal(make_request("eng-1", ENG_KEY, ROOT, "status", {}, NOW), who=live.current()).kind == "revoked"

    path.write_text("users: [broken")  # a bad delivery: nobody is admitted, rather than the revoked
    with pytest.raises(UsersFileError, match="nobody is admitted"):
        live.current()
    with pytest.raises(UsersFileError):
        live.current()
    path.write_text(good.replace("eng-1", "eng-2"))
    assert set(live.current().users) == {"eng-2"}


# --- keys and the engineer's tool ------------------------------------------------------------


def test_keygen_makes_a_key_only_its_owner_reads_and_the_line_for_the_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "eng-7.key"
    assert main(["keygen", "eng-7", "--role", "viewer", "--out", str(key_file)]) == 0
    assert key_file.stat().st_mode & 0o777 == 0o600
    line = next(x.strip() for x in capsys.readouterr().out.splitlines() if x.strip().startswith("eng-7: {"))
    (tmp_path / "engineers.yaml").write_text(f"users:\n  {line}\n")
    listed = load_users(tmp_path / "engineers.yaml")
    assert listed.users["eng-7"].role == "viewer"
    key = load_private_key(key_file)
    assert check(make_request("eng-7", key, ROOT, "status", {}, NOW), who=listed).user == "eng-7"
    assert "PRIVATE" not in line

    before = key_file.read_bytes()
    assert main(["keygen", "eng-7", "--out", str(key_file)]) == 2
    assert key_file.read_bytes() == before and "is not overwritten" in capsys.readouterr().err


def test_a_key_file_that_is_not_an_ed25519_key_says_so(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such file"):
        load_private_key(tmp_path / "missing.key")
    (tmp_path / "text.key").write_text("hello")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(tmp_path / "text.key")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "rsa.key").write_bytes(pem)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "rsa.key")
    locked = ENG_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    (tmp_path / "locked.key").write_bytes(locked)
    with pytest.raises(KeyFileError, match=r"ALARMGW_KEY_PASSPHRASE"):
        load_private_key(tmp_path / "locked.key")
    assert public_key_text(load_private_key(tmp_path / "locked.key", b"pw")) == public_key_text(ENG_KEY)


def test_a_broker_password_in_the_address_is_refused() -> None:
    with pytest.raises(RemoteError, match="--broker-password-file"):
        broker_from_url("mqtt://eng:hunter2@centre.example.net:1883")
    spec = broker_from_url("mqtts://eng%40acme@centre.example.net", "from-a-file")
    assert (spec.host, spec.port, spec.username, spec.password, spec.tls) == (
        "centre.example.net",
        8883,
        "eng@acme",
        "from-a-file",
        True,
    )
    with pytest.raises(RemoteError, match="expected mqtt://"):
        broker_from_url("http://centre.example.net")
    with pytest.raises(RemoteError, match="--broker"):
        broker_from_url("mqtt://centre.example.net:notaport")


def test_the_tool_exits_2_on_a_password_in_the_address_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "eng.key"
    assert main(["keygen", "eng-1", "--out", str(key_file)]) == 0
    capsys.readouterr()
    base = ["remote", "--site", "a", "--user", "eng-1", "--key-file", str(key_file)]
    code = main([*base, "--broker", "mqtt://eng:hunter2@127.0.0.1:1", "status"])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 2 and "a password in the address shows in `ps`" in err and "hunter2" not in err
    missing = tmp_path / "broker.pw"
    code = main([*base, "--broker", "mqtt://eng@127.0.0.1:1", "--broker-password-file", str(missing), "status"])
    assert code == 2 and f"--broker-password-file {missing}: no such file" in capsys.readouterr().err.replace("\n", "")
    code = main([*base[:-2], "--key-file", str(tmp_path / "nope.key"), "--broker", "mqtt://127.0.0.1:1", "status"])
    assert code == 2 and "nope.key: no such file" in capsys.readouterr().err.replace("\n", "")
