"""The client: routing, leader following, retries with one request id, deadlines, typed errors.

Most tests script the members with ``httpx.MockTransport``; the rest run the client against the
real app in process (``hacoord.testing.inprocess``).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import hacoord
from hacoord.client import (
    DEFAULT_ENDPOINTS,
    ApiError,
    Client,
    Conflict,
    HacoordError,
    InvalidArgument,
    NotFound,
    NotLeader,
    ProtocolError,
    ServerError,
    ServiceUnavailable,
    UnavailableError,
    WrongCluster,
    parse_endpoints,
)
from hacoord.testing.inprocess import InProcessCluster

A, B, C = "http://a.test", "http://b.test", "http://c.test"
NODE = {"id": "n1", "address": "10.0.0.1:9000", "zone": "default", "capacity": 1.0, "status": "up",
        "tags": {}, "metrics": {}, "registered_at": 1.0, "updated_at": 1.0}


def error(status: int, code: str, message: str = "nope", **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, **extra})


def status_body(member: str, role: str, leader: str | None, revision: int = 0) -> dict:
    return {"revision": revision, "leader": leader,
            "member": {"member_id": member, "role": role, "term": 2, "leader_id": leader, "commit_index": 7,
                       "applied_index": 7, "revision": revision, "ready": True, "has_quorum": True},
            "members": {m: {"api_url": url, "raft_address": f"x:{i}"}
                        for i, (m, url) in enumerate((("m1", A), ("m2", B), ("m3", C)), 1)}}


class Script:
    """A MockTransport handler that records requests and answers from a per-host function."""

    def __init__(self, **by_host: Callable[[httpx.Request], httpx.Response]) -> None:
        self.by_host = by_host
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.by_host[request.url.host.split(".")[0]](request)

    def client(self, endpoints: list[str] | None = None, **kw: float) -> Client:
        kw.setdefault("deadline", 2.0)
        return Client(endpoints or [A, B, C], transport=httpx.MockTransport(self), **kw)

    def hosts(self) -> list[str]:
        return [r.url.host.split(".")[0] for r in self.requests]

    def request_ids(self) -> set[str | None]:
        return {r.headers.get("x-request-id") for r in self.requests if r.url.path != "/v1/status"}


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"revision": 5, "node": NODE})


# --- configuration ----------------------------------------------------------------------------

def test_endpoints_from_argument_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_endpoints("h1:7401, http://h2:7402/ ,h1:7401") == ["https://h1:7401", "http://h2:7402"]
    assert Client(["https://x:1"]).endpoints == ("https://x:1",)
    monkeypatch.setenv("HACOORD_ENDPOINTS", "e1:1,e2:2")
    assert Client().endpoints == ("https://e1:1", "https://e2:2")
    monkeypatch.delenv("HACOORD_ENDPOINTS")
    assert Client().endpoints == DEFAULT_ENDPOINTS
    for bad in ("", " , ", "ftp://x:1", "http://"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)
    with pytest.raises(ValueError):
        Client([A], deadline=0)


def test_top_level_exports() -> None:
    assert hacoord.Client is Client
    assert hacoord.NotFound is NotFound and hacoord.UnavailableError is UnavailableError
    assert issubclass(NotLeader, ServiceUnavailable) and issubclass(ServiceUnavailable, ApiError)
    assert issubclass(Conflict, ApiError) and issubclass(UnavailableError, HacoordError)


def test_api_errors_survive_pickling() -> None:
    original = NotLeader("not_leader", "m1 does not lead", 503, leader="m2", endpoint=A)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is NotLeader and str(copy) == "m1 does not lead"
    assert (copy.code, copy.status, copy.leader, copy.endpoint) == ("not_leader", 503, "m2", A)


def test_client_does_not_import_the_coordinator() -> None:
    code = ("import sys, hacoord.client; bad = sorted(m for m in sys.modules if m.startswith("
            "('hacoord.server', 'hacoord.replication', 'hacoord.core', 'pysyncobj', 'fastapi'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- routing and leader following -------------------------------------------------------------

def test_write_follows_not_leader_hint_and_remembers_the_leader() -> None:
    def a(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json=status_body("m1", "follower", "m2"))
        return error(503, "not_leader", "m1 does not lead", leader="m2")

    script = Script(a=a, b=created, c=refuse)
    client = script.client()
    result = client.node_add("n1", "10.0.0.1:9000")
    assert result.revision == 5 and result.node is not None and result.node.id == "n1"
    assert script.hosts() == ["a", "a", "b"]  # write, status (to learn m2's URL), write again
    assert len(script.request_ids()) == 1 and result.request_id in script.request_ids()
    assert client.leader == "m2"

    script.requests.clear()
    client.node_add("n2", "10.0.0.2:9000")
    assert script.hosts() == ["b"]


def test_a_leader_url_this_client_cannot_reach_is_not_followed_for_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster may name its members by names only its own network resolves (Compose,
    Kubernetes): a client outside then keeps sending to the member it reaches, which forwards."""
    hidden = "http://d.test"  # m2 as the cluster names it; refused from here

    def a(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            body = status_body("m1", "follower", "m2")
            body["members"]["m2"]["api_url"] = hidden
            return httpx.Response(200, json=body)
        return httpx.Response(201, json={"revision": 5, "node": NODE},
                              headers={"X-Hacoord-Leader": "m2"})  # forwarded to m2

    script = Script(a=a, d=refuse)
    client = script.client([A])
    client.node_add("n1", "10.0.0.1:9000")  # learns that m2 leads, at d
    assert script.hosts() == ["a", "a"]  # the write, then the status that names m2's URL
    script.requests.clear()
    client.node_add("n2", "10.0.0.2:9000")
    assert script.hosts() == ["d", "a"]  # d refused: back to a, which forwards
    script.requests.clear()
    client.node_add("n3", "10.0.0.3:9000")
    client.node_add("n4", "10.0.0.4:9000")
    assert script.hosts() == ["a", "a"]  # d is not tried again for a while
    monkeypatch.setattr("hacoord.client.calls.UNREACHABLE_FOR", 0.0)
    script.requests.clear()
    client.node_add("n5", "10.0.0.5:9000")  # learns d again once the while is over
    client.node_add("n6", "10.0.0.6:9000")
    assert script.hosts() == ["a", "d", "a"]


def test_status_teaches_the_leader_so_writes_go_straight_there() -> None:
    script = Script(a=lambda r: httpx.Response(200, json=status_body("m1", "follower", "m3")),
                    b=refuse,
                    c=lambda r: httpx.Response(200, json=status_body("m3", "leader", "m3", 4))
                    if r.url.path == "/v1/status" else created(r))
    client = script.client()
    status = client.status()
    assert status.leader == "m3" and status.revision == 4
    m2 = next(m for m in status.members if m.endpoint == B)
    assert not m2.reachable and m2.member_id == "m2" and "ConnectError" in (m2.error or "")
    assert [m.member_id for m in status.reachable] == ["m1", "m3"]
    assert status.healthy  # a leader, and 2 of 3 members ready
    script.requests.clear()
    client.node_add("n1", "10.0.0.1:9000")
    assert script.hosts() == ["c"]


def test_reads_stick_to_the_last_endpoint_that_answered() -> None:
    listing = httpx.Response(200, json={"revision": 3, "nodes": [NODE]})
    script = Script(a=refuse, b=lambda r: listing, c=lambda r: listing)
    client = script.client()
    assert [n.id for n in client.node_list()] == ["n1"]
    assert [n.id for n in client.node_list()] == ["n1"]
    assert script.hosts() == ["a", "b", "b"]


def test_consistent_read_asks_for_it() -> None:
    script = Script(a=lambda r: httpx.Response(200, json={"revision": 3, "nodes": []}))
    script.client([A]).node_list(consistent=True)
    assert script.requests[0].url.params["consistent"] == "true"
    assert "x-request-id" not in script.requests[0].headers


# --- retries: same request id, bounded by the deadline ----------------------------------------

def test_503_is_retried_with_the_same_request_id() -> None:
    answers = iter([error(503, "no_leader"), error(504, "timeout"), httpx.Response(201, json={"revision": 9,
                                                                                            "node": NODE})])
    script = Script(a=lambda r: next(answers))
    result = script.client([A]).node_add("n1", "10.0.0.1:9000")
    assert result.revision == 9
    assert len(script.requests) == 3
    assert script.request_ids() == {result.request_id}
    assert len(result.request_id) == 32


def test_connection_errors_rotate_endpoints_with_the_same_request_id() -> None:
    script = Script(a=refuse, b=refuse, c=lambda r: httpx.Response(200, json={"revision": 2, "name": "r"}))
    result = script.client().resource_delete("r")
    assert script.hosts() == ["a", "b", "c"]
    assert script.request_ids() == {result.request_id}
    assert all(r.method == "DELETE" and r.url.path == "/v1/resources/r" for r in script.requests)


def test_timeouts_are_retried() -> None:
    calls = []

    def slow_then_ok(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("read timed out", request=request)
        return httpx.Response(200, json={"revision": 1, "node": NODE})

    script = Script(a=slow_then_ok)
    result = script.client([A]).node_set_state("n1", status="down", tags={"rack": None})
    assert json.loads(calls[1].content) == {"status": "down", "tags": {"rack": None}}
    assert calls[0].headers["x-request-id"] == calls[1].headers["x-request-id"] == result.request_id


def test_caller_chosen_request_id_is_sent() -> None:
    script = Script(a=created)
    script.client([A]).node_add("n1", "10.0.0.1:9000", request_id="my-id")
    assert script.request_ids() == {"my-id"}


class FakeTime:
    """``time.monotonic`` and ``time.sleep`` for the client and tenacity: only sleeping moves
    the clock, so what a call spends is its backoff, counted exactly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_gives_up_with_unavailable_error_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    script = Script(a=lambda r: error(503, "no_leader", "no leader is elected"), b=refuse)
    client = script.client([A, B], deadline=0.3, timeout=5.0)
    started = clock.now
    with pytest.raises(UnavailableError) as caught:
        client.node_add("n1", "10.0.0.1:9000")
    # It retried with backoff while the deadline allowed and gave up before overrunning it.
    assert clock.slept and clock.now - started < 0.3, clock.slept
    assert caught.value.attempts == len(script.requests) >= 2
    assert isinstance(caught.value.cause, httpx.ConnectError | ServiceUnavailable)
    assert len(script.request_ids()) == 1
    assert "cluster unavailable" in str(caught.value)
    # no attempt may outlive the deadline
    assert all(r.extensions["timeout"]["read"] <= 0.3 for r in script.requests)


def test_unreachable_cluster_reports_the_connection_error() -> None:
    script = Script(a=refuse)
    with pytest.raises(UnavailableError) as caught:
        script.client([A], deadline=0.2).routing()
    assert isinstance(caught.value.cause, httpx.ConnectError)
    assert "ConnectError" in str(caught.value) and A in str(caught.value)
    with pytest.raises(UnavailableError):
        script.client([A], deadline=0.2).status()


# --- typed errors, never retried --------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "invalid_argument", InvalidArgument),
    (404, "not_found", NotFound),
    (409, "already_exists", Conflict),
    (409, "node_not_empty", Conflict),
    (409, "not_enough_nodes", Conflict),
    (409, "stale_plan", Conflict),
    (405, "method_not_allowed", ApiError),
    (500, "internal_error", ServerError),
])
def test_error_answers_raise_typed_errors_without_retry(status: int, code: str, cls: type) -> None:
    script = Script(a=lambda r: error(status, code, "the message"), b=created)
    with pytest.raises(cls) as caught:
        script.client().node_remove("n1", force=True)
    assert type(caught.value) is cls
    assert (caught.value.code, caught.value.message, caught.value.status) == (code, "the message", status)
    assert caught.value.endpoint == A
    assert len(script.requests) == 1
    assert script.requests[0].url.params["force"] == "true"


def test_answers_that_are_not_the_api_raise_protocol_error() -> None:
    script = Script(a=lambda r: httpx.Response(200, text="<html>hi</html>"))
    with pytest.raises(ProtocolError):
        script.client([A]).node_list()
    script = Script(a=lambda r: httpx.Response(200, json={"revision": 1}))
    with pytest.raises(ProtocolError):
        script.client([A]).node_list()
    script = Script(a=lambda r: httpx.Response(404, text="not here"))
    with pytest.raises(NotFound) as caught:
        script.client([A]).node_show("n1")
    assert caught.value.code == "http_404"


# --- against the real app, in process ---------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m2") as running:
        yield running


def test_typed_results_from_the_app(cluster: InProcessCluster) -> None:
    with Client(cluster.urls, transport=cluster.transport) as client:
        for i in range(1, 4):
            client.node_add(f"n{i}", f"10.0.0.{i}:9000", zone=f"z{i}", capacity=2, tags={"k": "v"})
        made = client.resource_create("orders", partitions=3, replicas=2)
        assert made.resource is not None and made.resource.replication_factor == 2
        table = client.routing("orders", consistent=True)
        assert table.revision == made.revision == 4
        assert [p.partition for p in table.partitions] == [0, 1, 2]
        route = table.route("orders", 0)
        assert route.leader == route.replicas[0] and table.leader_address("orders", 0) is not None
        outsider, = [n for n in ("n1", "n2", "n3") if n not in route.replicas]
        moved = client.partition_move("orders", 0, route.replicas[1], outsider)
        assert moved.partition is not None and moved.partition.epoch == route.epoch + 1
        node = client.node_show(outsider, consistent=True)
        assert ("orders", 0) in {(r.resource, r.partition) for r in node.replicas}
        assert node.tags == {"k": "v"} and node.capacity == 2.0
        assert [r.name for r in client.resource_list(consistent=True)] == ["orders"]
        assert client.node_set_state("n1", metrics={"cpu": 0.25}).node.metrics == {"cpu": 0.25}
        with pytest.raises(Conflict) as caught:
            client.node_remove("n1")
        assert caught.value.code == "node_not_empty"
        assert client.node_remove("n1", force=True).data["node_id"] == "n1"
        client.resource_delete("orders")
        with pytest.raises(NotFound):
            client.routing("orders", consistent=True)
        assert {n.id for n in client.node_list(consistent=True)} == {"n2", "n3"}


def test_follows_the_leader_through_a_stale_follower(cluster: InProcessCluster) -> None:
    cluster.replicators["m1"].set_leader("m3")  # m1 forwards to m3, which knows m2 leads
    with Client(cluster.urls, transport=cluster.transport) as client:
        client.node_add("n1", "10.0.0.1:9000")
        assert client.leader == "m2"
        assert "n1" in cluster.state("m2").nodes
        cluster.received.clear()
        client.node_add("n2", "10.0.0.2:9000")
        assert [m for m, _ in cluster.received] == ["m2"]


def test_rides_over_a_member_that_is_down(cluster: InProcessCluster) -> None:
    cluster.down.add("m1")
    with Client(cluster.urls, transport=cluster.transport) as client:
        client.node_add("n1", "10.0.0.1:9000")
        status = client.status()
        assert status.leader == "m2"
        assert [(m.member_id, m.reachable) for m in status.members] == [("m1", False), ("m2", True),
                                                                        ("m3", True)]


def test_a_write_whose_answer_is_lost_is_applied_once(cluster: InProcessCluster) -> None:
    lost = []

    class LoseFirstAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = cluster.transport.handle_request(request)
            if request.method == "POST" and not lost:
                lost.append(response)
                raise httpx.ReadTimeout("answer lost", request=request)
            return response

    with Client([cluster.url("m2")], transport=LoseFirstAnswer()) as client:
        result = client.node_add("n1", "10.0.0.1:9000")
    assert lost and lost[0].status_code == 201
    assert result.revision == lost[0].json()["revision"] == 1
    assert cluster.state("m2").revision == 1
    posts = cluster.hits("m2", "POST")
    assert len(posts) == 2 and posts[0].headers["x-request-id"] == posts[1].headers["x-request-id"]


def test_no_leader_ends_in_unavailable_error(cluster: InProcessCluster) -> None:
    cluster.set_leader(None)
    with Client(cluster.urls, transport=cluster.transport, deadline=0.3) as client:
        assert client.node_list() == []  # plain reads need no leader
        with pytest.raises(UnavailableError) as caught:
            client.node_add("n1", "10.0.0.1:9000")
    assert isinstance(caught.value.cause, ServiceUnavailable) and caught.value.cause.code == "no_leader"


def test_request_status_says_whether_a_write_landed() -> None:
    with InProcessCluster(3, leader="m1") as cluster, Client(
            cluster.urls, transport=cluster.transport, deadline=5.0) as client:
        written = client.node_add("n1", "127.0.0.1:9001", request_id="rid-landed")
        assert client.request_status("rid-landed") == written.revision
        assert client.request_status("rid-never-sent") is None
        with pytest.raises(Conflict):
            client.node_add("n1", "127.0.0.1:9001", request_id="rid-refused")
        assert client.request_status("rid-refused", consistent=False) is None  # refusals leave no trace


# --- cluster identity -------------------------------------------------------------------------

def named_answer(cluster: str, status: int = 201) -> Callable[[httpx.Request], httpx.Response]:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"revision": 5, "node": NODE, "nodes": [NODE]},
                              headers={"x-hacoord-cluster": cluster})
    return answer


def test_a_given_cluster_id_is_held_from_the_first_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(a=named_answer("theirs", 200), b=named_answer("ours", 200))
    assert len(script.client(endpoints=[A, B], cluster_id="ours").node_list()) == 1
    assert script.hosts() == ["a", "b"]
    monkeypatch.setenv("HACOORD_CLUSTER_ID", "ours")
    assert script.client(endpoints=[A]).cluster_id == "ours"


def test_without_a_cluster_id_any_member_is_used_and_nothing_is_learned() -> None:
    script = Script(a=named_answer("stray", 200), b=named_answer("ours"))
    client = script.client(endpoints=[A, B])
    assert len(client.node_list()) == 1
    client.node_add("n1", "10.0.0.1:9000")
    assert client.cluster_id is None


def test_a_client_holding_an_id_refuses_a_cluster_of_others_entirely() -> None:
    script = Script(a=named_answer("theirs", 200), b=named_answer("theirs", 200))
    with pytest.raises(UnavailableError) as caught:
        script.client(endpoints=[A, B], cluster_id="ours").node_list()
    assert isinstance(caught.value.cause, WrongCluster) and "'theirs'" in str(caught.value.cause)
