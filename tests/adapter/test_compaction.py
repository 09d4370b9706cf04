"""A member snapshots once replaying what it applied since its last snapshot would cost more
than a snapshot (``RaftTuning.log_compaction_replay``), long before the library's entry count.

Apply time is what the state machine measured; the tests set it, so that nothing depends on how
fast this machine applies."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hacoord.replication.driver import RaftTuning
from hacoord.replication.snapshot_store import SnapshotStore
from tests.adapter.raft_harness import controlled_time
from tests.adapter.sim import SIM_TUNING, SimCluster

#: Seconds of apply that make a snapshot due: far above what the few real applies here take.
REPLAY = 10.0
TUNING = dataclasses.replace(SIM_TUNING, log_compaction_min_entries=10**6,
                             log_compaction_replay=REPLAY)


@contextmanager
def simulated(tmp_path: Path, seed: int, tuning: RaftTuning = TUNING) -> Iterator[SimCluster]:
    """A simulated 3-member cluster with ``tuning``, destroyed on the way out."""
    with controlled_time(seed=seed) as clock:
        cluster = SimCluster(tmp_path, clock, seed=seed, tuning=tuning)
        try:
            yield cluster
        finally:
            cluster.destroy()


def started(cluster: SimCluster, writes: int = 6) -> str:
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
    leader = cluster.leader()
    assert leader is not None
    cluster.submit(leader, writes)
    cluster.step(rounds=6)
    for name in cluster.names:
        assert cluster.commit(name) == cluster.commit(leader)
    return leader


def snapshots(cluster: SimCluster, name: str) -> int:
    return cluster.members[name].obj.snapshots.writes


def test_a_member_snapshots_once_its_replay_would_cost_more_than_the_bound(tmp_path: Path) -> None:
    with simulated(tmp_path, 5) as cluster:
        leader = started(cluster)
        follower = next(n for n in cluster.names if n != leader)
        first_kept = cluster.log_indexes(follower)[0]
        cluster.step(rounds=3)
        assert [snapshots(cluster, n) for n in cluster.names] == [0, 0, 0]

        cluster.members[follower].driver.sm.apply_seconds += REPLAY * 0.9
        cluster.step(rounds=3)
        assert snapshots(cluster, follower) == 0  # under the bound: nothing

        cluster.members[follower].driver.sm.apply_seconds += REPLAY * 0.2
        cluster.step(rounds=3)
        assert snapshots(cluster, follower) == 1
        assert cluster.dump_index(follower) == cluster.commit(follower)
        assert cluster.log_indexes(follower)[0] > first_kept  # the journal was compacted
        assert [snapshots(cluster, n) for n in cluster.names if n != follower] == [0, 0]

        cluster.step(rounds=5)  # the count starts again from the snapshot
        assert snapshots(cluster, follower) == 1


def test_the_bound_grows_to_what_the_last_snapshot_took_to_write(tmp_path: Path) -> None:
    with simulated(tmp_path, 6) as cluster:
        leader = started(cluster)
        store = cluster.members[leader].obj.snapshots
        store.last_write_seconds = 3 * REPLAY  # a big state: its snapshots are costly
        cluster.members[leader].driver.sm.apply_seconds += 2 * REPLAY
        cluster.step(rounds=3)
        assert snapshots(cluster, leader) == 0

        cluster.members[leader].driver.sm.apply_seconds += 2 * REPLAY
        cluster.step(rounds=3)
        assert snapshots(cluster, leader) == 1


def test_without_the_bound_only_the_entry_count_snapshots(tmp_path: Path) -> None:
    tuning = dataclasses.replace(TUNING, log_compaction_replay=None)
    with simulated(tmp_path, 7, tuning) as cluster:
        leader = started(cluster)
        cluster.members[leader].driver.sm.apply_seconds += 100 * REPLAY
        cluster.step(rounds=5)
        assert snapshots(cluster, leader) == 0


def test_a_snapshot_that_cannot_start_is_not_tried_again_at_every_tick(tmp_path: Path) -> None:
    with simulated(tmp_path, 8) as cluster:
        leader = started(cluster)
        store = cluster.members[leader].obj.snapshots

        def no_process(*_args: object) -> None:
            raise OSError(11, "Resource temporarily unavailable")

        store.writer.start = no_process  # type: ignore[method-assign]
        cluster.members[leader].driver.sm.apply_seconds += REPLAY * 1.1
        cluster.step(rounds=10)
        assert store.write_failures == 1  # tried once, then waits for as much apply again
        cluster.members[leader].driver.sm.apply_seconds += REPLAY * 1.1
        cluster.step(rounds=3)
        assert store.write_failures == 2


def test_the_leader_does_not_force_a_snapshot_while_sending_its_dump(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer dump would compact the log past what the follower receiving the old one is about
    to install: it would need the whole dump again, and again."""
    with simulated(tmp_path, 9) as cluster:
        leader = started(cluster)
        store = cluster.members[leader].obj.snapshots
        monkeypatch.setattr(SnapshotStore, "sending", property(lambda self: self is store))
        cluster.members[leader].driver.sm.apply_seconds += REPLAY * 1.1
        cluster.step(rounds=3)
        assert snapshots(cluster, leader) == 0
        monkeypatch.setattr(SnapshotStore, "sending", property(lambda self: False))
        cluster.step(rounds=3)
        assert snapshots(cluster, leader) == 1
