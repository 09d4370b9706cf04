"""``AssignmentBook``: a node's assignments from routes, tables and events, and the changes between."""

from __future__ import annotations

from hacoord.agent import AssignmentBook, Role, role_of
from hacoord.client import PartitionRoute, RoutingTable, WatchEvent


def route(partition: int, replicas: tuple[str, ...], leader: str | None, epoch: int,
          adding: tuple[str, ...] = (), resource: str = "r") -> PartitionRoute:
    return PartitionRoute(resource, partition, replicas, leader, epoch, adding)


def summary(changes: list) -> list[tuple]:
    """(partition, role or None, epoch or None) for each change."""
    return [(c.key[1], c.after.role if c.after else None, c.after.epoch if c.after else None)
            for c in changes]


def test_the_role_follows_the_route() -> None:
    r = route(0, ("a", "b"), "a", 3, adding=("c",))
    assert (role_of(r, "a"), role_of(r, "b"), role_of(r, "c"), role_of(r, "d")) == (
        Role.LEADER, Role.FOLLOWER, Role.CATCHING_UP, None)


def test_a_change_is_reported_when_the_role_or_epoch_changes_and_only_then() -> None:
    book = AssignmentBook("a")
    assert summary(book.apply_route(route(0, ("a", "b"), "a", 1), 10)) == [(0, Role.LEADER, 1)]
    assert book.apply_route(route(0, ("a", "b"), "a", 1), 11) == []  # the same route again
    assert book.apply_route(route(1, ("b", "c"), "b", 1), 12) == []  # not ours
    changes = book.apply_route(route(0, ("a", "b"), "b", 2), 13)
    assert summary(changes) == [(0, Role.FOLLOWER, 2)]
    assert changes[0].before is not None and changes[0].before.role is Role.LEADER
    assert summary(book.apply_route(route(0, ("b", "c"), "b", 3), 14)) == [(0, None, None)]
    assert book.held() == {}


def test_information_older_than_what_is_known_is_ignored() -> None:
    book = AssignmentBook("a")
    book.apply_route(route(0, ("a", "b"), "b", 5), 20)
    assert book.apply_route(route(0, ("a", "b"), "a", 4), 19) == []  # an older table, say
    held = book.get("r", 0)
    assert held is not None and (held.role, held.epoch) == (Role.FOLLOWER, 5)


def test_held_since_survives_a_role_change_and_restarts_after_a_release() -> None:
    book = AssignmentBook("a")
    book.apply_route(route(0, ("b",), "b", 1, adding=("a",)), 5)
    book.apply_route(route(0, ("a",), "a", 2), 6)  # the move completed
    held = book.get("r", 0)
    assert held is not None and (held.role, held.held_since) == (Role.LEADER, 5)
    book.apply_route(route(0, ("b",), "b", 3), 7)
    book.apply_route(route(0, ("b",), "b", 4, adding=("a",)), 8)
    held = book.get("r", 0)
    assert held is not None and (held.role, held.held_since) == (Role.CATCHING_UP, 8)


def test_a_deleted_resource_is_released_and_late_routes_of_it_are_ignored() -> None:
    book = AssignmentBook("a")
    created = WatchEvent("ResourceCreated", 3, {"name": "r", "replication_factor": 2, "partitions": [
        {"replicas": ["a", "b"], "leader": "a", "epoch": 1},
        {"replicas": ["b", "c"], "leader": "b", "epoch": 1},
        {"replicas": ["c", "a"], "leader": "c", "epoch": 1}], "created_at": 1.0})
    assert summary(book.apply_event(created)) == [(0, Role.LEADER, 1), (2, Role.FOLLOWER, 1)]
    deleted = WatchEvent("ResourceDeleted", 7, {"name": "r"})
    assert summary(book.apply_event(deleted)) == [(0, None, None), (2, None, None)]
    assert book.apply_route(route(0, ("a", "b"), "a", 2), 6) == []  # read before the deletion
    # Created again under the same name: epochs start over, and that is news, not staleness.
    assert summary(book.apply_route(route(0, ("a",), "a", 1), 9)) == [(0, Role.LEADER, 1)]


def test_a_table_releases_what_it_no_longer_routes() -> None:
    book = AssignmentBook("a")
    book.apply_route(route(0, ("a",), "a", 1, resource="old"), 2)
    book.apply_route(route(0, ("a", "b"), "b", 1), 3)
    table = RoutingTable(9, (route(0, ("a", "b"), "a", 2),), {"r": 2})
    changes = book.apply_table(table)
    assert sorted((c.key, c.after.role if c.after else None) for c in changes) == [
        (("old", 0), None), (("r", 0), Role.LEADER)]
    assert set(book.held()) == {("r", 0)}


def test_partition_changed_events_are_routes_and_other_events_change_nothing() -> None:
    book = AssignmentBook("a")
    event = WatchEvent("PartitionChanged", 4, {"resource": "r", "partition": 1, "replicas": ["b"],
                                               "leader": "b", "epoch": 6, "adding": ["a"],
                                               "reason": "move started"})
    assert summary(book.apply_event(event)) == [(1, Role.CATCHING_UP, 6)]
    assert book.apply_event(WatchEvent("NodeRegistered", 5, {"id": "z"})) == []
    assert [c.before.epoch for c in book.clear() if c.before] == [6]
    assert book.held() == {}
