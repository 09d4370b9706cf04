"""The node agent: what a data node embeds to take part in a hacoord cluster.

:class:`NodeAgent` registers the node (if the coordinator does not know it yet), starts a session
(the node's epoch), and then runs in background threads:

- heartbeats every ``heartbeat_interval`` seconds, carrying the session epoch;
- metric reports every ``metrics_interval`` seconds, if given a ``metrics`` callback;
- the assignment follower: the routing table, then the change feed from its revision; every change
  of what the node holds reaches the handler (:class:`~hacoord.agent.AssignmentHandler`);
- catch-up jobs for the moves that target the node (see :mod:`hacoord.agent.catchup`).

Coordinator failover is the client's business: it retries, follows the new leader, and the watch
resumes from the last revision it yielded. A call that still fails (the cluster unreachable past
the client's deadline) is logged, counted and tried again; it never releases anything. Only the
end of the session does: a heartbeat or report refused with ``stale_epoch`` (another process of the
same node id started a newer session), a ``NodeSessionStarted`` event of a newer epoch, or the
node's removal. The agent then releases every partition (``on_release``), calls
``on_session_lost`` and stops. Starting again means a new agent (a new session, a new epoch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from hacoord.agent.assignments import Assignment, AssignmentBook, Change, Key, Role
from hacoord.agent.catchup import CatchUpRunner
from hacoord.agent.directory import NodeDirectory
from hacoord.agent.follower import FeedFollower
from hacoord.agent.handler import AssignmentHandler
from hacoord.client import (
    Client,
    Conflict,
    HacoordError,
    NotFound,
    PartitionRoute,
    RoutingTable,
    StaleEpoch,
    WatchEvent,
)
from hacoord.protocol import events as ev

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The agent's own client (when given endpoints): per attempt, and per call with its retries.
CLIENT_TIMEOUT = 2.0
CLIENT_DEADLINE = 10.0


@dataclass(frozen=True)
class AgentStats:
    """What the agent has done so far. ``heartbeat_failures`` counts heartbeats that got no
    answer (after the client's own retries); ``last_status`` is the node's status in the last
    answer; ``revision`` the last change-feed revision handled."""

    node_id: str
    epoch: int | None
    running: bool
    lost: str | None
    heartbeats: int
    heartbeat_failures: int
    last_status: str | None
    revision: int
    resyncs: int
    watch_failures: int
    moves_completed: int
    metric_reports: int

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        return asdict(self)


class NodeAgent:
    """Keeps one data node registered, alive and informed of its assignments.

    ``node_id`` and ``address`` (``host:port`` where the node serves) identify the node; ``zone``,
    ``capacity`` and ``tags`` are used only to register it when the coordinator does not know it
    (an existing registration keeps its settings; the session updates the address). Give either
    ``endpoints`` (the agent then makes and owns its client, which sends the token in
    ``token_file``, or else as :class:`~hacoord.client.Client` finds one: ``HACOORD_TOKEN``,
    ``HACOORD_TOKEN_FILE``; a node token bound to ``node_id`` is all it needs) or a ``client``.
    ``handler`` receives the changes (default: one that does nothing). ``metrics`` returns the
    node's metrics, reported every ``metrics_interval`` seconds. ``watch_poll`` bounds each long
    poll of the change feed, and so how long :meth:`stop` waits for the follower.

    Thread-safe: :meth:`assignments`, :meth:`assignment`, :meth:`address_of` and :meth:`stats` may
    be called from any thread, handler methods included.
    """

    def __init__(self, node_id: str, address: str, handler: AssignmentHandler | None = None, *,
                 endpoints: list[str] | str | None = None, client: Client | None = None,
                 token_file: str | None = None, zone: str | None = None, capacity: float | None = None,
                 tags: Mapping[str, str] | None = None, heartbeat_interval: float = 1.0,
                 metrics: Callable[[], Mapping[str, float | None]] | None = None,
                 metrics_interval: float = 10.0, watch_poll: float = 5.0,
                 catch_up_workers: int = 4) -> None:
        if heartbeat_interval <= 0 or metrics_interval <= 0:
            raise ValueError("heartbeat_interval and metrics_interval must be positive")
        if not 0 < watch_poll <= 60:
            raise ValueError("watch_poll must be in (0, 60] seconds")
        if client is not None and (endpoints is not None or token_file is not None):
            raise ValueError("give endpoints (and a token file) or a client, not both")
        self.node_id = node_id
        self.address = address
        self.handler = handler if handler is not None else AssignmentHandler()
        self._owns_client = client is None
        self._client = client or Client(endpoints, timeout=CLIENT_TIMEOUT, deadline=CLIENT_DEADLINE,
                                        token_file=token_file)
        self._registration = {"zone": zone, "capacity": capacity, "tags": dict(tags or {})}
        self._heartbeat_interval = heartbeat_interval
        self._metrics = metrics
        self._metrics_interval = metrics_interval
        self._watch_poll = watch_poll

        self._stopping = threading.Event()
        self._apply_lock = threading.RLock()  # serialises changes and the handler calls they make
        self._view_lock = threading.Lock()  # guards the book; never held while calling out
        self._book = AssignmentBook(node_id)
        self._directory = NodeDirectory()
        self._epoch: int | None = None
        self._lost: str | None = None
        self._started = False
        self._threads: list[threading.Thread] = []
        self._follower: FeedFollower | None = None
        self._counts = {"heartbeats": 0, "heartbeat_failures": 0, "metric_reports": 0}
        self._last_status: str | None = None
        self._catch_up = CatchUpRunner(
            client=self._client, node_id=node_id, handler_catch_up=self._handler_catch_up,
            current=self.assignment, apply_route=self._apply_route, node_epoch=self._session_epoch,
            stopping=self._stopping, workers=catch_up_workers)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        """Register the node if unknown, start its session, read its assignments (the handler
        hears of each before this returns), then start the background threads. Raises the
        client's errors (:class:`~hacoord.client.UnavailableError` if no member answers within
        the client's deadline); the agent is then stopped. An agent starts once."""
        with self._apply_lock:
            if self._started:
                raise RuntimeError("a NodeAgent starts once; make a new one")
            self._started = True
        try:
            self._register()
            session = self._client.node_start_session(self.node_id, self.address)
            self._epoch = session.epoch
            table = self._client.routing(consistent=True)
            self._on_table(table)
        except BaseException:
            self.stop(timeout=0)
            raise
        log.info("node %s: session epoch %d, %d partitions held as of revision %d", self.node_id,
                 session.epoch, len(self.assignments()), table.revision)
        self._follower = FeedFollower(self._client, table.revision, on_table=self._on_table,
                                      on_event=self._on_event, stopping=self._stopping,
                                      poll=self._watch_poll)
        loops: list[tuple[str, Callable[[], None]]] = [
            ("heartbeat", lambda: self._every(self._heartbeat_interval, self._heartbeat)),
            ("follower", self._follower.run)]
        if self._metrics is not None:
            loops.append(("metrics", lambda: self._every(self._metrics_interval, self._report_metrics)))
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"hacoord-agent-{self.node_id}-{name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop every thread, waiting at most ``timeout`` seconds (a long poll in progress ends
        within ``watch_poll``, a call in progress within the client's deadline). Nothing is
        released: the node still holds its partitions as far as the coordinator knows. Returns
        True if every thread ended in time. Closes the client if the agent made it."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._catch_up.shutdown()
        ended = not any(t.is_alive() for t in self._threads if t is not threading.current_thread())
        if self._owns_client:
            self._client.close()
        return ended

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what the node holds ------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The node's session epoch (None before :meth:`start`)."""
        return self._epoch

    @property
    def running(self) -> bool:
        """Started, and neither stopped nor lost its session."""
        return self._started and not self._stopping.is_set()

    @property
    def lost(self) -> str | None:
        """Why the session ended, if it did (a newer session started, the node was removed)."""
        return self._lost

    def assignments(self) -> dict[Key, Assignment]:
        """Every partition the node holds now, by ``(resource, partition)`` (a snapshot)."""
        with self._view_lock:
            return self._book.held()

    def assignment(self, resource: str, partition: int) -> Assignment | None:
        """The node's assignment of one partition, or None if it does not hold it."""
        with self._view_lock:
            return self._book.get(resource, partition)

    def address_of(self, node_id: str) -> str | None:
        """``host:port`` of another node, as last seen in the routing or the change feed."""
        return self._directory.address_of(node_id)

    def stats(self) -> AgentStats:
        """Counters and state, for health endpoints and tests."""
        follower = self._follower
        return AgentStats(
            node_id=self.node_id, epoch=self._epoch, running=self.running, lost=self._lost,
            heartbeats=self._counts["heartbeats"], heartbeat_failures=self._counts["heartbeat_failures"],
            last_status=self._last_status, revision=follower.revision if follower else 0,
            resyncs=follower.resyncs if follower else 0,
            watch_failures=follower.failures if follower else 0,
            moves_completed=self._catch_up.completed, metric_reports=self._counts["metric_reports"])

    # --- session ------------------------------------------------------------------------------

    def _register(self) -> None:
        try:
            self._client.node_show(self.node_id, consistent=True)
            return
        except NotFound:
            pass
        reg = self._registration
        try:
            self._client.node_add(self.node_id, self.address, zone=reg["zone"], capacity=reg["capacity"],
                                  tags=reg["tags"])
            log.info("node %s registered at %s", self.node_id, self.address)
        except Conflict as exc:
            if exc.code != "already_exists":  # registered meanwhile by another process: fine
                raise

    def _session_epoch(self) -> int:
        assert self._epoch is not None
        return self._epoch

    def _every(self, interval: float, action: Callable[[], None]) -> None:
        while not self._stopping.wait(interval):
            try:
                action()
            except Exception:  # a bug, or the client closed under a call stop() gave up on
                if self._stopping.is_set():
                    return
                log.exception("node %s: %s failed", self.node_id, threading.current_thread().name)

    def _heartbeat(self) -> None:
        answer = self._session_call("heartbeat", lambda: self._client.node_heartbeat(
            self.node_id, self._session_epoch()))
        if answer is None:
            self._counts["heartbeat_failures"] += 1
        else:
            self._counts["heartbeats"] += 1
            self._last_status = answer.status

    def _report_metrics(self) -> None:
        assert self._metrics is not None
        try:
            values = dict(self._metrics())
        except Exception:
            log.exception("node %s: the metrics callback failed", self.node_id)
            return
        if self._session_call("metrics report", lambda: self._client.node_report_metrics(
                self.node_id, self._session_epoch(), values)) is not None:
            self._counts["metric_reports"] += 1

    def _session_call(self, what: str, call: Callable[[], T]) -> T | None:
        """Run a call made in the node's session. The session ends on ``stale_epoch`` or
        ``not_found``; any other failure is logged and None returned (the caller tries later)."""
        try:
            return call()
        except StaleEpoch:
            self._lose(f"{what} refused: a newer session of node {self.node_id} was started")
        except NotFound:
            self._lose(f"{what} refused: node {self.node_id} is not registered (removed)")
        except HacoordError as exc:
            if not self._stopping.is_set():
                log.warning("node %s: %s failed: %s", self.node_id, what, exc)
        return None

    def _lose(self, reason: str) -> None:
        """The session is over: release everything, tell the handler, stop."""
        with self._apply_lock:
            if self._lost is not None:
                return
            self._lost = reason
            self._stopping.set()
            log.warning("node %s: session lost (%s): releasing every partition", self.node_id, reason)
            with self._view_lock:
                changes = self._book.clear()
            for change in changes:
                self._notify(change)
            try:
                self.handler.on_session_lost(reason)
            except Exception:
                log.exception("node %s: on_session_lost failed", self.node_id)

    # --- following the assignments ------------------------------------------------------------

    def _on_table(self, table: RoutingTable) -> None:
        """Take a fresh routing table (at start, and when the feed was compacted). The node list
        is read after it, so it has every node registered before the table's revision; the ones
        registered after come through the feed."""
        self._directory.apply_table(table)
        self._directory.apply_nodes(self._client.node_list(consistent=True))
        self._apply(lambda book: book.apply_table(table))

    def _on_event(self, event: WatchEvent) -> None:
        self._directory.apply_event(event)
        data = event.payload if event.type in ev.NODE_EVENTS else None
        if event.type in ev.PARTITION_EVENTS:
            self._apply(lambda book: book.apply_event(event))
        elif isinstance(data, ev.NodeRemoved) and data.id == self.node_id:
            self._lose(f"node {self.node_id} was removed (revision {event.revision})")
        elif (isinstance(data, ev.NodeSessionStarted) and data.id == self.node_id
              and data.epoch > self._session_epoch()):
            self._lose(f"a newer session of node {self.node_id} was started (epoch {data.epoch})")

    def _apply_route(self, route: PartitionRoute, revision: int) -> None:
        self._apply(lambda book: book.apply_route(route, revision))

    def _apply(self, update: Callable[[AssignmentBook], list[Change]]) -> None:
        with self._apply_lock:
            if self._lost is not None:
                return
            with self._view_lock:
                changes = update(self._book)
            for change in changes:
                self._notify(change)

    def _notify(self, change: Change) -> None:
        after = change.after
        try:
            if after is None:
                self.handler.on_release(*change.key)
            else:
                self.handler.on_assign(after)
        except Exception:
            log.exception("node %s: the handler failed on %s", self.node_id, change)
        if after is not None and after.role is Role.CATCHING_UP:
            self._catch_up.schedule(after)

    def _handler_catch_up(self, assignment: Assignment) -> None:
        self.handler.catch_up(assignment)
