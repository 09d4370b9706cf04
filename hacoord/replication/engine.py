"""``HacoordSyncObj``: the PySyncObj engine as hacoord runs it.

On top of :class:`~hacoord.replication.raft_safety.SafeSyncObj` (the Raft-safety fixes) it
* builds the library over an :class:`~hacoord.replication.poller.EpollPoller`, so the member's
  event loop can watch Raft's sockets through one descriptor, and
* calls ``before_ack()`` before a follower acknowledges appended entries, which is where the
  journal is synced (see :mod:`hacoord.replication.durability`).

This module and its neighbours in ``hacoord.replication`` are the only code that imports pysyncobj.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pysyncobj.syncobj as _syncobj_module

from hacoord.replication.poller import EpollPoller
from hacoord.replication.raft_safety import SafeSyncObj


class HacoordSyncObj(SafeSyncObj):
    """A SafeSyncObj over an epoll poller, with a durability hook before acknowledgements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.poller = EpollPoller()
        self.before_ack: Callable[[], None] | None = None
        original = _syncobj_module.createPoller
        # The library creates its poller inside __init__; hand it ours for the duration.
        _syncobj_module.createPoller = lambda _kind: self.poller
        try:
            super().__init__(*args, **kwargs)
        finally:
            _syncobj_module.createPoller = original

    def _safe_send_ack(self, *args: Any, **kwargs: Any) -> None:
        """Every follower acknowledgement goes through here: make the entries durable first."""
        if self.before_ack is not None:
            self.before_ack()
        super()._safe_send_ack(*args, **kwargs)
