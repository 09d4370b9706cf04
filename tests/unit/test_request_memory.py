"""Request-id memory: retries answered once, compact records, forgotten by leader time and count."""

from __future__ import annotations

import sys

from hacoord.core import ClusterState, apply, model
from hacoord.core import commands as c
from hacoord.core.codec import encode_state


def node(rid: str, node_id: str, t: float) -> c.RegisterNode:
    return c.RegisterNode(request_id=rid, node_id=node_id, address="127.0.0.1:1", time=t)


def test_retry_is_answered_with_the_original_revision_and_the_current_node() -> None:
    state = ClusterState()
    first = apply(state, node("r1", "n1", 10.0))
    apply(state, c.SetNodeState(request_id="r2", node_id="n1", tags={"k": "v"}, time=11.0))
    before = encode_state(state)
    again = apply(state, node("r1", "n1", 12.0))
    assert again.duplicate and again.revision == first.revision == 1
    assert again.result["node"]["tags"] == {"k": "v"}      # the node as it stands now
    assert encode_state(state) == before
    assert set(state.requests["r1"]) == {"revision", "time", "node"}  # no copy of the node kept


def test_request_ids_are_forgotten_after_the_retention_in_leader_time() -> None:
    state = ClusterState()
    apply(state, node("old", "a", 100.0))
    apply(state, node("recent", "b", 100.0 + model.REQUEST_RETENTION - 1))
    assert list(state.requests) == ["old", "recent"]
    apply(state, node("now", "c", 100.0 + model.REQUEST_RETENTION + 0.5))
    assert list(state.requests) == ["recent", "now"]
    # A retry of a forgotten write is applied afresh (here: refused, the node exists).
    assert apply(state, node("old", "a", 500.0)).code == "already_exists"


def test_at_most_request_history_ids_are_kept(monkeypatch) -> None:
    # (hacoord.core.apply the module, not the function of that name the package exports)
    monkeypatch.setattr(sys.modules["hacoord.core.apply"], "REQUEST_HISTORY", 3)
    state = ClusterState()
    for i in range(5):
        apply(state, node(f"r{i}", f"n{i}", 1.0))
    assert list(state.requests) == ["r2", "r3", "r4"]
