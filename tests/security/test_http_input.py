"""Heavy or hostile HTTP input is refused at the edge, with the API's JSON error, and changes
nothing: oversized bodies and headers, too many long polls, write floods, values of the wrong
type or size, control characters in paths sent to a follower."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from hacoord.server.limits import HttpLimits
from hacoord.testing.inprocess import InProcessCluster

SMALL = HttpLimits(max_body=4096, max_headers=40, max_header_bytes=4096, max_watches=3,
                   max_watches_per_client=2, writes_per_client=5.0, write_burst=5)


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, limits=SMALL) as made:
        yield made


#: Five writes, then one every 100 s: what these tests count does not depend on how fast the
#: machine runs them.
SLOW = HttpLimits(writes_per_client=0.01, write_burst=5)


@pytest.fixture
def slow_cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, limits=SLOW) as made:
        yield made


def client(cluster: InProcessCluster, member: str = "m1") -> httpx.Client:
    return httpx.Client(transport=cluster.transport, base_url=cluster.url(member), timeout=10)


def revision(cluster: InProcessCluster) -> int:
    return cluster.state("m1").revision


def error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def test_a_body_over_the_limit_is_refused_unread(cluster: InProcessCluster) -> None:
    with client(cluster) as api:
        before = revision(cluster)
        huge = b'{"id": "n1", "address": "h:1", "tags": {"t": "' + b"x" * 50_000 + b'"}}'
        error(api.post("/v1/nodes", content=huge, headers={"content-type": "application/json"}),
              413, "request_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: found while reading
            yield b'{"id": "n1", "address": "h:1", "tags": {"t": "'
            for _ in range(100):
                yield b"y" * 1000
            yield b'"}}'

        error(api.post("/v1/nodes", content=chunks(), headers={"content-type": "application/json"}),
              413, "request_too_large")
        assert revision(cluster) == before


def test_too_many_or_too_large_headers(cluster: InProcessCluster) -> None:
    with client(cluster) as api:
        many = {f"x-h{k}": "v" for k in range(60)}
        error(api.get("/v1/nodes", headers=many), 431, "request_too_large")
        error(api.get("/v1/nodes", headers={"x-big": "v" * 5000}), 431, "request_too_large")


def test_long_polls_are_capped_per_client_and_per_member(cluster: InProcessCluster) -> None:
    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=cluster.apps["m2"], client=("10.0.0.1", 1))
        other = httpx.ASGITransport(app=cluster.apps["m2"], client=("10.0.0.2", 1))
        import asyncio

        auth = {"Authorization": f"Bearer {cluster.admin_token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://m2.test", headers=auth) as a, \
                httpx.AsyncClient(transport=other, base_url="http://m2.test", headers=auth) as b:
            polls = [asyncio.ensure_future(a.get("/v1/watch", params={"timeout": 2}))
                     for _ in range(2)]
            await asyncio.sleep(0.2)
            third_same = await a.get("/v1/watch", params={"timeout": 2})
            from_b = asyncio.ensure_future(b.get("/v1/watch", params={"timeout": 2}))
            await asyncio.sleep(0.2)
            over_member = await b.get("/v1/watch", params={"timeout": 2})
            done = await asyncio.gather(*polls, from_b)
            return [third_same.status_code, over_member.status_code,
                    int(third_same.headers.get("retry-after", 0)), *[r.status_code for r in done]]

    statuses = cluster.run(scenario)
    assert statuses[:3] == [429, 429, 1] and statuses[3:] == [200, 200, 200]


def test_a_write_flood_from_one_client_is_throttled(slow_cluster: InProcessCluster) -> None:
    cluster = slow_cluster
    with client(cluster) as api:
        answers = [api.post("/v1/nodes", json={"id": f"f{k}", "address": "h:1"}).status_code
                   for k in range(8)]
        assert answers[:5] == [201] * 5 and 429 in answers[5:]
        throttled = api.post("/v1/nodes", json={"id": "late", "address": "h:1"})
        body = error(throttled, 429, "too_many_requests")
        assert int(throttled.headers["retry-after"]) >= 1 and "writes/s" in body["message"]
        assert "late" not in cluster.state("m1").nodes
        assert api.get("/v1/nodes").status_code == 200  # reads are not throttled


@pytest.mark.parametrize(("body", "where"), [
    ({"name": "r", "partitions": True, "replicas": 1}, "partitions"),
    ({"name": "r", "partitions": "7", "replicas": 1}, "partitions"),
    ({"name": "r", "partitions": 7.5, "replicas": 1}, "partitions"),  # 7.0 is an integer
    ({"name": "r", "partitions": 100_001, "replicas": 1}, "partitions"),
    ({"name": "bad name", "partitions": 1, "replicas": 1}, "name"),
])
def test_values_of_another_type_or_size_are_refused(cluster: InProcessCluster, body: dict,
                                                    where: str) -> None:
    with client(cluster) as api:
        before = revision(cluster)
        message = error(api.post("/v1/resources", json=body), 400, "invalid_argument")["message"]
        assert where in message and revision(cluster) == before


@pytest.mark.parametrize("node", [
    {"id": "n", "address": "h:1", "tags": {"t": "x" * 257}},
    {"id": "n", "address": "h:1", "tags": {f"t{k}": "v" for k in range(65)}},
    {"id": "n", "address": "h:1", "tags": {"bad key!": "v"}},
    {"id": "n", "address": "h:1", "capacity": float("inf")},
    {"id": "n" * 64, "address": "h:1"},
])
def test_sizes_are_bounded_before_the_log(cluster: InProcessCluster, node: dict) -> None:
    with client(cluster) as api:
        before = revision(cluster)
        content = json.dumps(node).replace("Infinity", "1e999")  # JSON has no infinity
        response = api.post("/v1/nodes", content=content, headers={"content-type": "application/json"})
        error(response, 400, "invalid_argument")
        assert revision(cluster) == before


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/v1/resources/%01"),
    ("GET", "/v1/nodes/%0d%0a"),
    ("POST", "/v1/nodes/%00/session"),
    ("GET", "/v1/requests/%7f"),
    ("PATCH", "/v1/nodes/a%20b"),
])
def test_control_characters_in_a_path_sent_to_a_follower(cluster: InProcessCluster, method: str,
                                                         path: str) -> None:
    with client(cluster, "m2") as api:
        response = api.request(method, path, json={} if method in ("PATCH", "POST") else None)
        error(response, 400, "invalid_argument")
        assert cluster.hits("m1", forwarded=True) == []  # refused before any forward


def test_revisions_asked_for_are_bounded(cluster: InProcessCluster) -> None:
    with client(cluster) as api:
        error(api.get("/v1/watch", params={"since": 10**30}), 400, "invalid_argument")
        error(api.get("/v1/routing", params={"revision": 10**30}), 400, "invalid_argument")
        error(api.get("/v1/routing/diff", params={"from": 0, "to": 10**30}), 400, "invalid_argument")
        ahead = revision(cluster) + 1  # plausible, not reached yet: no such revision here
        error(api.get("/v1/routing", params={"revision": ahead}), 404, "not_found")
        error(api.get("/v1/routing/diff", params={"from": ahead}), 404, "not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/v1/nodes", {"GET", "POST"}),
    ("POST", "/v1/routing", {"GET"}),
    ("PUT", "/v1/resources/orders", {"PATCH", "DELETE"}),
])
def test_a_method_not_allowed_names_the_allowed_ones(cluster: InProcessCluster, method: str,
                                                     path: str, allowed: set[str]) -> None:
    with client(cluster) as api:
        answer = api.request(method, path)
        error(answer, 405, "method_not_allowed")
        assert set(answer.headers["allow"].replace(" ", "").split(",")) >= allowed


def test_a_client_cannot_spread_its_writes_over_made_up_clients(
        slow_cluster: InProcessCluster) -> None:
    """Forwarding headers without a member's seal are the sender's own: naming another client
    on each write, a client is still throttled as itself."""
    with client(slow_cluster) as api:
        answers = [api.post("/v1/nodes", json={"id": f"s{k}", "address": "h:1"}, headers={
            "x-hacoord-forwarded": "m2", "x-hacoord-client": f"10.9.9.{k}",
            "x-hacoord-forward-seal": "0" * 64}).status_code for k in range(8)]
    assert answers[:5] == [201] * 5 and 429 in answers[5:]


def test_a_throttled_forward_says_when_to_retry(slow_cluster: InProcessCluster) -> None:
    """The leader's 429 reaches a client that wrote through a follower with its Retry-After:
    the client used up its writes at the leader (m1), then writes through m2, whose own count
    for it is fresh."""
    cluster = slow_cluster
    with client(cluster, "m1") as direct:
        for k in range(8):
            if direct.post("/v1/nodes", json={"id": f"d{k}", "address": "h:1"}).status_code == 429:
                break
    with client(cluster, "m2") as via_follower:
        answer = via_follower.post("/v1/nodes", json={"id": "t1", "address": "h:1"})
    error(answer, 429, "too_many_requests")
    assert cluster.hits("m1", forwarded=True)  # the leader's answer, not the follower's
    assert int(answer.headers["retry-after"]) >= 1
