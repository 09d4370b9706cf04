"""The replicated state machine: batches, totality, and snapshot reads that must not install."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.replication.snapshot import write_snapshot
from hacoord.replication.statemachine import StateMachine, decode_batch, encode_batch

RAFT = ((b"x", 9, 2), (b"y", 8, 2), [])


def machine() -> tuple[StateMachine, list[str], list[int]]:
    applied: list[str] = []
    restored: list[int] = []
    sm = StateMachine(lambda rid, outcome: applied.append(rid), lambda: restored.append(1))
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


def snapshot_file(tmp_path: Path) -> Path:
    state = ClusterState()
    apply(state, c.RegisterNode(request_id="r", node_id="snap", address="127.0.0.1:2"))
    path = tmp_path / "raft.snapshot"
    write_snapshot(path, state, RAFT)
    return path


def test_a_look_at_a_snapshot_does_not_replace_the_state(tmp_path: Path) -> None:
    sm, _, restored = machine()
    sm.apply_batch(encode_batch([c.encode(c.RegisterNode(request_id="a", node_id="live",
                                                         address="127.0.0.1:1"))]), _doApply=True)
    sm.install_gate = lambda: False
    raft = sm.read_snapshot(str(snapshot_file(tmp_path)))
    assert raft[0] == (b"x", 9, 2)
    assert list(sm.state.nodes) == ["live"] and restored == []


def test_an_install_replaces_the_state(tmp_path: Path) -> None:
    sm, _, restored = machine()
    sm.install_gate = lambda: True
    sm.read_snapshot(str(snapshot_file(tmp_path)))
    assert list(sm.state.nodes) == ["snap"] and restored == [1]


def test_an_unreadable_snapshot_is_recorded_not_swallowed(tmp_path: Path) -> None:
    sm, _, _ = machine()
    bad = tmp_path / "raft.snapshot"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError):
        sm.read_snapshot(str(bad))
    assert sm.load_error and "cannot load snapshot" in sm.load_error
