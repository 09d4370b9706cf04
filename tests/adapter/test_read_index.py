"""The read index (hacoord.replication.readindex) on the production stack, simulated.

Links are *held* to cut them silently (tests.adapter.sim). Election timeouts are 1-2 s, a
step 0.11 s of simulated time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.replication.readindex import ReadIndexSyncObj
from tests.adapter.sim import SimCluster, led_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SimCluster]:
    with led_cluster(tmp_path, seed=3) as made:
        yield made


class Answers:
    """Collects read-index answers: ``(index, error)`` pairs."""

    def __init__(self) -> None:
        self.got: list[tuple[int | None, str | None]] = []

    def __call__(self, index: int | None, error: str | None) -> None:
        self.got.append((index, error))


def write(cluster: SimCluster, count: int) -> int:
    """Acknowledged writes through the leader; the commit index that covers them."""
    leader = cluster.leader()
    assert leader is not None
    rids = cluster.submit(leader, count)
    assert cluster.run_until(lambda: all(r in cluster.acked for r in rids), rounds=60)
    return cluster.commit(leader)


def test_reads_waiting_together_share_one_round_and_get_the_commit_index(
        cluster: SimCluster) -> None:
    committed = write(cluster, 3)
    leader = cluster.leader()
    assert leader is not None
    obj = cluster.members[leader].obj
    rounds = obj.read_rounds
    answers = Answers()
    for _ in range(5):
        obj.read_index(answers)
    assert answers.got == [], "answered before any member confirmed the leadership"
    assert cluster.run_until(lambda: len(answers.got) == 5, rounds=10)
    assert obj.read_rounds == rounds + 1
    assert {index for index, _ in answers.got} == {cluster.commit(leader)}
    assert all(index is not None and index >= committed and error is None
               for index, error in answers.got)


def test_a_follower_gets_the_leaders_index_and_applies_up_to_it(cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    served = cluster.members[leader].obj.reads_for_followers
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    rids = cluster.submit(leader, 3)
    assert cluster.run_until(lambda: all(r in cluster.acked for r in rids), rounds=60)
    acked_at = cluster.commit(leader)  # the follower may not know this commit yet
    answers = Answers()
    obj.read_index(answers)
    assert answers.got == []
    assert cluster.run_until(lambda: len(answers.got) == 1, rounds=10)
    index, error = answers.got[0]
    assert error is None and index is not None and index >= acked_at
    assert cluster.run_until(lambda: obj.raftLastApplied >= index, rounds=3)
    assert cluster.members[leader].obj.reads_for_followers == served + 1


def test_reads_asking_a_follower_together_share_one_request_to_the_leader(
        cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    served = cluster.members[leader].obj.reads_for_followers
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    asked = obj._ri_last_asked
    acked_at = write(cluster, 2)
    answers = Answers()
    for _ in range(6):
        obj.read_index(answers)
    assert cluster.run_until(lambda: len(answers.got) == 6, rounds=10)
    assert obj._ri_last_asked == asked + 1  # one request for the six
    assert cluster.members[leader].obj.reads_for_followers == served + 6
    assert len(set(answers.got)) == 1
    index, error = answers.got[0]
    assert error is None and index is not None and index >= acked_at


def test_a_read_after_a_request_left_gets_a_request_of_its_own(cluster: SimCluster) -> None:
    """A read that asks once the shared request has left must not ride on it: the leader's
    index for that request may predate writes acknowledged before the read arrived."""
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    first, second = Answers(), Answers()
    obj.read_index(first)
    cluster.step()  # the request leaves
    acked_at = write(cluster, 2)
    obj.read_index(second)
    assert cluster.run_until(lambda: bool(first.got and second.got), rounds=10)
    index, error = second.got[0]
    assert error is None and index is not None and index >= acked_at


def test_a_follower_without_a_connected_leader_is_refused_at_once(cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    cluster.crash(leader)
    answers = Answers()
    cluster.members[follower].obj.read_index(answers)
    assert answers.got == [(None, "not_leader")]


def test_a_followers_request_unanswered_in_time_fails(cluster: SimCluster) -> None:
    """The leader is cut off silently: the follower's request waits, then times out."""
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    cluster.network.hold(follower, leader)
    answers = Answers()
    cluster.members[follower].obj.read_index(answers)
    assert cluster.run_until(lambda: bool(answers.got), rounds=12)
    assert answers.got == [(None, "timeout")]


