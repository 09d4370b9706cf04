"""RaftReplicator's waiters: answered from the applied command or a snapshot, never left hanging."""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.replication import engine
from hacoord.replication import raft as raft_module
from hacoord.replication.base import (
    MemberInfo,
    NotAppliedError,
    NotLeaderError,
    OutcomeUnknownError,
)
from hacoord.replication.driver import SNAPSHOT_FILE
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.raft import FatalReplicationError, RaftReplicator, RaftTuning, _Waiter
from hacoord.replication.snapshot_store import SnapshotStore
from hacoord.replication.storage import StorageError
from hacoord.server.metrics import MemberCollector
from hacoord.testing.cluster import free_ports


async def until(predicate, what: str) -> None:
    """Poll ``predicate`` for up to 10 s."""
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


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
        rep._state = installed  # what a snapshot install leaves (no engine in this test)
        rep._on_restored()
        return future.done(), future.result(), rep.feed.floor

    done, outcome, floor = asyncio.run(scenario())
    assert done and outcome.ok and outcome.duplicate and outcome.revision == 1
    assert outcome.result["node"]["id"] == "n1"
    assert floor == 1  # the change feed restarts at the installed revision


class QueueOnly:
    """A driver that queues what it is given and never commits it."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.sm = SimpleNamespace(state=ClusterState())
        self.obj = SimpleNamespace(_isLeader=lambda: True, _getLeader=lambda: None,
                                   leader_commit_index=None, raftLastApplied=0)

    def propose(self, rid: str, raw: bytes) -> None:
        self.queued.append(rid)

    def tick(self) -> bool:
        return False


def test_submit_refuses_when_not_leading_and_times_out_as_unknown(tmp_path: Path) -> None:
    async def scenario() -> None:
        rep = replicator(tmp_path)
        with pytest.raises(NotLeaderError):
            await rep.submit(c.Barrier(), timeout=0.1)
        driver = QueueOnly()
        rep._driver = driver  # type: ignore[assignment]
        rep._loop = asyncio.get_running_loop()
        with pytest.raises(OutcomeUnknownError):  # nothing commits: no outcome can arrive
            await rep.submit(c.RegisterNode(request_id="x", node_id="n", address="h:1"), 0.05)
        # Still pending: a retry with the same request id joins this waiter, not a second entry.
        assert "x" in rep._waiting and not rep._waiting["x"].future.done()
        with pytest.raises(OutcomeUnknownError):
            await rep.submit(c.RegisterNode(request_id="x", node_id="n", address="h:1"), 0.05)
        assert driver.queued == ["x"]

    asyncio.run(scenario())


def storage_metrics(rep: RaftReplicator) -> dict[str, float]:
    """The member's storage and readiness samples as ``/metrics`` exposes them."""
    registry = CollectorRegistry()
    registry.register(MemberCollector(rep, watchers=lambda: 0))
    wanted = ("hacoord_storage_ok", "hacoord_storage_failures_total", "hacoord_ready")
    return {sample.name: sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples if sample.name in wanted}


def enospc_when_armed() -> tuple[dict[str, int], Callable[[str], None]]:
    """A storage fault hook that raises ENOSPC once at each point put in the dict it returns."""
    armed: dict[str, int] = {}

    def fault(point: str) -> None:
        if armed.pop(point, None) is not None:
            raise OSError(errno.ENOSPC, "No space left on device")

    return armed, fault


