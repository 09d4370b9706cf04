"""A follower that needs seconds to decode and install the leader's snapshot (100,000 partitions
take about one) must not hold that time against the leader: it heard from the leader when the
snapshot arrived, so no election follows the install. Nor may a restarted member hold the time
it took to load its own snapshot against the leader."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hacoord.replication.engine import HacoordSyncObj
from tests.adapter.raft_harness import controlled_time
from tests.adapter.sim import SIM_TUNING, SimCluster

SLOW = 3 * SIM_TUNING.election_timeout_max  # the decode outlasts any election timeout


def test_a_slow_snapshot_install_does_not_start_an_election(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with controlled_time(seed=7) as clock:
        cluster = SimCluster(tmp_path, clock, seed=7)
        try:
            leader, lagging, other = cluster.leave_one_behind()

            slow_member = cluster.members[lagging].obj
            staged = HacoordSyncObj._safe_snapshot_staged
            installs: list[int] = []  # the term the member was in when each install began

            def slow_staged(self: Any) -> Any:
                last = staged(self)
                if self is slow_member:
                    clock.advance(SLOW)  # the decode took this long
                    installs.append(self.raftCurrentTerm)
                return last

            monkeypatch.setattr(HacoordSyncObj, "_safe_snapshot_staged", slow_staged)
            cluster.network.heal_link(leader, lagging)
            cluster.network.heal_link(other, lagging)
            cluster.network.hold(leader, lagging)
            cluster.network.hold(other, lagging)
            # The leader's messages reach the lagging member one per tick, so that the tick
            # after the install has nothing from the leader to process.
            for _ in range(300):
                if installs:
                    break
                clock.advance(0.05)
                cluster.tick(leader, other)
                cluster.network.deliver(leader, lagging, 1)
                cluster.tick(lagging)
                for src, dst in list(cluster.network.queues):
                    if dst != lagging:
                        cluster.network.deliver(src, dst, 10)
            assert installs, "no snapshot was installed"
            cluster.tick(lagging)
            journal = cluster.members[lagging].driver.journal
            assert journal is not None
            stood = (slow_member.raftCurrentTerm > installs[0]
                     and journal.getVotedForNodeId() == slow_member.selfNode.id)
            assert not stood, "the install made the member stand for election"
            assert not slow_member._isLeader()
        finally:
            cluster.destroy()


@contextlib.contextmanager
def a_follower_stopped(tmp_path: Path, seed: int, compact: bool) -> Iterator[tuple[Any, ...]]:
    """A leader and a follower that was crashed after a few writes (and a compaction, if asked):
    ``(cluster, clock, leader, follower, term)``."""
    with controlled_time(seed=seed) as clock:
        cluster = SimCluster(tmp_path, clock, seed=seed)
        try:
            assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
            leader = cluster.leader()
            assert leader is not None
            follower = next(n for n in cluster.names if n != leader)
            cluster.submit(leader, 6)
            cluster.step(rounds=4)
            if compact:
                cluster.compact(follower)
                assert cluster.dump_index(follower)
            term = cluster.members[leader].obj.raftCurrentTerm
            cluster.crash(follower)
            yield cluster, clock, leader, follower, term
            assert cluster.run_until(lambda: cluster.leader() == leader, rounds=20)
            assert cluster.members[leader].obj.raftCurrentTerm == term
        finally:
            cluster.destroy()


def test_a_slow_load_at_restart_does_not_start_an_election(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with a_follower_stopped(tmp_path, seed=11, compact=True) as (cluster, clock, _, follower, term):
        load = HacoordSyncObj._adopt
        loads: list[int] = []

        def slow_load(self: Any, *args: Any) -> None:
            load(self, *args)
            clock.advance(SLOW)  # decoding the dump took this long
            loads.append(self.raftCurrentTerm)

        monkeypatch.setattr(HacoordSyncObj, "_adopt", slow_load)
        restarted = cluster.start(follower).obj
        for _ in range(20):  # its first ticks: the load, then whatever follows it
            cluster.tick(follower)
            if loads:
                break
        assert loads, "the member loaded no dump"
        cluster.tick(follower)
        assert restarted.raftCurrentTerm == term, "the restarted member stood for election"


def test_a_slow_catch_up_after_a_restart_does_not_start_an_election(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The restarted member hears from the leader, then applies a long run of entries: that
    # time is its own, not the leader's silence.
    with a_follower_stopped(tmp_path, seed=13, compact=False) as (cluster, clock, leader,
                                                                   follower, term):
        apply_entries = HacoordSyncObj._SyncObj__applyLogEntries
        slow: dict[str, Any] = {}
        catch_ups: list[int] = []

        def slow_apply(self: Any) -> Any:
            applied = self.raftLastApplied
            result = apply_entries(self)
            if self is slow.get("obj") and self.raftLastApplied > applied and not catch_ups:
                clock.advance(SLOW)  # applying the entries took this long
                catch_ups.append(self.raftCurrentTerm)
            return result

        monkeypatch.setattr(HacoordSyncObj, "_SyncObj__applyLogEntries", slow_apply)
        restarted = slow["obj"] = cluster.start(follower).obj
        for _ in range(40):
            if catch_ups:
                break
            clock.advance(0.05)
            cluster.tick(leader)
            cluster.network.deliver(leader, follower, 10)
            cluster.tick(follower)
            cluster.network.deliver(follower, leader, 10)
        assert catch_ups, "the restarted member applied nothing"
        cluster.tick(follower)  # the next tick, the leader's next heartbeat not yet here
        assert restarted.raftCurrentTerm == term, "the restarted member stood for election"
