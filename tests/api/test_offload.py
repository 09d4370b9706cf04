"""Offloaded computations: the answer a forked child computes from the state as it was at the
fork, while the event loop goes on; failures and timeouts as OffloadError."""

from __future__ import annotations

import asyncio
import time

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.placement import place_resource
from hacoord.server.offload import OffloadError, offload


def busy(seconds: float) -> int:
    end = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < end:
        spins += 1
    return spins


def fail() -> None:
    raise ValueError("no such thing")


def test_the_loop_runs_while_a_child_computes() -> None:
    async def scenario() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        before = ticks
        spins = await offload(busy, 0.5, size=10**9)
        after = ticks
        task.cancel()
        assert spins > 0
        return before, after

    before, after = asyncio.run(scenario())
    assert after - before >= 10  # the loop kept ticking through the half second


def test_the_child_sees_the_state_as_it_was_at_the_fork() -> None:
    state = ClusterState()
    for k in range(6):
        apply(state, c.RegisterNode(request_id=f"n{k}", node_id=f"n{k}", address="h:1",
                                    zone=f"z{k % 3}"))
    expected = place_resource(state, "r", 200, 3)

    async def scenario() -> list[list[str]]:
        job = asyncio.ensure_future(offload(place_resource, state, "r", 200, 3, size=10**9))
        await asyncio.sleep(0)  # the fork happened; the parent changes its state afterwards
        state.nodes.clear()
        return await job

    assert asyncio.run(scenario()) == expected


def test_small_work_runs_inline() -> None:
    assert asyncio.run(offload(sum, [1, 2, 3], size=1)) == 6


def test_a_failure_and_a_timeout_in_the_child() -> None:
    with pytest.raises(OffloadError, match="ValueError: no such thing"):
        asyncio.run(offload(fail, size=10**9))
    with pytest.raises(OffloadError, match="longer than"):
        asyncio.run(offload(busy, 30.0, size=10**9, timeout=0.3))
