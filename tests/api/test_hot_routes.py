"""The hot routes (:mod:`hacoord.server.hot`) answer exactly as FastAPI does.

Two in-process clusters get the same requests in the same order: one serves the hot routes past
FastAPI's routing (the default), the other leaves everything to FastAPI
(``create_app(hot_routes=False)``). Every answer (status, JSON body, the API's headers), the
latency metrics and the final state must be equal; the hot cluster must really have served
most of them itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from hacoord.protocol.requests import NodeUpdate
from hacoord.server.auth import Permission, needs
from hacoord.server.hot import HotSpec, resolve
from hacoord.testing.inprocess import InProcessCluster

#: Headers whose values must agree (others, like the date, may not).
COMPARED = ("content-type", "x-hacoord-revision", "x-hacoord-members", "x-hacoord-leader",
            "www-authenticate", "retry-after")
ROLES = ("admin", "operator", "reader", "node-n1", "node-n2", "none", "bogus")


class Twin:
    """One in-process cluster led by m2 and the tokens of each role in it."""

    def __init__(self, hot: bool) -> None:
        # No liveness judgements or rebalancing: only the requests below change the state.
        self.cluster = InProcessCluster(3, leader="m2", hot_routes=hot, suspect_after=1e6,
                                        down_after=2e6, rebalance_interval=1e6)
        self.tokens: dict[str, str | None] = {}

    def start(self) -> None:
        self.cluster.__enter__()
        admin = self.cluster.admin_token
        self.tokens = {"admin": admin, "none": None, "bogus": "hc_" + "B" * 43}
        for name, role, node in (("op", "operator", None), ("rd", "reader", None),
                                 ("t1", "node", "n1"), ("t2", "node", "n2")):
            body = {"name": name, "role": role, **({"node": node} if node else {})}
            made = self.send("m2", "admin", "POST", "/v1/tokens", json_body=body)
            assert made.status_code == 201, made.text
            key = {"operator": "operator", "reader": "reader"}.get(role, f"node-{node}")
            self.tokens[key] = made.json()["secret"]
        for k in (1, 2):
            node = {"id": f"n{k}", "address": f"10.0.0.{k}:1"}
            assert self.send("m2", "admin", "POST", "/v1/nodes", json_body=node).status_code == 201
            started = self.send("m2", "admin", "POST", f"/v1/nodes/n{k}/session")
            assert started.status_code == 200, started.text

    def stop(self) -> None:
        self.cluster.__exit__(None, None, None)

    def send(self, member: str, role: str, method: str, path: str, *,
             json_body: Any = None, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        token = self.tokens.get(role)
        with httpx.Client(transport=self.cluster.transport_as(token),
                          base_url=self.cluster.url(member), timeout=10) as http:
            if json_body is not None:
                return http.request(method, path, json=json_body, headers=headers)
            return http.request(method, path, content=content, headers=headers)

    def served(self) -> int:
        return sum(app.state.hot_routes.served for app in self.cluster.apps.values()
                   if getattr(app.state, "hot_routes", None) is not None)


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[Twin, Twin]]:
    hot, cold = Twin(True), Twin(False)
    hot.start()
    cold.start()
    try:
        yield hot, cold
    finally:
        hot.stop()
        cold.stop()


def timeless(value: Any) -> Any:
    """``value`` with the times the members stamp (``*_at``, ``*_since``) taken out."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if not k.endswith(("_at", "_since"))}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def answer(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    try:
        body: Any = timeless(response.json())
    except ValueError:
        body = response.text
    headers = {name: response.headers[name] for name in COMPARED if name in response.headers}
    headers["cluster id"] = str("x-hacoord-cluster" in response.headers)  # each twin has its own
    return response.status_code, body, headers


