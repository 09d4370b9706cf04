"""Reads that walk the whole state (the routing table, a node's replicas, a state digest, a
routing diff) answered without holding the event loop.

On a large state such a read takes tens to hundreds of milliseconds to build and to encode as
JSON: long enough to delay a Raft tick past a heartbeat. :class:`HeavyReads` builds and encodes
it in a forked child (:func:`hacoord.server.offload.offload`: the child sees the state as it was
at the fork) and keeps the last few answers by revision, so that a thousand data nodes reading
the routing table after one change cost one child, not a thousand. Readers asking for the same
answer at the same moment share one child. Small states are answered inline.

Threads: the event loop only.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from hacoord.server.offload import offload

#: Answers kept (by what was asked and the revision it was answered at, the newest per question),
#: and their total size (the routing table at the cluster's limit of 300,000 partitions is
#: about 30 MB).
MAX_KEPT = 16
MAX_KEPT_BYTES = 64 << 20
#: Seconds an answer is kept: readers come in a burst after a change (a thousand data nodes
#: reading the routing table); after that it only holds memory.
KEEP_FOR = 60.0


def encode_json(body: Any) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def _build(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> tuple[int, bytes]:
    body = fn(*args)
    return int(body.get("revision", 0)), encode_json(body)


class HeavyReads:
    """Builds and encodes whole-state answers off the loop; see the module docstring."""

    def __init__(self, max_kept: int = MAX_KEPT, max_bytes: int = MAX_KEPT_BYTES,
                 keep_for: float = KEEP_FOR) -> None:
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.keep_for = keep_for
        self._kept: OrderedDict[tuple[Hashable, int], tuple[int, bytes]] = OrderedDict()
        self._pending: dict[tuple[Hashable, int], asyncio.Future[tuple[int, bytes]]] = {}
        #: Answers built (in a child or inline) and answers served from what was kept.
        self.counts = {"built": 0, "reused": 0}

    async def answer(self, key: Hashable, revision: int, fn: Callable[..., dict[str, Any]],
                     *args: Any, size: int, name: str, keep: bool = True) -> tuple[int, bytes]:
        """``(revision, JSON bytes)`` of ``fn(*args)``, a dict carrying its ``revision``.
        ``key`` names what is asked (route and parameters), ``revision`` the state it is asked
        of: an answer kept for both is reused. ``size`` estimates the work (replicas walked);
        below the offload threshold the answer is built here. Without ``keep`` the answer is
        only shared with readers waiting for it (a caller that keeps its own copy)."""
        slot = (key, revision)
        kept = self._kept.get(slot)
        if kept is not None:
            self._kept.move_to_end(slot)
            self.counts["reused"] += 1
            return kept
        pending = self._pending.get(slot)
        if pending is not None:
            self.counts["reused"] += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[slot] = future
        try:
            result = await offload(_build, fn, args, size=size, name=name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._pending.pop(slot, None)
        future.set_result(result)
        self.counts["built"] += 1
        if keep:
            self._keep((key, result[0]), result)
        return result

    def _keep(self, slot: tuple[Hashable, int], result: tuple[int, bytes]) -> None:
        if len(result[1]) > self.max_bytes:
            return
        # An answer to the same question at an older revision is superseded: readers ask for
        # the newest, and a whole routing table is 10 MB at 100,000 partitions.
        same = [s for s in self._kept if s[0] == slot[0]]
        if any(s[1] > slot[1] for s in same):
            return
        for older in same:
            del self._kept[older]
        self._kept[slot] = result
        self._kept.move_to_end(slot)
        asyncio.get_running_loop().call_later(self.keep_for, self._expire, slot, result)
        while len(self._kept) > self.max_kept or self.kept_bytes() > self.max_bytes:
            self._kept.popitem(last=False)

    def _expire(self, slot: tuple[Hashable, int], result: tuple[int, bytes]) -> None:
        if self._kept.get(slot) is result:
            del self._kept[slot]

    def kept_bytes(self) -> int:
        """Bytes of the answers kept."""
        return sum(len(body) for _, body in self._kept.values())
