"""``NodeAgent`` against a fake coordinator: registration, the assignment follower, the catch-up
contract of two-phase moves, and the end of a session. No processes, no sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hacoord.agent import NodeAgent, Role
from hacoord.client import WatchEvent
from hacoord.testing import FakeCoordinator, RecordingHandler, wait_for

FAST = {"heartbeat_interval": 0.01, "watch_poll": 0.05}


def eventually(what: str, probe: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll ``probe`` until its answer is truthy (an empty list or 0 is not); fail after
    ``timeout`` seconds."""
    return wait_for(what, lambda: probe() or None, timeout, interval=0.005)


@pytest.fixture
def coordinator() -> FakeCoordinator:
    fake = FakeCoordinator()
    for node in ("n2", "n3"):
        fake.node_add(node, f"127.0.0.1:{9000 + int(node[1])}")
    fake.create_resource("r", [["n1", "n2"], ["n2", "n3"], ["n3", "n2"]])
    fake.node_add("spare", "127.0.0.1:9009")  # routed to by nothing yet
    return fake


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def agent(coordinator: FakeCoordinator, handler: RecordingHandler) -> Iterator[NodeAgent]:
    running = NodeAgent("n1", "127.0.0.1:9001", handler, client=coordinator, zone="z1", capacity=2.0,
                        tags={"rack": "r1"}, **FAST)
    running.start()
    yield running
    assert running.stop(timeout=10)


def roles(agent: NodeAgent) -> dict[int, tuple[Role, int]]:
    return {p: (a.role, a.epoch) for (_, p), a in agent.assignments().items()}