def same(twins: tuple[Twin, Twin], member: str, role: str, method: str, path: str,
         **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
    """Send one request to both clusters; assert the answers are equal; return it."""
    hot, cold = twins
    got, expected = (answer(t.send(member, role, method, path, **kwargs)) for t in (hot, cold))
    assert got == expected, (member, role, method, path, kwargs)
    return got


PATCHES: list[dict[str, Any]] = [
    {"json_body": {"metrics": {"load": 1.5}}},
    {"json_body": {"admin": "cordoned", "admin_reason": "test"}},
    {"json_body": {"admin": "active"}},
    {"json_body": {"tags": {"rack": "r1"}, "expect_tags": {"rack": None}}},
    {"json_body": {"tags": {"rack": "r2"}, "expect_tags": {"rack": "r9"}}},  # a failed CAS
    {"json_body": {}},
    {"json_body": {"status": "sideways"}},
    {"json_body": {"bogus": 1}},
    {"json_body": {"capacity": 1}},
    {"json_body": [1, 2]},
    {"json_body": {"metrics": {"x": True}}},
    {"content": b"{", "headers": {"content-type": "application/json"}},
    {"content": b'{"metrics": {"a": NaN}}', "headers": {"content-type": "application/json"}},
    {"content": b'{"admin": "active"}', "headers": {"content-type": "text/plain"}},
    {"content": b'{"admin": "active"}'},
    {"content": b'{"admin": "active"}',
     "headers": {"content-type": "application/json; charset=utf-8"}},
    {"content": b"", "headers": {"content-type": "application/json"}},
    {"json_body": {"admin": "active"}, "headers": {"x-request-id": "r" * 129}},
    {"content": b"[" * 5000 + b"]" * 5000, "headers": {"content-type": "application/json"}},
]


def test_node_reads_answer_alike(twins: tuple[Twin, Twin]) -> None:
    for member in ("m2", "m1"):  # the leader, and a follower (a consistent read asks the leader)
        for role in ROLES:
            for query in ("", "?consistent=true", "?consistent=false", "?consistent=1",
                          "?consistent=yes", "?consistent=maybe", "?other=1",
                          "?consistent=true&consistent=false"):
                for node in ("n1", "n2", "nx", "-bad", "a" * 70, "n1/", "n1%0A", "n%C3%A9"):
                    same(twins, member, role, "GET", f"/v1/nodes/{node}{query}")
    assert twins[0].served() > 0


def test_node_updates_answer_alike_and_leave_the_same_state(twins: tuple[Twin, Twin]) -> None:
    before = twins[0].served()
    for member in ("m2", "m1"):
        for role in ROLES:
            for k, request in enumerate(PATCHES):
                headers = {"x-request-id": f"{member}-{role}-{k}", **request.get("headers", {})}
                for node in ("n1", "nx", "bad id", "n1%0A"):
                    same(twins, member, role, "PATCH", f"/v1/nodes/{node}",
                         **{**request, "headers": headers})
    # The same request id again, now with another body: refused the same way.
    same(twins, "m2", "admin", "PATCH", "/v1/nodes/n1", json_body={"admin": "draining"},
         headers={"x-request-id": "m2-admin-0"})
    hot, cold = twins
    assert hot.served() > before
    assert comparable(hot) == comparable(cold)


def comparable(twin: Twin) -> dict[str, Any]:
    """The leader's state without what each twin has of its own: tokens, cluster id, times, and
    the ids of the setup's requests (made up by the client)."""
    state = twin.cluster.state("m2").to_dict()
    requests = sorted(({k: v for k, v in record.items() if k != "time"}
                       for _, record in state["requests"]), key=lambda r: r["revision"])
    return timeless(state | {"tokens": None, "cluster_id": None, "last_time": None,
                             "requests": requests})


def test_heartbeats_and_metrics_reports_answer_alike(twins: tuple[Twin, Twin]) -> None:
    before = twins[0].served()
    bodies: list[Any] = [{"epoch": 1}, {"epoch": 2}, {"epoch": 0}, {"epoch": "1"}, {"epoch": 1.0},
                         {}, {"epoch": 1, "extra": 1}, None]
    for member in ("m2", "m1"):
        for role in ROLES:
            for node in ("n1", "n2", "nx", "n1%0A"):
                for body in bodies:
                    same(twins, member, role, "POST", f"/v1/nodes/{node}/heartbeat",
                         json_body=body)
                    report = None if body is None else {**body, "metrics": {"q": 3}}
                    same(twins, member, role, "POST", f"/v1/nodes/{node}/metrics",
                         json_body=report, headers={"x-request-id": f"{member}{role}{node}{body}"})
    assert twins[0].served() > before


def test_hot_requests_are_counted_in_the_latency_metrics_alike(twins: tuple[Twin, Twin]) -> None:
    """Every request so far was counted by route template, method and status, the same on both
    clusters."""
    def counts(twin: Twin) -> dict[str, float]:
        text = twin.send("m2", "admin", "GET", "/metrics").text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("hacoord_api_request_seconds_count")}

    hot, cold = twins
    found = counts(hot)
    assert found == counts(cold)
    assert any('method="PATCH",route="/v1/nodes/{node_id}"' in key for key in found)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers(-2, 2**60) | st.floats()
                         | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.sampled_from(["metrics", "admin", "tags", "epoch",
                                                            "capacity", "zone", "a", "q"]),
                                           inner, max_size=3), max_leaves=6),
       route=st.sampled_from(["", "/heartbeat", "/metrics"]),
       query=st.sampled_from(["", "?consistent=true", "?x=1"]))
