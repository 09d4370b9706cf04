"""A request id names one request: used again with another method, path or body it is refused
(409 ``request_id_reused``) and changes nothing; the same request retried gets its first answer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hacoord.core import apply
from hacoord.core import commands as c
from hacoord.core.model import ClusterState
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with InProcessCluster(1) as single, httpx.Client(transport=single.transport,
                                                      base_url=single.url("m1")) as client:
        yield client


def test_a_retry_gets_the_first_answer_another_request_a_conflict(api: httpx.Client) -> None:
    q10 = {"id": "q10", "address": "127.0.0.1:1"}
    first = api.post("/v1/nodes", json=q10, headers={"x-request-id": "r1"})
    again = api.post("/v1/nodes", json=dict(reversed(q10.items())), headers={"x-request-id": "r1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["revision"] == again.json()["revision"]
    revision = first.json()["revision"]

    other_body = api.post("/v1/nodes", json={"id": "q11", "address": "127.0.0.1:1"},
                          headers={"x-request-id": "r1"})
    other_route = api.delete("/v1/resources/orders", headers={"x-request-id": "r1"})
    for refused in (other_body, other_route):
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "request_id_reused"
    nodes = api.get("/v1/nodes").json()
    assert nodes["revision"] == revision and [n["id"] for n in nodes["nodes"]] == ["q10"]


def test_apply_refuses_a_reused_id_with_another_fingerprint() -> None:
    state = ClusterState()
    first = c.RegisterNode(request_id="r", node_id="a", address="h:1", fingerprint="f1")
    assert apply(state, first).ok
    before = state.to_dict()
    same = apply(state, first)
    assert same.ok and same.duplicate
    other = apply(state, c.RegisterNode(request_id="r", node_id="b", address="h:1",
                                        fingerprint="f2"))
    assert not other.ok and other.code == "request_id_reused"
    unknown = apply(state, c.RegisterNode(request_id="r", node_id="b", address="h:1"))
    assert unknown.ok and unknown.duplicate  # the leader's own retries carry no fingerprint
    assert state.to_dict() == before
