"""A real mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from alarmgw.gateway.runtime import free_port
from tests.services import wait_until_up

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    def __init__(
        self,
        port: int | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        users: dict[str, str] | None = None,
        acl_file: Path | None = None,
        persistence: bool = False,
    ) -> None:
        """`tls`: (CA, server certificate, server key) for a TLS-only listener. `users`: name ->
        password, and then nobody else gets in; `acl_file`: who may read and write what;
        `persistence`: sessions and their queues outlive a restart (`stop(graceful=True)`)."""
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="alarmgw-mosquitto-"))
        self.conf = self.folder / "mosquitto.conf"
        kept = f"true\npersistence_location {self.folder}/" if persistence else "false"
        conf = (
            f"listener {self.port} 127.0.0.1\nallow_anonymous {'false' if users else 'true'}\npersistence {kept}\n"
            f"log_dest file {self.folder / 'mosquitto.log'}\n"
        )
        if users:
            passwords = self.folder / "passwords"
            passwords.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), name, password], check=True, capture_output=True
                )
            conf += f"password_file {passwords}\n"
        if acl_file is not None:
            conf += f"acl_file {acl_file}\n"
        if os.geteuid() == 0:
            # Run as root, mosquitto would switch to its own user and lose sight of the
            # test's private temporary folders (log, certificates).
            conf += "user root\n"
        if tls is not None:
            conf += f"cafile {tls[0]}\ncertfile {tls[1]}\nkeyfile {tls[2]}\n"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True

        wait_until_up(self.proc, listening, "mosquitto", self.folder, timeout_s=10)
        return self

    def stop(self, graceful: bool = False) -> None:
        """Kill it, or with `graceful` ask it to end (it then saves what it persists)."""
        if self.proc is not None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def make_ca_and_server_cert(folder: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    ca_key, ca, key, csr, cert = (folder / f"{name}{x}" for x in (".key", ".pem", "-server.key", ".csr", "-server.pem"))
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=alarmgw test {name}",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key
