"""Tokens, roles and node identity on the API (in-process): the role x route matrix built from
the app's own route table, the node-identity rules, the "evil node" story, 401/403 answers,
expiry, revocation, bootstrap and the refusal metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from hacoord.testing.inprocess import InProcessCluster

ROLES = ("admin", "operator", "reader", "node")
ADMIN = {"admin"}
OPERATE = {"admin", "operator"}
READ = {"admin", "operator", "reader"}
ROUTE = {"admin", "operator", "reader", "node"}
NODE = {"admin", "operator", "node"}  # node: for its own node only
OPEN = {*ROUTE, None}

#: Who may call each route: written here, independently of the code's declarations.
EXPECTED: dict[tuple[str, str], set[str | None]] = {
    ("GET", "/livez"): OPEN,
    ("GET", "/readyz"): OPEN,
    # The status page's static files (its data comes from the routes below, with a token).
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/app.js"): OPEN,
    ("GET", "/ui/style.css"): OPEN,
    ("GET", "/metrics"): READ,
    ("GET", "/v1/status"): READ,
    ("GET", "/v1/members"): ROUTE,
    ("POST", "/v1/members"): ADMIN,
    ("DELETE", "/v1/members/{member_id}"): ADMIN,
    ("GET", "/v1/requests/{request_id}"): ROUTE,
    ("GET", "/v1/nodes"): ROUTE,
    ("GET", "/v1/nodes/{node_id}"): ROUTE,
    ("POST", "/v1/nodes"): NODE,
    ("POST", "/v1/batch/nodes"): OPERATE,
    ("PATCH", "/v1/nodes/{node_id}"): OPERATE,
    ("DELETE", "/v1/nodes/{node_id}"): OPERATE,
    ("POST", "/v1/nodes/{node_id}/session"): NODE,
    ("POST", "/v1/nodes/{node_id}/heartbeat"): NODE,
    ("POST", "/v1/nodes/{node_id}/metrics"): NODE,
    ("POST", "/v1/nodes/{node_id}/caught-up"): NODE,
    ("GET", "/v1/resources"): ROUTE,
    ("POST", "/v1/resources"): OPERATE,
    ("PATCH", "/v1/resources/{name}"): OPERATE,
    ("DELETE", "/v1/resources/{name}"): OPERATE,
    ("POST", "/v1/resources/{name}/partitions/{partition}/move"): OPERATE,
    ("DELETE", "/v1/resources/{name}/partitions/{partition}/move"): OPERATE,
    ("POST", "/v1/resources/{name}/partitions/{partition}/leader"): OPERATE,
    ("GET", "/v1/resources/{name}/partitions/{partition}/explain"): READ,
    ("GET", "/v1/rebalance"): READ,
    ("POST", "/v1/rebalance"): OPERATE,
    ("DELETE", "/v1/rebalance"): OPERATE,
    ("PATCH", "/v1/rebalance"): OPERATE,
    ("GET", "/v1/rebalance/plan"): READ,
    ("GET", "/v1/watch"): ROUTE,
    ("GET", "/v1/routing"): ROUTE,
    ("GET", "/v1/routing/diff"): ROUTE,
    ("POST", "/v1/tokens"): ADMIN,
    ("GET", "/v1/tokens"): ADMIN,
    ("DELETE", "/v1/tokens/{name}"): ADMIN,
    ("GET", "/v1/whoami"): ROUTE,
    ("GET", "/v1/audit"): READ,
    ("GET", "/v1/backup"): ADMIN,
}
#: Routes outside the API proper (FastAPI's documentation): open, and only these.
DOCUMENTATION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

PATH_VALUES = {"node_id": "n1", "name": "orders", "partition": "0", "request_id": "r1",
               "member_id": "m9"}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/nodes"): {"id": "n1", "address": "10.0.0.1:1"},
    ("POST", "/v1/members"): {"id": "m9", "raft_address": "127.0.0.1:7399",
                              "api_url": "https://127.0.0.1:7499"},
    ("POST", "/v1/batch/nodes"): {"nodes": [{"id": "n7", "address": "10.0.0.7:1"}]},
    ("PATCH", "/v1/nodes/{node_id}"): {"capacity": 2.0},
    ("POST", "/v1/nodes/{node_id}/heartbeat"): {"epoch": 1},
    ("POST", "/v1/nodes/{node_id}/metrics"): {"epoch": 1, "metrics": {"disk": 1.0}},
    ("POST", "/v1/nodes/{node_id}/caught-up"): {"epoch": 1, "resource": "orders", "partition": 0,
                                               "partition_epoch": 1},
    ("POST", "/v1/resources"): {"name": "other", "partitions": 1, "replicas": 1},
    ("PATCH", "/v1/resources/{name}"): {"replicas": 1},
    ("POST", "/v1/resources/{name}/partitions/{partition}/move"): {"from_node": "n1",
                                                                   "to_node": "n2"},
    ("POST", "/v1/resources/{name}/partitions/{partition}/leader"): {"node": "n2"},
    ("PATCH", "/v1/rebalance"): {"max_moves_per_node": 3},
    ("POST", "/v1/tokens"): {"name": "made", "role": "reader"},
}
QUERIES = {("GET", "/v1/watch"): {"timeout": 0}, ("GET", "/v1/routing/diff"): {"from": 0}}


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1) as made:
        yield made


def api(cluster: InProcessCluster, token: str | None = None) -> httpx.Client:
    """A client of m1 that sends ``token`` (None: none at all)."""
    return httpx.Client(transport=cluster.transport_as(token), base_url=cluster.url("m1"),
                        timeout=10)


def make_token(cluster: InProcessCluster, name: str, role: str, node: str | None = None,
               **extra: Any) -> str:
    body = {"name": name, "role": role, **({"node": node} if node else {}), **extra}
    with api(cluster, cluster.admin_token) as admin:
        answer = admin.post("/v1/tokens", json=body)
    assert answer.status_code == 201, answer.text
    assert "hash" not in answer.text
    return str(answer.json()["secret"])


def seed(cluster: InProcessCluster) -> None:
    with api(cluster, cluster.admin_token) as admin:
        for k in (1, 2):
            assert admin.post("/v1/nodes", json={"id": f"n{k}", "address": f"10.0.0.{k}:1"}
                              ).status_code == 201
        assert admin.post("/v1/resources", json={"name": "orders", "partitions": 2,
                                                 "replicas": 1}).status_code == 201


def call(http: httpx.Client, method: str, path: str) -> httpx.Response:
    concrete = path.format(**PATH_VALUES)
    return http.request(method, concrete, json=BODIES.get((method, path)),
                        params=QUERIES.get((method, path)))


def app_routes(cluster: InProcessCluster) -> tuple[set[tuple[str, str]], set[str]]:
    api_routes, others = set(), set()
    for route in cluster.apps["m1"].routes:
        if isinstance(route, APIRoute):
            api_routes.update((method, route.path) for method in route.methods)
        else:
            others.add(getattr(route, "path", repr(route)))
    return api_routes, others


def test_every_route_is_in_the_matrix_and_documentation_is_all_else(cluster: InProcessCluster) -> None:
    routes, others = app_routes(cluster)
    assert routes - set(EXPECTED) == set(), "routes without an expected permission"
    assert set(EXPECTED) - routes == set(), "the matrix names routes the app does not have"
    assert others == DOCUMENTATION


def test_each_role_may_do_exactly_what_its_row_says(cluster: InProcessCluster) -> None:
    seed(cluster)
    tokens: dict[str | None, str | None] = {None: None, "admin": cluster.admin_token}
    for role in ("operator", "reader"):
        tokens[role] = make_token(cluster, f"a-{role}", role)
    tokens["node"] = make_token(cluster, "a-node", "node", node="n1")
    wrong: list[str] = []
    for (method, path), allowed in sorted(EXPECTED.items()):
        for role, token in tokens.items():
            with api(cluster, token) as http:
                answer = call(http, method, path)
            if role in allowed:
                if answer.status_code in (401, 403):
                    wrong.append(f"{role} refused {method} {path}: {answer.text}")
            elif role is None:
                if answer.status_code != 401 or "WWW-Authenticate" not in answer.headers:
                    wrong.append(f"no token got {answer.status_code} on {method} {path}")
            elif answer.status_code != 403 or answer.json()["code"] != "permission_denied":
                wrong.append(f"{role} got {answer.status_code} on {method} {path}: {answer.text}")
    assert wrong == []


def test_a_node_token_speaks_for_its_own_node_only(cluster: InProcessCluster) -> None:
    seed(cluster)
    n2 = make_token(cluster, "for-n2", "node", node="n2")
    before = cluster.state("m1").revision
    with api(cluster, n2) as http:
        for (method, path), allowed in EXPECTED.items():
            if allowed is NODE:
                answer = call(http, method, path)  # every sample names n1
                assert answer.status_code == 403, (method, path, answer.text)
                assert "speaks for node 'n2' only" in answer.json()["message"]
        session = http.post("/v1/nodes/n2/session")
        assert session.status_code == 200, session.text
        epoch = session.json()["epoch"]
        assert http.post("/v1/nodes/n2/heartbeat", json={"epoch": epoch}).status_code == 200
        assert http.post("/v1/nodes/n2/metrics", json={"epoch": epoch,
                                                       "metrics": {"disk": 3.0}}).status_code == 200
    state = cluster.state("m1")
    assert state.nodes["n1"].epoch == 1 and state.nodes["n2"].metrics == {"disk": 3.0}
    assert state.revision == before + 2  # n2's session and metrics; nothing for n1


def test_a_node_token_may_register_its_own_node_and_no_other(cluster: InProcessCluster) -> None:
    token = make_token(cluster, "new-node", "node", node="n9")
    with api(cluster, token) as http:
        other = http.post("/v1/nodes", json={"id": "n8", "address": "10.0.0.8:1"})
        assert other.status_code == 403, other.text
        own = http.post("/v1/nodes", json={"id": "n9", "address": "10.0.0.9:1"})
        assert own.status_code == 201, own.text
    assert set(cluster.state("m1").nodes) == {"n9"}


def test_the_evil_node_story_fails_without_an_operator_token(cluster: InProcessCluster) -> None:
    """Registering "evil", moving a replica and the leadership of orders/0 to it, and starting
    n1's session (which would fence the real n1 out) all need more than a node or reader token."""
    seed(cluster)
    before = cluster.state("m1").revision
    reader = make_token(cluster, "spy", "reader")
    n2 = make_token(cluster, "n2-token", "node", node="n2")
    for token in (None, reader, n2, "hc_" + "A" * 43):
        with api(cluster, token) as http:
            for method, path, body in (
                    ("POST", "/v1/nodes", {"id": "evil", "address": "10.6.6.6:1", "capacity": 1e6}),
                    ("POST", "/v1/resources/orders/partitions/0/move",
                     {"from_node": "n1", "to_node": "n2"}),
                    ("POST", "/v1/resources/orders/partitions/0/leader", {"node": "n2"}),
                    ("POST", "/v1/nodes/n1/session", None)):
                answer = http.request(method, path, json=body)
                assert answer.status_code in (401, 403), (token, path, answer.text)
    state = cluster.state("m1")
    assert "evil" not in state.nodes and state.nodes["n1"].epoch == 1
    assert state.revision == before + 2  # the two tokens made above, nothing else


