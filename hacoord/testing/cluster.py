"""Real member processes on 127.0.0.1, launched the way an operator launches ``hacoord serve``.

Every member is started with the same cluster secret and admin token file; :attr:`LocalCluster.token`
is that admin token, which :meth:`LocalCluster.client`, :meth:`LocalCluster.http` and
:meth:`Member.get` send. Members serve HTTPS with certificates from a CA made under the root
(:attr:`LocalCluster.ca`), which those clients trust; ``tls=False`` serves plain HTTP instead
(loopback only, as ``hacoord serve --plain-http``). Every wait polls with a deadline; every
process is killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from hacoord.client import Client, Conflict, StaleEpoch
from hacoord.protocol.local import ADMIN_TOKEN_FILE
from hacoord.protocol.tokens import new_token
from hacoord.server.certs import MemberTls, ensure_ca, issue, member_tls

T = TypeVar("T")

#: Member flags that keep the leader from judging data nodes' liveness within a test (an hour
#: before suspect): nodes registered without heartbeats would otherwise be judged suspect after
#: 3 s, a write of the leader's own that a test counting revisions must not see.
NO_LIVENESS_JUDGEMENTS = ("--suspect-after", "3600", "--down-after", "7200")


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

    def __init__(self, member_id: str, api_port: int, raft_port: int, root: Path,
                 token: str | None = None, tls: MemberTls | None = None,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.id = member_id
        self.token = token
        self.tls = tls
        self.verify = verify
        self.api_port = api_port
        self.raft_port = raft_port
        self.data_dir = root / member_id
        self.log_path = root / f"{member_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The member's API base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.api_port}"

    @property
    def peer_spec(self) -> str:
        """The member as another member's ``--peer`` names it."""
        return f"{self.id}=127.0.0.1:{self.raft_port},{self.url}"

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> dict[str, Any]:
        """``GET path`` on this member; the JSON answer (raises on an error status)."""
        response = httpx.get(self.url + path, timeout=timeout, headers=bearer(self.token),
                             verify=self.verify)
        response.raise_for_status()
        return response.json()


