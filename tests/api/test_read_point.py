"""The coordinator's read point: the read index first, a barrier through the log (on the
leader) or forwarding (on a follower) when none can be had, and a pause of the read index
after one found no majority in time (members of an older release ignore its messages)."""

from __future__ import annotations

import asyncio

from hacoord.core import commands as c
from hacoord.replication.base import NotAppliedError
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.coordinator import READ_INDEX_BACKOFF, Coordinator


class Unconfirmed(MemoryReplicator):
    """A leader whose read-index rounds find no majority in time."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.submitted: list[str] = []

    async def read_index(self, timeout: float) -> int | None:
        self.asked += 1
        raise NotAppliedError("no majority confirmed this member's leadership in time; retry")

    async def submit(self, command: c.Command, timeout: float):  # type: ignore[override]
        self.submitted.append(type(command).__name__)
        return await super().submit(command, timeout)


def test_a_read_index_that_finds_no_majority_falls_back_to_a_barrier_for_a_while() -> None:
    now = [1000.0]
    replicator = Unconfirmed()
    coordinator = Coordinator(replicator, clock=lambda: now[0])

    async def scenario() -> None:
        await coordinator.barrier()
        assert (replicator.asked, replicator.submitted) == (1, ["Barrier"])
        now[0] += READ_INDEX_BACKOFF - 1
        await coordinator.barrier()
        assert (replicator.asked, replicator.submitted) == (1, ["Barrier", "Barrier"])
        now[0] += 1
        await coordinator.barrier()
        assert replicator.asked == 2, "the read index was not tried again after the pause"

    asyncio.run(scenario())


def test_a_follower_forwards_when_the_leader_confirms_no_index() -> None:
    now = [1000.0]
    replicator = Unconfirmed()
    coordinator = Coordinator(replicator, clock=lambda: now[0])

    async def scenario() -> None:
        assert await coordinator.follower_read() is False
        assert await coordinator.follower_read() is False
        assert replicator.asked == 1  # the second did not wait for another round
        assert replicator.submitted == []

    asyncio.run(scenario())


def test_a_confirmed_index_needs_no_log_entry() -> None:
    replicator = MemoryReplicator()
    coordinator = Coordinator(replicator)
    revision = asyncio.run(coordinator.barrier())
    assert revision == replicator.state.revision and replicator._index == 1
