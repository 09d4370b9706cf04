"""The replicated state machine: batches, totality, restoring from a snapshot."""

from __future__ import annotations

import json

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.replication.statemachine import (
    ENTRY_SCHEMA,
    NewerEntry,
    StateMachine,
    decode_batch,
    encode_batch,
)


def machine() -> tuple[StateMachine, list[str], list[int]]:
    applied: list[str] = []
    restored: list[int] = []
    sm = StateMachine(lambda rid, outcome: applied.append(rid),
                      lambda _prepared: restored.append(1))
    return sm, applied, restored


def test_a_batch_applies_in_order_and_a_bad_item_is_only_a_rejection() -> None:
    sm, applied, _ = machine()
    good = c.encode(c.RegisterNode(request_id="a", node_id="n1", address="127.0.0.1:1"))
    bad = b'{"type":"RegisterNode","request_id":"b","node_id":5}'
    sm.apply_batch(encode_batch([good, bad]), _doApply=True)
    assert applied == ["a", "b"] and list(sm.state.nodes) == ["n1"] and sm.state.revision == 1
    sm.apply_batch(b"not json at all", _doApply=True)   # never raises
    assert sm.state.revision == 1
    assert len(decode_batch(b"{}")) == 1


def test_restore_replaces_the_state_and_says_so() -> None:
    sm, _, restored = machine()
    sm.apply_batch(encode_batch([c.encode(c.RegisterNode(request_id="a", node_id="live",
                                                         address="127.0.0.1:1"))]), _doApply=True)
    installed = ClusterState()
    apply(installed, c.RegisterNode(request_id="r", node_id="snap", address="127.0.0.1:2"))
    sm.restore(installed)
    assert list(sm.state.nodes) == ["snap"] and restored == [1]


def test_an_entry_carries_its_schema_and_a_newer_one_stops_the_member() -> None:
    sm, applied, _ = machine()
    node = c.encode(c.RegisterNode(request_id="a", node_id="n1", address="127.0.0.1:1"))
    assert encode_batch([node]) == b"[" + node + b"]"  # schema 1, as earlier releases write
    enveloped = json.dumps({"schema": ENTRY_SCHEMA, "commands": [json.loads(node)]}).encode()
    sm.apply_batch(enveloped, _doApply=True)  # the form later schemas will write
    assert applied == ["a"] and sm.state.revision == 1
    newer = json.dumps({"schema": ENTRY_SCHEMA + 1, "commands": []}).encode()
    with pytest.raises(NewerEntry, match="newer hacoord"):
        sm.apply_batch(newer, _doApply=True)
    assert sm.state.revision == 1 and applied == ["a"]
    unknown = decode_batch(json.dumps({"schema": "x", "commands": []}).encode())
    assert isinstance(unknown[0], c.DecodeError)
