"""What every forked helper child of a member does first (snapshot writers, offloaded planning).

A child must never outlive its member: a snapshot writer of a crashed member could rename an old
dump over one a restarted member installed, and an orphaned planner would only burn a core.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import signal

# Loaded in the parent, at import: a child must not import anything (another thread of the
# parent may have held the import lock at the fork).
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if os.name == "posix" else None
_PR_SET_PDEATHSIG = 1
#: How much lower a child's CPU priority is than its member's. A child's work (placement, a
#: rebalance plan, a snapshot or a backup) waits; the member's loop, which ticks Raft and answers
#: writes, must not wait behind it on a shared core.
CHILD_NICENESS = 10


def become_child(parent: int) -> None:
    """In a freshly forked child of ``parent``: die with the parent (Linux), exit at once if it
    is already gone, and stop collecting garbage (a collection would only copy pages the parent
    still shares), and yield the CPU to the member (:data:`CHILD_NICENESS`)."""
    gc.disable()
    with contextlib.suppress(OSError):  # not permitted here: it runs at its member's priority
        os.nice(CHILD_NICENESS)
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
