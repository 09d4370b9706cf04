"""Random schedules against the production stack: no acknowledged write is ever lost.

:mod:`tests.adapter.sim` runs three real ``RaftDriver`` members (``HacoordSyncObj``,
``HacoordJournal``, ``SnapshotStore``, the tick order) over a simulated network and clock.
Hypothesis draws schedules of ticks, deliveries on each link (a link that is rarely delivered is
a slow one; a held one stops), writes, log compactions, snapshot writes that finish late, and
faults: crashes (with or without a power loss that tears the unsynced journal tail), crashes and
I/O errors armed at named points of storage operations (inside a journal sync, half-way through
an append, between a snapshot's rename and the journal's compaction, ...), link cuts and heals.
After every step the checker holds Raft's safety properties; at the end the cluster heals and
every write a client was told succeeded must be in every member.

Four shapes of draw: independent steps, episodes of coarser moves by role, stories (a member
falls behind, a fault hits the one holding the other copy, the leader dies) and races (the
snapshot-install losses with their numbers and faults drawn at random: installs that keep the
tail after a matching snapshot, stale rejections over a slow link, faults at the install's and
the journal rewrite's renames).

The last tests are the mutation check: with the follower's sync before its acknowledgement
disabled, the leader counting its own unsynced copy, the library's own append handlers in place
of SafeSyncObj's, or the library's install that drops the entries after a matching snapshot, the
same search reports a violation.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from hacoord.replication.engine import HacoordSyncObj
from hacoord.replication.raft_safety import SafeSyncObj
from hacoord.replication.storage import StorageCorrupt
from tests.adapter.raft_harness import controlled_time, describe
from tests.adapter.sim import FAULT_POINTS, Checker, SimCluster

MEMBER = st.integers(0, 2)
FAULT = st.sampled_from(
    [None] * 30 + ["crash_leader", "crash", "power_loss", "restart", "restart", "restart", "cut",
                   "heal", "crash_at", "fail_at", "finish", "finish", "compact", "hold",
                   "release", "sync", "sync"])
STEP = st.tuples(
    st.sampled_from([0.0, 0.05, 0.11, 0.11, 0.11, 0.3, 1.5]),  # clock advance
    st.lists(MEMBER, max_size=3),  # members that tick, in this order
    st.lists(st.tuples(MEMBER, MEMBER, st.integers(1, 4)), max_size=6),  # link, how many
    st.integers(0, 4),  # writes submitted to the leader
    st.sampled_from([0, 0, 1, 1, 2]),  # rounds: everyone ticks, every link not held delivers
    st.tuples(FAULT, MEMBER, MEMBER, st.integers(0, len(FAULT_POINTS) - 1)),
)
SCHEDULES = st.lists(STEP, min_size=10, max_size=60)


@contextlib.contextmanager
def simulated(seed: int, root: Path) -> Iterator[tuple[SimCluster, Any, Checker]]:
    """A three-member simulated cluster with a leader (odd seeds: journal syncs finish when
    the schedule says); after the body, heal, converge and check that nothing acknowledged
    was lost."""
    with controlled_time(seed=seed) as clock:
        cluster = SimCluster(root, clock, seed, deferred_syncs=seed % 2 == 1)
        checker = Checker(cluster)
        try:
            assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
            cluster.step(rounds=3)
            yield cluster, clock, checker
            cluster.converge()
            checker.final()
        finally:
            cluster.destroy()


def run_schedule(seed: int, schedule: list[tuple[Any, ...]], root: Path) -> SimCluster:
    """Replay ``schedule``, checking after every step; then heal and check the end state."""
    with simulated(seed, root) as (cluster, clock, checker):
        names = cluster.names
        for dt, ticks, deliveries, writes, rounds, (fault, a, b, point) in schedule:
            clock.advance(dt)
            for member in ticks:
                cluster.tick(names[member])
            for src, dst, count in deliveries:
                if (names[src], names[dst]) not in cluster.network.held:
                    cluster.network.deliver(names[src], names[dst], count)
            leader = cluster.leader()
            if leader is not None and writes:
                cluster.submit(leader, writes)
            for _ in range(rounds):
                clock.advance(0.02)
                cluster.tick()
                checker.check()
                cluster.network.deliver_all()
            apply_fault(cluster, fault, names[a], names[b], FAULT_POINTS[point])
            checker.check()
    return cluster


# Episodes: the same world driven by coarser moves named by role (the current leader, the
# first and the second other member), which reach the classic loss patterns - a lagging member,
# a follower that acknowledges and then loses entries, a leader that dies after committing -
# far more often than independent random steps do.
ROLE = st.sampled_from(["leader", "follower", "other"])
ARM = st.tuples(st.just("arm"), ROLE,
                st.sampled_from([*["journal.sync"] * 3, *FAULT_POINTS]),  # syncs are the most
                st.sampled_from(["crash", "crash", "enospc"]))             # frequent operation
MOVE = st.one_of(
    *[st.tuples(st.just("write"), st.integers(1, 8))] * 3,
    *[st.tuples(st.just("rounds"), st.integers(1, 6))] * 3,
    *[st.tuples(st.just("trickle"), st.integers(1, 6), st.integers(0, 3))] * 3,
    st.tuples(st.just("tick"), ROLE),
    st.tuples(st.just("deliver"), ROLE, ROLE, st.integers(1, 3)),
    st.tuples(st.just("advance"), st.sampled_from([0.05, 0.11, 0.5, 1.5])),
    *[st.tuples(st.just("isolate"), ROLE)] * 2,
    st.tuples(st.just("heal")),
    st.tuples(st.just("hold"), ROLE, ROLE),
    st.tuples(st.just("leak"), ROLE, ROLE, st.integers(1, 2)),
    st.tuples(st.just("release")),
    *[st.tuples(st.just("crash"), ROLE, st.booleans())] * 2,
    *[ARM] * 3,
    *[st.tuples(st.just("restart"), ROLE)] * 2,
    st.tuples(st.just("compact"), ROLE),
    st.tuples(st.just("finish"), ROLE),
    *[st.tuples(st.just("sync"), ROLE)] * 2,
)
EPISODES = st.lists(MOVE, min_size=5, max_size=40)


def run_episode(seed: int, moves: list[tuple[Any, ...]], root: Path) -> SimCluster:
    """Replay ``moves`` (see EPISODES), checking after every one; then heal and check."""
    with simulated(seed, root) as (cluster, clock, checker):
        for move in moves:
            apply_move(cluster, clock, move, checker.check)
            checker.check()
    return cluster


def roles(cluster: SimCluster) -> dict[str, str]:
    leader = cluster.leader() or cluster.names[0]
    follower, other = (n for n in cluster.names if n != leader)
    return {"leader": leader, "follower": follower, "other": other}


def apply_move(cluster: SimCluster, clock: Any, move: tuple[Any, ...],
               check: Callable[[], None]) -> None:
    """Play one move; ``check`` runs between the rounds of a multi-round move."""
    kind, args = move[0], move[1:]
    role = roles(cluster)
    net = cluster.network
    if kind == "write" and (leader := cluster.leader()) is not None:
        cluster.submit(leader, args[0])
    elif kind == "rounds":
        for _ in range(args[0]):
            clock.advance(0.02)
            cluster.tick()
            check()
            net.deliver_all()
    elif kind == "trickle":  # rounds in which each link carries one message, writes between
        for _ in range(args[0]):
            clock.advance(0.02)
            cluster.tick()
            check()
            for src, dst in sorted(k for k, q in net.queues.items() if q and k not in net.held):
                net.deliver(src, dst, 1)
            if args[1] and (leader := cluster.leader()) is not None:
                cluster.submit(leader, args[1])
    elif kind == "tick":
        cluster.tick(role[args[0]])
    elif kind == "deliver":
        src, dst = role[args[0]], role[args[1]]
        if src != dst and (src, dst) not in net.held:
            net.deliver(src, dst, args[2])
    elif kind == "advance":
        clock.advance(args[0])
    elif kind == "isolate":
        for other in cluster.names:
            if other != role[args[0]]:
                net.cut_link(role[args[0]], other)
    elif kind == "heal":
        for a in cluster.names:
            for b in cluster.names:
                if a < b:
                    net.heal_link(a, b)
    elif kind == "leak":  # a slow link carries a message even while held
        src, dst = role[args[0]], role[args[1]]
        if src != dst:
            net.deliver(src, dst, args[2])
    elif kind == "hold" and role[args[0]] != role[args[1]]:
        net.hold(role[args[0]], role[args[1]])
    elif kind == "release":
        net.held.clear()
    elif kind == "crash" and role[args[0]] in cluster.members:
        cluster.crash(role[args[0]], power_loss=args[1])
    elif kind == "arm" and role[args[0]] in cluster.members:
        cluster.members[role[args[0]]].fault.arm(args[1], args[2])
    elif kind == "restart" and role[args[0]] not in cluster.members:
        cluster.start(role[args[0]])
    elif kind == "compact" and role[args[0]] in cluster.members:
        cluster.members[role[args[0]]].obj.forceLogCompaction()
    elif kind == "finish":
        cluster.finish_snapshot(role[args[0]])
    elif kind == "sync":
        cluster.finish_sync(role[args[0]])
        cluster.finish_decode(role[args[0]])


# Stories: the shape every acknowledged-write loss of Raft takes - one member falls behind, a
# fault hits the member that carries the other copy (a crash, a power loss or an I/O error at a
# storage point), random moves follow, the leader dies, and the member that fell behind must be
# elected or outvoted without losing anything.
def _story(lagging: str, writes: int, fault: tuple[str, str], middle: list[Any], power: bool,
           after: list[Any]) -> list[Any]:
    carrier = "other" if lagging == "follower" else "follower"
    return [("isolate", lagging), ("write", writes), ("arm", carrier, *fault), *middle,
            ("rounds", 3), ("crash", "leader", power), ("heal",), *after]


STORIES = st.builds(
    _story, st.sampled_from(["follower", "other"]), st.integers(1, 8),
    st.tuples(st.sampled_from([*["journal.sync"] * 3, *FAULT_POINTS]),
              st.sampled_from(["crash", "crash", "enospc"])),
    st.lists(MOVE, max_size=20), st.booleans(), st.lists(MOVE, max_size=10))


# Races: the shape of the snapshot-install losses (tests/adapter/test_snapshot_races.py), with
# its numbers, its faults and what follows drawn at random. B lags behind a compacted log; the
# new leader C's first guess of B's next index is too high and B's link back to C is slow, so
# B's rejections arrive late, one at a time, each answered with C's latest snapshot while newer
# entries are on their way and C compacts in between: installs meet entries B holds (the kept
# tail) and race B's own dump, with a crash or an I/O error armed at the install's rename, the
# journal's rewrite, B's own dump or a sync.
def _before_next_rejection(net: Any, src: str, dst: str) -> int:
    """How many of the messages queued from ``src`` to ``dst`` come before the next rejection."""
    for position, message in enumerate(net.peek(src, dst)):
        if "fail" in describe(src, dst, message):
            return position
    return len(net.peek(src, dst))


def _snapshot_chunks(net: Any, src: str, dst: str) -> int:
    """How many messages queued from ``src`` to ``dst`` it takes to deliver the first snapshot
    whole (and nothing after it)."""
    count = 0
    for position, message in enumerate(net.peek(src, dst)):
        if "snapshot-chunk" in describe(src, dst, message):
            count = position + 1
        elif count:
            break
    return count


def run_race(seed: int, plan: tuple[Any, ...], root: Path) -> SimCluster:
    lag, rounds, fault, middle, after = plan
    with simulated(seed, root) as (cluster, clock, checker):
        net = cluster.network
        a = cluster.leader()
        assert a is not None
        b, c = (n for n in cluster.names if n != a)
        net.cut_link(b, a)
        net.cut_link(b, c)
        cluster.submit(a, lag)
        cluster.step(rounds=6)
        for name in (a, c):
            cluster.compact(name)
        cluster.step(rounds=2)
        cluster.crash(a)
        net.heal_link(b, c)
        cluster.run_until(lambda: cluster.leader() is not None, rounds=60)
        net.hold(b, c)
        cluster.step(rounds=3)
        if fault is not None and b in cluster.members:
            cluster.members[b].fault.arm(*fault)
        cluster.start(a)
        net.cut_link(a, b)
        for number, (writes, compact_first, chunks, only_b, more) in enumerate(rounds):
            checker.check()
            if number:  # time passes between rounds: heartbeats, resends
                clock.advance(0.11)
                cluster.tick(*cluster.alive)
                net.deliver_all()
                cluster.tick(*cluster.alive)
            lead = cluster.leader()
            if lead is None or lead == b:
                cluster.step()
                continue
            peer = next(n for n in cluster.names if n not in (lead, b))
            if writes:
                cluster.submit(lead, writes)
            # The leader sends the new entries to both (and perhaps one more to B alone); only
            # the peer's acks come back at once, and they commit the entries (no time passes:
            # no heartbeat tells B yet).
            cluster.tick(lead)
            net.deliver(lead, peer, 100)
            net.deliver(lead, b, 100)
            cluster.tick(peer, b)
            if only_b:
                net.hold(lead, peer)
                cluster.submit(lead, 1)
                cluster.tick(lead)
                net.deliver(lead, b, 100)
                cluster.tick(b)
            net.deliver(peer, lead, 100)
            cluster.tick(lead, lead)
            if compact_first:
                cluster.compact(lead)
            # B's next message (a stale rejection: answered with the leader's latest snapshot),
            # then perhaps more of what waits on that slow link (B's acks: they may commit the
            # entry B alone holds), then the snapshot reaches B, whole or in part.
            net.deliver(b, lead, 1)
            cluster.tick(lead)
            clock.advance(0.11)  # the next send round carries the snapshot
            cluster.tick(lead)
            net.deliver(b, lead, _before_next_rejection(net, b, lead) if more == "acks" else more)
            cluster.tick(lead, lead)
            net.deliver(lead, b, _snapshot_chunks(net, lead, b) if chunks == "snapshot" else chunks)
            cluster.tick(b)
            if not compact_first:
                cluster.compact(lead)
        checker.check()
        for move in middle:
            apply_move(cluster, clock, move, checker.check)
            checker.check()
        lead = cluster.leader()
        if lead is not None:  # the leader dies, and what it had in flight with it
            cluster.crash(lead)
            for name in cluster.names:
                net.drop(lead, name, 1000)
        net.heal_link(a, b)
        net.held.clear()
        for move in after:
            apply_move(cluster, clock, move, checker.check)
            checker.check()
    return cluster


RACES = st.tuples(
    st.integers(6, 14),
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from([True, True, True, False]),
                       st.sampled_from([1, 2, 6, "snapshot", "snapshot", "snapshot"]),
                       st.booleans(), st.sampled_from([0, 1, "acks", 100, 100, 100])),
             min_size=2, max_size=4),
    st.one_of(st.none(), st.none(), st.tuples(
        st.sampled_from(["snapshot.install:before-rename", "replace:raft.journal:before-rename",
                         "replace:raft.snapshot:before-rename", "journal.sync"]),
        st.sampled_from(["crash", "crash", "enospc"]))),
    st.lists(MOVE, max_size=6), st.lists(MOVE, max_size=6))

SEARCH = st.one_of(SCHEDULES.map(lambda steps: ("steps", steps)),
                   EPISODES.map(lambda moves: ("episode", moves)),
                   STORIES.map(lambda moves: ("episode", moves)),
                   RACES.map(lambda plan: ("race", plan)))


def run(seed: int, drawn: tuple[str, Any], root: Path) -> SimCluster:
    kind, plan = drawn
    runner = {"steps": run_schedule, "episode": run_episode, "race": run_race}[kind]
    return runner(seed, plan, root)


def apply_fault(cluster: SimCluster, fault: str | None, a: str, b: str, point: str) -> None:
    alive = a in cluster.members
    if fault == "crash_leader" and (leader := cluster.leader()) is not None:
        cluster.crash(leader)
    elif fault == "crash" and alive:
        cluster.crash(a)
    elif fault == "power_loss" and alive:
        cluster.crash(a, power_loss=True)
    elif fault == "restart" and not alive:
        cluster.start(a)
    elif fault == "cut" and a != b:
        cluster.network.cut_link(a, b)
    elif fault == "heal" and a != b:
        cluster.network.heal_link(a, b)
    elif fault == "crash_at" and alive:
        cluster.members[a].fault.arm(point, "crash")
    elif fault == "fail_at" and alive:
        cluster.members[a].fault.arm(point, "enospc" if b < a else "eio")
    elif fault == "finish":
        cluster.finish_snapshot(a)
    elif fault == "sync":
        cluster.finish_sync(a)
        cluster.finish_decode(a)
    elif fault == "compact" and alive:
        cluster.members[a].obj.forceLogCompaction()
    elif fault == "hold" and a != b:
        cluster.network.hold(a, b)  # a slow link: nothing moves until released
    elif fault == "release":
        cluster.network.release(a, b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), drawn=SEARCH)
def test_random_schedules_never_lose_acknowledged_writes(seed: int, drawn: tuple) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = run(seed, drawn, Path(tmp))
    event(f"kind: {drawn[0]}")
    # What the search reached (pytest --hypothesis-show-statistics shows the tallies).
    acked = len(cluster.acked)
    event("acknowledged writes", "0" if not acked else "1-9" if acked < 10 else "10-49" if acked < 50
          else "50+")
    for key, value in sorted(cluster.stats.items()):
        if value:
            event(key)


# --- mutation check: the search has teeth --------------------------------------------------------

def library_append_handlers(self: SafeSyncObj, node: Any, message: Any) -> None:
    """SafeSyncObj's dispatch with the library's own append and ack handlers (snapshots still
    go through the store, which the library's handler cannot use; pre-votes are still held)."""
    from hacoord.replication.prevote import PreVoteSyncObj

    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "append_entries" and message.get("serialized") is not None:
        self._safe_on_append_entries(node, message)
    else:
        PreVoteSyncObj._SyncObj__onMessageReceived(self, node, message)


def synced_library_ack(self: HacoordSyncObj, node: Any, reset: bool = False,
                       nextNodeIdx: int | None = None, success: bool = False) -> None:  # noqa: N803
    """The library's acknowledgement, sent (like hacoord's) only once the journal is synced."""
    import pysyncobj.syncobj as library

    if self.journal is not None:
        self.journal.sync()
    library.SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)