def test_unauthenticated_answers_say_why_and_how(cluster: InProcessCluster) -> None:
    with api(cluster) as http:
        missing = http.get("/v1/nodes")
        bogus = http.get("/v1/nodes", headers={"Authorization": "Bearer hc_" + "x" * 43})
        basic = http.get("/v1/nodes", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        open_routes = [http.get(p).status_code for p in ("/livez", "/readyz")]
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthenticated")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="hacoord"'
    assert bogus.status_code == 401
    assert bogus.headers["WWW-Authenticate"] == 'Bearer realm="hacoord", error="invalid_token"'
    assert basic.status_code == 401
    assert open_routes == [200, 200]


def test_a_follower_checks_the_token_and_forwards_it() -> None:
    with InProcessCluster(2) as pair:
        with httpx.Client(transport=pair.transport_as(None), base_url=pair.url("m2")) as http:
            refused = http.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:1"})
            accepted = http.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:1"},
                                 headers={"Authorization": f"Bearer {pair.admin_token}"})
        assert refused.status_code == 401
        assert accepted.status_code == 201, accepted.text
        forwarded = pair.hits("m1", "POST", forwarded=True)
        assert [r.headers["authorization"] for r in forwarded] == [f"Bearer {pair.admin_token}"]


def test_a_token_expires() -> None:
    now = [time.time()]
    with InProcessCluster(1, auth_clock=lambda: now[0]) as timed:
        token = make_token(timed, "brief", "reader", expires_in=60)
        with api(timed, token) as http:
            assert http.get("/v1/nodes").status_code == 200
            now[0] += 61
            assert http.get("/v1/nodes").status_code == 401
        with api(timed, timed.admin_token) as admin:
            listed = {t["name"]: t for t in admin.get("/v1/tokens").json()["tokens"]}
        assert listed["brief"]["expired"] is True


