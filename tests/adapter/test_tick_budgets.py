"""A member's tick gives sending to followers (``send_budget``, on a leader) and applying
committed entries (``apply_budget``) a bounded time: a follower catching up on a long log is
sent, and applies, what fits, and the rest follows in the next ticks rather than within one
tick that holds the loop. Heartbeats keep their own period."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hacoord.core.codec import digest
from hacoord.replication import statemachine
from hacoord.replication.engine import HacoordSyncObj
from tests.adapter.raft_harness import InMemoryTransport, controlled_time
from tests.adapter.sim import SIM_TUNING, SimCluster

SEND_COST = 0.001  # simulated seconds each message takes to send


def fall_behind(cluster: SimCluster, writes: int) -> tuple[str, str]:
    """Cut one follower off while the leader commits ``writes`` writes, then heal it:
    ``(leader, lagging)``."""
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
    leader = cluster.leader()
    assert leader is not None
    lagging = next(n for n in cluster.names if n != leader)
    others = [n for n in cluster.names if n != lagging]
    for name in others:
        cluster.network.cut_link(name, lagging)
    cluster.submit(leader, writes)
    cluster.step(rounds=10)
    return leader, lagging


def heal(cluster: SimCluster) -> None:
    for a in cluster.names:
        for b in cluster.names:
            if a < b:
                cluster.network.heal_link(a, b)


def test_a_follower_catching_up_is_sent_its_entries_over_several_bounded_ticks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with controlled_time(seed=31) as clock:
        cluster = SimCluster(tmp_path, clock, seed=31)
        try:
            leader, lagging = fall_behind(cluster, 40)  # SIM_TUNING's entries: many messages
            behind = cluster.log_indexes(leader)[-1] - cluster.log_indexes(lagging)[-1]
            assert behind >= 20

            obj = cluster.members[leader].obj
            budget = obj.send_budget
            send = InMemoryTransport.send
            send_all = HacoordSyncObj._SyncObj__sendAppendEntries
            calls: list[tuple[float, int]] = []  # per send: simulated seconds, messages
            messages = [0]

            def costly_send(self: Any, node: Any, message: Any) -> bool:
                if self.name == leader:
                    messages[0] += 1
                    clock.advance(SEND_COST)
                return send(self, node, message)

            def timed_send_all(self: Any) -> None:
                started, count = clock.now, messages[0]
                send_all(self)
                if self is obj:
                    calls.append((clock.now - started, messages[0] - count))
                    # the next heartbeat is a whole period after this send, not a budget
                    assert self._SyncObj__newAppendEntriesTime - clock.now > budget

            monkeypatch.setattr(InMemoryTransport, "send", costly_send)
            monkeypatch.setattr(HacoordSyncObj, "_SyncObj__sendAppendEntries", timed_send_all)
            heal(cluster)
            for _ in range(200):
                if cluster.log_indexes(lagging)[-1] == cluster.log_indexes(leader)[-1]:
                    break
                clock.advance(0.01)
                cluster.tick(leader)
                cluster.network.deliver_all()
                cluster.tick(lagging)
                cluster.network.deliver_all()
            assert cluster.log_indexes(lagging)[-1] == cluster.log_indexes(leader)[-1], \
                "the follower did not catch up"
            # A send stops once it has taken the budget, each follower still getting the
            # message it was being sent (the other one at most one more).
            slack = 2 * SEND_COST * len(cluster.names)
            assert max(seconds for seconds, _ in calls) <= budget + slack
            assert sum(1 for _, count in calls if count > 2) >= 2, "it all went in one send"
            assert SIM_TUNING.append_entries_period > budget + slack  # the library's bound
        finally:
            cluster.destroy()


APPLY_COST = 0.003  # simulated seconds each command takes to apply


def test_a_follower_catching_up_applies_its_entries_over_several_bounded_ticks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tuning = dataclasses.replace(SIM_TUNING, log_compaction_min_entries=10**6)  # entries, no snapshot
    with controlled_time(seed=37) as clock:
        cluster = SimCluster(tmp_path, clock, seed=37, tuning=tuning)
        try:
            leader, lagging = fall_behind(cluster, 30)
            obj = cluster.members[lagging].obj
            behind = cluster.commit(leader) - obj.raftLastApplied
            assert behind >= 10

            apply_logged = statemachine.apply_logged

            def costly_apply(state: Any, command: Any) -> Any:
                clock.advance(APPLY_COST)
                return apply_logged(state, command)

            monkeypatch.setattr(statemachine, "apply_logged", costly_apply)
            heal(cluster)
            per_tick: list[float] = []  # simulated seconds the lagging member spent applying
            for _ in range(300):
                if obj.raftLastApplied == cluster.commit(leader) and not obj.apply_backlog:
                    break
                clock.advance(0.01)
                cluster.tick(leader)
                cluster.network.deliver_all()
                applied, started = obj.raftLastApplied, clock.now
                cluster.tick(lagging)
                if obj.raftLastApplied > applied:
                    per_tick.append(clock.now - started)
                cluster.network.deliver_all()
            assert obj.raftLastApplied == cluster.commit(leader), "it did not catch up"
            # Each tick stops applying once it took the budget (an entry holds at most
            # SIM_TUNING.max_batch_commands commands, and one entry always goes through).
            most = obj.apply_budget + tuning.max_batch_commands * APPLY_COST + 0.001
            assert max(per_tick) <= most
            assert len(per_tick) >= 2, "it applied everything in one tick"
            cluster.converge()
            assert digest(cluster.state(lagging)) == digest(cluster.state(leader))
        finally:
            cluster.destroy()
