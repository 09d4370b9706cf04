"""The change feed: every event of every applied command, in revision order, bounded.

Each member keeps its own feed, filled as it applies the log. Since every member applies the
same log, revision ``r`` carries the same events everywhere, so a watcher can resume on any
member from the last revision it saw. A member keeps the events after ``floor`` (its start or
last snapshot install, or what it had to drop to stay within ``capacity``); asking for older
ones raises :class:`Compacted` ("re-read the state, then watch from its revision").

Runs on the member's event loop thread; waiters are plain futures.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from hacoord.core.events import Event

DEFAULT_CAPACITY = 20_000


class Compacted(Exception):
    """The requested revision is older than the feed keeps."""

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
        self._waiters: list[asyncio.Future[None]] = []

    def record(self, events: Iterable[Event]) -> None:
        """Append the events of one applied command (all of one revision)."""
        added = False
        for event in events:
            self._events.append(event)
            self.revision = max(self.revision, event.revision)
            added = True
        while len(self._events) > self.capacity:
            # Drop whole revisions only, so "everything after floor" stays true.
            dropped = self._events.popleft().revision
            while self._events and self._events[0].revision == dropped:
                self._events.popleft()
            self.floor = dropped
        if added:
            self._wake()

    def reset(self, revision: int) -> None:
        """The state jumped to ``revision`` (snapshot install): history before it is gone."""
        self._events.clear()
        self.floor = self.revision = revision
        self._wake()

    def since(self, revision: int, limit: int = 1000) -> list[Event]:
        """Events after ``revision``: whole revisions, about ``limit`` events at most."""
        if revision < self.floor:
            raise Compacted(revision, self.floor)
        out: list[Event] = []
        for event in self._events:  # newest events are few; a scan is fine at this size
            if event.revision <= revision:
                continue
            if len(out) >= limit and event.revision != out[-1].revision:
                break
            out.append(event)
        return out

    async def wait(self, revision: int, timeout: float) -> None:
        """Return when there are events after ``revision``, the feed resets, or after timeout."""
        if self.revision > revision or revision < self.floor:
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