def test_a_revoked_token_is_refused_at_once(cluster: InProcessCluster) -> None:
    token = make_token(cluster, "temp", "operator")
    with api(cluster, token) as http:
        assert http.get("/v1/status").status_code == 200
        with api(cluster, cluster.admin_token) as admin:
            revoked = admin.delete("/v1/tokens/temp")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["applied_on"] == ["m1"] and revoked.json()["unconfirmed"] == []
        assert http.get("/v1/status").status_code == 401
    with api(cluster, cluster.admin_token) as admin:
        assert [t["name"] for t in admin.get("/v1/tokens").json()["tokens"]] == []
        assert admin.delete("/v1/tokens/temp").status_code == 404


def test_tokens_are_stored_as_digests_and_listed_without_them(cluster: InProcessCluster) -> None:
    token = make_token(cluster, "kept", "reader")
    stored = cluster.state("m1").tokens["kept"]
    assert token not in repr(cluster.state("m1").to_dict())
    assert stored.hash != token and len(stored.hash) == 64
    with api(cluster, cluster.admin_token) as admin:
        text = admin.get("/v1/tokens").text
        duplicate = admin.post("/v1/tokens", json={"name": "kept", "role": "reader"})
        node_without_id = admin.post("/v1/tokens", json={"name": "x", "role": "node"})
    assert token not in text and stored.hash not in text
    assert duplicate.status_code == 409 and node_without_id.status_code == 400


