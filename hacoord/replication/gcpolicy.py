"""Garbage collection in a member that holds a large, long-lived state.

At 100,000 partitions the replicated state is a few million objects that live as long as the
member. CPython's cyclic collector scans whatever sits in the generation it collects, so while a
resource is being created its partitions pile up in the young generations, and one collection
of them held the event loop for 170 ms (``gc generation 1`` in the stall log of ``bench.scale``);
every member applies the same commands, so every member collected at the same moment.

The state holds no reference cycles (nodes, partitions and their lists and dicts only), so
reference counting frees whatever of it is replaced or deleted. :func:`state_grew` therefore
moves everything alive into the collector's permanent generation (``gc.freeze``) right after
the state grew a lot (a resource or a slice of one was added, a snapshot was restored): the
collector never scans it again. Objects frozen with it that later become *cyclic* garbage are
never freed - a few request-handling objects per creation at most.

Only a member process uses this policy (:func:`configure_for_member`); elsewhere (tests, tools)
:func:`state_grew` does nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Collection thresholds of a member: a young collection per 50,000 net allocations, the middle
#: generation every second one (so it never holds more than about 100,000 objects).
MEMBER_THRESHOLDS = (50_000, 2, 10)

_enabled = False


def configure_for_member() -> None:
    """Freeze what the imports created, set the member's thresholds and enable
    :func:`state_grew` (once per process, at start)."""
    global _enabled
    gc.freeze()
    gc.set_threshold(*MEMBER_THRESHOLDS)
    _enabled = True


def state_grew() -> None:
    """The state just grew by many objects: keep the collector from ever scanning them."""
    if _enabled:
        gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while a worker thread builds a large state (a received snapshot): one
    would scan the millions of young objects holding the GIL, stalling the event loop as if the
    work ran on it. At the end (in a member) what was built is frozen at once, as
    :func:`state_grew` would after the install: left young, it would make the first collection
    after the block scan all of it (88 ms seen in ``bench.scale``); if the state is not
    installed after all, reference counting still frees it. Collections then resume (if they
    were enabled)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        state_grew()
        if was_enabled:
            gc.enable()
