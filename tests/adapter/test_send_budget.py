"""A leader gives each tick a bounded time for sending to followers (``send_budget``): a
follower catching up on a long log gets what fits, and the rest follows in the next ticks
rather than within one tick that holds the loop. Heartbeats keep their own period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hacoord.replication.engine import HacoordSyncObj
from tests.adapter.raft_harness import InMemoryTransport, controlled_time
from tests.adapter.sim import SIM_TUNING, SimCluster

SEND_COST = 0.001  # simulated seconds each message takes to send


def test_a_follower_catching_up_is_sent_its_entries_over_several_bounded_ticks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with controlled_time(seed=31) as clock:
        cluster = SimCluster(tmp_path, clock, seed=31)
        try:
            assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
            leader = cluster.leader()
            assert leader is not None
            lagging = next(n for n in cluster.names if n != leader)
            cluster.network.cut_link(leader, lagging)
            cluster.submit(leader, 40)  # SIM_TUNING batches tiny entries: many messages
            cluster.step(rounds=10)
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
            cluster.network.heal_link(leader, lagging)
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