def test_a_retried_create_never_answers_a_secret_that_does_not_work(cluster: InProcessCluster) -> None:
    with api(cluster, cluster.admin_token) as admin:
        headers = {"X-Request-Id": "create-once"}
        first = admin.post("/v1/tokens", json={"name": "once", "role": "reader"}, headers=headers)
        again = admin.post("/v1/tokens", json={"name": "once", "role": "reader"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"] and again.json()["secret"] is None


def test_the_bootstrap_token_is_written_once_and_can_be_revoked() -> None:
    with InProcessCluster(1, bootstrap=True) as boot:
        state = boot.state("m1")
        deadline = time.monotonic() + 10
        while not state.auth_bootstrapped and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.auth_bootstrapped and list(state.tokens) == ["admin"]
        second = make_token(boot, "second-admin", "admin")
        with api(boot, second) as admin:
            assert admin.delete("/v1/tokens/admin").status_code == 200
        with api(boot, boot.admin_token) as first:
            assert first.get("/v1/status").status_code == 401  # bootstrapped: the state decides
        with api(boot, second) as admin:
            assert admin.get("/v1/whoami").json() == {"name": "second-admin", "role": "admin",
                                                      "node": None}


def test_the_benchmarks_open_api_takes_anyone_as_an_anonymous_admin() -> None:
    with InProcessCluster(1, unsafe_no_auth=True) as opened, api(opened) as http:
        assert http.get("/v1/whoami").json() == {"name": "anonymous", "role": "admin", "node": None}
        assert http.post("/v1/nodes", json={"id": "n1", "address": "h:1"}).status_code == 201


def test_metrics_need_a_reader_unless_opened_and_count_refusals(cluster: InProcessCluster,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hacoord.server.auth"), api(cluster) as http:
        for _ in range(3):
            assert http.get("/metrics").status_code == 401
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    assert cluster.admin_token not in caplog.text
    with api(cluster, cluster.admin_token) as admin:
        text = admin.get("/metrics").text
    assert 'hacoord_auth_refused_total{reason="unauthenticated"} 3.0' in text
    with InProcessCluster(1, metrics_open=True) as opened, api(opened) as http:
        assert http.get("/metrics").status_code == 200
        assert http.get("/v1/status").status_code == 401