def trusting(ca: Path | None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext | bool:
    """What an httpx client verifies the members' HTTPS with: ``ca`` (True: the system's),
    showing ``cert`` (certificate, key) if a member asks for one (mutual TLS)."""
    if ca is None:
        return True
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header that sends ``token`` (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class LocalCluster:
    """N members with a shared secret under ``root``; start, kill, restart, inspect."""

    def __init__(self, root: Path, size: int = 3, extra_args: tuple[str, ...] = (),
                 tls: bool = True) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret = root / "secret"
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
        #: The admin token file every member is started with, and its token.
        self.token_file = root / ADMIN_TOKEN_FILE
        if not self.token_file.exists():
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_token() + "\n")
        self.token = self.token_file.read_text().strip()
        #: The CA the members' certificates are signed by (None: plain HTTP), and the client
        #: certificate the kit's clients show (good under ``--tls-client-ca`` with that CA).
        self.ca: Path | None = ensure_ca(root)[0] if tls else None
        self.client_cert: tuple[Path, Path] | None = \
            issue(ensure_ca(root), root / "testing-kit", "testing-kit", ["localhost"]) if tls else None
        ports = free_ports(2 * size)
        self._tls = tls
        self.members = {f"m{k}": self._member(f"m{k}", ports[2 * (k - 1)], ports[2 * k - 1])
                        for k in range(1, size + 1)}
        #: Members removed from the cluster (kept for their logs).
        self.retired: dict[str, Member] = {}
        self.extra_args = extra_args

    def _member(self, member_id: str, api_port: int, raft_port: int) -> Member:
        root = self.root
        # The certificate is not in the member's data directory, which a storage fault may
        # replace with a small disk.
        tls = member_tls(root, member_id, "127.0.0.1", root / "tls" / member_id) if self._tls else None
        return Member(member_id, api_port, raft_port, root, self.token, tls, self.verify)

    def add_member(self, member_id: str) -> Member:
        """A new member on free ports (not started, not yet in the cluster's membership: ask
        for that with ``member_add``); it is started with every member of :attr:`members` as
        its peers."""
        assert member_id not in self.members
        api_port, raft_port = free_ports(2)
        member = self.members[member_id] = self._member(member_id, api_port, raft_port)
        return member

    def retire(self, member_id: str) -> Member:
        """Forget a member removed from the cluster (its process must have stopped): others
        started from now on are not told about it."""
        member = self.members.pop(member_id)
        assert not member.alive(), f"{member_id} still runs"
        self.retired[member_id] = member
        return member

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
                "--admin-token-file", str(self.token_file)]
        if member.tls is not None:
            argv += ["--tls-cert", str(member.tls.cert), "--tls-key", str(member.tls.key),
                     "--tls-ca", str(member.tls.ca)]
        else:
            argv += ["--plain-http"]
        argv += self.extra_args
        for peer in self.members.values():
            if peer.id != member.id:
                argv += ["--peer", self.peer_spec_for(member, peer)]
        return argv

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header with the admin token."""
        return bearer(self.token)

    def client(self, **options: Any) -> Client:
        """A :class:`~hacoord.client.Client` of the cluster with the admin token (``options``
        go to it; ``endpoints`` and ``token`` may be overridden)."""
        options.setdefault("token", self.token)
        if self.ca is not None and self.client_cert is not None:
            options.setdefault("ca", str(self.ca))
            options.setdefault("cert", tuple(str(p) for p in self.client_cert))
        endpoints = options.pop("endpoints", self.endpoints)
        return Client(endpoints, **options)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client verifies the members with (``verify=``)."""
        return trusting(self.ca, self.client_cert)

    def http(self, **options: Any) -> httpx.Client:
        """An ``httpx.Client`` that sends the admin token and trusts the cluster's CA
        (``options`` go to it)."""
        return httpx.Client(headers=self.headers, verify=self.verify, **options)

    def async_http(self, **options: Any) -> httpx.AsyncClient:
        """The same as :meth:`http`, for asyncio."""
        return httpx.AsyncClient(headers=self.headers, verify=self.verify, **options)

    def env(self) -> dict[str, str]:
        """The environment for a process that calls the cluster (``HACOORD_TOKEN_FILE``,
        ``HACOORD_CA`` and the kit's client certificate set)."""
        extra = {}
        if self.ca is not None and self.client_cert is not None:
            extra = {"HACOORD_CA": str(self.ca), "HACOORD_CERT": str(self.client_cert[0]),
                     "HACOORD_KEY": str(self.client_cert[1])}
        return {**os.environ, "HACOORD_TOKEN_FILE": str(self.token_file), **extra}

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
        """The member every live member (of ``among``) agrees leads, itself among them, once
        it has written the admin token into the log (so that tests see their own revisions)."""
        voters = among or self.live()

        def probe() -> str | None:
            statuses = {m: self.status(m) for m in voters}
            views = {s["leader"] for s in statuses.values()}
            leader = views.pop() if len(views) == 1 else None
            if leader not in voters or not statuses[leader]["bootstrapped"]:
                return None
            return leader

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
                         for m in [*self.members.values(), *self.retired.values()]
                         if m.log_path.exists())


@contextmanager
def running_cluster(root: Path, size: int = 3, extra_args: tuple[str, ...] = (),
                    tls: bool = True) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster`, stopped on the way out, whose member logs must then hold
    no traceback."""
    cluster = LocalCluster(root, size, extra_args, tls)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop_all()
        logs = cluster.logs()
        assert "Traceback" not in logs, logs


def report_caught_up(client: Client, resource: str) -> int:
    """Stand in for the data nodes of a test: every target of a pending move of ``resource``
    reports its new replica caught up, as a node would once it copied. Returns how many did (a
    route that moved on meanwhile is left for the next call)."""
    reported = 0
    for route in client.routing(resource, consistent=True):
        for node_id in route.adding:
            epoch = client.node_show(node_id).epoch
            with contextlib.suppress(StaleEpoch, Conflict):  # the route moved on meanwhile
                client.node_caught_up(node_id, epoch, route.resource, route.partition, route.epoch)
                reported += 1
    return reported
