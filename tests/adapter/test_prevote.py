"""Pre-vote and leader stickiness (hacoord.replication.prevote) on the production stack.

Simulated members (tests.adapter.sim): a link is *held* to cut it silently (the connection
stays up, nothing gets through, and what was sent arrives after the heal, as over TCP through a
dropping firewall), or *cut* to close the connection. Election timeouts are 1-2 s, the leader's
check-quorum 5 s, and a step 0.11 s of simulated time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.replication.prevote import PreVoteSyncObj
from tests.adapter.raft_harness import controlled_time
from tests.adapter.sim import SIM_TUNING, SimCluster, led_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SimCluster]:
    with led_cluster(tmp_path, seed=11) as made:
        yield made


def without_pre_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.3.17's elections: a member stands as soon as its deadline passes."""
    monkeypatch.setattr(PreVoteSyncObj, "_pre_vote_before_tick", lambda self: None)


def silence(cluster: SimCluster, a: str, b: str) -> None:
    cluster.network.hold(a, b)
    cluster.network.hold(b, a)


def restore(cluster: SimCluster, a: str, b: str) -> None:
    cluster.network.release(a, b)
    cluster.network.release(b, a)


def terms(cluster: SimCluster) -> dict[str, int]:
    return {n: cluster.members[n].obj.raftCurrentTerm for n in cluster.alive}


def write_goes_through(cluster: SimCluster) -> bool:
    leader = cluster.leader()
    assert leader is not None
    rids = cluster.submit(leader, 2)
    return cluster.run_until(lambda: all(r in cluster.acked for r in rids), rounds=60)


def cut_off_and_heal(cluster: SimCluster) -> tuple[str, str, int]:
    """Silence every link of one follower for 30 s (15-30 election timeouts) while the others
    write, then heal: ``(leader before, the follower, the leader's term before)``."""
    leader = cluster.leader()
    assert leader is not None
    term = terms(cluster)[leader]
    cut = next(n for n in cluster.names if n != leader)
    for other in cluster.names:
        if other != cut:
            silence(cluster, cut, other)
    for _ in range(90):
        cluster.submit(leader, 1)
        cluster.step(rounds=3)
    for other in cluster.names:
        if other != cut:
            restore(cluster, cut, other)
    cluster.step(rounds=30)
    return leader, cut, term


def test_a_member_cut_off_silently_comes_back_without_an_election(cluster: SimCluster) -> None:
    won = {n: cluster.members[n].obj.pre_votes_won for n in cluster.names}
    leader, cut, term = cut_off_and_heal(cluster)
    obj = cluster.members[cut].obj
    assert obj.pre_votes_started >= 10, "it never got as far as asking"
    assert {n: cluster.members[n].obj.pre_votes_won for n in cluster.names} == won
    assert terms(cluster) == dict.fromkeys(cluster.names, term), \
        "a term was raised: the cut-off member stood, or the heal cost an election"
    assert cluster.leader() == leader
    assert cluster.commit(cut) == cluster.commit(leader), "it did not follow the leader again"
    assert write_goes_through(cluster)


def test_without_pre_vote_the_same_heal_deposes_the_leader(
        cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The premise: 0.3.17's member raises its term at every timeout and the heal costs an
    election at that term."""
    without_pre_vote(monkeypatch)
    _leader, cut, term = cut_off_and_heal(cluster)
    assert terms(cluster)[cut] > term + 5
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
    assert terms(cluster)[cluster.leader()] > term + 5


def test_a_member_cut_off_from_the_leader_alone_does_not_depose_it(cluster: SimCluster) -> None:
    """A partial partition: the follower still hears the other follower, which still hears the
    leader and so refuses the pre-vote (leader stickiness); nobody's term moves."""
    leader = cluster.leader()
    assert leader is not None
    term = terms(cluster)[leader]
    cut, other = (n for n in cluster.names if n != leader)
    granted = cluster.members[other].obj.pre_votes_granted
    silence(cluster, cut, leader)
    # No writes meanwhile: the cut-off member's log stays as up to date as the others', so
    # only the lease stands between it and the vote.
    cluster.step(rounds=180)  # 20 s
    assert cluster.members[cut].obj.pre_votes_started >= 5
    assert cluster.members[other].obj.pre_votes_refused >= 5
    assert cluster.members[other].obj.pre_votes_granted == granted
    assert terms(cluster) == dict.fromkeys(cluster.names, term)
    assert cluster.leader() == leader
    restore(cluster, cut, leader)
    cluster.step(rounds=20)
    assert terms(cluster) == dict.fromkeys(cluster.names, term)
    assert cluster.commit(cut) == cluster.commit(leader)


def test_a_crashed_leader_is_replaced_in_one_term(cluster: SimCluster) -> None:
    """Its connections close: both followers drop their lease at once, one wins the pre-vote
    and then the election."""
    leader = cluster.leader()
    assert leader is not None
    term = terms(cluster)[leader]
    cluster.crash(leader)
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=60)
    assert set(terms(cluster).values()) == {term + 1}
    assert write_goes_through(cluster)


