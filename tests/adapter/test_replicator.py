"""RaftReplicator's waiters: answered from the applied command or a snapshot, never left hanging."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.replication.base import MemberInfo, NotLeaderError, OutcomeUnknownError
from hacoord.replication.raft import RaftReplicator, _Waiter


def replicator(tmp_path: Path) -> RaftReplicator:
    members = {"m1": MemberInfo("m1", "127.0.0.1:1", "http://127.0.0.1:2")}
    return RaftReplicator("m1", members, tmp_path, secret=None)


def test_a_snapshot_that_already_holds_a_command_answers_its_waiter(tmp_path: Path) -> None:
    """PySyncObj never calls back for commands a follower received inside a snapshot; the
    replicator answers them from the request memory of the installed state instead."""
    async def scenario() -> tuple:
        rep = replicator(tmp_path)
        command = c.RegisterNode(request_id="r1", node_id="n1", address="127.0.0.1:9")
        future = asyncio.get_running_loop().create_future()
        rep._waiting["r1"] = _Waiter(future, command)
        installed = ClusterState()
        apply(installed, command)
        rep._sm.state = installed
        rep._on_restored()
        return future.done(), future.result(), rep.feed.floor

    done, outcome, floor = asyncio.run(scenario())
    assert done and outcome.ok and outcome.duplicate and outcome.revision == 1
    assert outcome.result["node"]["id"] == "n1"
    assert floor == 1  # the change feed restarts at the installed revision


def test_submit_refuses_when_not_leading_and_times_out_as_unknown(tmp_path: Path) -> None:
    async def scenario() -> None:
        rep = replicator(tmp_path)
        with pytest.raises(NotLeaderError):
            await rep.submit(c.Barrier(), timeout=0.1)
        rep.is_leader = lambda: True  # type: ignore[method-assign]
        rep._loop = asyncio.get_running_loop()
        with pytest.raises(OutcomeUnknownError):  # nothing ticks: no outcome can arrive
            await rep.submit(c.RegisterNode(request_id="x", node_id="n", address="h:1"), 0.05)
        # Still pending: a retry with the same request id joins this waiter, not a second entry.
        assert "x" in rep._waiting and not rep._waiting["x"].future.done()
        assert len(rep._queue) == 1

    asyncio.run(scenario())
