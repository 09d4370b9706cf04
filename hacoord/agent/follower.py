"""Following the coordinator's change feed from a revision, for as long as the agent runs.

The client's watch already long-polls any member and resumes after a failover within its deadline;
:class:`FeedFollower` adds what outlives one watch: when the watch gives up (the cluster unreachable
for longer than the client's deadline, an unexpected answer) it starts again from the last revision
it handled, with jittered backoff; when the feed no longer keeps that revision (``compacted``) it
re-reads the whole routing table through the leader and watches from the table's revision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import tenacity

from hacoord.agent.retry import until_stopped
from hacoord.client import Client, Compacted, HacoordError, RoutingTable, WatchEvent
from hacoord.protocol.events import EventFormatError

log = logging.getLogger(__name__)

#: Backoff between watches that failed: a random wait in [0, initial * 2**n], capped at max (seconds).
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 2.0


class FeedFollower:
    """Feeds ``on_event`` every change after ``revision``, and ``on_table`` a fresh routing table
    whenever the feed was compacted past the last revision handled, until ``stopping`` is set.
    ``poll`` bounds each long poll (and so how long :meth:`run` takes to notice ``stopping``)."""

    def __init__(self, client: Client, revision: int, *, on_table: Callable[[RoutingTable], None],
                 on_event: Callable[[WatchEvent], None], stopping: threading.Event,
                 poll: float) -> None:
        self._client = client
        self._on_table = on_table
        self._on_event = on_event
        self._stopping = stopping
        self._poll = poll
        #: The last revision handled.
        self.revision = revision
        #: Routing re-reads after a compacted answer, and watches that failed.
        self.resyncs = 0
        self.failures = 0

    def run(self) -> None:
        """Follow until ``stopping`` is set (the thread's target)."""
        retrying = until_stopped(self._stopping, initial=BACKOFF_INITIAL, maximum=BACKOFF_MAX,
                                 before_sleep=self._failed)
        try:
            retrying(self._follow)
        except tenacity.RetryError:
            pass  # stopping

    def _failed(self, state: tenacity.RetryCallState) -> None:
        self.failures += 1
        exc = state.outcome.exception() if state.outcome else None
        # The cluster away for a while is expected; anything else is a bug worth its trace.
        log.warning("watch from revision %d failed (%s); resuming", self.revision, exc,
                    exc_info=None if isinstance(exc, HacoordError) else exc)

    def _follow(self) -> None:
        resync = False
        while not self._stopping.is_set():
            if resync:
                table = self._client.routing(consistent=True)
                self.resyncs += 1
                self._on_table(table)
                self.revision = table.revision
                resync = False
            try:
                for event in self._client.watch(since=self.revision, poll=self._poll,
                                                stop=self._stopping.is_set):
                    self._on_event(event)
                    self.revision = event.revision
            except Compacted:
                log.info("change feed compacted past revision %d: re-reading the routing", self.revision)
                resync = True
            except EventFormatError as exc:  # a coordinator bug; the routing is still readable
                log.warning("unreadable event after revision %d (%s): re-reading the routing",
                            self.revision, exc)
                resync = True

