"""Deterministic, in-process harness for real PySyncObj members.

Everything that PySyncObj normally takes from the outside world is in the test's hands:

* **time** - :func:`controlled_time` swaps ``pysyncobj.syncobj.monotonicTime`` (the clock behind
  election deadlines, heartbeats and fallback timeouts) for a :class:`FakeClock`, and the
  ``random`` module used for election timeouts for a seeded ``random.Random``;
* **the network** - :class:`Network` keeps one FIFO queue per directed link.  Nothing moves until
  the test calls :meth:`Network.deliver` (one or ``n`` messages of one link) or
  :meth:`Network.deliver_all`; a link can be *held* (skipped by ``deliver_all``) or *cut*
  (a disconnect: both queues are dropped and both ends are told the peer went away);
* **ticks** - members run with ``autoTick=False``; :meth:`Cluster.tick` calls ``doTick(0)``.

Messages are pickled on send and unpickled on delivery, as on the wire, so no object is shared
between members.  Members are ``SyncObj`` (or a subclass such as ``SafeSyncObj``) with an
:class:`AppendLog` consumer, so each member's applied sequence can be compared; every command
whose callback reported ``FAIL_REASON.SUCCESS`` is recorded in :attr:`Cluster.acked`.

The harness reads a few private attributes of SyncObj (``_SyncObj__raftLog``) to inspect logs; it
never changes them.  It has no sleeps and no threads: every loop is bounded.
"""

from __future__ import annotations

import contextlib
import pickle
import random
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.syncobj as syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.node import Node
from pysyncobj.transport import Transport

REGULAR_COMMAND = 0  # pysyncobj's _COMMAND_TYPE.REGULAR: first byte of a user command


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def controlled_time(seed: int = 0) -> Iterator[FakeClock]:
    """Drive PySyncObj's clock and election randomness from the test (restored on exit)."""
    clock = FakeClock()
    saved = (syncobj_module.monotonicTime, syncobj_module.random)
    syncobj_module.monotonicTime = clock
    syncobj_module.random = random.Random(seed)
    try:
        yield clock
    finally:
        syncobj_module.monotonicTime, syncobj_module.random = saved


def describe(src: str, dst: str, message: dict[str, Any]) -> str:
    """One-line summary of a Raft message, for transcripts and failure reports."""
    kind = message.get("type")
    if kind == "append_entries":
        if "serialized" in message:
            body = "snapshot-chunk"
        elif "transmission" in message:
            body = f"prev={message['prevLogIdx']} chunk={message['transmission']}"
        else:
            entries = message.get("entries", [])
            span = f"{entries[0][1]}..{entries[-1][1]}" if entries else "none"
            body = f"prev={message['prevLogIdx']} entries={span}"
        return f"{src}->{dst} append_entries(term={message['term']} {body} " \
               f"commit={message['commit_index']})"
    if kind == "next_node_idx":
        flags = ("success" if message["success"] else "fail") + (" reset" if message["reset"] else "")
        return f"{src}->{dst} next_node_idx({message['next_node_idx']} {flags})"
    return f"{src}->{dst} {kind}(term={message.get('term')})"