def test_any_body_is_answered_alike(twins: tuple[Twin, Twin], body: Any, route: str,
                                    query: str) -> None:
    method = "PATCH" if route == "" else "POST"
    raw = json.dumps(body).encode()  # NaN and Infinity as Python writes them
    same(twins, "m2", "operator", method, f"/v1/nodes/n2{route}{query}", content=raw,
         headers={"content-type": "application/json", "x-request-id": f"h-{raw.hex()[:100]}"})


def raw_call(twin: Twin, method: str, path: str, *, root_path: str = "",
             disconnect: bool = False) -> tuple[int | None, Any]:
    """One request straight into m2's ASGI app (what no HTTP client can send): the status and
    body it answers."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": root_path, "query_string": b"", "client": ("127.0.0.1", 5000),
             "server": ("m2.test", 80),
             "headers": [(b"authorization", f"Bearer {twin.tokens['admin']}".encode()),
                         (b"content-type", b"application/json"), (b"content-length", b"2")]}
    sent: list[Message] = []

    async def receive() -> Message:
        if disconnect:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        await twin.cluster.apps["m2"](scope, receive, send)

    twin.cluster.run(call)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, timeless(json.loads(body))


@pytest.mark.parametrize(("method", "path", "options"), [
    ("POST", "/v1/nodes/n1/heartbeat", {"disconnect": True}),  # the client went away
    ("PATCH", "/v1/nodes/n1", {"disconnect": True}),
    ("GET", "/v1/nodes/n1", {"root_path": "/v1"}),  # mounted under a prefix
    ("GET", "/api/v1/nodes/n1", {"root_path": "/api"}),
])
def test_what_no_client_sends_is_answered_alike(twins: tuple[Twin, Twin], method: str, path: str,
                                                options: dict[str, Any]) -> None:
    hot, cold = twins
    assert raw_call(hot, method, path, **options) == raw_call(cold, method, path, **options)


def refused(app: FastAPI, spec: HotSpec, match: str) -> None:
    with pytest.raises(RuntimeError, match=match):
        resolve(app, [spec])


def test_a_hot_route_that_would_answer_otherwise_is_refused_when_the_app_is_built() -> None:
    """A route changed to take another parameter, dependency or default, or shadowed by a route
    FastAPI would match first, would be served differently past FastAPI: building the app
    refuses that instead."""
    patch = HotSpec("PATCH", "/v1/nodes/{node_id}", NodeUpdate)
    read = HotSpec("GET", "/v1/nodes/{node_id}", consistent=True)

    extra_query = FastAPI()

    @extra_query.patch("/v1/nodes/{node_id}", dependencies=[needs(Permission.OPERATE)])
    async def update(node_id: str, body: NodeUpdate, request: Request,
                     force: bool = False) -> Response:
        return Response()

    refused(extra_query, patch, "the hot path passes")
    refused(extra_query, read, "no route GET")

    other_default = FastAPI()

    @other_default.get("/v1/nodes/{node_id}", dependencies=[needs(Permission.ROUTE)])
    async def show(node_id: str, request: Request, consistent: bool = True) -> Response:
        return Response()

    refused(other_default, read, "the hot path passes")

    extra_dependency = FastAPI()

    @extra_dependency.get("/v1/nodes/{node_id}",
                          dependencies=[needs(Permission.ROUTE), Depends(lambda: None)])
    async def show_too(node_id: str, request: Request, consistent: bool = False) -> Response:
        return Response()

    refused(extra_dependency, read, "the hot path passes")

    shadowed = FastAPI()

    @shadowed.get("/v1/nodes/export", dependencies=[needs(Permission.ROUTE)])
    async def export(request: Request) -> Response:
        return Response()

    @shadowed.get("/v1/nodes/{node_id}", dependencies=[needs(Permission.ROUTE)])
    async def show_three(node_id: str, request: Request, consistent: bool = False) -> Response:
        return Response()

    refused(shadowed, read, "/v1/nodes/export comes first")
