"""An epoll-based poller for PySyncObj whose single file descriptor an asyncio loop can watch.

PySyncObj's own pollers (``select.poll``) have no descriptor of their own, so they can only be
driven by a thread blocking in ``poll``. Driving Raft from the event loop instead keeps the whole
member on one thread: no GIL hand-offs between a tick thread and the HTTP layer, no locks around
the state, callbacks resolve futures directly. :class:`EpollPoller` implements the interface
PySyncObj's transport uses (``subscribe``/``unsubscribe``/``poll``) and reports how many events
the last ``poll`` handled, so the driver knows when to tick again at once.
"""

from __future__ import annotations

import select
from collections.abc import Callable

from pysyncobj.poller import POLL_EVENT_TYPE, Poller


class EpollPoller(Poller):
    """Edge of PySyncObj's socket layer; ``fileno()`` is readable whenever an event is pending."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[int, int], None]] = {}
        self.last_events = 0

    def fileno(self) -> int:
        return self._epoll.fileno()

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:  # noqa: N803
        mask = 0
        if eventMask & POLL_EVENT_TYPE.READ:
            mask |= select.EPOLLIN
        if eventMask & POLL_EVENT_TYPE.WRITE:
            mask |= select.EPOLLOUT
        if eventMask & POLL_EVENT_TYPE.ERROR:
            mask |= select.EPOLLERR
        try:
            self._epoll.register(descr, mask)
        except FileExistsError:
            self._epoll.modify(descr, mask)
        self._callbacks[descr] = callback

    def unsubscribe(self, descr: int) -> None:
        self._callbacks.pop(descr, None)
        try:
            self._epoll.unregister(descr)
        except (KeyError, OSError, ValueError):
            pass

    def poll(self, timeout: float) -> None:
        events = self._epoll.poll(max(timeout, 0.0))
        self.last_events = len(events)
        for descr, event in events:
            mask = 0
            if event & select.EPOLLIN:
                mask |= POLL_EVENT_TYPE.READ
            if event & select.EPOLLOUT:
                mask |= POLL_EVENT_TYPE.WRITE
            if event & (select.EPOLLERR | select.EPOLLHUP):
                mask |= POLL_EVENT_TYPE.ERROR
            callback = self._callbacks.get(descr)
            if callback is not None:
                callback(descr, mask)

    def close(self) -> None:
        self._epoll.close()