def test_an_answer_from_another_term_is_not_taken(cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    answers = Answers()
    cluster.network.hold(follower, leader)  # the request stays in flight
    obj.read_index(answers)
    cluster.step()  # sent at the tick
    (ident,) = obj._ri_asked
    obj._ri_on_response({"type": "read_index_response", "term": obj.raftCurrentTerm + 1,
                         "id": ident, "index": 10**6, "error": None})
    assert answers.got == [(None, "not_leader")]


def test_a_deposed_leader_never_confirms_a_read(cluster: SimCluster) -> None:
    """The leader is cut off silently and, its check-quorum put off (as for a leader paused
    and resumed), keeps believing it leads; it is asked for reads all along while the others
    elect a leader and acknowledge writes. Not one read on the old leader may be confirmed:
    its index would miss those writes. After the heal it learns the new term and fails what
    still waits."""
    write(cluster, 2)
    old = cluster.leader()
    assert old is not None
    others = [n for n in cluster.names if n != old]
    obj = cluster.members[old].obj
    obj.conf.leaderFallbackTimeout = 60.0
    for other in others:
        cluster.network.hold(old, other)
        cluster.network.hold(other, old)
    answers = Answers()
    for _ in range(60):  # 6.6 s: the majority elects meanwhile
        if obj._isLeader():
            obj.read_index(answers)
        cluster.step()
        new = [n for n in others if cluster.members[n].obj._isLeader()]
        if new and len(cluster.acked) < 40:
            cluster.submit(new[0], 1)
    assert [n for n in others if cluster.members[n].obj._isLeader()], "no new leader"
    assert obj._isLeader(), "the old leader was to go on believing it leads"
    for other in others:
        cluster.network.release(old, other)
        cluster.network.release(other, old)
    assert cluster.run_until(lambda: not obj._isLeader(), rounds=30)
    cluster.step(rounds=3)
    confirmed = [index for index, _ in answers.got if index is not None]
    assert confirmed == [], f"the deposed leader confirmed read indexes {confirmed}"
    assert len(answers.got) == 60, "a read was never answered"
    assert {error for _, error in answers.got} == {"timeout", "not_leader"}


def test_without_the_majority_round_the_deposed_leader_answers_stale(
        cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The premise of the test above: a leader that gave its commit index without asking a
    majority answers a read after the new leader acknowledged writes it does not have."""
    def at_once(self: ReadIndexSyncObj, now: float) -> None:
        waiting, self._ri_waiting = self._ri_waiting, []
        for callback in waiting:
            callback(self._SyncObj__raftCommitIndex, None)

    monkeypatch.setattr(ReadIndexSyncObj, "_ri_start_round", at_once)
    write(cluster, 2)
    old = cluster.leader()
    assert old is not None
    # Its check-quorum does not fire meanwhile (as for a leader paused and resumed).
    cluster.members[old].obj.conf.leaderFallbackTimeout = 60.0
    others = [n for n in cluster.names if n != old]
    for other in others:
        cluster.network.hold(old, other)
        cluster.network.hold(other, old)
    assert cluster.run_until(lambda: any(cluster.members[n].obj._isLeader() for n in others),
                             rounds=60)
    new = next(n for n in others if cluster.members[n].obj._isLeader())
    rids = cluster.submit(new, 3)
    assert cluster.run_until(lambda: all(r in cluster.acked for r in rids), rounds=20)
    acked = cluster.commit(new)
    old_obj = cluster.members[old].obj
    assert old_obj._isLeader()
    answers = Answers()
    old_obj.read_index(answers)
    cluster.step()
    assert answers.got and answers.got[0][0] is not None and answers.got[0][0] < acked


def test_a_new_leader_gives_no_index_before_it_commits_in_its_term(cluster: SimCluster) -> None:
    """Its commit index may lag behind what its predecessor committed: the caller falls back
    to a barrier through the log."""
    write(cluster, 2)
    old = cluster.leader()
    assert old is not None
    cluster.crash(old)
    others = [n for n in cluster.names if n != old]
    # Hold the new leader's acks so its no-op stays uncommitted.
    answers = Answers()
    for _ in range(60):
        cluster.tick()
        new = [n for n in others if cluster.members[n].obj._isLeader()]
        if new:
            obj = cluster.members[new[0]].obj
            if not obj.leader_commit_is_current:
                obj.read_index(answers)
                break
        cluster.network.deliver_all()
        cluster.clock.advance(0.11)
    assert answers.got == [(None, "not_current")]


def test_a_probe_of_an_older_term_is_not_answered(cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    sent: list[dict] = []
    monkey = obj._SyncObj__transport
    original = monkey.send
    monkey.send = lambda node, message: sent.append(message) or original(node, message)
    try:
        node = cluster.members[leader].obj.selfNode
        obj._ri_on_probe(node, {"type": "read_index_probe", "term": obj.raftCurrentTerm - 1,
                                "round": 7})
        assert sent == []
        obj._ri_on_probe(node, {"type": "read_index_probe", "term": obj.raftCurrentTerm,
                                "round": 8})
        assert sent == [{"type": "read_index_ack", "term": obj.raftCurrentTerm, "round": 8}]
    finally:
        monkey.send = original


def test_a_peer_of_an_older_release_means_no_read_index(cluster: SimCluster) -> None:
    """Mid-upgrade: a connected voter (or the leader a follower would ask) said, when it
    connected, that it does not know the read index. The read is refused at once as
    ``unsupported`` (the caller passes a barrier, or forwards) instead of waiting out a round
    nobody would confirm."""
    leader = cluster.leader()
    assert leader is not None
    old, other = (n for n in cluster.names if n != leader)
    for name in cluster.names:  # what GuardedTransport learns from the cluster handshake
        cluster.members[name].obj._SyncObj__transport.supports = (
            lambda node, feature: node.id != old)
    answers = Answers()
    cluster.members[leader].obj.read_index(answers)
    assert answers.got == [(None, "unsupported")]

    # A follower whose leader runs the older release is refused the same way.
    cluster.members[other].obj._SyncObj__transport.supports = (
        lambda node, feature: node.id != leader)
    asked = Answers()
    cluster.members[other].obj.read_index(asked)
    assert asked.got == [(None, "unsupported")]
