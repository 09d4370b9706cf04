"""Freeing a large structure a piece at a time, off the event loop.

When a snapshot replaces a member's state, the old state (100,000 partitions are about a
million objects) and the change feed's old history die at once. CPython frees a container and
everything only it holds in one C call, holding the GIL throughout: 10 ms on a quiet machine at
that size, 20-25 ms on a busy one, all of it on the event loop that ticks Raft.

:func:`release` hands such a structure to a worker thread instead, which takes it apart
without changing it: it copies the references a big container holds (a shallow copy), drops
its own reference to the container (whose death now frees only the container) and then drops
the copied references a chunk at a time. The interpreter passes the GIL between chunks, so the
loop waits at most one switch interval for it (1 ms in a member, see
``hacoord.server.member.GIL_SWITCH_INTERVAL``). Nothing is mutated, so a reader that
still holds the old structure (a request being answered from the old state) sees it whole;
whatever it holds is freed when it lets go, as usual.

Only a member process frees in the background (:func:`configure_for_member`); elsewhere
(tests, tools) :func:`release` just drops its reference, which keeps simulated runs
single-threaded and deterministic.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: References dropped per step: a few hundred small objects free in well under a millisecond.
CHUNK = 256

#: A collection of at most this many items is taken apart item by item (its items may differ).
SMALL = 8

_COLLECTIONS = (list, deque, set, frozenset)


def _contents(item: Any) -> tuple[list[Any], bool] | None:
    """The references ``item`` holds, and whether they are alike (a collection's items, judged
    by one of them) rather than mixed (a tuple's or an object's fields); None for a leaf."""
    if isinstance(item, dict):
        return list(item.values()), True  # keys are strings and numbers: they go with the dict
    if isinstance(item, tuple):
        return list(item), False
    if isinstance(item, _COLLECTIONS):
        return list(item), True
    attributes = getattr(item, "__dict__", None)
    if isinstance(attributes, dict):
        return list(attributes.values()), False
    slots = getattr(type(item), "__slots__", None)
    if isinstance(slots, tuple) and slots:  # (an Event, say)
        return [getattr(item, name, None) for name in slots], False
    return None


def _big(contents: list[Any], depth: int = 2) -> bool:
    """Whether what a container holds is worth taking apart: more than ``CHUNK`` references
    counted ``depth`` levels down."""
    return _weight(contents, depth) > CHUNK


def _weight(contents: list[Any], depth: int) -> int:
    total = len(contents)
    if depth == 0:
        return total
    for part in contents:
        if total > CHUNK:
            break
        inner = _contents(part)
        if inner is not None:
            total += _weight(inner[0], depth - 1)
    return total


def _opened(item: Any) -> tuple[list[Any], bool] | None:
    """``item``'s contents (see :func:`_contents`) if it is big; None if dropping it whole is
    cheap."""
    contents = _contents(item)
    if contents is None or not _big(contents[0]):
        return None
    return contents


def pieces(root: list[Any]) -> Iterator[None]:
    """Take apart the one structure in ``root`` (a one-item list the caller gives up), yielding
    after each step. A step frees one container's own memory, or one small item, or up to
    ``CHUNK`` items of a long collection whose items are small (judged by its last one)."""
    work: list[tuple[list[Any], bool]] = [(root, False)]
    while work:
        parts, alike = work[-1]
        if not parts:
            work.pop()
            continue
        if alike and len(parts) > SMALL and _opened(parts[-1]) is None:
            del parts[-CHUNK:]  # a run of small things, judged by the last one
            yield
            continue
        item = parts.pop()
        inner = _opened(item)
        del item  # a leaf dies here; a big container frees only itself (``inner`` holds the rest)
        if inner is not None:
            work.append(inner)
        yield


class Releaser:
    """One daemon thread that takes apart what it is handed, in the order handed."""

    def __init__(self, name: str = "release") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()

    def release(self, item: Any) -> None:
        """Free ``item`` here, a piece at a time; the caller must drop its own references."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._pending += 1
            self._idle.clear()
        self._jobs.put([item])

    def wait_idle(self, timeout: float) -> bool:
        """True once everything handed over has been freed (for tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            root = self._jobs.get()
            try:
                for _ in pieces(root):
                    pass
            except Exception:  # never lose the thread over a freeing oddity
                log.exception("freeing a released structure failed")
            del root
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()


_releaser: Releaser | None = None


def configure_for_member() -> None:
    """Free released structures on a worker thread from now on (once per process, at start)."""
    global _releaser
    if _releaser is None:
        _releaser = Releaser()


def release(*items: Any) -> None:
    """The caller is done with ``items``: in a member, free them off the event loop a piece at
    a time; elsewhere let them go now. The caller must not keep other references."""
    if _releaser is not None:
        for item in items:
            _releaser.release(item)
