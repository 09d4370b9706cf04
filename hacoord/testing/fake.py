"""A fake coordinator for testing code built on :class:`~hacoord.agent.NodeAgent` (or any code
that uses a :class:`~hacoord.client.Client`'s node, routing and watch calls) without processes,
and an assignment handler that records what it is told.

:class:`FakeCoordinator` keeps routes, pending moves, node sessions and a change feed, and answers
the calls the agent makes the way the real coordinator does: the same typed errors
(``StaleEpoch``, ``NotFound``, ``Conflict``, ``Compacted``) and events of the same types and
fields, built from :mod:`hacoord.protocol.events`. It fakes what an agent depends on, not the
whole coordinator: every resource has replication factor 2, a removed node's replicas stay where
they are, and a metrics report changes nothing. The test drives it: create resources, change routes, start and
cancel moves, compact the feed, make heartbeats fail. A change made ``silent`` gets a revision
but no event: the agent can learn it only by re-reading the routing, as when its watch lags
behind. :class:`RecordingHandler` records each call the agent makes to its handler.

Example::

    from hacoord.agent import NodeAgent
    from hacoord.testing import FakeCoordinator, RecordingHandler, wait_for

    coordinator, handler = FakeCoordinator(), RecordingHandler()
    coordinator.node_add("n2", address="127.0.0.1:9002")
    coordinator.create_resource("orders", [["n1", "n2"]])  # replicas, leader first
    agent = NodeAgent("n1", "127.0.0.1:9001", handler, client=coordinator).start()
    wait_for("n1 leads orders/0", lambda: ("assign", "orders", 0, 1, "leader") in handler.seen())
    agent.stop()
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hacoord.agent import Assignment, AssignmentHandler
from hacoord.client import (
    Compacted,
    Conflict,
    Heartbeat,
    NodeInfo,
    NodeSession,
    NotFound,
    PartitionRoute,
    RoutingTable,
    StaleEpoch,
    UnavailableError,
    WatchEvent,
    WriteResult,
)
from hacoord.protocol import events as ev


class FakeCoordinator:
    """The coordinator as the agent sees it through its client. Thread-safe."""

    def __init__(self) -> None:
        self.revision = 0
        self.nodes: dict[str, dict[str, Any]] = {}
        self.routes: dict[tuple[str, int], PartitionRoute] = {}
        self.moves: dict[tuple[str, int], tuple[str | None, str]] = {}
        self.events: list[WatchEvent] = []
        self.compacted_before = 0
        self.calls: list[tuple[Any, ...]] = []
        #: Heartbeats still to fail (as if no member answered within the client's deadline).
        self.unreachable_heartbeats = 0
        self._cond = threading.Condition()

    # --- test controls ------------------------------------------------------------------------

    def _bump(self, data: ev.EventData | None) -> int:
        """A new revision, with the event ``data`` describes (None: a change without one)."""
        self.revision += 1
        if data is not None:
            self.events.append(WatchEvent(data.TYPE, self.revision, data.to_data()))
        self._cond.notify_all()
        return self.revision

    def create_resource(self, name: str, placements: list[list[str]]) -> int:
        """A resource whose partition ``i`` has the replicas ``placements[i]`` (leader first)."""
        with self._cond:
            parts = []
            for i, replicas in enumerate(placements):
                self.routes[(name, i)] = PartitionRoute(name, i, tuple(replicas), replicas[0], 1)
                parts.append({"replicas": list(replicas), "leader": replicas[0], "epoch": 1})
            return self._bump(ev.ResourceCreated(name=name, replication_factor=2, partitions=parts,
                                                 created_at=0.0))

    def delete_resource(self, name: str) -> int:
        """Delete resource ``name`` (a ``ResourceDeleted`` event); returns the revision."""
        with self._cond:
            for key in [k for k in self.routes if k[0] == name]:
                del self.routes[key]
                self.moves.pop(key, None)
            return self._bump(ev.ResourceDeleted(name=name))

    def change(self, resource: str, partition: int, *, replicas: list[str] | None = None,
               leader: str | None = None, adding: list[str] | None = None, silent: bool = False) -> int:
        """Change a route (the epoch grows); returns the new epoch."""
        with self._cond:
            old = self.routes[(resource, partition)]
            new = PartitionRoute(resource, partition,
                                 tuple(replicas) if replicas is not None else old.replicas,
                                 leader if leader is not None else old.leader, old.epoch + 1,
                                 tuple(adding) if adding is not None else old.adding)
            self._set_route(new, "changed", silent)
            return new.epoch

    def start_move(self, resource: str, partition: int, from_node: str | None, to_node: str) -> int:
        """Start a move of ``resource``/``partition`` to ``to_node`` (its route gains ``adding``); returns the
        new epoch."""
        with self._cond:
            self.moves[(resource, partition)] = (from_node, to_node)
            return self.change(resource, partition, adding=[to_node])

    def cancel_move(self, resource: str, partition: int, silent: bool = False) -> int:
        """Cancel the partition's pending move; returns the new epoch."""
        with self._cond:
            del self.moves[(resource, partition)]
            return self.change(resource, partition, adding=[], silent=silent)

    def compact(self) -> None:
        """Forget the history: a watch from before now is answered ``compacted``."""
        with self._cond:
            self.compacted_before = self.revision
            self._cond.notify_all()

    def _set_route(self, route: PartitionRoute, reason: str, silent: bool) -> None:
        self.routes[(route.resource, route.partition)] = route
        self._bump(None if silent else ev.PartitionChanged(
            resource=route.resource, partition=route.partition, replicas=list(route.replicas),
            leader=route.leader, epoch=route.epoch, adding=list(route.adding), reason=reason))

    def calls_of(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of the client method ``name`` the agent made, in order."""
        with self._cond:
            return [c[1:] for c in self.calls if c[0] == name]

    def _record(self, *call: Any) -> None:
        self.calls.append(call)

    # --- the client's interface ---------------------------------------------------------------

    def node_show(self, id: str, consistent: bool = False) -> NodeInfo:
        """As :meth:`hacoord.client.Client.node_show`."""
        with self._cond:
            self._record("node_show", id)
            if id not in self.nodes:
                raise NotFound("not_found", f"unknown node {id!r}", 404)
            node = self.nodes[id]
            return NodeInfo(id, node["address"], node["zone"], node["capacity"], node["status"],
                            epoch=node["epoch"])

    def node_list(self, consistent: bool = False) -> list[NodeInfo]:
        """As :meth:`hacoord.client.Client.node_list`."""
        with self._cond:
            self._record("node_list", consistent)
        return [self.node_show(node) for node in sorted(self.nodes)]

    def node_add(self, id: str, address: str, *, zone: str | None = None, capacity: float | None = None,
                 tags: Mapping[str, str] | None = None) -> WriteResult:
        """As :meth:`hacoord.client.Client.node_add` (a ``NodeRegistered`` event)."""
        with self._cond:
            self._record("node_add", id, address, zone, capacity, dict(tags or {}))
            if id in self.nodes:
                raise Conflict("already_exists", f"node {id!r} exists", 409)
            self.nodes[id] = {"id": id, "address": address, "zone": zone or "default",
                              "capacity": capacity or 1.0, "status": "up", "status_since": 0.0,
                              "admin": "active", "admin_reason": "", "epoch": 1,
                              "tags": dict(tags or {}), "metrics": {}, "registered_at": 0.0,
                              "updated_at": 0.0}
            return WriteResult(self._bump(ev.NodeRegistered(**self.nodes[id])), "rid")

    def node_remove(self, id: str) -> None:
        """Remove node ``id`` (a ``NodeRemoved`` event; its replicas are not moved)."""
        with self._cond:
            del self.nodes[id]
            self._bump(ev.NodeRemoved(id=id))

    def node_start_session(self, id: str, address: str | None = None, *, silent: bool = False) -> NodeSession:
        """As :meth:`hacoord.client.Client.node_start_session`: the epoch grows (a ``NodeSessionStarted``
        event unless ``silent``)."""
        with self._cond:
            self._record("node_start_session", id, address)
            node = self.nodes[id]
            node["epoch"] += 1
            node["address"] = address or node["address"]
            revision = self._bump(None if silent else ev.NodeSessionStarted(**node))
            info = NodeInfo(id, node["address"], node["zone"], node["capacity"], "up", epoch=node["epoch"])
            return NodeSession(id, node["epoch"], revision, "rid", info)

    def _check_session(self, id: str, epoch: int) -> None:
        if id not in self.nodes:
            raise NotFound("not_found", f"unknown node {id!r}", 404)
        if self.nodes[id]["epoch"] != epoch:
            raise StaleEpoch("stale_epoch", f"node {id!r} is at epoch {self.nodes[id]['epoch']}", 409)

    def node_heartbeat(self, id: str, epoch: int) -> Heartbeat:
        """As :meth:`hacoord.client.Client.node_heartbeat` (``StaleEpoch`` for an old session; fails while
        :attr:`unreachable_heartbeats` lasts)."""
        with self._cond:
            self._record("node_heartbeat", id, epoch)
            if self.unreachable_heartbeats > 0:
                self.unreachable_heartbeats -= 1
                raise UnavailableError("no coordinator member answered")
            self._check_session(id, epoch)
            return Heartbeat(id, "up", epoch, self.revision)

    def node_report_metrics(self, id: str, epoch: int, metrics: Mapping[str, float | None]) -> WriteResult:
        """As :meth:`hacoord.client.Client.node_report_metrics` (a revision, no event)."""
        with self._cond:
            self._record("node_report_metrics", id, epoch, dict(metrics))
            self._check_session(id, epoch)
            return WriteResult(self._bump(None), "rid")

    def node_caught_up(self, id: str, epoch: int, resource: str, partition: int,
                       partition_epoch: int) -> WriteResult:
        """As :meth:`hacoord.client.Client.node_caught_up`: the move completes (``Conflict`` ``no_move``,
        ``StaleEpoch`` as the coordinator answers)."""
        with self._cond:
            self._record("node_caught_up", id, epoch, resource, partition, partition_epoch)
            self._check_session(id, epoch)
            key = (resource, partition)
            if self.moves.get(key, (None, None))[1] != id:
                raise Conflict("no_move", f"{resource}/{partition} is not moving to {id!r}", 409)
            route = self.routes[key]
            if partition_epoch != route.epoch:
                raise StaleEpoch("stale_epoch", f"{resource}/{partition} is at epoch {route.epoch}", 409)
            from_node, _ = self.moves.pop(key)
            replicas = [id if r == from_node else r for r in route.replicas]
            if from_node is None:
                replicas.append(id)
            leader = id if route.leader in (None, from_node) else route.leader
            new = PartitionRoute(resource, partition, tuple(replicas), leader, route.epoch + 1)
            self._set_route(new, "move completed", silent=False)
            return WriteResult(self.revision, "rid", partition=new)

    def routing(self, resource: str | None = None, consistent: bool = False) -> RoutingTable:
        """As :meth:`hacoord.client.Client.routing`."""
        with self._cond:
            self._record("routing", resource, consistent)
            routes = sorted((r for r in self.routes.values() if resource in (None, r.resource)),
                            key=lambda r: (r.resource, r.partition))
            if resource is not None and not routes:
                raise NotFound("not_found", f"unknown resource {resource!r}", 404)
            used = {n for r in routes for n in itertools.chain(r.replicas, r.adding)}
            return RoutingTable(self.revision, tuple(routes), {r.resource: 2 for r in routes},
                                {n: self.nodes[n]["address"] for n in sorted(used) if n in self.nodes})

    def watch(self, since: int | None = None, *, poll: float = 25.0,
              stop: Callable[[], bool] | None = None) -> Iterator[WatchEvent]:
        """As :meth:`hacoord.client.Client.watch` (``Compacted`` after :meth:`compact`)."""
        last = self.revision if since is None else since
        while stop is None or not stop():
            with self._cond:
                self._cond.wait_for(lambda since=last: since < self.compacted_before or bool(
                    self.events and self.events[-1].revision > since), timeout=poll)
                if last < self.compacted_before:
                    raise Compacted("compacted", f"revision {last} is no longer kept", 410)
                batch = [e for e in self.events if e.revision > last]
            for event in batch:
                last = event.revision
                yield event

    def close(self) -> None:
        """Nothing to release: the fake holds no connections."""


class RecordingHandler(AssignmentHandler):
    """Records every call; ``catch_up`` waits for :attr:`copy_allowed` (set by default)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.copy_allowed = threading.Event()
        self.copy_allowed.set()
        self.copying = threading.Event()
        self.fail_next_assign = False
        self._lock = threading.Lock()

    def _record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)

    def on_assign(self, assignment: Assignment) -> None:
        """Record the assignment (and fail once if :attr:`fail_next_assign`)."""
        self._record("assign", assignment.resource, assignment.partition, assignment.epoch,
                     assignment.role.value)
        if self.fail_next_assign:
            self.fail_next_assign = False
            raise RuntimeError("the handler failed")

    def on_release(self, resource: str, partition: int) -> None:
        """Record the release."""
        self._record("release", resource, partition)

    def catch_up(self, assignment: Assignment) -> None:
        """Record the copy, then wait until :attr:`copy_allowed` is set."""
        self._record("catch_up", assignment.resource, assignment.partition, assignment.epoch)
        self.copying.set()
        assert self.copy_allowed.wait(10), "the test never let the copy finish"

    def on_session_lost(self, reason: str) -> None:
        """Record the end of the session."""
        self._record("lost", reason)

    def seen(self) -> list[tuple[Any, ...]]:
        """Every call recorded so far, in order."""
        with self._lock:
            return list(self.calls)
