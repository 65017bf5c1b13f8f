"""Process plumbing for the benchmarks that drive the gateway from outside: `alarmgw run` and
`alarmgw simulate` as child processes, a mosquitto that can be taken down and brought back,
the gateway's counters (SIGUSR1) and memory (/proc), and read-only looks into its store.

Nothing here knows a benchmark's figures; bench/chaos.py is the user.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]
sys.path.insert(0, str(ROOT))

from tests.broker import Mosquitto  # noqa: E402

TRACEBACK = "Traceback (most recent call last)"


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def vm_rss_mb(pid: int) -> float:
    """Resident memory now (VmRSS), MB; NaN once the process is gone."""
    try:
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return float("nan")
    return int(m.group(1)) / 1024 if m else float("nan")


def run_cli(args: Sequence[str], timeout_s: float = 60.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """One `alarmgw ...` command to its end; a command that outlives `timeout_s` is killed and
    reported with return code -9 (the caller counts it, nothing is raised)."""
    try:
        return subprocess.run(
            [*ALARMGW, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, errors="replace", **kw
        )
    except subprocess.TimeoutExpired as exc:

        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else b or ""

        return subprocess.CompletedProcess(exc.cmd, -9, text(exc.stdout), text(exc.stderr) + "\n(timed out)")


class Broker(Mosquitto):
    """tests/broker.py's mosquitto, optionally keeping sessions and queued messages on disk
    across `pause()` (SIGTERM: mosquitto writes its store on the way out) and `resume()`, as a
    broker that restarts does; `stop()` (SIGKILL) ends it for good."""

    def __init__(self, persistent: bool = False) -> None:
        super().__init__()
        if persistent:
            text = self.conf.read_text().replace(
                "persistence false\n", f"persistence true\npersistence_location {self.folder}/\n"
            )
            self.conf.write_text(text)

    def start(self) -> Broker:
        super().start()
        return self

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def resume(self) -> None:
        self.start()


class LogLines:
    """A child's stderr, copied to a file (appended across restarts) and kept for searching."""

    def __init__(self, log: Path) -> None:
        self.path = log
        self.file = log.open("a", buffering=1)
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def follow(self, stream: IO[str]) -> threading.Thread:
        def read() -> None:
            for line in stream:
                self.file.write(line)
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        return t

    def wait_for(self, pattern: str, start: int = 0, timeout_s: float = 30.0) -> str | None:
        """The first line from index `start` on that matches `pattern`, waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.file.close()

    def count(self, needle: str) -> int:
        with self.cond:
            return sum(needle in line for line in self.lines)

    def __len__(self) -> int:
        with self.cond:
            return len(self.lines)


class GatewayProc:
    """`alarmgw run` as a child process that can be killed and started again on the same store;
    its log (every life of it) in one file."""

    def __init__(self, site: Path, log: Path, db: Path | None = None) -> None:
        self.site = site
        self.db = db
        self.log = LogLines(log)
        self.proc: subprocess.Popen[str] | None = None
        self.lives = 0
        self.born = 0  # index of this life's first log line
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "gateway not running"
        return self.proc.pid

    def start(self) -> None:
        args = [*ALARMGW, "run", "-c", str(self.site)] + (["--db", str(self.db)] if self.db else [])
        self.born = len(self.log)
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        self.lives += 1
        assert self.proc.stderr is not None
        self._reader = self.log.follow(self.proc.stderr)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, pattern: str, timeout_s: float = 30.0) -> bool:
        """Whether this life of the gateway logs a line matching `pattern` within the time."""
        return self.log.wait_for(pattern, self.born, timeout_s) is not None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut or the OOM killer."""
        self._end(signal.SIGKILL)

    def terminate(self) -> int | None:
        """SIGTERM, as systemd stops it; its exit code."""
        return self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None
        return code

    def stats(self, timeout_s: float = 10.0) -> dict[str, int]:
        """The gateway's counters, as the `stats ...` line SIGUSR1 makes it log."""
        start = len(self.log)
        os.kill(self.pid, signal.SIGUSR1)
        line = self.log.wait_for(r" stats ", start, timeout_s)
        if line is None:
            raise RuntimeError("the gateway did not log its counters")
        pairs = (kv.split("=", 1) for kv in line.split(" stats ", 1)[1].split())
        return {k: int(v) for k, v in pairs}

    def rss_mb(self) -> float:
        return vm_rss_mb(self.pid) if self.alive() else float("nan")


class SimulatorProc:
    """`alarmgw simulate` as a child process, taking `inject` lines on its stdin."""

    def __init__(self, site: Path, log: Path, scenario: Path | None = None, seed: int = 1) -> None:
        args = [*ALARMGW, "simulate", "-c", str(site), "--seed", str(seed)]
        if scenario is not None:
            args += ["--scenario", str(scenario)]
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"the simulator did not start; see {log}")
        ready = json.loads(first)
        self.started_at = parse_utc(ready["started_at"])
        self._lock = threading.Lock()

    def inject(self, device: str, fault: str, duration_s: float | None = None) -> datetime:
        """Start a fault now; the moment the simulator started it (UTC, its own clock)."""
        line = f"inject {device} {fault}" + (f" {duration_s:.3f}" if duration_s else "")
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            reply = json.loads(self.proc.stdout.readline())
        if reply.get("event") != "injected":
            raise RuntimeError(f"simulator refused {line!r}: {reply}")
        return self.started_at + timedelta(seconds=float(reply["at_s"]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def query(db: Path, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Rows from the store, read as another process reads it (the gateway may be writing);
    an empty list while the file does not exist yet."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, tuple(args)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the gateway has not created its tables yet
        raise
    finally:
        conn.close()


def table_exists(db: Path, name: str) -> bool:
    return bool(query(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def http_call(
    port: int, method: str, path: str, token: str | None, body: object = None, timeout_s: float = 10.0
) -> tuple[int | str, Any]:
    """One request to the gateway's API on 127.0.0.1: (status, parsed JSON or text), or
    ("error: ...", None) when no answer came."""
    headers = {"Host": f"127.0.0.1:{port}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"error: {type(exc).__name__}", None
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    """Poll `check` (an outside process's state, which sends no event) until true or timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)