def test_an_isolated_leader_steps_down_and_the_heal_costs_no_election(
        cluster: SimCluster) -> None:
    """Check-quorum and pre-vote together: the majority's leases run out and it elects a leader
    (in the next term, or a later one if both followers stood at once); the isolated leader
    hears from nobody, steps down and never stands; after the heal it follows the new leader
    at that term, with no election more."""
    leader = cluster.leader()
    assert leader is not None
    term = terms(cluster)[leader]
    for other in cluster.names:
        if other != leader:
            silence(cluster, leader, other)
    old = cluster.members[leader].obj
    assert cluster.run_until(lambda: not old._isLeader(), rounds=100), \
        "the isolated leader never stepped down"
    assert cluster.run_until(lambda: cluster.leader() not in (None, leader), rounds=100)
    new = cluster.leader()
    assert new is not None
    elected = terms(cluster)[new]
    assert elected > term
    cluster.step(rounds=90)  # 10 s more apart: 5-10 election timeouts of the old leader's
    assert old.raftCurrentTerm == term, "the isolated leader raised its term"
    assert cluster.leader() == new and terms(cluster)[new] == elected
    for other in cluster.names:
        if other != leader:
            restore(cluster, leader, other)
    cluster.step(rounds=30)
    assert cluster.leader() == new
    assert terms(cluster) == dict.fromkeys(cluster.names, elected), "the heal cost an election"
    assert cluster.commit(leader) == cluster.commit(new)


def test_a_pre_candidate_behind_in_term_catches_up_from_a_refusal(cluster: SimCluster) -> None:
    """A member with the better log and a lower term, and one with a higher term and a worse
    log, would refuse each other forever; the refusal carries the higher term and the first
    adopts it."""
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)
    obj = cluster.members[follower].obj
    term = obj.raftCurrentTerm
    obj._pv_term = term + 1
    obj._pre_vote_on_response(cluster.members[leader].obj.selfNode,
                              {"type": "pre_vote_response", "granted": False, "term": term + 3})
    assert obj.raftCurrentTerm == term + 3
    assert obj._pv_term is None and obj._pv_won is None
    # A stale yes (an answer for another term) does not count.
    obj._pv_term, obj._pv_grants = term + 4, set()
    obj._pre_vote_on_response(cluster.members[leader].obj.selfNode,
                              {"type": "pre_vote_response", "granted": True, "term": term + 1})
    assert obj._pv_won is None and obj._pv_grants == set()


def two_followers(cluster: SimCluster) -> tuple[str, str]:
    """The led cluster's followers, the lower id first; their leases on the leader run out."""
    leader = cluster.leader()
    assert leader is not None
    first, second = sorted(n for n in cluster.names if n != leader)
    for name in (first, second):
        cluster.members[name].obj._pv_leader_heard = float("-inf")
    return first, second


def ask(cluster: SimCluster, asker: str, member: str, ahead: int = 0) -> None:
    """``member`` hears ``asker``'s pre-vote for the next term, with a log like its own (or
    ``ahead`` entries longer)."""
    obj = cluster.members[member].obj
    obj._pre_vote_on_request(cluster.members[asker].obj.selfNode, {
        "type": "pre_vote", "term": obj.raftCurrentTerm + 1,
        "last_log_index": obj._SyncObj__getCurrentLogIndex() + ahead,
        "last_log_term": obj._SyncObj__getCurrentLogTerm()})


@pytest.mark.parametrize("own", ["none", "under-way", "won"])
def test_a_yes_puts_the_members_own_candidacy_off(cluster: SimCluster, own: str) -> None:
    """Granting a pre-vote defers this member's own election by a fresh timeout (as a real vote
    does) and drops its own pre-vote for that term, even one it won, when the asker goes first
    (here: the lower id): the asker is about to stand, and standing too would split the
    vote."""
    asker, member = two_followers(cluster)
    obj = cluster.members[member].obj
    obj._SyncObj__raftElectionDeadline = cluster.clock.now  # due now
    term = obj.raftCurrentTerm
    obj._pv_term = term + 1 if own == "under-way" else None
    obj._pv_won = term + 1 if own == "won" else None
    granted = obj.pre_votes_granted
    ask(cluster, asker, member)
    assert obj.pre_votes_granted == granted + 1
    assert obj._SyncObj__raftElectionDeadline >= cluster.clock.now + obj.conf.raftMinTimeout
    assert obj._pv_term is None and obj._pv_won is None, "it would stand as well"


