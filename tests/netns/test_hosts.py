"""A cluster on real (virtual) hosts: every member in a network namespace of its own, behind a
bridge, started exactly as ``deploy/systemd`` starts it, and a client host that writes while the
test kills the leader, cuts the leader's host off the network, replaces a dead member by a new
one on another host (``m4``), restarts every member in turn, and takes a backup it restores into
a new cluster on three more hosts.

Layout (all made by the test, as root, and removed after; nothing is set up in the root
namespace)::

    hc<pid>-sw:  bridge br0, one port p-<host> per host
    hc<pid>-<host>: eth0 (the other end of p-<host>) with 10.231.<pid % 250>.<n>/24, and lo

Hosts ``m1``-``m3`` hold the source cluster, ``r1``-``r3`` the restored copy, ``client`` the
workload (:mod:`tests.netns.workload`), which records every write and when it was acknowledged.
Each step reports the longest stretch without an acknowledged write; no timing is asserted. What
is asserted: writes were acknowledged in every step, none acknowledged was lost, and the restored
cluster holds the backup's state (same revision and digest) and every write acknowledged before
the backup was taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hacoord.core.backup import read_header
from hacoord.server.certs import ensure_ca, issue
from hacoord.server.settings import ensure_admin_token, ensure_secret
from hacoord.testing.cluster import wait_for
from tests.chaos.checker import check_set
from tests.chaos.history import History
from tests.chaos.runner import worst_write_gap
from tests.deploy.test_deploy import DEPLOY, FILE_KEYS, parse_env_file, unit
from tests.integration.test_backup_restore import restore_cli
from tests.netns.workload import read_progress

# The signal method: the thread method ends the process at once, leaving the namespaces and the
# members (in sessions of their own) behind; this one fails the test and runs the teardown.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900, method="signal")]

REPO = Path(__file__).resolve().parents[2]
#: Where the unit's ``/opt/hacoord/bin/`` is here: the test's own virtualenv.
BIN = Path(sys.executable).parent
#: systemd's default ``PATH`` for services.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE = ("m1", "m2", "m3")
RESTORED = ("r1", "r2", "r3")
CLIENT = "client"
#: Each host's last address byte.
HOST_NUMBERS = {"m1": 1, "m2": 2, "m3": 3, "m4": 4, "r1": 11, "r2": 12, "r3": 13, CLIENT: 100}


# --- hosts -------------------------------------------------------------------------------------

def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``, failing the test on an error."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"
    return done


@dataclass
class Lab:
    """Network namespaces on one bridge, and the processes started in them (killed at teardown,
    before the namespaces are deleted)."""

    prefix: str
    subnet: str
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def netns(self, host: str) -> str:
        """The namespace of ``host``."""
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        """The IPv4 address of ``host`` (on its ``eth0``)."""
        return f"{self.subnet}.{HOST_NUMBERS[host]}"

    def add_namespace(self, name: str) -> None:
        """A new namespace with its loopback up (deleted at teardown)."""
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, host: str, bridge: str) -> None:
        """A namespace for ``host`` linked to the bridge of namespace ``bridge``."""
        netns, port = self.netns(host), f"p-{host}"
        self.add_namespace(netns)
        ip("-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", bridge, "link", "set", port, "master", "br0", "up")
        ip("-n", netns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")

    def spawn(self, host: str, argv: list[str], stdout: Path, stderr: Path | None = None) -> \
            subprocess.Popen[bytes]:
        """Start ``argv`` on ``host`` in a session of its own (output appended to the files)."""
        with contextlib.ExitStack() as files:
            out = files.enter_context(stdout.open("ab"))
            err = subprocess.STDOUT if stderr is None else files.enter_context(stderr.open("ab"))
            proc = subprocess.Popen(["ip", "netns", "exec", self.netns(host), *argv], cwd=REPO,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 120.0) -> str:
        """Run ``argv`` on ``host``; its stdout (failing the test on a non-zero exit)."""
        done = subprocess.run(["ip", "netns", "exec", self.netns(host), *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{argv[:4]} on {host}: {done.stderr[-3000:]}"
        return done.stdout

    def teardown(self) -> None:
        """SIGKILL every process started (its whole session) and anything else left in the
        namespaces, then delete them."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
        for name in reversed(self.namespaces):
            left = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                                  timeout=30)
            for pid in left.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """The switch and every host of the module docstring, as root; skips where that cannot be."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("no ip command (iproute2)")
    made = Lab(f"hc{os.getpid()}", f"10.231.{os.getpid() % 250}")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in listed.stdout.splitlines():  # a killed run's, with this pid: not ours to keep
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{made.prefix}-"):
            made.namespaces.append(name)
    made.teardown()
    made.namespaces.clear()
    try:
        switch = made.netns("sw")
        tried = subprocess.run(["ip", "netns", "add", switch], capture_output=True, text=True)
        if tried.returncode != 0:
            pytest.skip(f"ip netns add fails: {tried.stderr.strip()}")
        made.namespaces.append(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for host in HOST_NUMBERS:
            made.add_host(host, switch)
        yield made
    finally:
        made.teardown()


# --- members as systemd starts them ------------------------------------------------------------

def exec_start() -> list[str]:
    """The unit's ``ExecStart``, its ``/opt/hacoord/bin/`` this virtualenv's bin directory."""
    service = unit(DEPLOY / "systemd" / "hacoord.service")["Service"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0].startswith("/opt/hacoord/bin/"), argv
    return [str(BIN / Path(argv[0]).name), *argv[1:]]


def environment_template() -> dict[str, str]:
    """The unit's ``EnvironmentFile`` (member m1 of members on 10.0.0.1-3) as systemd reads it."""
    service = unit(DEPLOY / "systemd" / "hacoord.service")["Service"]
    return parse_env_file(DEPLOY / "systemd" / Path(service["EnvironmentFile"][0]).name)


