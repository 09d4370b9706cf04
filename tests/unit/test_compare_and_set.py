"""SetNodeState with expect_tags: a compare-and-set on node metadata."""

from __future__ import annotations

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.codec import encode_state


def state_with_node() -> ClusterState:
    state = ClusterState()
    apply(state, c.RegisterNode(request_id="r", node_id="reg", address="127.0.0.1:1"))
    return state


def cas(expected: str | None, new: str, rid: str) -> c.SetNodeState:
    return c.SetNodeState(request_id=rid, node_id="reg", tags={"v": new}, expect_tags={"v": expected})


def test_cas_applies_only_when_the_tag_matches() -> None:
    state = state_with_node()
    assert apply(state, cas(None, "1", "a")).ok            # absent -> 1
    before = encode_state(state)
    refused = apply(state, cas(None, "2", "b"))
    assert refused.code == "precondition_failed" and "'1'" in refused.message
    assert encode_state(state) == before                    # a refused cas changes nothing
    assert apply(state, cas("1", "2", "c")).ok
    assert state.nodes["reg"].tags == {"v": "2"}


def test_cas_retried_with_its_request_id_is_not_applied_twice() -> None:
    state = state_with_node()
    first = apply(state, cas(None, "1", "same"))
    again = apply(state, cas(None, "1", "same"))            # would now fail if re-evaluated
    assert again.ok and again.duplicate and again.revision == first.revision


def test_expect_tags_is_validated() -> None:
    state = state_with_node()
    bad = c.SetNodeState(request_id="x", node_id="reg", expect_tags={"v": 5})  # type: ignore[dict-item]
    assert apply(state, bad).code == "invalid_argument"
    wire = c.decode(c.encode(cas("1", "2", "w")))
    assert isinstance(wire, c.SetNodeState) and wire.expect_tags == {"v": "1"}
