"""A real VictoriaMetrics (it speaks InfluxDB's v2 write API) on a free loopback port,
started and stopped by the tests, with helpers to read points back."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alarmgw.gateway.runtime import free_port


def wait_until_up(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, folder: Path, timeout_s: float = 20
) -> None:
    """Poll an outside server until `ready()` (it may raise OSError while not yet), or raise
    naming the server and its folder if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {folder}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout_s:g} s; see {folder}")


VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


class VictoriaMetrics:
    def __init__(self, port: int | None = None, folder: Path | None = None) -> None:
        self.port = port or free_port()
        self.folder = folder or Path(tempfile.mkdtemp(prefix="alarmgw-vm-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        log = open(self.folder / "victoria-metrics.log", "ab")  # noqa: SIM115 - kept by the process
        self.proc = subprocess.Popen(
            [
                VICTORIA_METRICS,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.folder / 'data'}",
                "-retentionPeriod=100y",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                return bool(r.status == 200)

        wait_until_up(self.proc, healthy, "victoria-metrics", self.folder)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every raw point of the series matching `match` (one dict per series). Tests move
        the gateway's clock ahead of the server's, so the range reaches far into the future."""
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": "4102444800"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