def member_env(template: dict[str, str], roles: list[str], addresses: dict[str, str],
               etc: Path, data: Path) -> dict[str, str]:
    """``template`` for member ``roles[0]``: the file's m<k> and 10.0.0.<k> are ``roles[k-1]``
    and its address, /etc/hacoord is ``etc`` and /var/lib/hacoord is ``data``."""
    def relabel(value: str) -> str:
        assert not value.startswith("/") or value.startswith(("/etc/hacoord/", "/var/lib/hacoord")), \
            f"{value}: a file outside /etc/hacoord and /var/lib/hacoord"
        value = re.sub(r"\b10\.0\.0\.(\d+)\b", lambda m: addresses[roles[int(m[1]) - 1]], value)
        value = re.sub(r"\bm(\d+)\b", lambda m: roles[int(m[1]) - 1], value)
        return value.replace("/etc/hacoord", str(etc)).replace("/var/lib/hacoord", str(data))

    return {key: relabel(value) for key, value in template.items()}


@dataclass
class Credentials:
    """What every member of a cluster shares: its secret, the admin token and the CA."""

    secret: Path
    token: Path
    ca: tuple[Path, Path]

    @classmethod
    def make(cls, root: Path) -> Credentials:
        """New ones under ``root``."""
        return cls(ensure_secret(root / "secret"), ensure_admin_token(root / "admin.token"),
                   ensure_ca(root / "ca"))