def test_a_failed_sync_fails_stop_and_the_member_reopens_from_disk(tmp_path: Path) -> None:
    """ENOSPC on the journal's fdatasync: the write's outcome is unknown, the member reports
    the failure and is not ready, then reopens its data from disk; the retried write (same
    request id) is applied once, and nothing acknowledged before is missing."""
    armed, fault = enospc_when_armed()
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}

    async def scenario() -> None:
        rep = RaftReplicator("m1", members, tmp_path, secret=None, fault=fault)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            for k in range(3):
                outcome = await rep.submit(c.RegisterNode(request_id=f"r{k}", node_id=f"n{k}",
                                                          address="127.0.0.1:9"), timeout=5)
                assert outcome.ok
            armed["journal.sync"] = 1
            fourth = c.RegisterNode(request_id="r3", node_id="n3", address="127.0.0.1:9")
            with pytest.raises(OutcomeUnknownError, match="storage failure"):
                await rep.submit(fourth, timeout=5)
            status = rep.status()
            assert (status.role, status.ready, status.loaded) == ("storage_failed", False, False)
            assert "fdatasync" in (status.storage_failure or "") and status.storage_failures == 1
            assert storage_metrics(rep) == {"hacoord_storage_ok": 0.0,
                                            "hacoord_storage_failures_total": 1.0,
                                            "hacoord_ready": 0.0}
            await until(lambda: rep.status().ready, "the reopen")
            assert rep.reopens == 1 and rep.status().storage_failure is None
            assert storage_metrics(rep) == {"hacoord_storage_ok": 1.0,
                                            "hacoord_storage_failures_total": 1.0,
                                            "hacoord_ready": 1.0}
            assert await rep.submit(fourth, timeout=5)
            assert sorted(rep.state.nodes) == ["n0", "n1", "n2", "n3"]
        finally:
            await rep.stop()

    asyncio.run(scenario())
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_without_fsync_a_failed_write_keeps_what_was_written_before(tmp_path: Path) -> None:
    """With ``--no-fsync`` what was written is all the durability there is: after a failed
    append the member cuts its journal back to the last whole write, not to what it held when
    it started (which lost every write since, and then refused the reopen)."""
    armed, fault = enospc_when_armed()
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}
    tuning = RaftTuning(fsync=False)

    async def write(ids: range, failing: bool = False) -> None:
        rep = RaftReplicator("m1", members, tmp_path, None, tuning, fault=fault)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            for k in ids:
                assert (await rep.submit(c.RegisterNode(request_id=f"r{k}", node_id=f"n{k}",
                                                        address="127.0.0.1:9"), timeout=5)).ok
            if failing:
                armed["journal.add"] = 1
                last = c.RegisterNode(request_id="last", node_id="last", address="127.0.0.1:9")
                with pytest.raises(OutcomeUnknownError, match="storage failure"):
                    await rep.submit(last, timeout=5)
                await until(lambda: rep.status().ready, "the reopen")
                assert rep.fatal is None and rep.reopens == 1
                assert {f"n{k}" for k in range(6)} <= set(rep.state.nodes)
        finally:
            await rep.stop()

    asyncio.run(write(range(3)))
    asyncio.run(write(range(3, 6), failing=True))