def test_start_registers_an_unknown_node_starts_a_session_and_reads_its_assignments(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    assert coordinator.calls_of("node_add")[-1] == ("n1", "127.0.0.1:9001", "z1", 2.0, {"rack": "r1"})
    assert agent.epoch == 2  # registered at epoch 1, then a session
    assert handler.seen() == [("assign", "r", 0, 1, "leader")]
    assert roles(agent) == {0: (Role.LEADER, 1)}
    assert agent.address_of("n2") == "127.0.0.1:9002"
    assert agent.address_of("spare") == "127.0.0.1:9009"  # from the node list, not the routing
    coordinator.node_add("late", "127.0.0.1:9010")
    eventually("the address of a node registered later", lambda: agent.address_of("late"))
    eventually("heartbeats with the session epoch",
               lambda: ("n1", 2) in coordinator.calls_of("node_heartbeat") and agent.stats().heartbeats)


def test_a_known_node_is_not_registered_again(coordinator: FakeCoordinator) -> None:
    agent = NodeAgent("n2", "127.0.0.1:9902", client=coordinator, **FAST).start()
    try:
        assert [c[0] for c in coordinator.calls_of("node_add")] == ["n2", "n3", "spare"]  # the fixture's
        assert coordinator.calls_of("node_start_session") == [("n2", "127.0.0.1:9902")]
        assert set(agent.assignments()) == {("r", 0), ("r", 1), ("r", 2)}
    finally:
        assert agent.stop()


def test_every_change_of_the_feed_reaches_the_handler_in_order(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    coordinator.change("r", 0, leader="n2")
    coordinator.change("r", 1, replicas=["n2", "n1"])
    coordinator.change("r", 0, replicas=["n2", "n3"])
    coordinator.create_resource("s", [["n3", "n1"]])
    coordinator.delete_resource("r")
    eventually("the deletion", lambda: ("release", "r", 1) in handler.seen())
    assert handler.seen() == [
        ("assign", "r", 0, 1, "leader"), ("assign", "r", 0, 2, "follower"),
        ("assign", "r", 1, 2, "follower"), ("release", "r", 0), ("assign", "s", 0, 1, "follower"),
        ("release", "r", 1)]
    assert set(agent.assignments()) == {("s", 0)}


def test_a_move_to_the_node_is_copied_then_reported_caught_up_with_the_route_epoch(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    handler.copy_allowed.clear()
    epoch = coordinator.start_move("r", 1, "n2", "n1")  # n2 leads r/1: leadership comes along
    assert handler.copying.wait(10)
    assert roles(agent)[1] == (Role.CATCHING_UP, epoch)
    assert coordinator.calls_of("node_caught_up") == []  # not before the copy is complete
    handler.copy_allowed.set()
    eventually("the move completed", lambda: roles(agent).get(1) == (Role.LEADER, epoch + 1))
    assert coordinator.calls_of("node_caught_up") == [("n1", 2, "r", 1, epoch)]
    assert ("catch_up", "r", 1, epoch) in handler.seen()
    assert coordinator.routes[("r", 1)].replicas == ("n1", "n3")
    eventually("the count", lambda: agent.stats().moves_completed == 1)


def test_a_route_changed_during_the_copy_is_reported_again_with_its_new_epoch(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    handler.copy_allowed.clear()
    first = coordinator.start_move("r", 2, "n2", "n1")
    assert handler.copying.wait(10)
    # The leadership passes to the replica being replaced while the node copies, and its watch
    # has not shown it yet; on completion the leadership comes to the node.
    second = coordinator.change("r", 2, leader="n2", silent=True)
    handler.copy_allowed.set()
    eventually("the move completed", lambda: roles(agent).get(2) == (Role.LEADER, second + 1))
    assert [c[-1] for c in coordinator.calls_of("node_caught_up")] == [first, second]
    assert [c for c in handler.seen() if c[0] == "catch_up"] == [("catch_up", "r", 2, first)]  # once


def test_a_move_cancelled_during_the_copy_releases_the_partition(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    handler.copy_allowed.clear()
    coordinator.start_move("r", 2, "n3", "n1")
    assert handler.copying.wait(10)
    coordinator.cancel_move("r", 2, silent=True)
    handler.copy_allowed.set()
    eventually("the release", lambda: ("release", "r", 2) in handler.seen())
    assert ("r", 2) not in agent.assignments()
    assert len(coordinator.calls_of("node_caught_up")) == 1
    assert agent.running


def test_a_newer_session_refusing_a_heartbeat_releases_everything_and_stops(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    coordinator.node_start_session("n1", silent=True)  # another process of n1 took over
    # The agent records the loss before its handler hears of it: wait for the handler.
    eventually("the session lost", lambda: handler.seen()[-1:] and handler.seen()[-1][0] == "lost")
    assert "newer session" in (agent.lost or "")
    assert handler.seen()[-2:] == [("release", "r", 0), ("lost", agent.lost)]
    assert agent.assignments() == {} and not agent.running
    beats = len(coordinator.calls_of("node_heartbeat"))
    assert agent.stop(timeout=10)  # every thread ended on its own
    assert len(coordinator.calls_of("node_heartbeat")) == beats


def test_a_newer_session_seen_in_the_feed_ends_the_session(
        coordinator: FakeCoordinator, handler: RecordingHandler) -> None:
    agent = NodeAgent("n1", "127.0.0.1:9001", handler, client=coordinator, heartbeat_interval=60,
                      watch_poll=0.05).start()
    try:
        coordinator.node_start_session("n1")
        eventually("the session lost", lambda: agent.lost)
        assert coordinator.calls_of("node_heartbeat") == []  # the feed told, not a heartbeat
        assert "epoch 3" in (agent.lost or "") and agent.assignments() == {}
    finally:
        assert agent.stop()


def test_the_node_removed_ends_the_session(coordinator: FakeCoordinator, handler: RecordingHandler,
                                           agent: NodeAgent) -> None:
    coordinator.node_remove("n1")
    eventually("the session lost", lambda: agent.lost)
    assert ("release", "r", 0) in handler.seen() and "removed" in (agent.lost or "")


def test_heartbeats_failing_for_a_while_release_nothing(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    coordinator.unreachable_heartbeats = 5
    eventually("five failed heartbeats", lambda: agent.stats().heartbeat_failures == 5)
    ok = agent.stats().heartbeats
    eventually("heartbeats answered again", lambda: agent.stats().heartbeats > ok)
    assert agent.running and agent.lost is None
    assert roles(agent) == {0: (Role.LEADER, 1)}
    assert not any(c[0] in ("release", "lost") for c in handler.seen())


def test_a_compacted_feed_is_followed_by_a_fresh_routing_table(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    epoch = coordinator.change("r", 1, replicas=["n2", "n1"], silent=True)
    coordinator.compact()
    eventually("the re-read routing", lambda: roles(agent).get(1) == (Role.FOLLOWER, epoch))
    assert agent.stats().resyncs == 1
    coordinator.change("r", 1, leader="n1")  # and the feed is followed again from there
    eventually("the next change", lambda: roles(agent).get(1) == (Role.LEADER, epoch + 1))


def test_an_unreadable_event_is_passed_by_re_reading_the_routing(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    epoch = coordinator.change("r", 1, replicas=["n2", "n1"], silent=True)
    with coordinator._cond:  # a coordinator bug: an event missing a field its type needs
        coordinator.revision += 1
        coordinator.events.append(WatchEvent("PartitionChanged", coordinator.revision,
                                             {"resource": "r", "partition": 1}))
        coordinator._cond.notify_all()
    eventually("the re-read routing", lambda: roles(agent).get(1) == (Role.FOLLOWER, epoch))
    assert agent.stats().resyncs == 1
    coordinator.change("r", 1, leader="n1")  # and the feed is followed again from there
    eventually("the next change", lambda: roles(agent).get(1) == (Role.LEADER, epoch + 1))


def test_a_failing_handler_does_not_stop_the_follower(
        coordinator: FakeCoordinator, handler: RecordingHandler, agent: NodeAgent) -> None:
    handler.fail_next_assign = True
    coordinator.change("r", 0, leader="n2")
    coordinator.change("r", 1, replicas=["n2", "n1"])
    eventually("the change after the failure", lambda: ("assign", "r", 1, 2, "follower") in handler.seen())
    assert ("assign", "r", 0, 2, "follower") in handler.seen()


def test_metrics_are_reported_with_the_session_epoch(coordinator: FakeCoordinator) -> None:
    agent = NodeAgent("n1", "127.0.0.1:9001", client=coordinator, metrics=lambda: {"keys": 7.0},
                      metrics_interval=0.01, **FAST).start()
    try:
        eventually("a report", lambda: agent.stats().metric_reports >= 2)
        assert coordinator.calls_of("node_report_metrics")[0] == ("n1", 2, {"keys": 7.0})
    finally:
        assert agent.stop()


def test_an_agent_starts_once(agent: NodeAgent) -> None:
    with pytest.raises(RuntimeError):
        agent.start()
