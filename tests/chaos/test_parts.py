"""Quick tests of the chaos suite's own parts, without a cluster of processes: the checkers fed
with resolved writes, epochs and fenced writes, the fenced store, the comparison of change feeds,
the resolution of unknown writes (against the in-process API), the proxied address layout and
the proxy's rules (against a plain socket)."""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hacoord.client import Client
from hacoord.testing.cluster import LocalCluster, free_ports, wait_for
from hacoord.testing.inprocess import InProcessCluster
from tests.chaos.checker import (
    check_epochs,
    check_fenced_writes,
    check_registers,
    check_revisions,
    check_set,
)
from tests.chaos.feeds import FeedSampler
from tests.chaos.fenced import FencedStore
from tests.chaos.history import History, Op
from tests.chaos.membership import MembershipWorkload
from tests.chaos.network import Link, Network, ProxiedCluster, raft_address
from tests.chaos.resolve import resolve
from tests.chaos.runner import worst_write_gap
from tests.chaos.workloads import Context


def op(f: str, value: object, invoked: float, completed: float | None, status: str = "ok",
       result: object = None, resolved: str | None = None, key: str | None = None) -> Op:
    return Op("c0", f, value, invoked, completed, status, result, key=key, resolved=resolved)


# --- checkers with resolved writes ----------------------------------------------------------------

def test_set_resolved_adds_must_be_present_or_absent() -> None:
    ops = [op("add", "e-1", 0.0, 1.0, "unknown", resolved="applied"),
           op("add", "e-2", 0.0, 1.0, "unknown", resolved="not_applied"),
           op("add", "e-3", 0.0, 1.0, "unknown")]
    assert check_set(ops, {"e-1", "e-3"}) == []
    assert any("missing" in p for p in check_set(ops, {"e-3"}))
    assert any("recorded as not applied" in p for p in check_set(ops, {"e-1", "e-2"}))
    read = op("read", None, 2.0, 3.0, result=["e-1", "e-2"])
    assert any("never applied" in p for p in check_set([*ops, read], {"e-1"}))


def test_register_writes_resolved_applied_took_effect_before_the_resolution() -> None:
    write = op("write", "1", 0.0, 1.0, "unknown", key="reg-0")
    late_read = op("read", None, 5.0, 6.0, result=None, key="reg-0")
    assert check_registers([write, late_read], 1) == []  # maybe never applied: fine
    write.resolved = "applied"
    assert check_registers([write, late_read], 1, resolved_at=4.0) != []
    assert check_registers([write, late_read], 1, resolved_at=7.0) == []  # may land after the read


def test_register_writes_resolved_not_applied_are_never_seen() -> None:
    cas = op("cas", (None, "2"), 0.0, 1.0, "unknown", key="reg-0")
    read = op("read", None, 2.0, 3.0, result="2", key="reg-0")
    assert check_registers([cas, read], 1) == []
    cas.resolved = "not_applied"
    assert check_registers([cas, read], 1) != []


def test_one_revision_per_write() -> None:
    a, b = op("add", "e-1", 0.0, 1.0), op("add", "e-2", 0.0, 1.0)
    a.request_id, b.request_id, a.revision, b.revision = "r1", "r2", 7, 8
    assert check_revisions([a, b]) == []
    b.revision = 7
    assert check_revisions([a, b]) != []


# --- epochs and fencing -------------------------------------------------------------------------

def route(revision: int, replicas: tuple[str, ...], leader: str, epoch: int,
          partition: int = 0) -> tuple[int, str, int, tuple[str, ...], str, int]:
    return (revision, "fenced", partition, replicas, leader, epoch)


def test_epochs_grow_with_every_owner_change() -> None:
    good = [route(3, ("d1", "d2"), "d1", 1), route(5, ("d1", "d2"), "d1", 1),
            route(9, ("d3", "d2"), "d2", 2), route(7, ("d3", "d2"), "d2", 2)]
    assert check_epochs(good) == []
    assert any("two owners" in p for p in check_epochs([*good, route(12, ("d3", "d4"), "d3", 2)]))
    assert any("went back" in p for p in check_epochs([*good, route(12, ("d1", "d2"), "d1", 1)]))
    assert any("routes at revision" in p for p in check_epochs([*good, route(9, ("d1", "d2"), "d1", 2)]))


