"""Integration: real member processes on 127.0.0.1, started as ``hacoord serve`` is started."""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hacoord.client import HacoordError
from hacoord.testing.cluster import NO_LIVENESS_JUDGEMENTS, LocalCluster, Member, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator:
    clusters: list[LocalCluster] = []

    def make(size: int = 3, *extra: str) -> LocalCluster:
        cluster = LocalCluster(tmp_path / f"c{len(clusters)}", size, extra)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop_all()
        logs = cluster.logs()
        assert "Traceback" not in logs, logs


def node_ids(member: Member) -> set[str]:
    return {n["id"] for n in member.get("/v1/nodes")["nodes"]}


def test_write_through_follower_is_read_on_every_member(make_cluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = next(m for m in cluster.members.values() if m.id != leader)
    response = httpx.post(follower.url + "/v1/nodes", timeout=5, headers=cluster.headers,
                          verify=cluster.verify,
                          json={"id": "n1", "address": "127.0.0.1:9001", "zone": "a"})
    assert response.status_code == 201, response.text
    revision = response.json()["revision"]
    for member in cluster.members.values():
        wait_for(f"n1 on {member.id}", lambda m=member: "n1" in node_ids(m))
        assert member.get("/v1/nodes")["revision"] >= revision
    converged = cluster.converged()
    assert converged["revision"] == revision


def test_leader_sigkill_loses_no_acknowledged_write(make_cluster) -> None:
    cluster = make_cluster(3, *NO_LIVENESS_JUDGEMENTS)  # the test counts revisions
    cluster.leader()
    client = cluster.client(timeout=2.0, deadline=20.0)
    acked: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            node_id = f"w{i}"
            try:
                client.node_add(node_id, address="127.0.0.1:9000")
                acked.append(node_id)
            except HacoordError as exc:
                errors.append(exc)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for("50 acknowledged writes", lambda: len(acked) >= 50, timeout=30)
        old_leader = cluster.leader()
        cluster.kill(old_leader, signal.SIGKILL)
        before_kill = len(acked)
        new_leader = cluster.leader(among=cluster.live())
        assert new_leader != old_leader
        wait_for("the client to resume after the kill", lambda: len(acked) >= before_kill + 50,
                 timeout=30)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == [], f"the client surfaced errors instead of riding through: {errors[:3]}"
    survivors = cluster.live()
    cluster.converged()  # followers serve local reads: let them catch up before reading
    final = {m: node_ids(cluster.members[m]) for m in survivors}
    for member_id, present in final.items():
        missing = [n for n in acked if n not in present]
        assert not missing, f"{member_id} lost acknowledged writes {missing[:5]}"
    # Each request applied once: every write registered a distinct node exactly once, and a
    # duplicate apply would have surfaced as an already_exists error, which was not seen.
    # (Revision 1 is the admin token the first leader wrote.)
    status = cluster.status(survivors[0])
    assert status["revision"] == 1 + len(final[survivors[0]])
    # The killed member comes back and catches up.
    cluster.start(old_leader)
    cluster.converged(timeout=30)


def test_a_client_given_only_the_leader_rides_through_its_sigkill(make_cluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    client = cluster.client(endpoints=[cluster.members[leader].url], timeout=2.0, deadline=20.0)
    client.node_add("before", address="127.0.0.1:9000")
    assert sorted(client.known_endpoints) == sorted(cluster.endpoints)  # learned from the answer
    cluster.kill(leader, signal.SIGKILL)
    assert client.node_add("after", address="127.0.0.1:9001").node.id == "after"
    assert client.leader != leader
    assert {m.id for m in client.member_list()} == set(cluster.members)


def test_kill_all_members_and_restart_keeps_state(make_cluster) -> None:
    cluster = make_cluster(3, "--log-compaction-min-entries", "20")
    cluster.leader()
    client = cluster.client(timeout=2.0, deadline=20.0)
    for i in range(8):
        client.node_add(f"n{i}", address=f"127.0.0.1:{9000 + i}", zone=f"z{i % 3}")
    client.resource_create("orders", partitions=16, replicas=3)
    for i in range(60):  # enough entries to force log compaction (snapshots) on every member
        client.node_set_state(f"n{i % 8}", tags={"round": str(i)})
    before = cluster.converged()
    routing_before = client.routing("orders")
    for member_id in list(cluster.members):
        cluster.kill(member_id, signal.SIGKILL)
    assert all(list((cluster.root / m).glob("raft.snapshot")) for m in cluster.members), \
        "expected every member to have written a snapshot"
    cluster.start()
    cluster.leader()
    after = wait_for("state restored to the same revision",
                     lambda: (s := cluster.converged())["revision"] == before["revision"] and s)
    assert after["digest"] == before["digest"]
    assert client.routing("orders") == routing_before
    client.node_add("after-restart", address="127.0.0.1:9999")
    assert "after-restart" in node_ids(cluster.members[cluster.leader()])


def write_nodes_then_kill_all(cluster: LocalCluster, count: int) -> int:
    """Register nodes n0.. (``count``), then SIGKILL every member; the revision they reached."""
    cluster.leader()
    client = cluster.client(timeout=2.0, deadline=20.0)
    for i in range(count):
        client.node_add(f"n{i}", address=f"127.0.0.1:{9000 + i}")
    before = cluster.converged()["revision"]
    for member_id in list(cluster.members):
        cluster.kill(member_id, signal.SIGKILL)
    return int(before)


def test_after_every_member_restarts_none_serves_an_older_state(make_cluster) -> None:
    # The commit index a restarted leader starts from comes from metadata that lags the
    # journal: until it has committed an entry of its own term it may be far behind, and a
    # member "caught up" to it would serve (and judge tokens by) an older state.
    cluster = make_cluster(3)
    before = write_nodes_then_kill_all(cluster, 20)
    cluster.start()
    seen: dict[str, int] = {}

    def every_member_answered() -> bool:
        for member in cluster.members.values():
            answer = httpx.get(member.url + "/v1/nodes", headers=cluster.headers,
                               verify=cluster.verify, timeout=5)
            if answer.status_code == 200:
                seen.setdefault(member.id, answer.json()["revision"])
        return len(seen) == len(cluster.members)

    wait_for("a read from every member", every_member_answered, timeout=30, interval=0.005)
    assert min(seen.values()) >= before, (seen, before)


def test_a_member_restarted_alone_serves_no_read_until_it_has_caught_up(make_cluster) -> None:
    # Alone it cannot learn the cluster's commit index: it must not answer from the state it
    # happens to have loaded (revision 0 with an empty journal replay, or anything short of what
    # it had), only once a leader tells it how far the log goes and it has applied that far.
    cluster = make_cluster(3)
    before = write_nodes_then_kill_all(cluster, 5)
    cluster.start("m1")
    member = cluster.members["m1"]
    wait_for("m1 answering", lambda: member.get("/livez")["status"] == "ok")
    ready = httpx.get(member.url + "/readyz", timeout=2, verify=cluster.verify)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert ready.json()["member"]["loaded"] is False
    for path in ("/v1/nodes", "/v1/resources", "/v1/routing", "/v1/watch?since=0&timeout=0.1"):
        answer = httpx.get(member.url + path, timeout=5, headers=cluster.headers, verify=cluster.verify)
        assert answer.status_code == 503, (path, answer.status_code, answer.text)
        assert answer.json()["code"] == "not_ready", (path, answer.text)
    cluster.start("m2")
    wait_for("m1 ready", lambda: member.get("/readyz")["ready"])
    assert node_ids(member) >= {f"n{i}" for i in range(5)}
    assert member.get("/v1/nodes")["revision"] >= before


def test_five_members_keep_working_with_two_dead(make_cluster) -> None:
    cluster = make_cluster(5)
    leader = cluster.leader()
    client = cluster.client(timeout=2.0, deadline=20.0)
    client.node_add("a", address="127.0.0.1:9001")
    victims = [leader, next(m for m in cluster.members if m != leader)]
    for victim in victims:
        cluster.kill(victim, signal.SIGKILL)
    client.node_add("b", address="127.0.0.1:9002")
    client.resource_create("cache", partitions=4, replicas=2)
    cluster.leader(among=cluster.live())
    cluster.converged()
    for member_id in cluster.live():
        assert {"a", "b"} <= node_ids(cluster.members[member_id])


def test_member_far_behind_catches_up_from_a_snapshot(make_cluster) -> None:
    cluster = make_cluster(3, "--log-compaction-min-entries", "20")
    leader = cluster.leader()
    lagger = next(m for m in cluster.members if m != leader)
    client = cluster.client(timeout=2.0, deadline=20.0)
    client.node_add("early", address="127.0.0.1:9000")
    cluster.converged()
    cluster.kill(lagger, signal.SIGKILL)
    for i in range(120):  # several compactions on the live members while the lagger is down
        client.node_add(f"late{i}", address="127.0.0.1:9000")
    cluster.start(lagger)
    cluster.converged(timeout=40)
    present = node_ids(cluster.members[lagger])
    assert {"early", *(f"late{i}" for i in range(120))} <= present
    client.node_add("after", address="127.0.0.1:9000")
    cluster.converged()


def test_watch_has_no_gap_or_repeat_across_a_leader_kill(make_cluster) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    writer = cluster.client(timeout=2.0, deadline=20.0)
    writer.node_add("first", address="127.0.0.1:9000")
    # Watch through the leader first, so the kill also cuts the watcher's connection.
    leader_url = cluster.members[leader].url
    watcher = cluster.client(endpoints=[leader_url, *[u for u in cluster.endpoints if u != leader_url]],
                             timeout=2.0, deadline=20.0)
    events: list = []
    stop = threading.Event()

    def follow() -> None:
        for event in watcher.watch(since=0, poll=0.5, stop=stop.is_set):
            events.append(event)

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        for i in range(30):
            writer.node_add(f"a{i}", address="127.0.0.1:9000")
        cluster.kill(leader, signal.SIGKILL)
        for i in range(30):
            writer.node_add(f"b{i}", address="127.0.0.1:9000")
        final = cluster.converged()["revision"]
        wait_for("the watcher to reach the last revision",
                 lambda: events and events[-1].revision == final, timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
    revisions = [e.revision for e in events]
    assert revisions == list(range(1, final + 1)), "gap or repeat in the watched revisions"
    assert events[0].type == "TokenCreated"  # the admin token the first leader wrote
    assert [e.data["id"] for e in events[1:]] == ["first", *(f"a{i}" for i in range(30)),
                                              *(f"b{i}" for i in range(30))]


def test_a_member_whose_data_was_wiped_votes_for_nobody_until_it_has_caught_up(
        make_cluster) -> None:
    """L and F acknowledge writes while G is paused; F's data directory is wiped, L dies, F
    starts empty and G comes back. Were F to vote (its empty log is no obstacle), G would win
    without those writes. F hears from G that the cluster exists, so it waits: no leader
    until L returns, and then nothing acknowledged is missing anywhere."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f, g = (m for m in cluster.members if m != leader)
    wait_for("the cluster named", lambda: cluster.status(g)["cluster_id"])
    client = cluster.client(timeout=2.0, deadline=20.0, endpoints=[cluster.members[leader].url])
    client.node_add("before", address="127.0.0.1:9000")
    cluster.converged()
    g_proc = cluster.members[g].proc
    assert g_proc is not None
    g_proc.send_signal(signal.SIGSTOP)
    try:
        acked = [f"acked{i}" for i in range(5)]
        for node in acked:
            client.node_add(node, address="127.0.0.1:9001")
        cluster.kill(f, signal.SIGKILL)
        shutil.rmtree(cluster.members[f].data_dir)
        cluster.kill(leader, signal.SIGKILL)
        cluster.start(f)
    finally:
        g_proc.send_signal(signal.SIGCONT)
    tried = cluster.status(g)["member"]["pre_votes"]["started"]

    def stood_thrice_or_leads() -> bool:
        seen = {m: cluster.status(m)["member"] for m in (f, g)}
        return (seen[g]["pre_votes"]["started"] >= tried + 3
                or any(s["role"] == "leader" for s in seen.values()))

    wait_for(f"{g} standing for election three times", stood_thrice_or_leads, timeout=30)
    for member_id in (f, g):
        assert cluster.status(member_id)["member"]["role"] != "leader", \
            f"{member_id} leads without the writes {leader} and {f} acknowledged"
    assert cluster.status(f)["member"]["rejoining"]
    assert "which already exists: it votes for nobody" in cluster.members[f].log_path.read_text()
    cluster.start(leader)
    cluster.leader()
    cluster.converged(timeout=30)
    for member_id in cluster.members:
        assert {"before", *acked} <= node_ids(cluster.members[member_id]), member_id
    wait_for(f"{f} voting again", lambda: not cluster.status(f)["member"]["rejoining"])


def test_a_new_member_that_starts_last_is_not_taken_for_one_that_lost_its_data(
        tmp_path: Path) -> None:
    """A new cluster is named once every member is connected, so the member that starts last
    follows the leader while the name arrives: it is told the name again, and that is not news
    of a past it may have lost (it would otherwise vote for nobody until caught up)."""
    cluster = LocalCluster(tmp_path, 3)
    try:
        cluster.start("m1")
        cluster.start("m2")
        leader = cluster.leader(among=["m1", "m2"])
        assert cluster.status("m1")["cluster_id"] is None  # not named while m3 is away
        # Enough to catch up on that m3 is still at it when the name comes.
        with cluster.client(timeout=10.0, deadline=30.0,
                            endpoints=[cluster.members[leader].url]) as client:
            for batch in range(4):
                client.node_add_batch([{"id": f"n{batch}-{k}", "address": "127.0.0.1:9000"}
                                       for k in range(1000)])
            for k in range(200):
                client.node_add(f"single{k}", address="127.0.0.1:9001")
        cluster.start("m3")
        named = wait_for("m3 to apply the cluster's name", lambda: cluster.status("m3")["cluster_id"])
        assert named == cluster.status("m1")["cluster_id"]
        assert not cluster.status("m3")["member"]["rejoining"]
        assert "which already exists" not in cluster.members["m3"].log_path.read_text()
    finally:
        cluster.stop_all()
    assert "Traceback" not in cluster.logs()