class Network:
    """Per-link FIFO queues between in-memory transports; the test decides what moves when."""

    def __init__(self, clock: FakeClock | None = None, send_cost: float = 0.001) -> None:
        # Each send moves the clock by ``send_cost``: 0.3.17's leader loops in one tick until
        # ``appendEntriesPeriod`` has passed when a follower needs a snapshot that is still
        # being written (it sends ``serialized: None`` again and again); a frozen clock would
        # make that loop endless.
        self.clock = clock
        self.send_cost = send_cost
        self.transports: dict[str, InMemoryTransport] = {}
        self.queues: dict[tuple[str, str], deque[bytes]] = {}
        self.cut: set[frozenset[str]] = set()
        self.held: set[tuple[str, str]] = set()
        self.record = False
        self.transcript: list[str] = []

    # -- membership of the network ---------------------------------------------------------
    def attach(self, transport: InMemoryTransport) -> None:
        self.transports[transport.name] = transport

    def detach(self, name: str) -> None:
        """A member went away: its connections close and everything in flight is lost."""
        if self.transports.pop(name, None) is None:
            return
        for peer in sorted(self.transports):
            self._drop_queues(name, peer)
            self.transports[peer].peer_disconnected(name)

    def connect(self, name: str) -> None:
        """Open connections from ``name`` to every attached peer whose link is not cut."""
        for peer in sorted(self.transports):
            if peer != name and self.linked(name, peer):
                self.transports[name].peer_connected(peer)
                self.transports[peer].peer_connected(name)

    def linked(self, a: str, b: str) -> bool:
        """a and b are up, not cut apart, and each has the other among its members (a member
        refuses a connection from an address outside its membership)."""
        ta, tb = self.transports.get(a), self.transports.get(b)
        return (ta is not None and tb is not None and frozenset((a, b)) not in self.cut
                and b in ta.peers and a in tb.peers)

    # -- faults -----------------------------------------------------------------------------
    def cut_link(self, a: str, b: str) -> None:
        """Disconnect a and b: both directions' queued messages are lost."""
        was_linked = self.linked(a, b)
        self.cut.add(frozenset((a, b)))
        self._drop_queues(a, b)
        if was_linked:
            self.transports[a].peer_disconnected(b)
            self.transports[b].peer_disconnected(a)

    def heal_link(self, a: str, b: str) -> None:
        self.cut.discard(frozenset((a, b)))
        if self.linked(a, b):
            self.transports[a].peer_connected(b)
            self.transports[b].peer_connected(a)

    def hold(self, src: str, dst: str) -> None:
        self.held.add((src, dst))

    def release(self, src: str, dst: str) -> None:
        self.held.discard((src, dst))

    def _drop_queues(self, a: str, b: str) -> None:
        self.queues.pop((a, b), None)
        self.queues.pop((b, a), None)

    # -- traffic ----------------------------------------------------------------------------
    def send(self, src: str, dst: str, message: dict[str, Any]) -> bool:
        if self.clock is not None:
            self.clock.advance(self.send_cost)
        if not self.linked(src, dst):
            return False
        self.queues.setdefault((src, dst), deque()).append(pickle.dumps(message))
        return True

    def pending(self, src: str, dst: str) -> int:
        return len(self.queues.get((src, dst), ()))

    def peek(self, src: str, dst: str) -> list[dict[str, Any]]:
        return [pickle.loads(raw) for raw in self.queues.get((src, dst), ())]

    def deliver(self, src: str, dst: str, count: int = 1) -> int:
        """Deliver up to ``count`` queued messages of one link, in order; return how many."""
        delivered = 0
        while delivered < count and self.queues.get((src, dst)):
            message = pickle.loads(self.queues[(src, dst)].popleft())
            if self.record:
                self.transcript.append(describe(src, dst, message))
            delivered += 1
            self.transports[dst].receive(src, message)
        return delivered

    def deliver_all(self, limit: int = 100_000) -> int:
        """Round-robin over links (held ones skipped) until quiet, until a pass delivers
        nothing, or ``limit`` messages."""
        total = 0
        for _ in range(limit):
            links = sorted(k for k, q in self.queues.items() if q and k not in self.held)
            moved = sum(self.deliver(src, dst, 1) for src, dst in links)
            total += moved
            if not moved or total >= limit:
                break
        return total


