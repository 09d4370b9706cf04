"""Data-node membership changes under faults: the fencing workload, plus nodes joining and
leaving through two-phase drains carried out by the leader's rebalancer.

Besides the fencing workload's workers, mover and heartbeats (:mod:`tests.chaos.fenced`):

* a churn thread registers a new data node (with a session and heartbeats) every other round and,
  on the others, starts draining one (never leaving fewer than ``replicas + 1`` active nodes);
  a drained node that holds nothing and takes part in no move is removed;
* a catch-up thread plays the data nodes' part of a move: whenever a route names a node in
  ``adding``, that node reports the copy caught up (with the partition epoch it read).

The mover keeps making forced moves, but never onto a draining node. On top of the fencing checks
(epochs grow per partition, one route per epoch, no stale write accepted), the run must have
completed two-phase moves, and no partition may ever be seen with fewer replicas than its
replication factor or holding a removed node.
"""

from __future__ import annotations

import random
import threading

from hacoord.client import Client, Conflict, HacoordError, StaleEpoch
from tests.chaos.fenced import RESOURCE, FencingWorkload
from tests.chaos.history import History, Op
from tests.chaos.workloads import LOOP_LIMIT, Connect, Context, new_write


class MembershipWorkload(FencingWorkload):
    """See the module docstring."""

    name = "membership"

    def __init__(self, churn_every: float = 1.5, catch_up_every: float = 0.1) -> None:
        super().__init__(nodes=4, partitions=4, replicas=2)
        self.churn_every = churn_every
        self.catch_up_every = catch_up_every
        self.leaving: set[str] = set()
        self.removed: set[str] = set()
        self.counts = {"joined": 0, "drained": 0, "removed": 0, "caught_up": 0}
        self._next = len(self.nodes) + 1

    def setup(self, client: Client) -> None:
        super().setup(client)
        client.rebalance_configure(max_moves_per_node=2, max_moves=4)

    def targets(self, replicas: tuple[str, ...]) -> list[str]:
        """Nodes a forced move may go to: active ones outside the replica set."""
        with self._lock:
            return [n for n in self.nodes if n not in replicas and n not in self.leaving]

    def background(self, connect: Connect, history: History, rng: random.Random,
                   stop: threading.Event) -> list[threading.Thread]:
        churn_rng = random.Random(rng.random())
        return super().background(connect, history, rng, stop) + [
            threading.Thread(target=self._churn_loop, name="churn",
                             args=(connect(timeout=1.0, deadline=10.0), history,
                                   churn_rng, stop)),
            threading.Thread(target=self._catch_up_loop, name="catch-up",
                             args=(connect(timeout=1.0, deadline=2.0), stop)),
        ]

    # --- nodes joining and leaving ------------------------------------------------------------

    def _churn_loop(self, client: Client, history: History, rng: random.Random,
                    stop: threading.Event) -> None:
        for round_ in range(LOOP_LIMIT):
            if stop.wait(self.churn_every):
                return
            try:
                self._remove_drained(client, history)
                if round_ % 2 == 0:
                    self._join(client, history)
                else:
                    self._drain_one(client, history, rng)
            except HacoordError:
                continue  # a fault got in the way: next round

    def _join(self, client: Client, history: History) -> None:
        node = f"d{self._next}"
        self._next += 1
        op = new_write(history, "churn", "node-join", node)
        try:
            client.node_add(node, address="127.0.0.1:1", request_id=op.request_id)
        except Conflict:  # a retry of an add that had landed
            pass
        except HacoordError as exc:
            history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")
            raise
        epoch = client.node_start_session(node).epoch
        history.complete(op, "ok")
        with self._lock:
            self.nodes.append(node)
            self.sessions[node] = epoch
        self.counts["joined"] += 1

    def _drain_one(self, client: Client, history: History, rng: random.Random) -> None:
        with self._lock:
            active = [n for n in self.nodes if n not in self.leaving]
        if len(active) <= self.replicas + 1:
            return
        node = rng.choice(active)
        op = new_write(history, "churn", "node-drain", node)
        try:
            client.node_set_state(node, admin="draining", request_id=op.request_id)
        except HacoordError as exc:
            history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")
            raise
        history.complete(op, "ok")
        with self._lock:
            self.leaving.add(node)
        self.counts["drained"] += 1

    def _remove_drained(self, client: Client, history: History) -> None:
        with self._lock:
            leaving = sorted(self.leaving)
        for node in leaving:
            info = client.node_show(node, consistent=True)
            if info.moves or any(not r.catching_up for r in info.replicas):
                continue
            op = new_write(history, "churn", "node-remove", node)
            try:
                client.node_remove(node, request_id=op.request_id)
            except Conflict as exc:  # a forced move put a replica back meanwhile: later
                history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
                continue
            except HacoordError as exc:
                history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")
                raise
            history.complete(op, "ok")
            with self._lock:
                self.leaving.discard(node)
                self.nodes.remove(node)
                self.sessions.pop(node, None)
                self.removed.add(node)
            self.counts["removed"] += 1

    # --- the data nodes' part of a move ---------------------------------------------------------

    def _catch_up_loop(self, client: Client, stop: threading.Event) -> None:
        for _ in range(LOOP_LIMIT * 4):
            if stop.wait(self.catch_up_every):
                return
            try:
                table = client.routing(RESOURCE)
            except HacoordError:
                continue
            self._observe(table.revision, table.partitions)
            for route in table.partitions:
                for node in route.adding:
                    with self._lock:
                        epoch = self.sessions.get(node)
                    if epoch is None:
                        continue
                    try:
                        client.node_caught_up(node, epoch, RESOURCE, route.partition, route.epoch)
                        self.counts["caught_up"] += 1
                    except (StaleEpoch, Conflict, HacoordError):
                        pass  # the route moved on, or a fault: the next round reads it again

    # --- checks -----------------------------------------------------------------------------------

    def check(self, ops: list[Op], context: Context) -> list[str]:
        problems = super().check(ops, context)
        if not self.counts["caught_up"]:
            problems.append(f"membership workload completed no two-phase move: {self.counts}")
        for revision, resource, partition, replicas, _leader, _epoch in self.routes + context.routes:
            if resource != RESOURCE:
                continue
            if len(replicas) < self.replicas:
                problems.append(f"{resource}/{partition} seen with replicas {replicas} at revision "
                                f"{revision}: below its replication factor")
        gone = self.removed & context.final_nodes
        if gone:
            problems.append(f"removed nodes still registered at the end: {sorted(gone)}")
        return problems[:20]

    def stats(self) -> dict[str, int]:
        return {**super().stats(), **self.counts}
