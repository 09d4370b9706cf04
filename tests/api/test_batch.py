"""``POST /v1/batch/nodes`` (``Client.node_add_batch``): many nodes in one request, one result
each, every node registered once across retries, and bad input refused whole."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hacoord.client import Client, Conflict, InvalidArgument, NodeInfo
from hacoord.protocol.requests import MAX_BATCH
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3) as made:
        yield made


def client(cluster: InProcessCluster, endpoints: list[str] | None = None) -> Client:
    return Client(endpoints or cluster.urls, transport=cluster.transport)


def nodes(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"id": f"n{k}", "address": f"10.0.{k // 200}.{k % 200 + 1}:9000", "zone": f"z{k % 3}"}
            for k in range(start, start + count)]


def test_many_nodes_in_one_request_each_with_its_result(cluster: InProcessCluster) -> None:
    with client(cluster) as api:
        api.node_add("n1", "10.9.9.9:1")
        before = api.node_list()
        results = api.node_add_batch(nodes(50), request_id="bulk-1")
        assert len(results) == 50
        assert isinstance(results[1], Conflict) and results[1].code == "already_exists"
        assert all(isinstance(r, NodeInfo) for i, r in enumerate(results) if i != 1)
        assert [r.id for r in results if isinstance(r, NodeInfo)][:3] == ["n0", "n2", "n3"]
        listed = api.node_list(consistent=True)
        assert len(listed) == len(before) + 49
        again = api.node_add_batch(nodes(50), request_id="bulk-1")  # a retry: recalled
        assert [type(r) for r in again] == [type(r) for r in results]
        assert len(api.node_list(consistent=True)) == len(listed)


def test_through_a_follower(cluster: InProcessCluster) -> None:
    with client(cluster, [cluster.url("m2")]) as api:
        results = api.node_add_batch(nodes(20, start=100))
    assert [r.id for r in results if isinstance(r, NodeInfo)] == [f"n{k}" for k in range(100, 120)]
    assert len(cluster.state("m1").nodes) == 20
    assert cluster.hits("m1", "POST")


@pytest.mark.parametrize("body", [
    {"nodes": []},
    {"nodes": [{"id": "bad id", "address": "10.0.0.1:1"}]},
    {"nodes": [{"id": f"n{k}", "address": "10.0.0.1:1"} for k in range(MAX_BATCH + 1)]},
    {"nodes": [{"id": "n1", "address": "10.0.0.1:1", "extra": 1}]},
])
def test_bad_input_is_refused_whole_and_changes_nothing(cluster: InProcessCluster,
                                                        body: dict[str, object]) -> None:
    with httpx.Client(transport=cluster.transport, base_url=cluster.url("m1"),
                      timeout=10) as http:
        revision = http.get("/v1/status").json()["revision"]
        answer = http.post("/v1/batch/nodes", json=body)
        assert answer.status_code in (400, 413, 422) and "code" in answer.json()
        assert http.get("/v1/status").json()["revision"] == revision
    with client(cluster) as api, pytest.raises(InvalidArgument):
        api.node_add_batch([{"id": "x", "address": "nope"}])
