"""Phase two of a move, on the target node: copy the partition, then report it caught up.

When the node sees itself in a route's ``adding`` list it holds the partition as catching up; a
:class:`CatchUpRunner` job then calls the handler's ``catch_up`` (which copies the data) in a worker
thread and reports ``node_caught_up`` with the epoch of the newest route that names the node
``adding``, following the coordinator's contract:

- success: the move completed; the new route (the node now a replica) is applied at once;
- ``stale_epoch``: the route changed meanwhile; it is re-read and, if the node is still being
  added, reported again with the new epoch (the data already copied stays: the leader sends every
  write to the ``adding`` replica, so the copy stays current across route changes);
- ``no_move``: the move was cancelled; the route is re-read (the node then releases the partition);
- the partition released or already held as a replica, or the agent stopping: the job ends.

Failures (of the handler, or the cluster unreachable) are retried with jittered exponential backoff,
a bounded number of times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tenacity

from hacoord.agent.assignments import Assignment, Role
from hacoord.agent.retry import until_stopped
from hacoord.client import Client, Conflict, NotFound, PartitionRoute, StaleEpoch

log = logging.getLogger(__name__)

#: Attempts (copy or report) per job before it gives up and leaves the move to the coordinator.
MAX_ATTEMPTS = 60
#: Backoff between attempts: a random wait in [0, initial * 2**n], capped at max (seconds).
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 5.0


class _RouteChanged(Exception):
    """The caught-up report was refused as stale: try again with the route as now known."""


@dataclass
class _Job:
    target: Assignment
    copied: bool = False


class CatchUpRunner:
    """Runs catch-up jobs in a pool of ``workers`` threads.

    ``current(resource, partition)`` gives the node's assignment as now known, ``apply_route(route,
    revision)`` feeds a route the runner learned (from a report's answer or a re-read) back to the
    agent, ``node_epoch()`` the node's session epoch. ``stopping`` ends every job."""

    def __init__(self, *, client: Client, node_id: str, handler_catch_up: Callable[[Assignment], None],
                 current: Callable[[str, int], Assignment | None],
                 apply_route: Callable[[PartitionRoute, int], None], node_epoch: Callable[[], int],
                 stopping: threading.Event, workers: int = 4) -> None:
        self._client = client
        self._node_id = node_id
        self._catch_up = handler_catch_up
        self._current = current
        self._apply_route = apply_route
        self._node_epoch = node_epoch
        self._stopping = stopping
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"catch-up-{node_id}")
        self._running: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()
        #: Moves this node reported caught up (and the coordinator completed).
        self.completed = 0

    def schedule(self, assignment: Assignment) -> None:
        """Start a job for ``assignment`` (catching up) unless one already runs for it."""
        tag = (assignment.resource, assignment.partition, assignment.held_since)
        with self._lock:
            if tag in self._running or self._stopping.is_set():
                return
            self._running.add(tag)
        try:
            self._pool.submit(self._run, _Job(assignment), tag)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._running.discard(tag)

    def busy(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return len(self._running)

    def shutdown(self) -> None:
        """Drop waiting jobs; running ones end at their next check of ``stopping``."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: _Job, tag: tuple[str, int, int]) -> None:
        retrying = until_stopped(
            self._stopping, initial=BACKOFF_INITIAL, maximum=BACKOFF_MAX, attempts=MAX_ATTEMPTS,
            before_sleep=lambda state: log.info(
                "catch-up of %s/%s: attempt %d failed (%s); trying again", job.target.resource,
                job.target.partition, state.attempt_number,
                state.outcome.exception() if state.outcome else None))
        try:
            retrying(self._attempt, job)
        except tenacity.RetryError as exc:
            if not self._stopping.is_set():
                log.error("catch-up of %s/%s given up after %d attempts: %s", job.target.resource,
                          job.target.partition, exc.last_attempt.attempt_number,
                          exc.last_attempt.exception())
        finally:
            with self._lock:
                self._running.discard(tag)

    def _still_catching_up(self, job: _Job) -> Assignment | None:
        """The assignment as now known, if it is still the same holding, catching up."""
        now = self._current(job.target.resource, job.target.partition)
        if now is None or now.role is not Role.CATCHING_UP or now.held_since != job.target.held_since:
            return None
        return now

    def _attempt(self, job: _Job) -> None:
        now = self._still_catching_up(job)
        if now is None or self._stopping.is_set():
            return
        if not job.copied:
            self._catch_up(now)
            job.copied = True
            now = self._still_catching_up(job)
            if now is None:
                return
        try:
            result = self._client.node_caught_up(self._node_id, self._node_epoch(), now.resource,
                                                 now.partition, now.epoch)
        except StaleEpoch:
            self._refresh(now)
            raise _RouteChanged(f"{now.resource}/{now.partition} changed since epoch {now.epoch}") from None
        except Conflict as exc:
            if exc.code != "no_move":
                raise
            log.info("move of %s/%s to %s was cancelled", now.resource, now.partition, self._node_id)
            self._refresh(now)
            return
        except NotFound:  # the resource (or this node) is gone: the change feed says so too
            return
        with self._lock:
            self.completed += 1
        if result.partition is not None:
            self._apply_route(result.partition, result.revision)

    def _refresh(self, now: Assignment) -> None:
        """Re-read the partition's route (through the leader) and feed it to the agent."""
        try:
            table = self._client.routing(now.resource, consistent=True)
        except NotFound:
            return
        self._apply_route(table.route(now.resource, now.partition), table.revision)