def install_clearing_the_journal(self: HacoordSyncObj, keep_tail: bool) -> None:
    """0.3.17's install: every newer snapshot replaced the whole log, held tail or not."""
    _INSTALL(self, False)


_INSTALL = HacoordSyncObj._safe_install_staged

MUTATIONS = {
    # A follower acknowledges entries before they are durable.
    "no-sync-before-ack": [("_safe_send_ack", SafeSyncObj._safe_send_ack)],
    # The leader counts its own copy towards a commit before it is durable (the library's rule;
    # it matters once syncs finish in the background).
    "leader-counts-unsynced-copy": [("_onTick", SafeSyncObj._onTick)],
    # 0.3.17's follower and leader handling of appends and acknowledgements (Figure 2's rules
    # gone), acknowledgements still synced first.
    "library-append-handlers": [("_SyncObj__onMessageReceived", library_append_handlers),
                                ("_SyncObj__sendNextNodeIdx", synced_library_ack)],
    # 0.3.17's snapshot install: the entries after a matching snapshot are dropped.
    "install-drops-the-kept-tail": [("_safe_install_staged", install_clearing_the_journal)],
}


#: Mutations that only matter when journal syncs finish after the tick that started them.
DEFERRED_ONLY = {"leader-counts-unsynced-copy"}
#: Mutations searched for with the part of the search built to reach them.
FOCUSED = {"install-drops-the-kept-tail": RACES.map(lambda plan: ("race", plan))}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_search_finds_a_loss_when_a_safeguard_is_removed(
        mutation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, replacement in MUTATIONS[mutation]:
        monkeypatch.setattr(HacoordSyncObj, name, replacement)
    found: list[str] = []
    seeds = st.integers(0, 2**16)
    if mutation in DEFERRED_ONLY:  # only visible while syncs finish late: odd seeds
        seeds = seeds.map(lambda seed: seed | 1)

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(seed=seeds, drawn=FOCUSED.get(mutation, SEARCH))
    def search(seed: int, drawn: tuple) -> None:
        if found:
            return
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run(seed, drawn, Path(tmp))
            except AssertionError as exc:  # only a broken safety property counts here
                if any(word in str(exc) for word in SAFETY):
                    found.append(str(exc))
            except StorageCorrupt as exc:  # a restart found acknowledged entries gone
                found.append(str(exc))

    search()
    assert found, f"with {mutation} the search found no safety violation"
    print(f"{mutation}: {found[0][:160]}")


#: What the checker says when a safety property breaks (not merely progress).
SAFETY = ("durable on", "committed another entry", "counts", "lost acknowledged writes")
