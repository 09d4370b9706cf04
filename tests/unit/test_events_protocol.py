"""The change feed's events as ``hacoord.protocol.events`` defines them: every event ``apply``
emits is the ``to_data`` of its class (so producer and consumers share one set of field names),
and reading is lenient only where the module says it is."""

from __future__ import annotations

import dataclasses

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.events import Event
from hacoord.protocol import events as ev

HASH = "ab" * 32


def _commands() -> list[c.Command]:
    """A history that makes every event type at least once."""
    nodes = [c.RegisterNode(node_id=f"n{i}", address=f"10.0.0.{i}:9000", zone=f"z{i % 2}")
             for i in range(1, 5)]
    return [
        *nodes,
        c.StartNodeSession(node_id="n1"),
        c.SetNodeState(node_id="n2", capacity=2.0),
        c.SetNodesLiveness(judgements=[["n3", "suspect", 1]], term=1),
        c.CreateResource(name="big", partitions=3, replication_factor=2,
                         assignment=[["n1", "n2"]]),
        c.AddPartitions(name="big", start=1, assignment=[["n2", "n3"], ["n3", "n4"]]),
        c.UpdateResource(name="big", replication_factor=1),
        c.CreateResource(name="r", partitions=1, replication_factor=2, assignment=[["n1", "n2"]]),
        c.MovePartition(resource="r", partition=0, from_node="n2", to_node="n4"),
        c.ConfigureRebalance(max_moves=5),
        c.StartRebalance(run_id="run1"),
        c.EndRebalance(run_id="run1", outcome="cancelled", term=1),
        c.CreateToken(name="ops", role="operator", hash=HASH),
        c.RevokeToken(name="ops"),
        c.DeleteResource(name="big"),
        c.RemoveNode(node_id="n4", force=True, replacements={"r": {"0": "n3"}}),
    ]


def _emitted() -> list[Event]:
    state, events = ClusterState(), []
    for i, command in enumerate(_commands()):
        outcome = apply(state, dataclasses.replace(command, request_id=f"r{i}", time=100.0 + i))
        assert outcome.ok, (command, outcome)
        events += outcome.events
    return events


def test_every_event_apply_emits_is_its_class_to_data() -> None:
    events = _emitted()
    assert {e.type for e in events} == set(ev.EVENT_TYPES)
    for event in events:
        data = ev.parse_event(event.type, event.data)
        assert type(data) is ev.EVENT_TYPES[event.type]
        assert data.to_data() == event.data, event.type


def test_one_name_for_the_node_an_event_is_about() -> None:
    removed = [ev.parse_event(e.type, e.data) for e in _emitted() if e.type == "NodeRemoved"]
    assert removed == [ev.NodeRemoved(id="n4")]
    # A member of an earlier release named it node_id.
    assert ev.NodeRemoved.from_data({"node_id": "n9"}) == ev.NodeRemoved(id="n9")


def test_why_a_node_changed_is_always_said() -> None:
    reasons = {(e.data["id"], e.data["reason"]) for e in _emitted() if e.type == "NodeStateChanged"}
    assert reasons == {("n2", ev.UPDATE), ("n3", ev.LIVENESS)}


def test_reading_ignores_new_fields_and_refuses_missing_ones() -> None:
    assert ev.parse_event("ResourceDeleted", {"name": "r", "added_later": 1}) == \
        ev.ResourceDeleted(name="r")
    assert ev.parse_event("PartitionChanged", {"resource": "r", "partition": 0, "replicas": ["a"],
                                               "leader": "a", "epoch": 2}).adding == ()
    with pytest.raises(ev.EventFormatError, match="PartitionChanged event has no 'epoch'"):
        ev.parse_event("PartitionChanged", {"resource": "r", "partition": 0, "replicas": ["a"],
                                            "leader": "a"})
    assert ev.parse_event("SomethingNew", {"x": 1}) is None


def test_both_kinds_of_slice_read_alike() -> None:
    parts = [{"replicas": ["a"], "leader": "a", "epoch": 1}]
    created = ev.ResourceCreated(name="r", replication_factor=1, partitions=parts, created_at=1.0)
    added = ev.PartitionsAdded(resource="r", start=1, partitions=parts)
    assert created.slice() == ("r", 0, parts)
    assert added.slice() == ("r", 1, parts)