@pytest.mark.parametrize("own", ["under-way", "won"])
def test_of_two_members_asking_at_once_the_first_keeps_its_pre_vote(
        cluster: SimCluster, own: str) -> None:
    """Two members with equally up-to-date logs ask for the same term at once and say yes to
    each other: the one with the lower id (the order of the early elections) keeps its pre-vote
    and its deadline; the other drops its own. Exactly one stands."""
    first, second = two_followers(cluster)
    objs = {n: cluster.members[n].obj for n in (first, second)}
    term = objs[first].raftCurrentTerm
    for obj in objs.values():
        obj._pv_term = term + 1 if own == "under-way" else None
        obj._pv_won = term + 1 if own == "won" else None
    due = objs[first]._SyncObj__raftElectionDeadline = 0 if own == "won" else cluster.clock.now + 0.5
    ask(cluster, second, first)
    ask(cluster, first, second)
    assert objs[first].pre_votes_granted and objs[second].pre_votes_granted
    assert (objs[first]._pv_term, objs[first]._pv_won) == (
        (term + 1, None) if own == "under-way" else (None, term + 1))
    assert objs[first]._SyncObj__raftElectionDeadline == due, "the first one was put off"
    assert objs[second]._pv_term is None and objs[second]._pv_won is None
    assert objs[second]._SyncObj__raftElectionDeadline >= (
        cluster.clock.now + objs[second].conf.raftMinTimeout), "the second one was not put off"


def test_a_member_asking_at_once_with_a_longer_log_goes_first(cluster: SimCluster) -> None:
    """The lower id goes first only between logs as up to date as each other's: a member
    that hears a pre-vote from a member with a longer log says yes and drops its own."""
    first, second = two_followers(cluster)
    obj = cluster.members[first].obj
    term = obj.raftCurrentTerm
    obj._pv_term = term + 1
    ask(cluster, second, first, ahead=1)
    assert obj.pre_votes_granted
    assert obj._pv_term is None, "it kept its pre-vote against a better log"


@pytest.mark.parametrize("down", [0, 1], ids=["all-meet", "two-meet"])
@pytest.mark.parametrize("seed", range(6))
def test_members_that_meet_after_their_deadlines_hold_one_election(
        tmp_path: Path, seed: int, down: int) -> None:
    """A cluster started (or restarted after all its members died) whose links come up only
    after every member's election deadline passed, as on a loaded machine where start-up takes
    longer than an election timeout: the members do not all stand at the first tick they are
    connected (which split the vote: term 1 -> 3 in a chaos run's kill-all). The first term
    elects the leader."""
    with controlled_time(seed=seed) as clock:
        cluster = SimCluster(tmp_path, clock, seed=seed)
        try:
            pairs = [(a, b) for a in cluster.names for b in cluster.names if a < b]
            for a, b in pairs:
                cluster.network.cut_link(a, b)
            for name in cluster.names[:down]:
                cluster.crash(name)
            stale = cluster.members[cluster.alive[-1]].obj
            stale._pv_won = 1  # a pre-vote won just before its links went down
            cluster.step(rounds=30)  # 3.3 s apart: past every deadline (1-2 s)
            assert stale._pv_won is None, "a stale pre-vote would let it stand unasked"
            assert set(terms(cluster).values()) == {0}
            late = [n for n in cluster.alive
                    if cluster.members[n].obj._SyncObj__raftElectionDeadline <= clock.now]
            assert not late, f"{late} kept a deadline in the past, to fall due when connected"
            for a, b in pairs:
                cluster.network.heal_link(a, b)
            assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
            assert set(terms(cluster).values()) == {1}, \
                f"{max(terms(cluster).values())} terms to the first leader"
        finally:
            cluster.destroy()


@pytest.mark.parametrize("seed", range(8))
def test_five_members_replace_a_crashed_leader_in_one_early_election(
        tmp_path: Path, seed: int) -> None:
    """The survivors of a leader whose connections closed stand in a staggered order (by id,
    ``early_election_step`` apart), and ticks come late (30 ms steps of simulated time): when
    two of them ask at once and say yes to each other, the one that goes first in that order
    keeps its pre-vote. (Were both to drop theirs, nobody would stand for a whole election
    timeout.)"""
    with led_cluster(tmp_path, seed=seed, size=5) as cluster:
        leader = cluster.leader()
        assert leader is not None
        term = terms(cluster)[leader]
        others = [n for n in cluster.names if n != leader]
        for other in others:  # its last heartbeats, read before its connections close
            cluster.network.hold(leader, other)
        cluster.step(0.03)
        crashed = cluster.clock.now
        for other in others:  # its connections close as its process dies
            cluster.network.cut_link(leader, other)
        cluster.crash(leader)
        assert cluster.run_until(lambda: cluster.leader() is not None, rounds=400, dt=0.03)
        took = cluster.clock.now - crashed
        assert set(terms(cluster).values()) == {term + 1}
        # Simulated time: the early election, long before an election timeout (1-2 s).
        assert took < SIM_TUNING.election_timeout_min, f"a new leader after {took:.2f} s"