def test_fenced_store_refuses_stale_epochs_and_the_checker_reads_its_log() -> None:
    store = FencedStore()
    assert store.write(0, 2, "d1", "c0")
    store.learn(0, 3, "mover")
    assert not store.write(0, 2, "d1", "c1")
    assert store.write(0, 3, "d2", "c1")
    assert store.rejected == 1
    routes = [route(4, ("d1", "d2"), "d1", 2), route(8, ("d2", "d3"), "d2", 3)]
    assert check_fenced_writes(store.log, routes) == []
    assert any("stale" in p for p in check_fenced_writes([*store.log, store.log[0]], routes))
    wrong = [route(4, ("d1", "d2"), "d3", 2), routes[1]]
    assert any("leader at that epoch" in p for p in check_fenced_writes(store.log, wrong))


def test_feeds_must_agree_revision_by_revision(tmp_path: Path) -> None:
    sampler = FeedSampler(LocalCluster(tmp_path, 3))
    event = {"type": "NodeRegistered", "revision": 1, "data": {"id": "n1"}}
    sampler._compare("m1", 1, [event])
    sampler._compare("m2", 1, [event])
    assert sampler.compared == 1 and sampler.problems == []
    sampler._compare("m3", 1, [{**event, "data": {"id": "n2"}}])
    assert sampler.problems and "diverge" in sampler.problems[0]


# --- resolution of unknown writes ---------------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m1") as running:
        yield running


def test_resolve_reads_the_records_of_applied_request_ids(cluster: InProcessCluster) -> None:
    with Client(cluster.urls, transport=cluster.transport) as leader, \
            Client([cluster.url("m1")], transport=cluster.transport) as m1:
        revision = leader.node_add("n1", "10.0.0.1:9000", request_id="rid-1").revision
        applied, lost = op("add", "n1", 0.0, 1.0, "unknown"), op("add", "n2", 0.0, 1.0, "unknown")
        applied.request_id, lost.request_id = "rid-1", "rid-2"
        _, problems = resolve([applied, lost], leader, {"m1": m1}, random.Random(1))
        assert problems == []
        assert (applied.resolved, applied.revision, lost.resolved) == ("applied", revision, "not_applied")
        acked = op("add", "n1", 0.0, 1.0)
        acked.request_id, acked.revision = "rid-1", revision + 1
        _, problems = resolve([acked], leader, {"m1": m1}, random.Random(1))
        assert problems and "recorded at" in problems[0]


def test_resolve_reports_members_whose_record_disagrees(cluster: InProcessCluster) -> None:
    """In the in-process cluster followers apply nothing: m2's record lacks the write."""
    with Client(cluster.urls, transport=cluster.transport) as leader, \
            Client([cluster.url("m2")], transport=cluster.transport) as m2:
        leader.node_add("n1", "10.0.0.1:9000", request_id="rid-1")
        unknown = op("add", "n1", 0.0, 1.0, "unknown")
        unknown.request_id = "rid-1"
        _, problems = resolve([unknown], leader, {"m2": m2}, random.Random(1))
        assert unknown.resolved == "applied" and "m2 says None" in problems[0]


# --- the proxied layout -------------------------------------------------------------------------

def test_every_link_is_opened_through_a_proxy_by_the_member_the_other_one_recognises(
        tmp_path: Path) -> None:
    cluster = ProxiedCluster(tmp_path, 5)
    members = cluster.members
    for a in members.values():
        for b in members.values():
            if a.id == b.id:
                continue
            told = cluster.peer_spec_for(a, b).split("=", 1)[1].split(",")[0]  # a's address for b
            back = cluster.peer_spec_for(b, a).split("=", 1)[1].split(",")[0]
            own = raft_address(a.raft_port)
            if own > told:  # a opens the link (PySyncObj's _shouldConnect) ...
                link = cluster.links[(a.id, b.id)]
                assert told == raft_address(link.listen) and link.target == raft_address(b.raft_port)
                assert back == own  # ... announcing its own address, which b knows it by
                assert raft_address(b.raft_port) < back  # and b never dials a itself
            else:
                assert (b.id, a.id) in cluster.links
    assert len(cluster.links) == 10


# --- the proxy's rules --------------------------------------------------------------------------

def frame(data: bytes) -> bytes:
    return struct.pack("i", len(data)) + data


