"""A PostgreSQL cluster of one test's own, on a free port, that the test may stop and start
(the shared server on 5432 is everybody's and is never restarted)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from alarmgw.gateway.runtime import free_port


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else (Path(p).parent if (p := shutil.which("initdb")) else None)


class PrivatePostgres:
    def __init__(self) -> None:
        self.bin = _bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="alarmgw-pg-"))
        self.data = self.folder / "data"

    @property
    def available(self) -> bool:
        return self.bin is not None and (os.geteuid() == 0 or os.environ.get("USER") == "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            line = " ".join(f"'{c}'" for c in cmd)
            subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", line], check=True, capture_output=True)
        else:
            subprocess.run(list(cmd), check=True, capture_output=True)

    def init(self) -> PrivatePostgres:
        assert self.bin is not None
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        return self.start()

    def start(self) -> PrivatePostgres:
        assert self.bin is not None
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", opts, "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        assert self.bin is not None
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
