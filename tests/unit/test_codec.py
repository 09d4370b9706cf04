"""The state codec: exact round trips of reachable states, refusal of foreign ones.

Snapshot files (the codec plus Raft entries and a checksum) are tested in
``tests/adapter/test_snapshot.py``.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacoord.core import ClusterState, apply, commands, decode_state, digest, encode_state
from hacoord.core.codec import loads_in_pieces, loads_state
from hacoord.core.model import SCHEMA_VERSION
from hacoord.core.validate import validate
from tests.unit.scenarios import build_state, next_command

CODEC_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Seeded ``random.Random`` rather than ``st.randoms()``: a failure then shrinks in seconds, not minutes.
seeded = st.integers(0, 2**32 - 1).map(random.Random)
reachable_states = st.builds(build_state, seeded, st.integers(0, 90))


def _sample_state() -> ClusterState:
    state = build_state(random.Random(11), 150)
    assert state.nodes and state.resources and state.requests  # a state with something in it
    return state


@CODEC_SETTINGS
@given(reachable_states)
def test_encode_decode_round_trip(state):
    raw = encode_state(state)
    restored = decode_state(raw)
    assert encode_state(restored) == raw
    assert restored.to_dict() == state.to_dict()
    assert digest(restored) == digest(state)
    assert restored == state  # dataclass equality: every field, nested
    assert list(restored.requests) == list(state.requests)
    assert validate(restored) == []


@CODEC_SETTINGS
@given(reachable_states)
def test_to_dict_from_dict_round_trip(state):
    data = state.to_dict()
    assert data["schema"] == SCHEMA_VERSION
    # Through JSON too: the dict form is plain data.
    for copy_of in (copy.deepcopy(data), json.loads(json.dumps(data))):
        restored = ClusterState.from_dict(copy_of)
        assert restored.to_dict() == data
        assert restored == state


@CODEC_SETTINGS
@given(reachable_states, seeded)
def test_restored_state_behaves_like_the_original(state, rng):
    restored = decode_state(encode_state(state))
    used: list[str] = []
    for step in range(15):
        command = next_command(rng, state, 10_000 + step, 2e9 + step, used)
        first, second = apply(state, command), apply(restored, command)
        assert first.to_dict() == second.to_dict()
        assert digest(state) == digest(restored)


def test_restored_state_is_independent_of_the_original():
    state = _sample_state()
    before = encode_state(state)
    restored = ClusterState.from_dict(state.to_dict())
    node_id = next(iter(restored.nodes))
    assert apply(restored, commands.SetNodeState(request_id="x-1", node_id=node_id, tags={"k": "v"},
                                                 status="down")).ok
    res = next(iter(restored.resources.values()))
    res.partitions[0].replicas.append("mutated")
    assert encode_state(state) == before


@pytest.mark.parametrize("schema", [0, 2, 99, "1", None, "missing"])
def test_foreign_schema_is_refused(schema):
    data = _sample_state().to_dict()
    if schema == "missing":
        del data["schema"]
    else:
        data["schema"] = schema
    with pytest.raises(ValueError, match="schema"):
        ClusterState.from_dict(data)
    with pytest.raises(ValueError, match="schema"):
        decode_state(json.dumps(data).encode())


@pytest.mark.parametrize("raw", [
    b"", b"{", b"not json", b"[]", b"null", b'"state"', b"{}", b'{"schema":1}',
    b'{"schema":1,"revision":3,"last_time":0,"nodes":[{"id":"a"}],"resources":[],"requests":[]}',
    b'{"schema":1,"revision":3,"last_time":0,"nodes":[],"resources":[],"requests":[["only-id"]]}',
])
def test_malformed_snapshot_raises_value_error(raw):
    with pytest.raises(ValueError):
        decode_state(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 6), st.sampled_from([None, 0, 2]),
       st.none() | st.dictionaries(st.text(max_size=5), st.integers(0, 6), max_size=3))
def test_loads_in_pieces_reads_what_json_loads_reads(value: object, depth: int,
                                                       indent: int | None,
                                                       key_depths: dict[str, int] | None) -> None:
    text = json.dumps(value, indent=indent)
    assert loads_in_pieces(text, depth, key_depths) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(1, 6), st.data())
def test_loads_in_pieces_refuses_what_json_loads_refuses(value: object, depth: int,
                                                          data: st.DataObject) -> None:
    text = json.dumps(value)
    cut = data.draw(st.integers(0, len(text)))
    broken = text[:cut] + data.draw(st.sampled_from(["", ",", "]", "}", ":", "x", " 1"])) + \
        text[cut + data.draw(st.integers(0, 2)):]
    try:
        expected: object = json.loads(broken)
    except ValueError:
        with pytest.raises(ValueError):
            loads_in_pieces(broken, depth)
    else:
        assert loads_in_pieces(broken, depth) == expected


def test_a_state_decodes_in_pieces_as_a_whole() -> None:
    state = _sample_state()
    raw = encode_state(state).decode()
    assert ClusterState.from_dict(loads_in_pieces(raw)) == state
    assert ClusterState.from_dict(loads_state(raw)) == state