@dataclass
class Member:
    """One member: its host and the environment systemd would give it."""

    id: str
    host: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its API URL, as it advertises it."""
        return self.env["HACOORD_ADVERTISE_API_URL"]

    @property
    def data_dir(self) -> Path:
        """Its data directory."""
        return Path(self.env["HACOORD_DATA_DIR"])


class Cluster:
    """Three members on ``hosts``, each host's files made under ``root`` as an operator installs
    them (the shared credentials copied, a certificate of its own for its address)."""

    def __init__(self, lab: Lab, root: Path, hosts: tuple[str, ...], creds: Credentials) -> None:
        self.lab = lab
        self.creds = creds
        self.root = root
        ids = [f"m{k}" for k in range(1, len(hosts) + 1)]
        self.addresses = {member_id: lab.address(host)
                          for member_id, host in zip(ids, hosts, strict=True)}
        self.members: dict[str, Member] = {}
        #: Members removed from the cluster (kept for their logs).
        self.retired: dict[str, Member] = {}
        for member_id, host in zip(ids, hosts, strict=True):
            self.add(member_id, host)

    def add(self, member_id: str, host: str) -> Member:
        """Install ``member_id`` on ``host``, with every member so far as its peers (the
        template's three roles: so at most two others)."""
        self.addresses[member_id] = self.lab.address(host)
        roles = [member_id, *(other for other in self.addresses if other != member_id
                              and other not in self.retired)][:3]
        root = self.root
        env = member_env(environment_template(), roles, self.addresses, root / member_id / "etc",
                         root / member_id / "data")
        self.install(env, member_id, self.addresses[member_id])
        member = self.members[member_id] = Member(member_id, host, env, root / f"{member_id}.log")
        return member

    def install(self, env: dict[str, str], member_id: str, address: str) -> None:
        """The files ``env`` names, for real."""
        files = {"secret": self.creds.secret, "token": self.creds.token, "ca": self.creds.ca[0]}
        for name, kind in FILE_KEYS.items():
            target = Path(env[name])
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind in files:
                shutil.copy2(files[kind], target)
        cert, key = issue(self.creds.ca, Path(env["HACOORD_TLS_CERT"]).parent, member_id, [address])
        assert (cert, key) == (Path(env["HACOORD_TLS_CERT"]), Path(env["HACOORD_TLS_KEY"]))

    def endpoints(self, *member_ids: str) -> str:
        """The API URLs of ``member_ids`` (default: all), comma-separated."""
        return ",".join(self.members[m].url for m in member_ids or self.members)

    def start(self, member_id: str) -> None:
        """``env -i PATH=... <EnvironmentFile> <ExecStart>`` on the member's host."""
        member = self.members[member_id]
        assert member.proc is None or member.proc.poll() is not None, f"{member_id} runs"
        variables = [f"{key}={value}" for key, value in member.env.items()]
        member.proc = self.lab.spawn(member.host, ["env", "-i", f"PATH={SERVICE_PATH}", *variables,
                                                   *exec_start()], member.log)

    def stop(self, member_id: str, sig: int) -> int:
        """Send ``sig`` to the member and wait for it to exit; its exit status."""
        proc = self.members[member_id].proc
        assert proc is not None and proc.poll() is None, f"{member_id} is not running"
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def logs(self) -> str:
        """Every member's log."""
        return "\n".join(f"--- {m.id} ({m.host})\n{m.log.read_text(errors='replace')}"
                         for m in [*self.members.values(), *self.retired.values()]
                         if m.log.exists())


# --- the client host ---------------------------------------------------------------------------

class ClientHost:
    """The client namespace: the workload and the commands run there."""

    def __init__(self, lab: Lab, root: Path, creds: Credentials) -> None:
        self.lab = lab
        self.creds = creds
        self.progress = root / "progress.jsonl"
        self.stop_file = root / "stop"
        self.report = root / "workload.json"
        self.log = root / "workload.log"
        self.writer: subprocess.Popen[bytes] | None = None

    def tool_argv(self, command: str, endpoints: str, *extra: str) -> list[str]:
        """The command line of ``python -m tests.netns.workload COMMAND``."""
        return [sys.executable, "-m", "tests.netns.workload", command, "--endpoints", endpoints,
                "--ca", str(self.creds.ca[0]), "--token-file", str(self.creds.token), *extra]

    def tool(self, command: str, endpoints: str) -> Any:
        """``python -m tests.netns.workload COMMAND`` on the client host; its JSON answer."""
        return json.loads(self.lab.run(CLIENT, self.tool_argv(command, endpoints)))

    def hacoord(self, endpoints: str, *args: str) -> Any:
        """The ``hacoord`` CLI on the client host (``--json``); its JSON answer."""
        return json.loads(self.lab.run(CLIENT, [
            str(BIN / "hacoord"), "--endpoints", endpoints, "--ca", str(self.creds.ca[0]),
            "--token-file", str(self.creds.token), "--json", *args]))

    def start_writes(self, endpoints: str) -> None:
        """Start the workload (``write``) against ``endpoints``."""
        self.writer = self.lab.spawn(CLIENT, self.tool_argv(
            "write", endpoints, "--progress", str(self.progress), "--stop-file", str(self.stop_file),
            "--max-seconds", "600"), self.report, self.log)

    def stop_writes(self) -> dict[str, Any]:
        """Stop the workload; its report."""
        assert self.writer is not None
        self.stop_file.touch()
        assert self.writer.wait(timeout=60) == 0, self.log.read_text()[-3000:]
        return json.loads(self.report.read_text())

    def history(self) -> History:
        """Every operation the workload finished so far."""
        return History(ops=read_progress(self.progress))

    def acked_after(self, moment: float) -> bool:
        """Whether the workload has recorded a write acknowledged after ``moment`` (monotonic)."""
        return any(op.status == "ok" and op.completed is not None and op.completed > moment
                   for op in self.history().ops)


# --- the steps ---------------------------------------------------------------------------------

@dataclass
class Step:
    """What one step measured: acknowledged writes during it and the longest stretch without."""

    name: str
    seconds: float
    acked: int
    worst_gap: float
    note: str = ""


def measure(client: ClientHost, name: str, start: float, note: str = "") -> Step:
    """The step begun at ``start`` and ending now, once the workload has recorded a write
    acknowledged after it (so that the stretch at its end is not a flush not yet made)."""
    end = time.monotonic()
    wait_for(f"a write acknowledged after step {name!r}", lambda: client.acked_after(end),
             timeout=60, interval=0.1)
    history = client.history()
    acked = sum(1 for op in history.ops
                if op.status == "ok" and op.completed is not None and start <= op.completed <= end)
    return Step(name, end - start, acked, worst_write_gap(history, start, end), note)


def kill_and_restart_the_leader(cluster: Cluster, client: ClientHost) -> str:
    """SIGKILL the leader, wait for a successor, start it again and wait until it is ready."""
    leader = client.tool("leader", cluster.endpoints())
    cluster.stop(leader, signal.SIGKILL)
    others = [m for m in cluster.members if m != leader]
    successor = client.tool("leader", cluster.endpoints(*others))
    cluster.start(leader)
    client.tool("ready", cluster.endpoints(leader))
    return f"{leader} killed, {successor} took over"


def cut_off_the_leader(cluster: Cluster, client: ClientHost) -> str:
    """Take the leader's host off the network (its link down: no FIN, no RST, as when a host
    dies), wait for a successor, bring the link back and wait until the old leader is ready."""
    leader = client.tool("leader", cluster.endpoints())
    host = cluster.lab.netns(cluster.members[leader].host)
    ip("-n", host, "link", "set", "eth0", "down")
    try:
        successor = client.tool("leader", cluster.endpoints(*(m for m in cluster.members
                                                               if m != leader)))
    finally:
        ip("-n", host, "link", "set", "eth0", "up")
    client.tool("ready", cluster.endpoints(leader))
    return f"{leader}'s link down, {successor} took over; {leader} back and ready"


def replace_a_member(cluster: Cluster, client: ClientHost, new_id: str, host: str) -> str:
    """A follower's host dies for good (SIGKILL); the operator removes it from the membership,
    installs ``new_id`` on ``host`` (a new address, the current members as its peers), starts
    it, adds it, and waits until it is ready (caught up)."""
    leader = client.tool("leader", cluster.endpoints())
    dead = next(m for m in cluster.members if m != leader)
    cluster.stop(dead, signal.SIGKILL)
    removed = client.hacoord(cluster.endpoints(), "member", "remove", dead)
    assert removed["changed"] and dead not in {m["id"] for m in removed["members"]}, removed
    cluster.retired[dead] = cluster.members.pop(dead)
    del cluster.addresses[dead]
    member = cluster.add(new_id, host)
    cluster.start(new_id)
    added = client.hacoord(cluster.endpoints(), "member", "add", new_id,
                           "--raft", member.env["HACOORD_RAFT_ADDRESS"], "--api", member.url)
    assert added["changed"] and new_id in {m["id"] for m in added["members"]}, added
    client.tool("ready", cluster.endpoints(new_id))
    listed = client.hacoord(cluster.endpoints(new_id), "member", "list")
    assert sorted(m["id"] for m in listed) == sorted(cluster.members), listed
    return f"{dead} killed and removed, {new_id} on {cluster.lab.address(host)} added and ready"


def rolling_restart(cluster: Cluster, client: ClientHost) -> str:
    """Each member in turn: SIGTERM, wait for its exit (status 0), start it, wait until ready."""
    exits = []
    for member_id in cluster.members:
        exits.append(cluster.stop(member_id, signal.SIGTERM))
        cluster.start(member_id)
        client.tool("ready", cluster.endpoints(member_id))
    assert exits == [0] * len(exits), f"exit statuses after SIGTERM: {exits}"
    return f"{', '.join(cluster.members)} in turn: SIGTERM, start, ready"


def backup_and_restore(source: Cluster, copy: Cluster, client: ClientHost, backup: Path) -> \
        tuple[float, str]:
    """A backup through the API restored into ``copy`` (started, with a leader); when the backup
    began, and a note. Checks the copy's state is the backup's."""
    began = time.monotonic()
    client.hacoord(source.endpoints(), "backup", str(backup))
    header, _ = read_header(backup.read_bytes())
    first, *others = copy.members.values()
    copy_id = restore_cli(backup, first.data_dir)
    for member in others:
        assert restore_cli(backup, member.data_dir, copy_id) == copy_id
    # Asked before the members start, so each one's first answer is its state as restored.
    statuses = client.lab.spawn(CLIENT, client.tool_argv("first-status", copy.endpoints()),
                                client.report.with_name("first-status.json"), client.log)
    for member_id in copy.members:
        copy.start(member_id)
    assert statuses.wait(timeout=120) == 0, client.log.read_text()[-3000:]
    first_seen = json.loads(client.report.with_name("first-status.json").read_text())
    assert {(s["revision"], s["digest"], s["cluster_id"]) for s in first_seen.values()} == {
        (header.revision, header.digest, copy_id)}, first_seen
    assert header.cluster_id is not None and copy_id != header.cluster_id
    client.tool("leader", copy.endpoints())
    return began, f"revision {header.revision}, copy {copy_id}"


def print_table(steps: list[Step], report: dict[str, Any], seconds: float) -> None:
    """The steps' measures (shown with ``pytest -s``)."""
    print(f"\n{'step':<30} {'seconds':>8} {'acked':>6} {'worst gap (s)':>14}  note")
    for step in steps:
        print(f"{step.name:<30} {step.seconds:8.1f} {step.acked:6d} {step.worst_gap:14.3f}  {step.note}")
    print(f"{len(report['acked'])} writes acknowledged, {len(report['unknown'])} unknown, "
          f"{seconds:.0f} s in all")


def test_writes_survive_failover_rolling_restart_and_a_restore_across_hosts(lab: Lab,
                                                                             tmp_path: Path) -> None:
    creds = Credentials.make(tmp_path / "credentials")
    source = Cluster(lab, tmp_path / "source", SOURCE, creds)
    # The copy: hosts and a secret of its own; the admin token is the source's (it is in the
    # state the copy is restored with), the CA too (one client trusts both).
    copy = Cluster(lab, tmp_path / "copy", RESTORED,
                   Credentials(ensure_secret(tmp_path / "copy-secret"), creds.token, creds.ca))
    client = ClientHost(lab, tmp_path, creds)
    began = time.monotonic()
    for member_id in source.members:
        source.start(member_id)
    client.tool("leader", source.endpoints())
    client.start_writes(source.endpoints())
    wait_for("the first acknowledged write", lambda: client.acked_after(began), timeout=60,
             interval=0.1)

    steps: list[Step] = []
    start = time.monotonic()
    wait_for("three seconds of writes", lambda: time.monotonic() - start >= 3 and
             client.acked_after(start), timeout=60, interval=0.1)
    steps.append(measure(client, "a. steady writes", start))
    start = time.monotonic()
    note = kill_and_restart_the_leader(source, client)
    steps.append(measure(client, "b. leader SIGKILL, restart", start, note))
    start = time.monotonic()
    note = cut_off_the_leader(source, client)
    steps.append(measure(client, "c. leader's host cut off", start, note))
    start = time.monotonic()
    note = replace_a_member(source, client, "m4", "m4")
    steps.append(measure(client, "d. member replaced", start, note))
    start = time.monotonic()
    note = rolling_restart(source, client)
    steps.append(measure(client, "e. rolling restart", start, note))
    start = time.monotonic()
    backup_began, note = backup_and_restore(source, copy, client, tmp_path / "backup.hcb")
    steps.append(measure(client, "f. backup, restore elsewhere", start, note))
    report = client.stop_writes()

    print_table(steps, report, time.monotonic() - began)

    ops = client.history().ops
    assert [op.value for op in ops if op.status == "ok"] == report["acked"]
    assert check_set(ops, set(client.tool("nodes", source.endpoints()))) == []
    before_backup = {op.value for op in ops if op.status == "ok" and op.completed is not None
                     and op.completed < backup_began}
    missing = before_backup - set(client.tool("nodes", copy.endpoints()))
    assert not missing, f"{len(missing)} writes acknowledged before the backup not in the copy"
    assert all(step.acked > 0 for step in steps), steps
    for cluster in (source, copy):
        assert "Traceback" not in cluster.logs(), cluster.logs()[-5000:]