class Receiver:
    """A member's Raft port, as far as the proxy can tell: collects what arrives, in order."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = raft_address(self.server.getsockname()[1])
        self.received = b""
        self.closed = threading.Event()
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.server.accept()
        for _ in range(100_000):
            data = self.conn.recv(65536)
            if not data:
                break
            self.received += data
        self.closed.set()

    def close(self) -> None:
        self.server.close()
        if self.conn is not None:
            self.conn.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Network, Receiver, socket.socket]]:
    receiver = Receiver()
    port = free_ports(1)[0]
    network = Network([Link("a", "b", port, receiver.address)], tmp_path / "proxy.log", seed=1)
    network.start()
    sender = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        yield network, receiver, sender
    finally:
        sender.close()
        network.close()
        receiver.close()


def until(what: str, probe: Callable[[], object]) -> None:
    wait_for(what, lambda: bool(probe()), timeout=10)


def test_a_cut_holds_frames_and_the_close_until_the_heal(
        proxied: tuple[Network, Receiver, socket.socket]) -> None:
    network, receiver, sender = proxied
    sender.sendall(frame(b"one"))
    until("the first frame", lambda: receiver.received == frame(b"one"))
    network.partition({"a"}, {"b"})
    sender.sendall(frame(b"two") + frame(b"three"))
    sender.close()
    until("two frames held", lambda: network.stats()["a>b"]["held_frames"] == 2)
    assert receiver.received == frame(b"one") and not receiver.closed.is_set()
    network.heal()
    until("the close after the held frames", receiver.closed.is_set)
    assert receiver.received == frame(b"one") + frame(b"two") + frame(b"three")
    assert network.stats()["a>b"]["connections"] == 1


def test_one_way_cut_lets_the_other_way_through(
        proxied: tuple[Network, Receiver, socket.socket]) -> None:
    network, receiver, sender = proxied
    sender.sendall(frame(b"hello"))
    until("the connection", lambda: receiver.conn is not None and receiver.received)
    network.one_way("a", "b")
    assert receiver.conn is not None
    receiver.conn.sendall(frame(b"back"))
    assert sender.recv(64) == frame(b"back")
    sender.sendall(frame(b"lost?"))
    until("a>b held", lambda: network.stats()["a>b"]["held_frames"] == 1)
    network.heal()
    until("the held frame", lambda: receiver.received.endswith(frame(b"lost?")))


def test_slow_lossy_links_delay_and_retransmit_in_order(
        proxied: tuple[Network, Receiver, socket.socket]) -> None:
    network, receiver, sender = proxied
    network.degrade(["a", "b"], (0.001, 0.01), loss=0.5)
    frames = [frame(str(i).encode()) for i in range(40)]
    for data in frames:
        sender.sendall(data)
    until("every frame", lambda: len(receiver.received) == len(b"".join(frames)))
    assert receiver.received == b"".join(frames)
    stats = network.stats()["a>b"]
    assert stats["delayed_frames"] == 40 and 0 < stats["retransmitted_frames"] < 40


def test_membership_check_catches_a_short_partition_and_a_removed_node_left_behind() -> None:
    work = MembershipWorkload()
    work.counts["caught_up"] = 1
    moved = Op(process="mover", f="move", value=(0, "d1", "d2"), invoked=0.0, completed=1.0,
               status="ok")
    work.store.write(0, 1, "d1", "w")
    routes = [(5, "fenced", 0, ("d1", "d2"), "d1", 3), (9, "fenced", 0, ("d2",), "d2", 4)]
    work.removed.add("d9")
    problems = work.check([moved], Context(final_nodes={"d1", "d2", "d9"}, routes=routes))
    assert any("below its replication factor" in p for p in problems), problems
    assert any("d9" in p for p in problems), problems
    healthy = MembershipWorkload()
    healthy.counts["caught_up"] = 1
    healthy.store.write(0, 1, "d1", "w")
    assert healthy.check([moved], Context(final_nodes={"d1", "d2"}, routes=routes[:1])) == []


def test_the_worst_write_gap_spans_the_fault_window_and_ignores_reads() -> None:
    history = History()
    history.ops = [op("add", 1, 0.0, 1.0), op("read", None, 1.0, 5.0),
                   op("add", 2, 1.0, 4.0), op("add", 3, 4.0, 4.5, status="fail"),
                   op("add", 4, 5.0, 6.0), op("add", 5, 9.0, 20.0)]
    assert worst_write_gap(history, 0.5, 8.0) == 3.0  # 1.0 -> 4.0 (the read and failure ignored)
    assert worst_write_gap(history, 6.5, 8.0) == 1.5  # nothing acknowledged at all
