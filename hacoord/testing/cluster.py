"""Real member processes on 127.0.0.1, launched the way an operator launches ``hacoord serve``.

Every wait polls with a deadline; every process is killed at teardown.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (bound together so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0,
             interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class Member:
    """One ``hacoord serve`` process."""

    def __init__(self, member_id: str, api_port: int, raft_port: int, root: Path) -> None:
        self.id = member_id
        self.api_port = api_port
        self.raft_port = raft_port
        self.data_dir = root / member_id
        self.log_path = root / f"{member_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The member's API base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def peer_spec(self) -> str:
        """The member as another member's ``--peer`` names it."""
        return f"{self.id}=127.0.0.1:{self.raft_port},{self.url}"

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> dict[str, Any]:
        """``GET path`` on this member; the JSON answer (raises on an error status)."""
        response = httpx.get(self.url + path, timeout=timeout)
        response.raise_for_status()
        return response.json()


class LocalCluster:
    """N members with a shared secret under ``root``; start, kill, restart, inspect."""

    def __init__(self, root: Path, size: int = 3, extra_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret = root / "secret"
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
        ports = free_ports(2 * size)
        self.members = {f"m{k}": Member(f"m{k}", ports[2 * (k - 1)], ports[2 * k - 1], root)
                        for k in range(1, size + 1)}
        self.extra_args = extra_args

    @property
    def endpoints(self) -> list[str]:
        """Every member's API base URL (what a ``Client`` takes)."""
        return [m.url for m in self.members.values()]

    def argv(self, member: Member) -> list[str]:
        """The command line that starts ``member``."""
        argv = [sys.executable, "-m", "hacoord", "serve", "--member-id", member.id,
                "--raft-address", f"127.0.0.1:{member.raft_port}",
                "--api-address", f"127.0.0.1:{member.api_port}",
                "--data-dir", str(member.data_dir), "--secret-file", str(self.secret),
                *self.extra_args]
        for peer in self.members.values():
            if peer.id != member.id:
                argv += ["--peer", self.peer_spec_for(member, peer)]
        return argv

    def peer_spec_for(self, member: Member, peer: Member) -> str:
        """How ``member`` is told about ``peer`` (``--peer``); a subclass may route the Raft link
        elsewhere, through a proxy say."""
        return peer.peer_spec

    def start(self, member_id: str | None = None, prefix: tuple[str, ...] = ()) -> None:
        """Start one member (or all); ``prefix`` runs it under a wrapper (``prlimit ...``)."""
        targets = [self.members[member_id]] if member_id else list(self.members.values())
        for member in targets:
            assert not member.alive(), f"{member.id} already running"
            log = open(member.log_path, "ab")  # noqa: SIM115 (the child owns it)
            member.proc = subprocess.Popen([*prefix, *self.argv(member)], stdout=log,
                                           stderr=subprocess.STDOUT)
            log.close()

    def kill(self, member_id: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the member (if it runs) and wait for it to exit."""
        member = self.members[member_id]
        if member.alive():
            assert member.proc is not None
            member.proc.send_signal(sig)
            member.proc.wait(timeout=15)

    def stop_all(self) -> None:
        """SIGTERM every member, then SIGKILL any still running after 10 s."""
        for member in self.members.values():
            if member.alive():
                assert member.proc is not None
                member.proc.terminate()
        for member in self.members.values():
            if member.proc is not None:
                try:
                    member.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    member.proc.kill()
                    member.proc.wait()

    def status(self, member_id: str) -> dict[str, Any]:
        """The member's ``/v1/status`` (with its state digest)."""
        return self.members[member_id].get("/v1/status?digest=true")

    def leader(self, timeout: float = 20.0, among: list[str] | None = None) -> str:
        """The member every live member (of ``among``) agrees leads, itself among them."""
        voters = among or self.live()

        def probe() -> str | None:
            views = {self.status(m)["leader"] for m in voters}
            leader = views.pop() if len(views) == 1 else None
            return leader if leader in voters else None

        return wait_for("one agreed leader", probe, timeout)

    def live(self) -> list[str]:
        """The ids of the members whose process runs."""
        return [m.id for m in self.members.values() if m.alive()]

    def converged(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until all live members report the same revision and digest; return one status."""
        def probe() -> dict[str, Any] | None:
            statuses = [self.status(m) for m in self.live()]
            same = len({(s["revision"], s["digest"]) for s in statuses}) == 1
            return statuses[0] if same else None

        return wait_for("equal revision and digest on every live member", probe, timeout)

    def logs(self) -> str:
        """The last 4,000 characters of each member's log."""
        return "\n".join(f"--- {m.id}\n{m.log_path.read_text(errors='replace')[-4000:]}"
                         for m in self.members.values() if m.log_path.exists())


@contextmanager
def running_cluster(root: Path, size: int = 3, extra_args: tuple[str, ...] = ()) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster`, stopped on the way out, whose member logs must then hold
    no traceback."""
    cluster = LocalCluster(root, size, extra_args)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop_all()
        logs = cluster.logs()
        assert "Traceback" not in logs, logs