def test_a_restarting_member_reads_its_own_snapshot_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 100,000 partitions reading the member's own snapshot takes most of a second: a
    worker thread reads it before the first tick, which adopts it."""
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}
    snapshot = tmp_path / SNAPSHOT_FILE

    async def write_snapshot() -> int:
        rep = RaftReplicator("m1", members, tmp_path, secret=None)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            for k in range(3):
                assert (await rep.submit(c.RegisterNode(request_id=f"r{k}", node_id=f"n{k}",
                                                        address="127.0.0.1:9"), timeout=5)).ok
            assert rep._driver is not None
            rep._driver.obj.forceLogCompaction()
            await until(lambda: snapshot.exists(), "the snapshot")
            return rep.state.revision
        finally:
            await rep.stop()

    async def restart() -> tuple[list[str], list[str], ClusterState]:
        readers: list[str] = []
        loads: list[str] = []
        real_read = engine.read_snapshot
        real_load = SnapshotStore.load

        def read(path, *args, **kwargs):
            readers.append(threading.current_thread().name)
            return real_read(path, *args, **kwargs)

        def load(store, with_state: bool = True):
            if with_state:  # (the start-up checks read the header only)
                loads.append(threading.current_thread().name)
            return real_load(store, with_state)

        monkeypatch.setattr(engine, "read_snapshot", read)
        monkeypatch.setattr(SnapshotStore, "load", load)
        rep = RaftReplicator("m1", members, tmp_path, secret=None)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready after the restart")
            return readers, loads, rep.state
        finally:
            await rep.stop()

    revision = asyncio.run(write_snapshot())
    assert snapshot.exists()
    readers, loads, state = asyncio.run(restart())
    assert sorted(state.nodes) == ["n0", "n1", "n2"] and state.revision == revision
    assert readers and threading.main_thread().name not in readers  # read on a worker thread
    assert loads == []  # the first tick did not read it again on the loop


def test_a_read_index_covers_acknowledged_writes_without_a_log_entry(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}

    async def scenario() -> None:
        rep = RaftReplicator("m1", members, tmp_path, secret=None)
        with pytest.raises(NotLeaderError):
            await rep.read_index(timeout=1)  # not started: no engine, no leader
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            written = await rep.submit(c.RegisterNode(request_id="r0", node_id="n0",
                                                      address="127.0.0.1:9"), timeout=5)
            before = rep.status()
            index = await rep.read_index(timeout=5)
            after = rep.status()
            assert index is not None and index >= before.commit_index
            assert after.log_length == before.log_length, "the read wrote to the log"
            assert rep.state.revision == written.revision and "n0" in rep.state.nodes
        finally:
            await rep.stop()

    asyncio.run(scenario())


def test_a_member_catching_up_keeps_one_tick_queued(tmp_path: Path) -> None:
    """While ticks keep asking for more (a restarted member applying a long journal), the
    periodic timer must not queue a tick of its own beside the one already queued: each timer
    added one, until a dozen ran back to back per turn of the loop and held its timers (the lag
    monitor's among them) for 100-350 ms."""
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}

    async def fill() -> None:
        rep = RaftReplicator("m1", members, tmp_path, secret=None)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            await rep.submit(c.RegisterNode(request_id="n", node_id="n0", address="127.0.0.1:9"),
                             timeout=5)
            for k in range(0, 6000, 16):
                await asyncio.gather(*(rep.submit(c.SetNodeState(
                    request_id=f"r{k + i}", node_id="n0", metrics={"s": float(k + i)}),
                    timeout=30) for i in range(16)))
        finally:
            await rep.stop()

    async def restart() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        rep = RaftReplicator("m1", members, tmp_path, secret=None)
        real_tick = rep._tick
        queued: list[int] = []

        def tick() -> None:  # what call_soon queues, so it can be counted in the ready queue
            queued.append(sum(1 for handle in loop._ready  # type: ignore[attr-defined]
                              if getattr(handle, "_callback", None) is tick))
            real_tick()

        rep._tick = tick  # type: ignore[method-assign]
        await rep.start()
        try:
            await until(lambda: rep.loaded, "caught up")
        finally:
            await rep.stop()
        return len(queued), max(queued)

    asyncio.run(fill())
    ticks, most_queued = asyncio.run(restart())
    assert ticks > 10, "the replay was too short to show anything"
    assert most_queued <= 1, f"{most_queued} ticks were queued at once"


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "writing"])
@pytest.mark.parametrize("how", ["removed", "moved"])
def test_a_member_whose_data_directory_is_removed_stops_instead_of_starting_empty(
        tmp_path: Path, idle: bool, how: str) -> None:
    """The data directory is removed (or moved aside) while the member runs, and made again,
    empty, as a unit's StateDirectory would: the member acknowledges nothing more, fails stop
    within a check period whether or not it is writing, and does not make a new, empty journal
    there. It stops for good (``fatal``), naming the remedy, since any reopen would start with
    less than it had acknowledged."""
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}
    data = tmp_path / "data"

    async def scenario() -> None:
        rep = RaftReplicator("m1", members, data, secret=None)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            outcome = await rep.submit(c.RegisterNode(request_id="r0", node_id="n0",
                                                      address="127.0.0.1:9"), timeout=5)
            assert outcome.ok
            if how == "removed":
                shutil.rmtree(data)
            else:
                data.rename(tmp_path / "aside")
            data.mkdir()
            if not idle:
                with pytest.raises(OutcomeUnknownError, match="storage failure"):
                    await rep.submit(c.RegisterNode(request_id="r1", node_id="n1",
                                                    address="127.0.0.1:9"), timeout=5)
            await until(lambda: rep.fatal is not None, "the member to stop")
            assert "is gone" in rep.fatal and "hacoord member rejoin" in rep.fatal
            assert not rep.status().ready and rep.storage_failures == 1
            assert "while the member ran" in (rep.storage_failure or "")
        finally:
            await rep.stop()

    asyncio.run(scenario())
    # No new journal or snapshot. A vote record may be there: a commit-index hint written just
    # before the check noticed. Started again on it, the member refuses, naming the remedy.
    assert {p.name for p in data.iterdir()} <= {"raft.journal.meta"}
    if (data / "raft.journal.meta").exists():
        async def restart() -> None:
            again = RaftReplicator("m1", members, data, secret=None)
            with pytest.raises(FatalReplicationError, match="hacoord member rejoin"):
                await again.start()
        asyncio.run(restart())


