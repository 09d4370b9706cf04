"""``hacoord cluster up`` (what ``make run`` calls): start, use, Ctrl-C, resume."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hacoord import Client
from hacoord.testing.cluster import wait_for

pytestmark = pytest.mark.integration


def free_base_port() -> int:
    """A base port B such that B+1..B+3 and B+101..B+103 can all be bound now."""
    for base in range(21000, 60000, 997):
        ports = [base + k for k in (1, 2, 3, 101, 102, 103)]
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


class Supervisor:
    """A ``hacoord cluster up`` process whose output is collected line by line."""

    def __init__(self, data_dir: Path, base: int) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hacoord", "cluster", "up", "--data-dir", str(data_dir),
             "--base-port", str(base)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        return wait_for(f"a line matching {pattern!r} (got {self.lines})",
                        lambda: next((m for line in self.lines if (m := regex.search(line))), None),
                        timeout)

    def pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := re.search(r"pid (\d+)", line))]

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except FileNotFoundError:
        return False


def test_cluster_up_serves_stops_on_ctrl_c_and_resumes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_base_port()
    data = tmp_path / "data"
    endpoints = [f"https://127.0.0.1:{base + k}" for k in (1, 2, 3)]
    first = Supervisor(data, base)
    try:
        first.wait_line(r"leader is m\d")
        assert len(first.pids()) == 3
        for k in (1, 2, 3):
            assert any(f"https://127.0.0.1:{base + k}" in line for line in first.lines)
        secret = data / "secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        for directory in (data, data / "m1"):  # the data, the secret and the logs: private
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        assert stat.S_IMODE((data / "m1" / "member.log").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "admin.token").stat().st_mode) == 0o600
        client = Client(endpoints, timeout=2, deadline=20, token_file=str(data / "admin.token"),
                        ca=str(data / "ca.pem"))
        written = client.node_add("n1", address="127.0.0.1:9001", zone="a")
        status = client.status()
        assert status.leader is not None and all(m.reachable for m in status.members)
    finally:
        code = first.interrupt()
    assert code == 0, first.lines
    pids = first.pids()
    wait_for("every member to exit", lambda: not any(alive(p) for p in pids), timeout=15)

    second = Supervisor(data, base)
    try:
        second.wait_line(r"leader is m\d")
        # No token or CA given: a client of members on this host uses the local cluster's.
        monkeypatch.setenv("HACOORD_DATA_DIR", str(data))
        client = Client(endpoints, timeout=2, deadline=20)
        assert client.whoami().role == "admin"
        nodes = wait_for("n1 after restart",
                         lambda: [n for n in client.node_list(consistent=True) if n.id == "n1"])
        assert nodes[0].zone == "a"
        assert client.status().revision >= written.revision
    finally:
        assert second.interrupt() == 0, second.lines
    for pid in second.pids():
        wait_for(f"member {pid} to exit", lambda p=pid: not alive(p), timeout=15)
    logs = "\n".join(p.read_text() for p in data.glob("m*/member.log"))
    assert "Traceback" not in logs, logs[-3000:]
