"""A local 3-member etcd cluster for the side-by-side benchmark (``bench.run --etcd``).

Debian's ``etcd-server`` (3.4), members on 127.0.0.1 with data in a temporary directory, the
WAL synced as etcd does by default (the same durability as hacoord's ``--fsync``). Clients use
its JSON gateway (``/v3/kv/put``, ``/v3/kv/range``), so the same load generator (wrk) drives
both systems.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from hacoord.testing.cluster import free_ports, wait_for


def available() -> bool:
    """Whether an ``etcd`` binary is on the PATH."""
    return shutil.which("etcd") is not None


def version() -> str:
    """``etcd --version``'s first line."""
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else "etcd"


class EtcdCluster:
    """``size`` etcd members under ``root``; :meth:`leader_url` is where writes go directly."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        ports = free_ports(2 * size)
        self.client_ports = ports[:size]
        self.peer_ports = ports[size:]
        self.names = [f"e{k}" for k in range(1, size + 1)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.argvs: list[list[str]] = []

    @property
    def urls(self) -> list[str]:
        """Every member's client URL."""
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def start(self) -> None:
        """Start every member and wait until the cluster has a leader."""
        token = f"bench-{time.monotonic_ns()}"  # one per cluster: every member the same
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports,
                                                                        strict=True))
        for name, client, peer in zip(self.names, self.client_ports, self.peer_ports, strict=True):
            self.argvs.append([
                "etcd", "--name", name, "--data-dir", str(self.root / name),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
            ])
            self.procs.append(self._spawn(len(self.argvs) - 1))
        wait_for("an etcd leader", self.leader_url, timeout=60)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{self.names[index]}.log", "ab")  # noqa: SIM115 (child owns it)
        try:
            return subprocess.Popen(self.argvs[index], stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` and wait for it."""
        self.procs[index].kill()
        self.procs[index].wait(timeout=15)

    def restart(self, index: int) -> None:
        """Start member ``index`` again on its data and wait until it answers and a leader is
        known (the cluster flags are ignored once the data directory exists)."""
        self.procs[index] = self._spawn(index)

        def healthy() -> bool:
            answer = httpx.get(self.urls[index] + "/health", timeout=2)
            return answer.status_code == 200 and self.leader_url() is not None

        wait_for(f"etcd member {self.names[index]} back", healthy, timeout=60)

    def leader_url(self) -> str | None:
        """The client URL of the member that leads, or None while there is none."""
        for url in self.urls:
            try:
                status = httpx.post(url + "/v3/maintenance/status", json={}, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") and status.get("leader") == status["header"]["member_id"]:
                return url
        return None

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