class InMemoryTransport(Transport):
    """A ``pysyncobj.transport.Transport`` whose wire is a :class:`Network`."""

    def __init__(self, network: Network, syncObj: SyncObj, selfNode: Node, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.network = network
        self.name: str = selfNode.id
        self.peers: dict[str, Node] = {node.id: node for node in otherNodes}
        network.attach(self)

    def peer_connected(self, name: str) -> None:
        self._onNodeConnected(self.peers[name])

    def peer_disconnected(self, name: str) -> None:
        if name in self.peers:
            self._onNodeDisconnected(self.peers[name])

    def receive(self, src: str, message: dict[str, Any]) -> None:
        if src in self.peers:
            self._onMessageReceived(self.peers[src], message)

    def addNode(self, node: Node) -> None:  # noqa: N802 (the library's name)
        """A membership change added ``node``: connected once both know each other."""
        self.peers[node.id] = node
        if self.network.linked(self.name, node.id):
            self.peer_connected(node.id)
            self.network.transports[node.id].peer_connected(self.name)

    def dropNode(self, node: Node) -> None:  # noqa: N802 (the library's name)
        """A membership change removed ``node``: the connection closes, in-flight is lost."""
        if self.network.linked(self.name, node.id):
            self.network.queues.pop((self.name, node.id), None)
            self.network.queues.pop((node.id, self.name), None)
            self.network.transports[node.id].peer_disconnected(self.name)
        self.peers.pop(node.id, None)

    def send(self, node: Node, message: Any) -> bool:
        return self.network.send(self.name, node.id, message)

    def destroy(self) -> None:
        self.network.detach(self.name)


class AppendLog(SyncObjConsumer):
    """The replicated state machine under test: an append-only list."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[Any] = []

    @replicated
    def append(self, value: Any) -> int:
        self.values.append(value)
        return len(self.values)


class Stepping:
    """What both simulated clusters share: run rounds until something holds."""

    def step(self, dt: float = 0.11, rounds: int = 1) -> None:
        raise NotImplementedError

    def run_until(self, predicate: Callable[[], bool], rounds: int = 60, dt: float = 0.11) -> bool:
        """Step (at most ``rounds`` times) until ``predicate`` holds; return whether it does."""
        for _ in range(rounds):
            if predicate():
                return True
            self.step(dt)
        return predicate()


class Cluster(Stepping):
    """N members of ``cls`` on one :class:`Network`, driven by a :class:`FakeClock`.

    ``journal_dir`` gives each member a file journal (needed for :meth:`restart` to be a Raft
    restart: term, vote and log survive); ``full_dump`` adds a full-dump file beside it.
    Log compaction is off unless ``conf`` overrides ``logCompactionMinEntries``/``MinTime``.
    """

    def __init__(self, cls: type[SyncObj], clock: FakeClock, size: int = 3,
                 journal_dir: Path | None = None, full_dump: bool = False,
                 **conf: Any) -> None:
        self.cls = cls
        self.clock = clock
        self.names = [f"n{i}" for i in range(size)]
        self.network = Network(clock)
        self.journal_dir = journal_dir
        self.full_dump = full_dump
        self.conf = conf
        self.objs: dict[str, SyncObj] = {}
        self.logs: dict[str, AppendLog] = {}
        self.acked: dict[Any, str] = {}  # value -> member that reported SUCCESS
        self.outcomes: dict[Any, int] = {}  # value -> last FAIL_REASON seen
        for name in self.names:
            self.start(name)

    # -- lifecycle --------------------------------------------------------------------------
    def _conf(self, name: str) -> SyncObjConf:
        options: dict[str, Any] = {
            "autoTick": False,
            "appendEntriesBatchSizeBytes": 64,  # a few entries per batch: pipelining
            "appendEntriesPeriod": 0.1,
            "raftMinTimeout": 1.0,
            "raftMaxTimeout": 2.0,
            "leaderFallbackTimeout": 5.0,
            "logCompactionMinEntries": 10**9,
            "logCompactionMinTime": 10**9,
            "pollerType": "select",
            "useFork": False,
        }
        if self.journal_dir is not None:
            options["journalFile"] = str(self.journal_dir / f"{name}.journal")
            if self.full_dump:
                options["fullDumpFile"] = str(self.journal_dir / f"{name}.dump")
        options.update(self.conf)
        return SyncObjConf(**options)

    def start(self, name: str) -> SyncObj:
        network = self.network

        def transport(syncObj: SyncObj, selfNode: Node, otherNodes: Any) -> InMemoryTransport:
            return InMemoryTransport(network, syncObj, selfNode, otherNodes)

        log = AppendLog()
        obj = self.cls(Node(name), [Node(n) for n in self.names if n != name],
                       conf=self._conf(name), consumers=[log], nodeClass=Node,
                       transportClass=transport)
        self.objs[name], self.logs[name] = obj, log
        network.connect(name)
        return obj

    def crash(self, name: str) -> None:
        """Stop a member abruptly: its links drop, in-flight messages are lost."""
        obj = self.objs.pop(name)
        self.logs.pop(name)
        if self.network.record:
            self.network.transcript.append(f"crash {name}")
        obj.destroy()  # autoTick=False: closes transport (detach) and journal at once

    def restart(self, name: str) -> SyncObj:
        return self.start(name)

    def destroy(self) -> None:
        for name in list(self.objs):
            self.crash(name)

    @property
    def alive(self) -> list[str]:
        return sorted(self.objs)

    # -- driving ----------------------------------------------------------------------------
    def tick(self, *names: str) -> None:
        for name in names or self.alive:
            if name in self.objs:
                if self.network.record:
                    self.network.transcript.append(f"tick {name} (clock {self.clock.now:.3f})")
                self.objs[name].doTick(0)

    def step(self, dt: float = 0.11, rounds: int = 1) -> None:
        """``rounds`` x (advance clock, tick everyone, deliver everything not held)."""
        for _ in range(rounds):
            self.clock.advance(dt)
            self.tick()
            self.network.deliver_all()

    def submit(self, name: str, value: Any) -> None:
        def callback(result: Any, error: int) -> None:
            self.outcomes[value] = error
            if error == FAIL_REASON.SUCCESS:
                self.acked[value] = name

        self.logs[name].append(value, callback=callback)

    # -- inspection -------------------------------------------------------------------------
    def leader(self) -> str | None:
        leaders = [n for n in self.alive if self.objs[n]._isLeader()]
        if not leaders:
            return None
        return max(leaders, key=lambda n: self.objs[n].raftCurrentTerm)

    def applied(self, name: str) -> list[Any]:
        return list(self.logs[name].values)

    def entries(self, name: str) -> list[tuple[bytes, int, int]]:
        return list(self.objs[name]._SyncObj__raftLog[:])

    def committed(self, name: str) -> dict[int, tuple[int, Any]]:
        """index -> (term, value or None for non-user entries) for this member's committed log."""
        commit = self.objs[name].raftCommitIndex
        return {idx: (term, decode(cmd)) for cmd, idx, term in self.entries(name) if idx <= commit}


def decode(command: bytes) -> Any:
    """The value of an ``AppendLog.append`` log entry, or None for no-op/membership entries."""
    if not command or command[0] != REGULAR_COMMAND:
        return None
    decoded = pickle.loads(command[1:])
    return decoded[1][0] if isinstance(decoded, tuple) and len(decoded) >= 2 else None