def test_a_member_whose_data_directory_is_replaced_by_an_older_copy_stops(tmp_path: Path) -> None:
    """The data directory is swapped for a copy taken earlier (a backup restored in place)
    while the member runs: the member fails stop as for any replaced directory, and the reopen
    finds a log that ends before what the member had on disk. Going on would vote and
    acknowledge again with less than it had acknowledged, so it stops for good, naming the
    remedy."""
    port = free_ports(1)[0]
    members = {"m1": MemberInfo("m1", f"127.0.0.1:{port}", "http://127.0.0.1:1")}
    data, copy = tmp_path / "data", tmp_path / "copy"

    async def scenario() -> None:
        rep = RaftReplicator("m1", members, data, secret=None)
        await rep.start()
        try:
            await until(lambda: rep.status().ready, "ready")
            await rep.submit(c.RegisterNode(request_id="r0", node_id="n0",
                                            address="127.0.0.1:9"), timeout=5)
            shutil.copytree(data, copy)
            for k in range(1, 4):
                assert (await rep.submit(c.RegisterNode(request_id=f"r{k}", node_id=f"n{k}",
                                                        address="127.0.0.1:9"), timeout=5)).ok
            # The commit index on disk, so that no later write of it lands in the copy: the
            # copy's own record then agrees with its log, and only what the member remembers
            # shows that it holds less.
            commit = rep._driver.obj.raftCommitIndex  # type: ignore[union-attr]
            await until(lambda: json.loads((data / "raft.journal.meta").read_text())
                        .get("commit_index") == commit, "the commit index on disk")
            data.rename(tmp_path / "aside")
            copy.rename(data)
            await until(lambda: rep.fatal is not None, "the member to stop")
            assert "replaced by an older copy" in rep.fatal and "hacoord member rejoin" in rep.fatal
            assert rep.storage_failures == 1 and rep.reopens == 0
            assert not rep.status().ready
        finally:
            await rep.stop()

    asyncio.run(scenario())


class _Engine(SimpleNamespace):
    """Enough of a RaftDriver over a real journal for the storage-failure paths."""

    def __init__(self, journal: HacoordJournal) -> None:
        super().__init__(journal=journal, sm=SimpleNamespace(state=ClusterState()),
                         obj=SimpleNamespace(raftLastApplied=0, poller=SimpleNamespace(
                             close=lambda: None, fileno=lambda: -1)))

    def abandon(self) -> None:
        self.journal.abandon()


def _journal(path: Path, terms: list[int], vote_term: int) -> HacoordJournal:
    journal = HacoordJournal(path)
    for index, term in enumerate(terms, start=1):
        journal.add(f"cmd{index}".encode(), index, term)
    journal.sync()
    journal.setCurrentTerm(vote_term, None)
    return journal


