"""The change feed: every event of every applied command, in revision order, bounded; and from
it, the routing table as of a past revision and the diff between two revisions.

Each member keeps its own feed, filled as it applies the log. Since every member applies the
same log, revision ``r`` carries the same events everywhere, so a watcher can resume on any
member from the last revision it saw. A member keeps the events after ``floor`` (its start or
last snapshot install, or what it had to drop to stay within ``capacity``); asking for older
ones raises :class:`HistoryCompacted` ("re-read the state, then watch from its revision").

To answer "routing as of revision r", the feed keeps a shadow of the current routing (partition
-> replicas, leader, epoch, replica being added) and, with each event, what it replaced; walking
the events after r backwards undoes them.

Runs on the member's event loop thread; waiters are plain futures.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from hacoord.core.events import Event
from hacoord.core.model import ClusterState
from hacoord.protocol import events as ev
from hacoord.protocol.events import parse_event
from hacoord.replication.release import release

DEFAULT_CAPACITY = 20_000

Route = tuple[tuple[str, ...], str | None, int, tuple[str, ...]]  # replicas, leader, epoch, adding
Routing = dict[str, tuple[int, list[Route]]]       # resource -> (replication factor, partitions)

#: The events that change the routing (the others are not parsed: a liveness batch makes
#: thousands of node events, on the Raft loop).
ROUTING_EVENTS = ev.PARTITION_EVENTS | {ev.ResourceUpdated.TYPE}


class HistoryCompacted(Exception):
    """The requested revision is older than the feed keeps (answered 410 ``compacted``, which the
    client raises as :class:`hacoord.client.Compacted`)."""

    def __init__(self, since: int, floor: int) -> None:
        super().__init__(f"events after revision {since} are no longer kept (oldest: after "
                         f"{floor}); re-read the state and watch from its revision")
        self.since = since
        self.floor = floor


class ChangeFeed:
    """Bounded, revision-ordered event history with long-poll waiting."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, floor: int = 0) -> None:
        self.capacity = capacity
        self.floor = floor
        self.revision = floor
        self._events: deque[Event] = deque()
        self._undo: deque[object] = deque()  # what each event replaced, aligned with _events
        self._routing: Routing = {}
        self._waiters: list[asyncio.Future[None]] = []
        self.closed = False

    def record(self, events: Iterable[Event]) -> None:
        """Append the events of one applied command (all of one revision)."""
        added = False
        for event in events:
            self._events.append(event)
            self._undo.append(self._shadow(event))
            self.revision = max(self.revision, event.revision)
            added = True
        while len(self._events) > self.capacity:
            # Drop whole revisions only, so "everything after floor" stays true.
            dropped = self._events.popleft().revision
            self._undo.popleft()
            while self._events and self._events[0].revision == dropped:
                self._events.popleft()
                self._undo.popleft()
            self.floor = dropped
        if added:
            self._wake()

    def reset(self, revision: int, state: ClusterState | None = None,
              routing: Routing | None = None) -> None:
        """The state jumped to ``revision`` (snapshot install): history before it is gone.
        ``routing`` is ``routing_shadow(state)`` if it was made ahead (off the loop)."""
        if routing is None:
            routing = {} if state is None else routing_shadow(state)
        # The old history and routing go to be freed off the loop (hacoord.replication.release).
        release(self._events, self._undo, self._routing)
        self._events, self._undo, self._routing = deque(), deque(), routing
        self.floor = self.revision = revision
        self._wake()

    # --- routing history -----------------------------------------------------------------------

    def _shadow(self, event: Event) -> object:
        """Apply ``event`` to the shadow routing; return what it replaced (for undo)."""
        if event.type not in ROUTING_EVENTS:
            return None
        data = parse_event(event.type, event.data)
        if isinstance(data, ev.ResourceCreated):
            previous = self._routing.get(data.name)
            self._routing[data.name] = (data.replication_factor, _routes(data.partitions))
            return ("resource", data.name, previous)
        if isinstance(data, ev.PartitionsAdded):
            if data.resource not in self._routing:
                return None
            added = _routes(data.partitions)
            self._routing[data.resource][1].extend(added)
            return ("added", data.resource, len(added))
        if isinstance(data, ev.ResourceUpdated):
            previous = self._routing.get(data.name)
            if previous is None:
                return None
            self._routing[data.name] = (data.replication_factor, previous[1])
            return ("resource", data.name, (previous[0], list(previous[1])))
        if isinstance(data, ev.ResourceDeleted):
            return ("resource", data.name, self._routing.pop(data.name, None))
        if isinstance(data, ev.PartitionChanged):
            rf, parts = self._routing.get(data.resource, (0, []))
            if data.partition >= len(parts):
                return None
            previous = parts[data.partition]
            parts[data.partition] = (tuple(data.replicas), data.leader, data.epoch,
                                     tuple(data.adding))
            return ("partition", data.resource, data.partition, previous)
        return None

    def routing_at(self, revision: int) -> Routing:
        """The routing as of ``revision`` (kept history only; else :class:`HistoryCompacted`)."""
        if revision < self.floor:
            raise HistoryCompacted(revision, self.floor)
        routing = {name: (rf, list(parts)) for name, (rf, parts) in self._routing.items()}
        for event, undo in zip(reversed(self._events), reversed(self._undo), strict=True):
            if event.revision <= revision:
                break
            if undo is None:
                continue
            if undo[0] == "resource":
                _, name, previous = undo
                if previous is None:
                    routing.pop(name, None)
                else:
                    routing[name] = (previous[0], list(previous[1]))
            elif undo[0] == "added":
                _, name, count = undo
                if name in routing:
                    del routing[name][1][len(routing[name][1]) - count:]
            else:
                _, name, index, previous = undo
                routing[name][1][index] = previous
        return routing

    def diff(self, since: int, until: int) -> list[dict[str, object]]:
        """Partitions whose replicas, leader or epoch differ between two kept revisions."""
        before, after = self.routing_at(since), self.routing_at(until)
        changes: list[dict[str, object]] = []
        for name in sorted(set(before) | set(after)):
            old = before.get(name, (0, []))[1]
            new = after.get(name, (0, []))[1]
            for index in range(max(len(old), len(new))):
                a = old[index] if index < len(old) else None
                b = new[index] if index < len(new) else None
                if a != b:
                    changes.append({"resource": name, "partition": index,
                                    "before": _route_dict(a), "after": _route_dict(b)})
        return changes

    def since(self, revision: int, limit: int = 1000,
              max_partitions: int | None = None) -> list[Event]:
        """Events after ``revision``: whole revisions, about ``limit`` events at most, and about
        ``max_partitions`` partitions (those a resource's creation lists) at most."""
        if revision < self.floor:
            raise HistoryCompacted(revision, self.floor)
        out: list[Event] = []
        carried = 0
        for event in self._events:  # newest events are few; a scan is fine at this size
            if event.revision <= revision:
                continue
            full = len(out) >= limit or (max_partitions is not None and carried >= max_partitions)
            if full and event.revision != out[-1].revision:
                break
            out.append(event)
            listed = event.data.get("partitions")  # ResourceCreated and PartitionsAdded
            carried += len(listed) if isinstance(listed, list) else 0
        return out

    def close(self) -> None:
        """The member is stopping: answer every long poll now, and later ones at once."""
        self.closed = True
        self._wake()

    async def wait(self, revision: int, timeout: float) -> None:
        """Return when there are events after ``revision``, the feed resets or closes, or after
        timeout."""
        if self.revision > revision or revision < self.floor or self.closed:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


def _route_dict(route: Route | None) -> dict[str, object] | None:
    if route is None:
        return None
    return {"replicas": list(route[0]), "leader": route[1], "epoch": route[2], "adding": list(route[3])}


def routing_shadow(state: ClusterState) -> Routing:
    """The routing of every partition of ``state``, as the feed keeps it. Reads only ``state``
    (a worker thread makes it for a snapshot being installed)."""
    return {name: (res.replication_factor,
                   [(tuple(p.replicas), p.leader, p.epoch, _adding(state, name, i))
                    for i, p in enumerate(res.partitions)])
            for name, res in state.resources.items()}


def _adding(state: ClusterState, resource: str, partition: int) -> tuple[str, ...]:
    move = state.move_of(resource, partition)
    return (move.to_node,) if move else ()


def _routes(partitions: Iterable[Mapping[str, Any]]) -> list[Route]:
    """Shadow routes of partition states (``{"replicas", "leader", "epoch"}``), nothing adding."""
    return [(tuple(p["replicas"]), p["leader"], p["epoch"], ()) for p in partitions]
