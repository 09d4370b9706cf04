"""Membership changes on the production stack (simulated members, real engines and files):
a member added counts toward the quorum from its entry on, a removed one no longer does, a
restarted member uses the membership in its log or snapshot (not its start flags), an entry
removed by a conflicting leader takes its membership with it, and the leader refuses what
Raft's single-server rule forbids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.replication.base import MemberInfo
from hacoord.replication.memberset import MembershipError, decode_config, encode_config
from hacoord.replication.safepickle import check_entry
from tests.adapter.sim import SIM_TUNING, SimCluster, led_cluster

TUNING = dataclasses.replace(SIM_TUNING, log_compaction_min_entries=10**6)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SimCluster]:
    with led_cluster(tmp_path, seed=11, tuning=TUNING) as made:
        yield made


def info(name: str) -> MemberInfo:
    return MemberInfo(name, name, "")


def ids(cluster: SimCluster, name: str) -> list[str]:
    return sorted(m.id for m in cluster.members[name].obj.config)


def change(cluster: SimCluster, names: list[str]) -> list[str | None]:
    """Ask the leader for the membership ``names``; return what ``done`` was called with."""
    leader = cluster.leader()
    assert leader is not None
    answers: list[str | None] = []
    cluster.members[leader].driver.change_members(tuple(info(n) for n in names), answers.append)
    return answers


def committed(cluster: SimCluster, names: list[str]) -> None:
    answers = change(cluster, names)
    assert cluster.run_until(lambda: bool(answers), rounds=60), "no answer"
    assert answers == [None]


def writes_commit(cluster: SimCluster, count: int = 3, rounds: int = 40) -> bool:
    leader = cluster.leader()
    if leader is None:
        return False
    rids = cluster.submit(leader, count)
    return cluster.run_until(lambda: all(r in cluster.acked for r in rids), rounds=rounds)


def add_member(cluster: SimCluster, name: str) -> None:
    (cluster.root / name).mkdir()
    cluster.names.append(name)
    cluster.start(name)


def test_an_added_member_catches_up_and_counts_toward_the_quorum(cluster: SimCluster) -> None:
    assert writes_commit(cluster, 20)
    add_member(cluster, "n3")
    committed(cluster, ["n0", "n1", "n2", "n3"])
    leader = cluster.leader()
    assert leader is not None
    assert cluster.run_until(lambda: sorted(cluster.acked) == sorted(
        r for r in cluster.acked if r in cluster.state("n3").nodes), rounds=60)
    for name in cluster.names:
        assert ids(cluster, name) == ["n0", "n1", "n2", "n3"], name
    # Four members: a write needs three of them. Two old followers down, n3 makes the third.
    old = [n for n in ("n0", "n1", "n2") if n != leader]
    cluster.crash(old[0])
    assert writes_commit(cluster)
    cluster.crash("n3")
    assert not writes_commit(cluster, rounds=20), "committed by 2 of 4 members"


def test_a_removed_member_no_longer_counts_and_a_restart_keeps_the_logged_membership(
        cluster: SimCluster) -> None:
    assert writes_commit(cluster)
    leader = cluster.leader()
    gone, kept = (n for n in ("n0", "n1", "n2") if n != leader)
    committed(cluster, sorted([leader, kept]))
    cluster.crash(gone)
    assert writes_commit(cluster)  # a majority of two: both
    assert cluster.run_until(lambda: cluster.commit(kept) == cluster.commit(leader))
    # Restarted with start flags that still name the removed member, it goes by its log.
    cluster.crash(kept)
    cluster.start(kept)
    assert ids(cluster, kept) == sorted([leader, kept])
    assert {n.id for n in cluster.members[kept].obj._SyncObj__otherNodes} == {leader}
    assert writes_commit(cluster)
    # And by its snapshot once the entry was compacted away.
    obj = cluster.members[kept].obj
    obj.forceLogCompaction()
    cluster.tick(kept)
    cluster.finish_snapshot(kept)
    cluster.tick(kept)
    assert cluster.dump_index(kept) is not None
    cluster.crash(kept)
    cluster.start(kept)
    assert ids(cluster, kept) == sorted([leader, kept])
    assert writes_commit(cluster)


def test_the_leader_refuses_a_second_change_before_the_first_commits_and_bigger_steps(
        cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    others = [n for n in ("n0", "n1", "n2") if n != leader]
    add_member(cluster, "n3")
    add_member(cluster, "n4")
    two = change(cluster, ["n0", "n1", "n2", "n3", "n4"])
    cluster.tick(leader)
    assert two == ["a change adds or removes exactly one member"]
    # Followers stop answering: the first change cannot commit, so a second is refused.
    for name in others:
        cluster.crash(name)
    first = change(cluster, ["n0", "n1", "n2", "n3"])
    cluster.tick(leader)
    assert first == []
    second = change(cluster, ["n0", "n1", "n2", "n3", "n4"])
    cluster.tick(leader)
    assert second == ["the previous membership change is not committed yet; try again"]
    follower_answers: list[str | None] = []
    cluster.members["n3"].driver.change_members((info("n3"),), follower_answers.append)
    cluster.tick("n3")
    assert follower_answers == ["this member is not the leader"]


def test_an_entry_removed_by_a_conflicting_leader_takes_its_membership_with_it(
        cluster: SimCluster) -> None:
    assert writes_commit(cluster)
    old = cluster.leader()
    assert old is not None
    others = [n for n in ("n0", "n1", "n2") if n != old]
    answers = change(cluster, sorted([old, others[0]]))
    for name in others:  # the entry reaches nobody
        cluster.network.cut_link(old, name)
    cluster.tick(old)
    assert ids(cluster, old) == sorted([old, others[0]])  # in force on append, uncommitted
    assert not cluster.members[old].obj.config_committed
    assert cluster.run_until(lambda: cluster.leader() in others, rounds=100)
    assert writes_commit(cluster)
    for name in others:
        cluster.network.heal_link(*sorted([old, name]))
    assert cluster.run_until(lambda: ids(cluster, old) == ["n0", "n1", "n2"], rounds=100)
    assert cluster.run_until(lambda: bool(answers))
    assert answers == ["leadership changed before it committed"]


def test_a_removed_member_left_running_does_not_disrupt_the_others(cluster: SimCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    gone, kept = (n for n in ("n0", "n1", "n2") if n != leader)
    committed(cluster, sorted([leader, kept]))
    # The removed member is not told (the leader stops sending to it at once): it times out,
    # and its pre-votes win nothing, so the others' term stays.
    term = cluster.members[leader].obj.raftCurrentTerm
    cluster.step(rounds=40)
    assert cluster.leader() == leader
    assert cluster.members[leader].obj.raftCurrentTerm == term
    assert writes_commit(cluster)
    assert cluster.members[gone].obj.raftCurrentTerm <= term + 1


def test_a_member_catching_up_through_older_memberships_keeps_hearing_the_leader(
        cluster: SimCluster) -> None:
    """n1 removed, n3 added and made leader, then n4 added: n4 replays memberships that lack
    n3 (its leader) and, for a while, itself; it must still catch up and count."""
    first = cluster.leader()
    assert first is not None
    gone, kept = (n for n in ("n0", "n1", "n2") if n != first)
    committed(cluster, sorted([first, kept]))
    cluster.crash(gone)
    assert writes_commit(cluster, 8)
    add_member(cluster, "n3")
    committed(cluster, sorted([first, kept, "n3"]))
    assert cluster.run_until(lambda: cluster.commit("n3") == cluster.commit(first), rounds=100)
    cluster.crash(first)  # n3 or kept leads next; make it n3
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=200)
    if cluster.leader() != "n3":
        cluster.crash(kept)
        cluster.start(first)
        assert cluster.run_until(lambda: cluster.leader() == "n3", rounds=300)
        cluster.start(kept)
    else:
        cluster.start(first)
    assert writes_commit(cluster, 8)
    add_member(cluster, "n4")
    committed(cluster, sorted([first, kept, "n3", "n4"]))
    assert cluster.run_until(lambda: cluster.commit("n4") == cluster.commit("n3"), rounds=200)
    assert not cluster.members["n4"].obj.removed
    assert ids(cluster, "n4") == sorted([first, kept, "n3", "n4"])
    assert writes_commit(cluster, 8)


def test_members_of_the_first_membership_are_reached_by_this_member_s_own_addresses(
        cluster: SimCluster) -> None:
    """A membership written by a leader that knows n1 by another address (a proxy, say): n0
    still reaches n1 by the address its start flags give, unless n1 was added later."""
    obj = cluster.members["n0"].obj
    aliased = MemberInfo("n1", "proxy-for-n1", "")
    assert obj.local(aliased).raft_address == "n1"
    assert obj.local(MemberInfo("n1", "elsewhere", "", added=True)).raft_address == "elsewhere"
    assert obj.local(MemberInfo("n9", "n9-address", "")).raft_address == "n9-address"


def test_configuration_entries_are_checked_like_every_logged_command() -> None:
    members = (MemberInfo("m1", "10.0.0.1:7301", "https://10.0.0.1:7401"),
               MemberInfo("m2", "10.0.0.2:7301", "https://10.0.0.2:7401"))
    raw = encode_config(members)
    assert decode_config(raw) == members
    assert check_entry(raw) is None
    assert decode_config(b"\x00abc") is None
    twice = encode_config((members[0], MemberInfo("m1", "10.0.0.3:7301", "")))
    assert "same id" in (check_entry(twice) or "")
    with pytest.raises(MembershipError):
        decode_config(b"\x10{not json")
    assert check_entry(b"\x10[]") is not None


def test_a_peer_from_an_address_no_membership_names_is_taken_in_within_a_bound(
        cluster: SimCluster) -> None:
    """A member added while this one was away may connect (or lead) before this member's log
    names it: the transport takes in a peer that proved it knows the secret, up to a bound,
    and never from a malformed address."""
    obj = cluster.members["n0"].obj
    transport = cluster.members["n0"].poller.transport
    assert obj.accept_peer("10.0.0.9:7500")
    assert "10.0.0.9:7500" in transport.peers
    assert not obj.accept_peer("not an address")
    for k in range(200):
        obj.accept_peer(f"10.0.1.{k}:7500")
    strangers = [p for p in transport.peers if p.startswith("10.0.")]
    assert len(strangers) == 64