@pytest.mark.parametrize(("reopened", "vote_term", "lack"), [
    ([1, 1, 2, 2, 2], 2, None),            # the same
    ([1, 1, 2, 2, 2, 2], 3, None),         # more
    ([1, 1, 2], 2, "holds its log only to index 3"),
    ([1, 1, 1, 1, 1], 2, "holds entry 5 of term 1"),
    ([1, 1, 2, 2, 2], 1, "records term 1, but the member had voted in term 2"),
], ids=["same", "more", "shorter", "other-term", "older-vote"])
def test_the_reopen_compares_the_last_entry_and_the_vote_with_what_was_on_disk(
        tmp_path: Path, reopened: list[int], vote_term: int, lack: str | None) -> None:
    """What the member had on disk at the failure (its last durable entry with its term, and
    its vote record's term) must be there after the reopen: a copy of the same length from
    another term, or with an older vote, is as much an older copy as a shorter one."""
    rep = replicator(tmp_path)
    failed = _Engine(_journal(tmp_path / "before", [1, 1, 2, 2, 2], 2))
    rep._driver = failed  # type: ignore[assignment]
    rep._storage_failed(StorageError("fdatasync", tmp_path / "before", OSError(errno.EIO, "EIO")))
    assert rep._had_on_disk == (5, 2, 2)
    again = _Engine(_journal(tmp_path / "after", reopened, vote_term))
    rep._driver = again  # type: ignore[assignment]
    stopped = rep._holds_less(again)  # type: ignore[arg-type]
    assert stopped == (lack is not None)
    if lack is not None:
        assert lack in (rep.fatal or "") and "hacoord member rejoin" in (rep.fatal or "")
        assert rep._driver is None


def test_what_the_reopen_must_find_is_what_was_on_disk_at_the_last_failure(tmp_path: Path) -> None:
    """Between two failures the log may get shorter (after the first reopen, a new leader cuts
    entries that never committed): the second reopen compares with the second failure, not
    the first."""
    rep = replicator(tmp_path)
    rep._driver = _Engine(_journal(tmp_path / "first", [1, 1, 1, 1, 1, 1, 1, 1], 1))  # type: ignore[assignment]
    rep._storage_failed(StorageError("fdatasync", tmp_path / "first", OSError(errno.EIO, "EIO")))
    shorter = _Engine(_journal(tmp_path / "second", [1, 1, 1, 1, 1, 2], 2))
    rep._driver = shorter  # type: ignore[assignment]
    rep._storage_failed(StorageError("fdatasync", tmp_path / "second", OSError(errno.EIO, "EIO")))
    assert rep._had_on_disk == (6, 2, 2)
    third = _Engine(_journal(tmp_path / "third", [1, 1, 1, 1, 1, 2], 2))
    assert not rep._holds_less(third)  # type: ignore[arg-type]
    assert rep.fatal is None


def test_a_read_confirmed_after_a_stop_answered_the_waiting_is_not_left_to_wait(
        tmp_path: Path) -> None:
    """A read whose index is confirmed after the stopping member answered what waited (and
    which this member has not applied yet) is refused at once: nothing would answer it later,
    and it would wait its whole timeout past the HTTP server's grace."""
    asked: list = []
    rep = replicator(tmp_path)
    rep._driver = SimpleNamespace(obj=SimpleNamespace(  # type: ignore[assignment]
        read_index=asked.append, raftLastApplied=5,
        _getLeader=lambda: SimpleNamespace(address="127.0.0.1:1")))

    async def scenario() -> None:
        rep._loop = asyncio.get_running_loop()
        rep._tick_scheduled = True  # no engine to tick here
        read = asyncio.ensure_future(rep.read_index(timeout=30))
        await until(lambda: asked, "the read to ask")
        asked[0](10, None)  # confirmed, at an index not applied yet; before the read resumes,
        rep._stopping = True  # the stop's answer to what waits (begin_stop's, 0.5 s in) runs
        rep._answer_waiting()
        with pytest.raises(NotAppliedError, match="cannot wait"):
            await asyncio.wait_for(read, timeout=5)

    asyncio.run(scenario())


def test_a_reopen_that_cannot_look_for_the_journal_tries_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a storage failure, a disk that answers EIO when the member looks for its journal is
    a failure like the first: the member tries again later, it does not stop for good (and the
    reopen is not dropped)."""
    journal = tmp_path / "raft.journal"
    real_stat = raft_module.os.stat

    def failing_stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path) == journal:
            raise OSError(errno.EIO, "Input/output error")
        return real_stat(path, *args, **kwargs)

    async def scenario() -> None:
        rep = replicator(tmp_path)
        rep._loop = asyncio.get_running_loop()
        monkeypatch.setattr(raft_module.os, "stat", failing_stat)
        rep._try_reopen()
        monkeypatch.undo()
        try:
            assert rep.fatal is None and rep._reopen is not None
        finally:
            rep._reopen.cancel()

    asyncio.run(scenario())
