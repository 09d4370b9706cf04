"""A follower decodes a snapshot received from the leader off its loop (a worker thread in a
member: at 100,000 partitions the decode takes about a second). Meanwhile it keeps ticking:
it must leave its log alone, not answer the leader in a way that starts the transmission over,
and not stand for election while the leader is heard. Once the decode ends it installs the
snapshot and catches up; a member that stood for election meanwhile drops it. Nothing
acknowledged is lost either way."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hacoord.core.codec import digest
from tests.adapter.raft_harness import controlled_time
from tests.adapter.sim import SimCluster


@contextlib.contextmanager
def a_follower_needing_a_snapshot(tmp_path: Path, seed: int) -> Iterator[tuple[Any, ...]]:
    """A cluster whose leader and other follower compacted past what the third member holds,
    healed so that the leader sends it a snapshot, whose decode is held: ``(cluster, leader,
    lagging, other)`` once the decode has begun."""
    with controlled_time(seed=seed) as clock:
        cluster = SimCluster(tmp_path, clock, seed=seed, deferred_decodes=True)
        try:
            leader, lagging, other = cluster.leave_one_behind()
            cluster.network.heal_link(leader, lagging)
            cluster.network.heal_link(other, lagging)
            for _ in range(100):
                if cluster.decoding(lagging):
                    break
                cluster.clock.advance(0.05)
                cluster.tick()
                cluster.network.deliver_all()
            assert cluster.decoding(lagging), "the lagging member never received a snapshot"
            yield cluster, leader, lagging, other
        finally:
            cluster.destroy()


def keep_decoding(cluster: SimCluster, rounds: int, writer: str | None = None,
                  writes: int = 0) -> None:
    """``rounds`` of ticks and deliveries, the decode held; a write through ``writer`` in each
    of the first ``writes`` rounds (fewer than would make the leader compact again)."""
    for done in range(rounds):
        if writer is not None and done < writes:
            cluster.submit(writer)
        cluster.clock.advance(0.05)
        cluster.tick()
        cluster.network.deliver_all()


def test_a_follower_decoding_a_snapshot_waits_then_installs_it_and_catches_up(
        tmp_path: Path) -> None:
    with a_follower_needing_a_snapshot(tmp_path, seed=21) as (cluster, leader, lagging, _):
        term = cluster.members[leader].obj.raftCurrentTerm
        log_before = cluster.log_indexes(lagging)
        commit_before = cluster.commit(lagging)
        lagging_obj = cluster.members[lagging].obj
        # Several election timeouts pass while the decode runs; the leader keeps writing.
        # Once what was in flight when the decode began has landed (a later transmission the
        # leader had begun on an earlier rejection), it begins no other.
        keep_decoding(cluster, rounds=2, writer=leader, writes=2)
        sent = cluster.members[leader].obj.snapshots.transmissions
        keep_decoding(cluster, rounds=60, writer=leader, writes=1)
        assert cluster.decoding(lagging)
        assert cluster.log_indexes(lagging) == log_before, "the log changed during the decode"
        assert cluster.commit(lagging) == commit_before
        assert lagging_obj.raftCurrentTerm == term, "it stood for election while decoding"
        assert cluster.leader() == leader
        assert cluster.members[leader].obj.raftCurrentTerm == term
        assert lagging_obj.snapshots_replaced_log + lagging_obj.snapshots_kept_tail == 0
        assert cluster.members[leader].obj.snapshots.transmissions == sent, \
            "the leader began sending the snapshot again"

        cluster.finish_decode(lagging)
        cluster.tick(lagging)  # the install, and its acknowledgement to the leader
        installed = lagging_obj.snapshots_replaced_log + lagging_obj.snapshots_kept_tail
        assert installed == 1
        assert cluster.log_indexes(lagging)[0] >= log_before[-1]
        # It catches up from the leader's log, with no second transmission.
        caught_up = cluster.run_until(
            lambda: cluster.log_indexes(lagging)[-1] == cluster.log_indexes(leader)[-1]
            and cluster.commit(lagging) == cluster.commit(leader), rounds=50)
        assert caught_up
        assert lagging_obj.snapshots_replaced_log + lagging_obj.snapshots_kept_tail == 1
        assert cluster.members[leader].obj.snapshots.transmissions == sent, \
            "the leader began sending the snapshot again"
        assert lagging_obj.snapshots_stale == 0
        cluster.converge()
        assert cluster.members[leader].obj.raftCurrentTerm == term, "the install cost an election"
        assert digest(cluster.state(lagging)) == digest(cluster.state(leader))
        assert set(cluster.acked) <= set(cluster.state(lagging).requests)


def test_a_member_that_stood_for_election_while_decoding_drops_the_snapshot(
        tmp_path: Path) -> None:
    with a_follower_needing_a_snapshot(tmp_path, seed=23) as (cluster, leader, lagging, other):
        lagging_obj = cluster.members[lagging].obj
        term = lagging_obj.raftCurrentTerm
        # It hears from nobody, though still connected to the other follower. The others
        # refuse a pre-vote to a member this far behind, but one it won just before it was
        # cut off (the grant crossed the snapshot) lets it stand at its next deadline.
        cluster.network.cut_link(leader, lagging)
        cluster.network.hold(other, lagging)
        lagging_obj._pv_won = term + 1
        keep_decoding(cluster, rounds=100)
        assert lagging_obj.raftCurrentTerm > term and not lagging_obj._isLeader()
        cluster.finish_decode(lagging)
        cluster.tick(lagging)
        assert lagging_obj.snapshots_dropped == 1
        assert lagging_obj.snapshots_replaced_log + lagging_obj.snapshots_kept_tail == 0
        cluster.converge()
        assert digest(cluster.state(lagging)) == digest(cluster.state(leader))
        assert set(cluster.acked) <= set(cluster.state(lagging).requests)
