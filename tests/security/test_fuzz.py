"""The whole API fuzzed from its own OpenAPI document (schemathesis), in-process: every answer is
documented (status code, content type, body schema), no input gets a server error, and a
rejected request leaves every member's state exactly as it was."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from hacoord.core.codec import digest
from hacoord.replication.base import MemberInfo
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.app import create_app
from hacoord.server.limits import HttpLimits
from hacoord.testing.inprocess import InProcessCluster

#: Writes are not rate-limited here: the fuzzer sends hundreds a second from one address.
LIMITS = HttpLimits(writes_per_client=0)
MEMBER = MemberInfo("m1", "127.0.0.1:7501", "http://m1.test")
schema = schemathesis.openapi.from_dict(
    create_app(MemoryReplicator("m1", {"m1": MEMBER})).openapi())
#: Requests alternate between the leader and a follower (which forwards or answers itself).
TARGETS = itertools.cycle(["m1", "m1", "m2"])


@pytest.fixture(scope="module")
def cluster() -> Iterator[InProcessCluster]:
    # Nothing changes the state but the requests: the liveness clock stands still and the
    # rebalancer's pass is an hour away.
    with InProcessCluster(3, limits=LIMITS, liveness_clock=lambda: 1000.0,
                          rebalance_interval=3600.0) as made:
        with httpx.Client(transport=made.transport, base_url=made.url("m1"), timeout=10) as api:
            for k in range(4):
                assert api.post("/v1/nodes", json={"id": f"n{k}", "address": f"10.0.0.{k}:1",
                                                   "zone": f"z{k % 2}"}).status_code == 201
            assert api.post("/v1/resources", json={"name": "orders", "partitions": 4,
                                                   "replicas": 2}).status_code == 201
        yield made


def digests(cluster: InProcessCluster) -> dict[str, str]:
    return {m: digest(cluster.state(m)) for m in cluster.members}


def revisions(cluster: InProcessCluster) -> dict[str, int]:
    return {m: cluster.state(m).revision for m in cluster.members}


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_documented(case: schemathesis.Case,
                                           cluster: InProcessCluster) -> None:
    member = next(TARGETS)
    with_token = bool(case.headers) and "Authorization" in case.headers
    if with_token:  # made up by the fuzzer: a real token goes instead (and schemathesis, told
        # so, no longer counts the header among what makes the case invalid)
        case.headers["Authorization"] = f"Bearer {cluster.admin_token}"
    kwargs = case.as_transport_kwargs(base_url=cluster.url(member))
    if case.path == "/v1/watch":  # a long poll: the fuzzer must not wait on it
        kwargs.setdefault("params", {})["timeout"] = 0
    body = kwargs.get("json")
    if case.path == "/v1/batch/nodes" and isinstance(body, dict) and isinstance(body.get("nodes"), list):
        # At most 3 nodes a batch: thousands of made-up nodes would make every later route's
        # answer (a rebalance plan over them, say) cost minutes. Large batches: test_batch.py.
        body["nodes"] = body["nodes"][:3]
    if case.path.startswith("/v1/resources") and isinstance(body, dict) \
            and type(body.get("partitions")) is int and 64 < body["partitions"] <= 100_000:
        # Likewise at most 64 partitions a resource (values out of range still go as they
        # are): 57,821 x 6 replicas made a later rebalance plan take 8 s, and twenty resources
        # of 1,000 made one take minutes. Large resources: tests/unit/test_resource_slices.py,
        # the chaos suite's large-create and bench.scale.
        body["partitions"] = 64
    headers = dict(kwargs.get("headers") or {})
    # A request without a token is refused before any handler runs (checked below, with the
    # revisions), and a read writes nothing; the states' digests (costly once the fuzzer has made
    # large resources) are compared around the writes that get in.
    thorough = with_token and case.method.upper() != "GET"
    before = digests(cluster) if thorough else revisions(cluster)
    # No token is added: a request the fuzzer sends without one must be refused (401).
    with httpx.Client(transport=cluster.transport_as(None), timeout=10) as http:
        response = http.request(kwargs.pop("method"), kwargs.pop("url"),
                                params=kwargs.get("params"), headers=headers,
                                json=kwargs.get("json"), content=kwargs.get("data"))
    response.elapsed = datetime.timedelta(0)  # an in-process answer: no clock ran
    assert response.status_code < 500 or response.json()["code"] in (
        "not_leader", "no_leader", "unavailable", "timeout", "stale_term"), response.text
    # Whether a token is enforced is the role x route matrix's job (tests/security/test_auth.py):
    # this check would resend the request through the network, which the members are not on.
    # A retryable 503/504 (asserted above to be one: the leader busy past a follower's wait,
    # say, on a slow machine) is an answer the API documents, not a server error.
    excluded = [ignored_auth] + ([not_a_server_error] if response.status_code >= 500 else [])
    case.validate_response(response, excluded_checks=excluded)
    if not with_token and case.path not in ("/livez", "/readyz"):
        assert response.status_code >= 400, response.text  # 401 (or 404, 400 for a bad path)
    if response.status_code >= 400:
        assert (digests(cluster) if thorough else revisions(cluster)) == before, \
            f"{case.method} {case.formatted_path} answered {response.text} but changed the state"


def test_every_route_documents_the_body_of_its_success() -> None:
    """A route without a success model would let the fuzzer accept any body from it."""
    document = create_app(MemoryReplicator("m1", {"m1": MEMBER})).openapi()
    bare = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in ("/metrics", "/v1/backup"):
                continue  # Prometheus text, a backup file: documented as such
            success = [s for s in operation["responses"] if s.startswith("2")]
            schemas = [operation["responses"][s].get("content", {}).get("application/json", {})
                       .get("schema", {}) for s in success]
            if not success or not all("$ref" in s for s in schemas):
                bare.append(f"{method.upper()} {path}")
    assert bare == []
