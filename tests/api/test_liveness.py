"""Node liveness through the API: heartbeats, sessions and the leader's monitor, on a clock the
test moves (``MemoryReplicator`` members in one process, see ``hacoord.testing.inprocess``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from hacoord.client import Client, StaleEpoch
from hacoord.client.errors import NotFound
from hacoord.core import commands as c
from hacoord.core.codec import digest
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.coordinator import Coordinator
from hacoord.server.errors import ErrorReply
from hacoord.server.liveness import LivenessMonitor
from hacoord.testing.inprocess import InProcessCluster

SUSPECT, DOWN = 3.0, 8.0


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cluster(clock: Clock) -> Iterator[InProcessCluster]:
    # The background pass runs once at start and then waits an hour: the test judges by hand.
    with InProcessCluster(3, leader="m1", suspect_after=SUSPECT, down_after=DOWN,
                          liveness_clock=clock, liveness_check_interval=3600.0) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.urls, transport=cluster.transport, deadline=5.0) as c_:
        yield c_


def monitor(cluster: InProcessCluster, member: str = "m1") -> LivenessMonitor:
    return cluster.apps[member].state.liveness


def judge(cluster: InProcessCluster, member: str = "m1") -> dict[str, str]:
    return cluster.run(monitor(cluster, member).judge)


def post(cluster: InProcessCluster, member: str, path: str, body: object) -> httpx.Response:
    with httpx.Client(transport=cluster.transport) as http:
        return http.post(cluster.url(member) + path, json=body)


def status(cluster: InProcessCluster, node: str, member: str = "m1") -> str:
    return cluster.state(member).nodes[node].status


def setup_nodes(client: Client) -> None:
    """Nodes a, b, c in three zones, resource r of 3 partitions x 3 replicas (leaders balanced:
    each node leads one)."""
    for i, node in enumerate("abc"):
        client.node_add(node, f"10.0.0.{i + 1}:9000", zone=f"z{i}")
    client.resource_create("r", 3, 3)


def test_silent_node_goes_suspect_then_down_and_a_heartbeat_brings_it_back(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    session = client.node_start_session("a")
    assert session.epoch == 2 and session.node.status == "up"
    for node in "bc":
        client.node_heartbeat(node, 1)
    led_by_a = [p.partition for p in client.routing("r") if p.leader == "a"]
    assert led_by_a

    clock.advance(SUSPECT - 0.01)
    assert judge(cluster) == {}
    clock.advance(0.01)
    client.node_heartbeat("b", 1)
    client.node_heartbeat("c", 1)
    assert judge(cluster) == {"a": "suspect"}
    assert status(cluster, "a") == "suspect"
    assert client.node_show("a").status == "suspect"
    # Suspect: not judged yet, so its leaderships stay where they are.
    assert [p.partition for p in client.routing("r") if p.leader == "a"] == led_by_a
    assert judge(cluster) == {}  # submitted once, not on every pass

    clock.advance(DOWN - SUSPECT)
    client.node_heartbeat("b", 1)
    client.node_heartbeat("c", 1)
    before = {p.partition: p.epoch for p in client.routing("r")}
    assert judge(cluster) == {"a": "down"}
    routes = {p.partition: p for p in client.routing("r")}
    for partition in led_by_a:
        assert routes[partition].leader != "a"
        assert routes[partition].epoch == before[partition] + 1
    assert judge(cluster) == {}

    beat = client.node_heartbeat("a", 2)
    assert (beat.node_id, beat.status, beat.epoch) == ("a", "up", 2)
    assert beat.revision == cluster.state("m1").revision
    assert status(cluster, "a") == "up"
    assert monitor(cluster).transitions == {"up": 1, "suspect": 1, "down": 1}


def test_heartbeats_write_nothing_while_nothing_transitions(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    state = cluster.state("m1")
    revision, fingerprint = state.revision, digest(state)
    events = len(cluster.replicators["m1"].feed.since(0, 10_000))
    for _ in range(20):
        clock.advance(SUSPECT / 2)
        for node in "abc":
            assert client.node_heartbeat(node, 1).status == "up"
        assert judge(cluster) == {}
    assert (state.revision, digest(state)) == (revision, fingerprint)
    assert len(cluster.replicators["m1"].feed.since(0, 10_000)) == events


def test_a_stale_epoch_heartbeat_is_refused_and_changes_nothing(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    assert client.node_start_session("a").epoch == 2
    assert client.node_start_session("a").epoch == 3
    state = cluster.state("m1")
    revision, fingerprint = state.revision, digest(state)
    seen = dict(monitor(cluster).last_seen)

    clock.advance(1.0)
    for stale in (1, 2, 4):
        answer = post(cluster, "m1", "/v1/nodes/a/heartbeat", {"epoch": stale})
        assert answer.status_code == 409
        assert answer.json()["code"] == "stale_epoch" and "epoch 3" in answer.json()["message"]
    with pytest.raises(StaleEpoch) as caught:
        client.node_heartbeat("a", 2)
    assert caught.value.status == 409
    assert (state.revision, digest(state)) == (revision, fingerprint)
    assert monitor(cluster).last_seen == seen  # a refused heartbeat is no sign of life

    # ... so a node heard only at stale epochs goes suspect on time.
    clock.advance(SUSPECT - 1.0)
    for node in "bc":
        client.node_heartbeat(node, 1)
    assert judge(cluster) == {"a": "suspect"}


def test_a_stale_epoch_cannot_bring_a_down_node_back(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    client.node_start_session("a")
    clock.advance(DOWN)
    for node in "bc":
        client.node_heartbeat(node, 1)
    assert judge(cluster) == {"a": "down"}
    with pytest.raises(StaleEpoch):
        client.node_heartbeat("a", 1)  # the old incarnation, cut off, speaks up again
    assert status(cluster, "a") == "down"
    assert judge(cluster) == {}


def test_a_new_leader_grants_a_full_timeout_of_grace(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    for node in "abc":
        client.node_heartbeat(node, 1)
    assert judge(cluster) == {}
    term = cluster.replicators["m1"].term

    cluster.set_leader("m2")  # m1 is deposed; nobody heartbeats for a long time
    clock.advance(10 * DOWN)
    assert judge(cluster) == {}  # m1 no longer leads: it judges nothing
    cluster.set_leader("m1")  # re-elected, in a new term
    assert cluster.replicators["m1"].term > term

    # Every last heartbeat is ancient, but this leader cannot know that: nobody is judged yet.
    assert judge(cluster) == {}
    clock.advance(SUSPECT - 0.01)
    assert judge(cluster) == {}
    client.node_heartbeat("a", 1)
    client.node_heartbeat("b", 1)
    clock.advance(0.01)
    assert judge(cluster) == {"c": "suspect"}  # the grace ran from the leadership gain
    assert cluster.state("m1").leader_term == cluster.replicators["m1"].term


def test_a_judgement_from_an_older_term_is_refused_by_apply(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    setup_nodes(client)
    mon = monitor(cluster)
    old_term = cluster.run(_leading_term, mon)
    # A newer leader's judgement reached the log (this member was deposed and missed it).
    newer = c.SetNodeLiveness(node_id="b", status="up", epoch=1, term=old_term + 1)
    assert cluster.run(cluster.replicators["m1"].submit, newer, 1.0).ok
    for node in "bc":
        client.node_heartbeat(node, 1)

    clock.advance(DOWN)
    client.node_heartbeat("b", 1)
    client.node_heartbeat("c", 1)
    # The monitor still believes it leads in old_term: its judgement of a is refused.
    assert judge(cluster) == {}
    assert status(cluster, "a") == "up"
    assert mon.transitions["down"] == 0
    outcome = cluster.run(cluster.replicators["m1"].submit,
                          c.SetNodeLiveness(node_id="a", status="down", epoch=1, term=old_term), 1.0)
    assert (outcome.ok, getattr(outcome, "code", None)) == (False, "stale_term")


async def _leading_term(mon: LivenessMonitor) -> int:
    term = mon.leading_term()
    assert term is not None
    return term


def test_a_node_registered_later_gets_a_full_timeout(
        cluster: InProcessCluster, client: Client, clock: Clock) -> None:
    assert judge(cluster) == {}
    clock.advance(10 * DOWN)
    client.node_add("late", "10.0.0.9:9000")
    assert judge(cluster) == {}
    clock.advance(SUSPECT)
    assert judge(cluster) == {"late": "suspect"}
    client.node_remove("late")
    assert "late" not in cluster.state("m1").nodes
    assert judge(cluster) == {}
    assert "late" not in monitor(cluster).last_seen


def test_heartbeats_and_sessions_reach_the_leader_through_a_follower(
        cluster: InProcessCluster, clock: Clock) -> None:
    with Client([cluster.url("m2")], transport=cluster.transport) as via_m2:
        via_m2.node_add("a", "10.0.0.1:9000")
        assert via_m2.node_start_session("a", address="10.0.0.7:9000").epoch == 2
        beat = post(cluster, "m2", "/v1/nodes/a/heartbeat", {"epoch": 2})
        assert beat.status_code == 200 and beat.json()["status"] == "up"
    assert cluster.hits("m1", "POST", forwarded=True)
    assert cluster.state("m1").nodes["a"].address == "10.0.0.7:9000"
    assert "a" in monitor(cluster, "m1").last_seen
    assert monitor(cluster, "m2").last_seen == {}  # followers keep nothing


def test_a_client_heartbeating_through_a_follower_moves_to_the_leader(
        cluster: InProcessCluster, client: Client) -> None:
    client.node_add("a", "10.0.0.1:9000")
    with Client([cluster.url("m3")], transport=cluster.transport) as via_m3:
        via_m3.node_heartbeat("a", 1)  # m3 forwards it, and says m1 answered
        assert via_m3.leader == "m1"
        cluster.received.clear()
        for _ in range(3):
            via_m3.node_heartbeat("a", 1)
    assert [m for m, _ in cluster.received] == ["m1"] * 3
    assert not cluster.hits("m1", forwarded=True)


def test_heartbeat_and_session_errors(cluster: InProcessCluster, client: Client) -> None:
    with pytest.raises(NotFound):
        client.node_heartbeat("ghost", 1)
    with pytest.raises(NotFound):
        client.node_start_session("ghost")
    client.node_add("a", "10.0.0.1:9000")
    for body in ({}, {"epoch": 0}, {"epoch": "x"}, {"epoch": 1, "extra": True}):
        answer = post(cluster, "m1", "/v1/nodes/a/heartbeat", body)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_argument"), body
    answer = post(cluster, "m1", "/v1/nodes/a/session", {"address": "nowhere"})
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_argument")
    assert cluster.state("m1").nodes["a"].epoch == 1


def test_a_retried_session_start_gets_its_own_epoch(cluster: InProcessCluster, client: Client) -> None:
    client.node_add("a", "10.0.0.1:9000")
    first = client.node_start_session("a", request_id="boot-1")
    assert client.node_start_session("a").epoch == 3
    again = client.node_start_session("a", request_id="boot-1")
    assert (again.epoch, again.revision) == (first.epoch, first.revision) == (2, first.revision)


def test_node_show_reports_suspect_and_the_epoch(cluster: InProcessCluster, client: Client,
                                                 clock: Clock) -> None:
    from click.testing import CliRunner

    from hacoord.cli.main import CliState, main

    client.node_add("a", "10.0.0.1:9000")
    client.node_start_session("a")
    clock.advance(SUSPECT)
    assert judge(cluster) == {"a": "suspect"}

    def factory(state: CliState) -> Client:
        return Client(cluster.urls, transport=cluster.transport)

    result = CliRunner().invoke(main, ["node", "show", "a"], obj=CliState(client_factory=factory))
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert lines["status"].strip() == "suspect" and lines["epoch"].strip() == "2"


def test_the_background_pass_judges_on_its_own() -> None:
    clock = Clock()
    with InProcessCluster(1, leader="m1", suspect_after=1.0, down_after=2.0, liveness_clock=clock,
                          liveness_check_interval=0.05) as cluster, \
            Client(cluster.urls, transport=cluster.transport) as client:
        client.node_add("a", "10.0.0.1:9000")
        mon = monitor(cluster)
        deadline = time.monotonic() + 20.0
        while "a" not in mon.last_seen and time.monotonic() < deadline:
            time.sleep(0.01)  # the first pass that sees the node starts its timeout
        # Time moves in small steps, as it does for a member that is not paused.
        while status(cluster, "a") != "down" and time.monotonic() < deadline:
            clock.advance(0.02)
            time.sleep(0.01)
        assert status(cluster, "a") == "down"
        assert client.node_heartbeat("a", 1).status == "up"


def lone_monitor() -> tuple[MemoryReplicator, Coordinator, Clock, LivenessMonitor]:
    """A monitor over one in-memory member (no HTTP): suspect after 3 s, down after 8 s, passes
    every 0.5 s of the returned clock. Call it inside the event loop that will run it."""
    replicator = MemoryReplicator()
    coordinator = Coordinator(replicator)
    clock = Clock()
    return replicator, coordinator, clock, LivenessMonitor(
        replicator, coordinator, clock, suspect_after=3.0, down_after=8.0, check_interval=0.5)


def test_a_late_pass_is_not_held_against_the_nodes() -> None:
    """A member that was paused (or starved) between two passes could not hear heartbeats then."""

    async def scenario() -> None:
        replicator, coordinator, clock, mon = lone_monitor()
        await coordinator.submit(c.RegisterNode(node_id="a", address="10.0.0.1:9000"))
        assert await mon.judge() == {}  # the first pass starts a's timeout
        for _ in range(4):  # 2 s of passes on time
            clock.advance(0.5)
            assert await mon.judge() == {}
        clock.advance(20.0)  # paused: one pass 19.5 s late
        assert await mon.judge() == {}
        assert mon.deaf_seconds == pytest.approx(19.5)
        clock.advance(0.5)  # 2 s + one interval + this one: 3 s heard nothing while listening
        assert await mon.judge() == {"a": "suspect"}

    asyncio.run(scenario())


def test_nodes_coming_back_together_are_judged_up_in_one_command() -> None:
    """After an election the nodes whose heartbeats went elsewhere come back within a second;
    their returns share commands instead of taking one each."""

    async def scenario() -> None:
        replicator, coordinator, clock, mon = lone_monitor()
        nodes = [f"n{i}" for i in range(20)]
        for i, node in enumerate(nodes):
            await coordinator.submit(c.RegisterNode(node_id=node, address=f"10.0.0.{i + 1}:9000"))
        assert await mon.judge() == {}

        async def silence() -> dict[str, str]:  # 3 s of passes on time, no heartbeat
            judged = {}
            for _ in range(6):
                clock.advance(0.5)
                judged.update(await mon.judge())
            return judged

        assert await silence() == dict.fromkeys(nodes, "suspect")
        revision = replicator.state.revision
        beats = await asyncio.gather(*(mon.heartbeat(node, 1) for node in nodes))
        assert {beat["status"] for beat in beats} == {"up"}
        assert replicator.state.revision == revision + 1
        assert {beat["revision"] for beat in beats} == {revision + 1}
        assert mon.transitions["up"] == len(nodes)
        # A return refused (here: the node restarted meanwhile) is answered to its heartbeat.
        assert await silence() == dict.fromkeys(nodes, "suspect")
        with pytest.raises(ErrorReply) as refused:
            await mon.heartbeat("n0", 5)
        assert refused.value.code == "stale_epoch"

    asyncio.run(scenario())
