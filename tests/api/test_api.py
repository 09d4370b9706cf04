"""The HTTP API in process: every route, the error shape, forwarding to the leader, consistent reads.

The apps are ``create_app(MemoryReplicator(...))`` reached through ``httpx.ASGITransport`` (see
``hacoord.testing.inprocess``); ``api`` is a one-member cluster, ``cluster``/``http`` three members led by m2.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with InProcessCluster(1) as single, httpx.Client(transport=single.transport,
                                                      base_url=single.url("m1")) as client:
        yield client


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m2") as running:
        yield running


@pytest.fixture
def http(cluster: InProcessCluster) -> Iterator[httpx.Client]:
    with httpx.Client(transport=cluster.transport) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"code", "message", "leader"}
    return body


def add_nodes(api: httpx.Client, count: int, base: str = "") -> None:
    for i in range(1, count + 1):
        response = api.post(f"{base}/v1/nodes", json={"id": f"n{i}", "address": f"10.0.0.{i}:9000",
                                                       "zone": f"z{i % 3}"})
        assert response.status_code == 201, response.text


# --- health and status ------------------------------------------------------------------------

def test_livez_and_readyz(api: httpx.Client) -> None:
    assert api.get("/livez").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["member"]["member_id"] == "m1"


def test_status_names_member_leader_and_members(api: httpx.Client) -> None:
    response = api.get("/v1/status")
    body = response.json()
    assert response.status_code == 200
    assert body["leader"] == "m1"
    assert body["member"]["role"] == "leader"
    assert set(body["member"]) >= {"term", "commit_index", "applied_index", "revision"}
    assert "m1" in body["members"] and "api_url" in body["members"]["m1"]
    assert response.headers["x-hacoord-revision"] == str(body["revision"])
    assert "loop_lag" not in body  # only when asked for


def test_status_reports_the_event_loop_s_lag_when_asked(api: httpx.Client) -> None:
    lag = api.get("/v1/status", params={"lag": "true"}).json()["loop_lag"]
    assert lag["noted_over"] == 0.02 and lag["kept"] == 10_000
    assert lag["worst"] >= 0 and lag["stalls"] >= 0
    assert all(len(sample) == 3 and sample[1] > 0.02 for sample in lag["samples"])
    later = api.get("/v1/status", params={"lag": "true", "lag_since": 4e9}).json()["loop_lag"]
    assert later["samples"] == []  # nothing after that time
    refused = api.get("/v1/status", params={"lag": "true", "lag_since": -1})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_argument"


# --- nodes ------------------------------------------------------------------------------------

def test_node_lifecycle(api: httpx.Client) -> None:
    created = api.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:9000", "zone": "a",
                                          "capacity": 2, "tags": {"rack": "r7"}})
    assert created.status_code == 201
    assert created.json()["revision"] == 1
    assert created.json()["node"]["tags"] == {"rack": "r7"}
    assert created.headers["x-hacoord-revision"] == "1"

    listed = api.get("/v1/nodes").json()
    assert listed["revision"] == 1
    assert [n["id"] for n in listed["nodes"]] == ["n1"]

    shown = api.get("/v1/nodes/n1").json()
    assert shown["node"]["capacity"] == 2.0 and shown["node"]["replicas"] == []

    patched = api.patch("/v1/nodes/n1", json={"status": "down", "tags": {"rack": None, "os": "linux"},
                                             "metrics": {"cpu": 0.5}})
    assert patched.status_code == 200, patched.text
    node = patched.json()["node"]
    assert (node["status"], node["tags"], node["metrics"]) == ("down", {"os": "linux"}, {"cpu": 0.5})

    removed = api.delete("/v1/nodes/n1")
    assert removed.status_code == 200
    assert removed.json()["node_id"] == "n1"
    assert api.get("/v1/nodes").json()["nodes"] == []


def test_node_errors_have_one_shape(api: httpx.Client) -> None:
    add_nodes(api, 1)
    assert_error(api.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.9:9000"}), 409, "already_exists")
    assert_error(api.post("/v1/nodes", json={"id": "-bad", "address": "a:1"}), 400, "invalid_argument")
    assert_error(api.post("/v1/nodes", json={"id": "n2", "address": "a:1", "colour": "red"}), 400,
                 "invalid_argument")
    assert_error(api.post("/v1/nodes", json={"id": "n2", "address": "no-port"}), 400, "invalid_argument")
    assert_error(api.post("/v1/nodes", content=b"{not json", headers={"content-type": "application/json"}),
                 400, "invalid_argument")
    assert_error(api.get("/v1/nodes/n9"), 404, "not_found")
    assert_error(api.patch("/v1/nodes/n9", json={"status": "up"}), 404, "not_found")
    assert_error(api.patch("/v1/nodes/n1", json={"status": "sideways"}), 400, "invalid_argument")
    assert_error(api.delete("/v1/nodes/n9"), 404, "not_found")
    assert_error(api.get("/v1/nowhere"), 404, "not_found")
    assert_error(api.put("/v1/nodes"), 405, "method_not_allowed")


def test_remove_node_holding_replicas_needs_force(api: httpx.Client) -> None:
    add_nodes(api, 3)
    assert api.post("/v1/resources", json={"name": "r", "partitions": 4, "replicas": 2}).status_code == 201
    assert_error(api.delete("/v1/nodes/n1"), 409, "node_not_empty")
    forced = api.delete("/v1/nodes/n1", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    routes = api.get("/v1/routing").json()["resources"]["r"]["partitions"]
    assert all("n1" not in p["replicas"] and len(p["replicas"]) == 2 for p in routes)


def test_request_id_makes_a_write_apply_once(api: httpx.Client) -> None:
    body = {"id": "n1", "address": "10.0.0.1:9000"}
    first = api.post("/v1/nodes", json=body, headers={"X-Request-Id": "req-1"})
    again = api.post("/v1/nodes", json=body, headers={"X-Request-Id": "req-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert api.get("/v1/status").json()["revision"] == 1
    other = api.post("/v1/nodes", json=body, headers={"X-Request-Id": "req-2"})
    assert_error(other, 409, "already_exists")
    assert_error(api.post("/v1/nodes", json=body, headers={"X-Request-Id": "x" * 129}), 400,
                 "invalid_argument")


# --- resources and routing --------------------------------------------------------------------

def test_resource_lifecycle_and_routing(api: httpx.Client) -> None:
    assert_error(api.post("/v1/resources", json={"name": "r", "partitions": 2, "replicas": 3}), 409,
                 "not_enough_nodes")
    add_nodes(api, 3)
    created = api.post("/v1/resources", json={"name": "orders", "partitions": 4, "replicas": 3})
    assert created.status_code == 201, created.text
    assert created.json()["resource"] == {"name": "orders", "partitions": 4, "replication_factor": 3,
                                          "balance_metric": None}
    assert_error(api.post("/v1/resources", json={"name": "orders", "partitions": 1, "replicas": 1}), 409,
                 "already_exists")
    assert_error(api.post("/v1/resources", json={"name": "x", "partitions": 0, "replicas": 1}), 400,
                 "invalid_argument")

    listed = api.get("/v1/resources").json()["resources"]
    assert [(r["name"], r["partitions"], r["replication_factor"]) for r in listed] == [("orders", 4, 3)]

    table = api.get("/v1/routing", params={"resource": "orders"}).json()
    parts = table["resources"]["orders"]["partitions"]
    assert [p["partition"] for p in parts] == [0, 1, 2, 3]
    assert all(p["leader"] == p["replicas"][0] and p["epoch"] == 1 for p in parts)
    assert set(table["addresses"]) == {"n1", "n2", "n3"}
    assert table["revision"] == 4
    assert api.get("/v1/routing").json()["resources"].keys() == {"orders"}
    assert_error(api.get("/v1/routing", params={"resource": "nope"}), 404, "not_found")

    assert api.delete("/v1/resources/orders").json()["name"] == "orders"
    assert_error(api.delete("/v1/resources/orders"), 404, "not_found")
    assert api.get("/v1/routing").json()["resources"] == {}


def test_partition_move(api: httpx.Client) -> None:
    add_nodes(api, 3)
    api.post("/v1/resources", json={"name": "r", "partitions": 2, "replicas": 2})
    part = api.get("/v1/routing").json()["resources"]["r"]["partitions"][0]
    holder, = [n for n in part["replicas"] if n != part["leader"]]
    outsider, = [n for n in ("n1", "n2", "n3") if n not in part["replicas"]]

    moved = api.post("/v1/resources/r/partitions/0/move", json={"from": holder, "to": outsider})
    assert moved.status_code == 200, moved.text
    result = moved.json()["partition"]
    assert outsider in result["replicas"] and holder not in result["replicas"]
    assert result["epoch"] == part["epoch"] + 1

    assert_error(api.post("/v1/resources/r/partitions/0/move", json={"from": outsider, "to": outsider}),
                 409, "conflict")  # it holds one now
    assert_error(api.post("/v1/resources/r/partitions/0/move", json={"from": holder, "to": outsider}),
                 409, "conflict")  # the same move again: the holder no longer holds one
    assert_error(api.post("/v1/resources/r/partitions/9/move", json={"from": "n1", "to": "n2"}), 404,
                 "not_found")
    assert_error(api.post("/v1/resources/zz/partitions/0/move", json={"from": "n1", "to": "n2"}), 404,
                 "not_found")
    assert_error(api.post("/v1/resources/r/partitions/0/move", json={"from": "n1"}), 400, "invalid_argument")


def test_node_down_moves_leadership_and_bumps_epoch(api: httpx.Client) -> None:
    add_nodes(api, 2)
    api.post("/v1/resources", json={"name": "r", "partitions": 1, "replicas": 2})
    before = api.get("/v1/routing").json()["resources"]["r"]["partitions"][0]
    api.patch(f"/v1/nodes/{before['leader']}", json={"status": "down"})
    after = api.get("/v1/routing").json()["resources"]["r"]["partitions"][0]
    assert after["leader"] != before["leader"] and after["epoch"] == before["epoch"] + 1


def test_consistent_reads_on_the_leader(api: httpx.Client) -> None:
    add_nodes(api, 1)
    for path in ("/v1/nodes", "/v1/nodes/n1", "/v1/resources", "/v1/routing"):
        response = api.get(path, params={"consistent": "true"})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["revision"] == 1


# --- several members: forwarding, hints, no leader --------------------------------------------

def test_follower_forwards_writes_to_the_leader(cluster: InProcessCluster, http: httpx.Client) -> None:
    response = http.post(cluster.url("m1") + "/v1/nodes", json={"id": "n1", "address": "10.0.0.1:9000"},
                         headers={"X-Request-Id": "fwd-1"})
    assert response.status_code == 201, response.text
    assert response.headers["x-hacoord-revision"] == "1"
    assert "n1" in cluster.state("m2").nodes and "n1" not in cluster.state("m1").nodes
    forwarded, = cluster.hits("m2", "POST", forwarded=True)
    assert forwarded.headers["x-request-id"] == "fwd-1"
    assert forwarded.headers["x-hacoord-forwarded"] == "m1"


def test_every_write_route_is_forwarded(cluster: InProcessCluster, http: httpx.Client) -> None:
    base = cluster.url("m3")
    add_nodes(http, 3, base)
    assert http.patch(base + "/v1/nodes/n1", json={"zone": "zz"}).status_code == 200
    created = http.post(base + "/v1/resources", json={"name": "r", "partitions": 1, "replicas": 2})
    assert created.status_code == 201
    part = cluster.state("m2").resources["r"].partitions[0]
    outsider, = [n for n in ("n1", "n2", "n3") if n not in part.replicas]
    move = http.post(base + "/v1/resources/r/partitions/0/move",
                     json={"from": part.replicas[1], "to": outsider})
    assert move.status_code == 200, move.text
    assert http.delete(base + "/v1/resources/r").status_code == 200
    assert http.delete(base + "/v1/nodes/n3").status_code == 200
    assert cluster.state("m3").revision == 0
    assert cluster.state("m2").revision == 8
    assert len(cluster.hits("m2", forwarded=True)) == 8


def test_reads_are_local_unless_consistent(cluster: InProcessCluster, http: httpx.Client) -> None:
    add_nodes(http, 1, cluster.url("m2"))
    local = http.get(cluster.url("m1") + "/v1/nodes").json()
    assert (local["revision"], local["nodes"]) == (0, [])
    for path in ("/v1/nodes", "/v1/routing", "/v1/resources"):
        linear = http.get(cluster.url("m1") + path, params={"consistent": "true"})
        assert linear.status_code == 200, linear.text
        assert linear.json()["revision"] == 1
        assert linear.headers["x-hacoord-revision"] == "1"
    assert http.get(cluster.url("m1") + "/v1/nodes/n1", params={"consistent": "true"}).status_code == 200
    assert_error(http.get(cluster.url("m1") + "/v1/nodes/n1"), 404, "not_found")


def test_forwarded_request_to_a_non_leader_gets_a_hint(cluster: InProcessCluster, http: httpx.Client) -> None:
    response = http.post(cluster.url("m3") + "/v1/nodes", json={"id": "n1", "address": "10.0.0.1:9000"},
                         headers={"x-hacoord-forwarded": "m1"})
    assert assert_error(response, 503, "not_leader")["leader"] == "m2"


def test_stale_leader_belief_passes_the_hint_back(cluster: InProcessCluster, http: httpx.Client) -> None:
    cluster.replicators["m1"].set_leader("m3")  # m1 is behind: it still believes m3 leads
    response = http.post(cluster.url("m1") + "/v1/nodes", json={"id": "n1", "address": "10.0.0.1:9000"})
    assert assert_error(response, 503, "not_leader")["leader"] == "m2"


def test_no_leader_refuses_writes_and_consistent_reads_but_serves_reads(
        cluster: InProcessCluster, http: httpx.Client) -> None:
    cluster.set_leader(None)
    base = cluster.url("m1")
    assert_error(http.post(base + "/v1/nodes", json={"id": "n1", "address": "10.0.0.1:9000"}), 503,
                 "no_leader")
    assert_error(http.get(base + "/v1/nodes", params={"consistent": "true"}), 503, "no_leader")
    assert http.get(base + "/v1/nodes").status_code == 200


def test_unreachable_leader_is_unavailable(cluster: InProcessCluster, http: httpx.Client) -> None:
    cluster.down.add("m2")
    body = assert_error(http.post(cluster.url("m1") + "/v1/nodes", json={"id": "n1", "address": "a:1"}),
                        503, "unavailable")
    assert body["leader"] == "m2"
