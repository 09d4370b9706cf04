"""Partition ownership with fencing epochs: workers write to a resource that refuses stale epochs.

A few data nodes register, start sessions and heartbeat; one resource spreads its partitions over
them. While the nemesis works:

* workers read the routing table (plainly, from whichever member they talk to, so possibly
  stale), pick a partition and write to :class:`FencedStore` as its leader, stamped with the
  epoch they read;
* a mover moves replicas between data nodes (each move grows the partition's epoch) and, once a
  move is acknowledged, tells the store the new epoch, as a new owner announcing itself would.

The store is the "data resource": an :class:`hacoord.fencing.EpochGuard` plus a log of every
write it accepted, in order. The checks (:func:`tests.chaos.checker.check_epochs`,
:func:`tests.chaos.checker.check_fenced_writes`) then say that epochs grew per partition in
revision order, one route per epoch, and that no write older than an epoch the store knew was
ever accepted.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from hacoord.client import Client, Conflict, HacoordError, InvalidArgument, PartitionRoute
from hacoord.fencing import EpochGuard, StalePartitionEpoch
from tests.chaos.checker import Route, check_epochs, check_fenced_writes
from tests.chaos.history import History, Op
from tests.chaos.workloads import LOOP_LIMIT, Connect, Context, Workload, new_write

RESOURCE = "fenced"


@dataclass(frozen=True)
class Accepted:
    """A write the store accepted (``kind`` write) or an epoch it was told of (``kind`` fence)."""

    partition: int
    epoch: int
    leader: str | None
    writer: str
    kind: str = "write"


class FencedStore:
    """The guarded data resource shared by the workers: check, record and accept under one lock."""

    def __init__(self) -> None:
        self.guard = EpochGuard()
        self.log: list[Accepted] = []
        self.rejected = 0
        self._lock = threading.Lock()

    def write(self, partition: int, epoch: int, leader: str | None, writer: str) -> bool:
        """Accept the write unless ``epoch`` is older than the one known for the partition."""
        with self._lock:
            try:
                self.guard.check(RESOURCE, partition, epoch)
            except StalePartitionEpoch:
                self.rejected += 1
                return False
            self.guard.update(RESOURCE, partition, epoch)
            self.log.append(Accepted(partition, epoch, leader, writer))
            return True

    def learn(self, partition: int, epoch: int, writer: str) -> None:
        """A new owner announces ``epoch``: older writes are refused from now on."""
        with self._lock:
            self.guard.update(RESOURCE, partition, epoch)
            self.log.append(Accepted(partition, epoch, None, writer, "fence"))


class FencingWorkload(Workload):
    """See the module docstring. ``nodes`` data nodes, ``partitions`` partitions of ``replicas``."""

    name = "fencing"

    def __init__(self, nodes: int = 4, partitions: int = 3, replicas: int = 2,
                 move_every: float = 0.2, heartbeat_every: float = 1.0, think: float = 0.005) -> None:
        self.nodes = [f"d{k}" for k in range(1, nodes + 1)]
        self.partitions = partitions
        self.replicas = replicas
        self.move_every = move_every
        self.heartbeat_every = heartbeat_every
        self.think = think  # a worker's pause between writes (it does something with them)
        self.store = FencedStore()
        self.sessions: dict[str, int] = {}
        self.routes: list[Route] = []
        self._lock = threading.Lock()

    def setup(self, client: Client) -> None:
        for node in self.nodes:
            client.node_add(node, address="127.0.0.1:1")
            self.sessions[node] = client.node_start_session(node).epoch
        client.resource_create(RESOURCE, self.partitions, self.replicas)

    def _observe(self, revision: int, routes: Iterable[PartitionRoute]) -> None:
        with self._lock:
            for r in routes:
                self.routes.append((revision, r.resource, r.partition, tuple(r.replicas), r.leader, r.epoch))

    def client_loop(self, name: str, client: Client, reader: Client, history: History,
                    rng: random.Random, stop: threading.Event) -> None:
        """Read the routing, write to one partition as its leader with the epoch read."""
        for _ in range(LOOP_LIMIT):
            if stop.wait(self.think):
                return
            op = history.invoke(name, "routing", RESOURCE)
            try:
                table = reader.routing(RESOURCE)
            except HacoordError as exc:
                history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
                continue
            history.complete(op, "ok", result=table.revision)
            self._observe(table.revision, table.partitions)
            route = rng.choice(table.partitions)
            op = history.invoke(name, "fenced-write", (route.partition, route.epoch, route.leader))
            accepted = self.store.write(route.partition, route.epoch, route.leader, name)
            history.complete(op, "ok", result=accepted)

    def background(self, connect: Connect, history: History, rng: random.Random,
                   stop: threading.Event) -> list[threading.Thread]:
        mover_rng = random.Random(rng.random())
        return [threading.Thread(target=self._move_loop, name="mover",
                                 args=(connect(timeout=1.0, deadline=10.0), history,
                                       mover_rng, stop)),
                threading.Thread(target=self._heartbeat_loop, name="heartbeats",
                                 args=(connect(timeout=1.0, deadline=2.0), stop))]

    def _move_loop(self, client: Client, history: History, rng: random.Random,
                   stop: threading.Event) -> None:
        for _ in range(LOOP_LIMIT):
            if stop.wait(self.move_every):
                return
            try:
                table = client.routing(RESOURCE, consistent=True)
            except HacoordError:
                continue
            self._observe(table.revision, table.partitions)
            route = rng.choice(table.partitions)
            source = rng.choice(route.replicas)
            choices = self.targets(route.replicas)
            if not choices:
                continue
            target = rng.choice(choices)
            op = new_write(history, "mover", "move", (route.partition, source, target))
            self._move(client, history, op, route.partition, source, target)

    def targets(self, replicas: tuple[str, ...]) -> list[str]:
        """Nodes a move may go to."""
        with self._lock:
            return [n for n in self.nodes if n not in replicas]

    def _move(self, client: Client, history: History, op: Op, partition: int, source: str,
              target: str) -> None:
        try:
            result = client.partition_move(RESOURCE, partition, source, target, request_id=op.request_id)
        except (InvalidArgument, Conflict) as exc:  # refused (outdated routing, a pending move)
            history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            return
        except HacoordError as exc:
            history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")
            return
        op.revision = result.revision
        history.complete(op, "ok", result=result.partition.epoch if result.partition else None)
        if result.partition is not None:
            # Not an observation at result.revision: the answer to a retried move (its first
            # answer lost) is the partition as it is now, with the move's original revision.
            # As an epoch to announce it is fine: it is at least the move's.
            self.store.learn(partition, result.partition.epoch, "mover")

    def _heartbeat_loop(self, client: Client, stop: threading.Event) -> None:
        for _ in range(LOOP_LIMIT):
            if stop.wait(self.heartbeat_every):
                return
            with self._lock:
                sessions = list(self.sessions.items())
            for node, epoch in sessions:
                try:
                    client.node_heartbeat(node, epoch)
                except HacoordError:
                    pass  # missed: the leader may judge the node suspect, then down (epochs grow)

    def check(self, ops: list[Op], context: Context) -> list[str]:
        problems = check_epochs(self.routes + context.routes)
        problems += check_fenced_writes(self.store.log, self.routes + context.routes)
        moves = sum(1 for op in ops if op.f == "move" and op.status == "ok")
        writes = sum(1 for entry in self.store.log if entry.kind == "write")
        if not moves or not writes:
            problems.append(f"fencing workload did nothing: {moves} moves, {writes} accepted writes")
        return problems

    def stats(self) -> dict[str, int]:
        return {"moves": sum(1 for e in self.store.log if e.kind == "fence"),
                "accepted": sum(1 for e in self.store.log if e.kind == "write"),
                "stale_refused": self.store.rejected}
