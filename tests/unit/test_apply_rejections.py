"""One case per rejection reason: the code, and a state left exactly as it was (digest included)."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import ClassVar

import pytest

from hacoord.core import ClusterState, apply, commands, digest, encode_state
from hacoord.core.apply import MAX_PARTITIONS
from hacoord.core.results import Applied, Rejected
from hacoord.core.validate import validate
from hacoord.placement import place_resource, replacements_for
from hacoord.replication.applying import apply_logged

c = commands


@dataclasses.dataclass(frozen=True)
class Bogus(c.Command):
    """A command type apply has no handler for."""

    TYPE: ClassVar[str] = "Bogus"


def base_state() -> ClusterState:
    """Nodes a, b, c (each holding replicas of ``r``) and d (holding nothing, the only node that
    can take a replacement); one remembered request id, ``done-1``."""
    state = ClusterState()
    for node_id, zone in [("a", "z1"), ("b", "z2"), ("c", "z3"), ("d", "z1")]:
        outcome = apply(state, c.RegisterNode(request_id=f"done-{node_id}" if node_id == "a" else "",
                                              time=10.0, node_id=node_id, address=f"{node_id}.local:7000",
                                              zone=zone))
        assert outcome.ok
    assert apply(state, c.CreateResource(request_id="mk-r", time=11.0, name="r", partitions=3,
                                         replication_factor=2,
                                         assignment=[["a", "b"], ["b", "c"], ["c", "a"]])).ok
    assert state.requests and validate(state) == []
    return state


def plan_for(node_id: str, **changes) -> Callable[[ClusterState], c.RemoveNode]:
    """A forced RemoveNode of ``node_id`` with the right plan, then ``changes`` applied to it
    (partition key -> replacement; the sentinel "drop" removes that entry)."""
    def build(state: ClusterState) -> c.RemoveNode:
        plan = replacements_for(state, node_id)
        for key, value in changes.items():
            if value == "drop":
                del plan["r"][key.lstrip("p")]
            else:
                plan["r"][key.lstrip("p")] = value
        return c.RemoveNode(node_id=node_id, force=True, replacements=plan)
    return build


def create(**fields) -> Callable[[ClusterState], c.CreateResource]:
    def build(state: ClusterState) -> c.CreateResource:
        args = {"name": "new", "partitions": 2, "replication_factor": 2}
        args.update(fields)
        if "assignment" not in args:
            args["assignment"] = place_resource(state, "new", 2, args["replication_factor"])
        return c.CreateResource(**args)
    return build


def const(command) -> Callable[[ClusterState], object]:
    return lambda state: command


INVALID = "invalid_argument"

CASES: list[tuple[str, Callable[[ClusterState], object], str]] = [
    # unknown things
    ("set-unknown-node", const(c.SetNodeState(node_id="ghost", status="down")), "not_found"),
    ("remove-unknown-node", const(c.RemoveNode(node_id="ghost", force=True)), "not_found"),
    ("move-to-unknown-node", const(c.MovePartition(resource="r", partition=0, from_node="a",
                                                   to_node="ghost")), "not_found"),
    ("move-from-unknown-node", const(c.MovePartition(resource="r", partition=0, from_node="ghost",
                                                     to_node="d")), "not_found"),
    ("move-unknown-resource", const(c.MovePartition(resource="nope", partition=0, from_node="a",
                                                    to_node="d")), "not_found"),
    ("move-partition-out-of-range", const(c.MovePartition(resource="r", partition=3, from_node="a",
                                                          to_node="d")), "not_found"),
    ("move-negative-partition", const(c.MovePartition(resource="r", partition=-1, from_node="a",
                                                      to_node="d")), "not_found"),
    ("move-partition-as-string", const(c.MovePartition(resource="r", partition="0", from_node="a",
                                                       to_node="d")), "not_found"),
    ("move-partition-as-bool", const(c.MovePartition(resource="r", partition=True, from_node="a",
                                                     to_node="d")), "not_found"),
    ("delete-unknown-resource", const(c.DeleteResource(name="nope")), "not_found"),
    # duplicates
    ("register-duplicate-id", const(c.RegisterNode(node_id="a", address="x:1")), "already_exists"),
    ("create-duplicate-name", create(name="r"), "already_exists"),
    # counts
    ("zero-partitions", create(partitions=0, assignment=[]), INVALID),
    ("negative-partitions", create(partitions=-2, assignment=[]), INVALID),
    ("too-many-partitions", create(partitions=MAX_PARTITIONS + 1, assignment=[]), INVALID),
    ("partitions-as-string", create(partitions="2"), INVALID),
    ("partitions-as-float", create(partitions=2.0), INVALID),
    ("partitions-as-bool", create(partitions=True, assignment=[["a", "b"]]), INVALID),
    ("zero-replicas", create(replication_factor=0), INVALID),
    ("sixteen-replicas", create(replication_factor=16), INVALID),
    ("more-replicas-than-nodes", create(replication_factor=5, assignment=[["a", "b", "c", "d"]] * 2),
     "not_enough_nodes"),
    # malformed identifiers and addresses
    ("node-id-with-space", const(c.RegisterNode(node_id="bad id", address="x:1")), INVALID),
    ("node-id-empty", const(c.RegisterNode(node_id="", address="x:1")), INVALID),
    ("node-id-leading-dash", const(c.RegisterNode(node_id="-x", address="x:1")), INVALID),
    ("node-id-too-long", const(c.RegisterNode(node_id="x" * 64, address="x:1")), INVALID),
    ("node-id-non-ascii", const(c.RegisterNode(node_id="nöde", address="x:1")), INVALID),
    ("resource-name-with-slash", create(name="a/b"), INVALID),
    ("delete-malformed-name", const(c.DeleteResource(name="no such")), INVALID),
    ("zone-malformed", const(c.RegisterNode(node_id="e", address="x:1", zone="eu west")), INVALID),
    ("set-zone-malformed", const(c.SetNodeState(node_id="a", zone="")), INVALID),
    ("address-without-port", const(c.RegisterNode(node_id="e", address="host")), INVALID),
    ("address-port-zero", const(c.RegisterNode(node_id="e", address="host:0")), INVALID),
    ("address-port-too-big", const(c.RegisterNode(node_id="e", address="host:65536")), INVALID),
    ("address-empty-host", const(c.RegisterNode(node_id="e", address=":80")), INVALID),
    ("address-url", const(c.RegisterNode(node_id="e", address="http://host:80")), INVALID),
    ("set-address-malformed", const(c.SetNodeState(node_id="a", address="a b:1")), INVALID),
    ("move-malformed-node", const(c.MovePartition(resource="r", partition=0, from_node="a",
                                                  to_node="no such")), INVALID),
    # moves the partition's replicas do not allow (a conflict with the state: a schema-valid
    # request the same call could make succeed in another state)
    ("move-to-node-already-holding", const(c.MovePartition(resource="r", partition=0, from_node="a",
                                                           to_node="b")), "conflict"),
    ("move-to-itself", const(c.MovePartition(resource="r", partition=0, from_node="a",
                                             to_node="a")), "conflict"),
    ("move-from-node-not-holding", const(c.MovePartition(resource="r", partition=0, from_node="c",
                                                         to_node="d")), "conflict"),
    # removals
    ("remove-non-empty-without-force", const(c.RemoveNode(node_id="a")), "node_not_empty"),
    ("remove-non-empty-force-as-string", const(c.RemoveNode(node_id="a", force="yes")), INVALID),
    ("remove-replacements-not-an-object", const(c.RemoveNode(node_id="a", force=True,
                                                             replacements=[])), INVALID),
    ("remove-empty-replacements-not-an-object", const(c.RemoveNode(node_id="d", replacements=[])),
     INVALID),
    # stale plans
    ("remove-without-plan", const(c.RemoveNode(node_id="a", force=True)), "stale_plan"),
    ("remove-plan-missing-partition", plan_for("a", p0="drop"), "stale_plan"),
    ("remove-plan-to-holder", plan_for("a", p0="b"), "stale_plan"),
    ("remove-plan-to-itself", plan_for("a", p0="a"), "stale_plan"),
    ("remove-plan-to-unknown-node", plan_for("a", p0="ghost"), "stale_plan"),
    ("remove-plan-none-but-d-is-free", plan_for("a", p2=None), "stale_plan"),
    ("remove-plan-resource-not-an-object", const(c.RemoveNode(node_id="a", force=True,
                                                              replacements={"r": ["d", "d", "d"]})),
     "stale_plan"),
    ("create-plan-unknown-node", create(assignment=[["a", "ghost"], ["b", "c"]]), "stale_plan"),
    ("create-plan-repeated-node", create(assignment=[["a", "a"], ["b", "c"]]), "stale_plan"),
    ("create-plan-no-partition", create(assignment=[]), "stale_plan"),
    ("create-plan-too-many-partitions", create(assignment=[["a", "b"]] * 3), "stale_plan"),
    ("create-plan-wrong-width", create(assignment=[["a", "b", "c"], ["b", "c"]]), "stale_plan"),
    ("create-plan-not-a-list", create(assignment={"0": ["a", "b"], "1": ["b", "c"]}), "stale_plan"),
    ("create-plan-node-as-number", create(assignment=[[1, "a"], ["b", "c"]]), "stale_plan"),
    ("create-plan-partition-not-a-list", create(assignment=["ab", ["b", "c"]]), "stale_plan"),
    # wrong field types
    ("node-id-as-number", const(c.RegisterNode(node_id=5, address="x:1")), INVALID),
    ("node-id-as-null", const(c.RegisterNode(node_id=None, address="x:1")), INVALID),
    ("address-as-number", const(c.RegisterNode(node_id="e", address=8080)), INVALID),
    ("capacity-as-string", const(c.RegisterNode(node_id="e", address="x:1", capacity="x")), INVALID),
    ("capacity-as-bool", const(c.RegisterNode(node_id="e", address="x:1", capacity=True)), INVALID),
    ("capacity-zero", const(c.RegisterNode(node_id="e", address="x:1", capacity=0)), INVALID),
    ("capacity-negative", const(c.RegisterNode(node_id="e", address="x:1", capacity=-1)), INVALID),
    ("capacity-too-big", const(c.RegisterNode(node_id="e", address="x:1", capacity=1e7)), INVALID),
    ("capacity-nan", const(c.RegisterNode(node_id="e", address="x:1", capacity=float("nan"))), INVALID),
    ("capacity-infinite", const(c.RegisterNode(node_id="e", address="x:1", capacity=float("inf"))),
     INVALID),
    ("set-capacity-as-string", const(c.SetNodeState(node_id="a", capacity="2")), INVALID),
    ("tags-as-list", const(c.RegisterNode(node_id="e", address="x:1", tags=[1])), INVALID),
    ("tag-value-as-number", const(c.RegisterNode(node_id="e", address="x:1", tags={"k": 1})), INVALID),
    ("tag-value-null-on-register", const(c.RegisterNode(node_id="e", address="x:1", tags={"k": None})),
     INVALID),
    ("tag-key-malformed", const(c.RegisterNode(node_id="e", address="x:1", tags={"a b": "v"})), INVALID),
    ("tag-value-too-long", const(c.RegisterNode(node_id="e", address="x:1", tags={"k": "v" * 257})),
     INVALID),
    ("too-many-tags", const(c.RegisterNode(node_id="e", address="x:1",
                                           tags={f"k{i}": "v" for i in range(65)})), INVALID),
    ("set-tags-as-list", const(c.SetNodeState(node_id="a", tags=["k"])), INVALID),
    ("set-status-unknown", const(c.SetNodeState(node_id="a", status="sideways")), INVALID),
    ("set-status-as-number", const(c.SetNodeState(node_id="a", status=1)), INVALID),
    ("set-metric-as-string", const(c.SetNodeState(node_id="a", metrics={"cpu": "high"})), INVALID),
    ("set-metric-as-bool", const(c.SetNodeState(node_id="a", metrics={"cpu": True})), INVALID),
    ("set-metric-infinite", const(c.SetNodeState(node_id="a", metrics={"cpu": float("inf")})), INVALID),
    ("set-metrics-as-number", const(c.SetNodeState(node_id="a", metrics=3)), INVALID),
    ("delete-name-as-number", const(c.DeleteResource(name=5)), INVALID),
    ("resource-name-as-list", create(name=["new"]), INVALID),
    # request ids and time
    ("request-id-too-long", const(c.Barrier(request_id="x" * 129)), INVALID),
    ("time-as-string", const(c.RegisterNode(node_id="e", address="x:1", time="noon")), INVALID),
    ("time-nan", const(c.RegisterNode(node_id="e", address="x:1", time=float("nan"))), INVALID),
    ("time-null", const(c.DeleteResource(name="r", time=None)), INVALID),
    ("time-as-bool", const(c.DeleteResource(name="r", time=True)), INVALID),
    # what the wire can carry that is not a command
    ("unknown-command-type", const(c.decode(b'{"type":"Explode","request_id":"u1"}')), INVALID),
    ("command-type-missing", const(c.decode(b'{"node_id":"e"}')), INVALID),
    ("unsupported-command-class", const(Bogus(request_id="b1")), INVALID),
    ("unknown-field", const(c.decode(b'{"type":"DeleteResource","name":"r","force":true}')), INVALID),
    ("request-id-as-number", const(c.decode(b'{"type":"Barrier","request_id":7}')), INVALID),
    ("time-on-the-wire-as-string", const(c.decode(b'{"type":"Barrier","time":"noon"}')), INVALID),
    ("non-json", const(c.decode(b"{not json")), INVALID),
    ("non-utf8", const(c.decode(b"\xff\xfe\xfd")), INVALID),
    ("empty-input", const(c.decode(b"")), INVALID),
    ("json-array", const(c.decode(b"[1, 2]")), INVALID),
    ("json-string", const(c.decode(b'"RegisterNode"')), INVALID),
    ("from-dict-not-a-dict", const(c.from_dict(["type", "Barrier"])), INVALID),
]


@pytest.mark.parametrize("name, build, code", CASES, ids=[case[0] for case in CASES])
def test_rejected_and_state_unchanged(name, build, code):
    state = base_state()
    before_bytes, before_digest, before_revision = encode_state(state), digest(state), state.revision
    command = build(state)
    assert encode_state(state) == before_bytes  # building the command changed nothing either
    outcome = apply(state, command)
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code, outcome
    assert not outcome.duplicate and not outcome.ok
    assert outcome.revision == before_revision == state.revision
    assert digest(state) == before_digest
    assert encode_state(state) == before_bytes
    assert outcome.to_dict() == {"ok": False, "code": code, "message": outcome.message,
                                 "revision": before_revision}
    assert outcome.message


#: Cases whose command is a Command (not already a decode result); the Bogus type becomes an
#: unknown type on the wire, still refused with the same code.
WIRE_CASES = [case for case in CASES if isinstance(case[1](base_state()), c.Command)]


@pytest.mark.parametrize("name, build, code", WIRE_CASES, ids=[case[0] for case in WIRE_CASES])
def test_same_rejection_through_the_wire(name, build, code):
    """Replicated commands go through encode/decode first; the answer must not change."""
    state = base_state()
    decoded = c.decode(c.encode(build(state)))
    before = encode_state(state)
    outcome = apply(state, decoded)
    assert isinstance(outcome, Rejected) and outcome.code == code, outcome
    assert encode_state(state) == before


VALID: list[tuple[str, Callable[[ClusterState], object]]] = [
    ("register", const(c.RegisterNode(node_id="e", address="x:1", zone="z2", capacity=2,
                                      tags={"k": "v" * 256}))),
    ("register-max-tags", const(c.RegisterNode(node_id="e", address="[::1]:65535",
                                               tags={f"k{i}": "v" for i in range(64)}))),
    ("set-state", const(c.SetNodeState(node_id="a", status="down", metrics={"cpu": 1}, tags={"x": None}))),
    ("create", create()),
    ("create-max-replicas-for-nodes", create(replication_factor=4)),
    ("delete", const(c.DeleteResource(name="r"))),
    ("move", const(c.MovePartition(resource="r", partition=0, from_node="a", to_node="d"))),
    ("remove-empty", const(c.RemoveNode(node_id="d"))),
    ("remove-with-plan", plan_for("a")),
]


@pytest.mark.parametrize("name, build", VALID, ids=[case[0] for case in VALID])
def test_near_misses_are_accepted(name, build):
    """The valid neighbours of the cases above are applied, so each rejection above is caused by
    the one thing that case gets wrong."""
    state = base_state()
    revision = state.revision
    outcome = apply(state, build(state))
    assert isinstance(outcome, Applied), outcome
    assert state.revision == revision + 1
    assert validate(state) == []


def test_rejected_request_id_is_not_remembered():
    state = base_state()
    assert apply(state, c.RegisterNode(request_id="try", node_id="e", address="nohost")).code == INVALID
    assert "try" not in state.requests
    outcome = apply(state, c.RegisterNode(request_id="try", node_id="e", address="host:1"))
    assert outcome.ok and not outcome.duplicate


def test_remembered_request_id_wins_over_a_different_command():
    """A retried write is answered from memory, even if its body would now be rejected."""
    state = base_state()
    before = encode_state(state)
    remembered = dict(state.requests["mk-r"])
    outcome = apply(state, c.CreateResource(request_id="mk-r", name="r", partitions=0))
    assert isinstance(outcome, Applied) and outcome.duplicate
    assert outcome.to_dict() == {"ok": True, "revision": remembered["revision"],
                                 "result": remembered["result"]}
    assert encode_state(state) == before


def test_rejection_inside_a_multi_partition_removal_changes_nothing():
    """The plan's last entry is the stale one: the first ones must not have been applied."""
    state = base_state()
    before = encode_state(state)
    command = plan_for("a", p2="c")(state)  # partition 2 is [c, a]: c already holds it
    assert list(command.replacements["r"]) == ["0", "2"]
    assert apply(state, command).code == "stale_plan"
    assert encode_state(state) == before


def test_a_bug_in_a_handler_is_an_internal_error_logged_by_the_replica(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    apply_module = importlib.import_module("hacoord.core.apply")

    def broken(state: ClusterState, cmd: c.RegisterNode, rev: int) -> Applied:
        raise KeyError("a bug")

    state = base_state()
    monkeypatch.setitem(apply_module._HANDLERS, c.RegisterNode, broken)
    before = encode_state(state)
    command = c.RegisterNode(request_id="bug-1", time=5.0, node_id="e", address="h:1")
    outcome = apply(state, command)
    assert isinstance(outcome, Rejected) and outcome.code == "internal_error"
    assert isinstance(outcome.error, KeyError) and "KeyError" in outcome.message
    assert encode_state(state) == before
    assert "error" not in outcome.to_dict()  # never sent
    assert caplog.records == []  # core logs nothing itself

    with caplog.at_level("ERROR", logger="hacoord.replication.applying"):
        again = apply_logged(state, command)
    assert again.code == "internal_error" and encode_state(state) == before
    [record] = caplog.records
    assert "internal error applying" in record.getMessage() and record.exc_info is not None
    assert record.exc_info[0] is KeyError
