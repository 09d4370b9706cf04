"""The coordinator's members: ``GET /v1/members`` on any member, and a client given one endpoint
that learns the others from its answers and fails over to them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hacoord.client import Client, MemberInfo, UnavailableError
from hacoord.client.calls import Call, Router
from hacoord.client.credentials import learnable
from hacoord.protocol import MEMBERS_HEADER, members_value, parse_members
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m2") as running:
        yield running


def test_every_member_lists_every_member_and_who_leads(cluster: InProcessCluster) -> None:
    for member in cluster.members:
        client = Client([cluster.url(member)], transport=cluster.transport, deadline=2.0)
        assert client.member_list() == [
            MemberInfo("m1", "http://m1.test", "127.0.0.1:7501", leader=False),
            MemberInfo("m2", "http://m2.test", "127.0.0.1:7502", leader=True),
            MemberInfo("m3", "http://m3.test", "127.0.0.1:7503", leader=False),
        ]


def test_a_client_given_one_endpoint_fails_over_to_the_members_it_learned(
        cluster: InProcessCluster) -> None:
    client = Client([cluster.url("m1")], transport=cluster.transport, deadline=5.0)
    client.node_add("n1", "10.0.0.1:9000")  # forwarded by m1 to m2; the answer names everyone
    assert client.endpoints == (cluster.url("m1"),)
    assert set(client.known_endpoints) == set(cluster.urls)
    cluster.down.update({"m1", "m2"})
    cluster.set_leader("m3")
    assert client.node_add("n2", "10.0.0.2:9000").node.id == "n2"
    assert {r.url.host for r in cluster.hits("m3", "POST", forwarded=False)} == {"m3.test"}


def test_without_learning_one_dead_endpoint_is_the_end(cluster: InProcessCluster) -> None:
    # The same client before any answer knows only m1: the failover above is what it learned.
    cluster.down.add("m1")
    client = Client([cluster.url("m1")], transport=cluster.transport, deadline=1.0)
    with pytest.raises(UnavailableError):
        client.node_add("n1", "10.0.0.1:9000")


def test_the_members_are_named_only_to_callers_with_a_token(cluster: InProcessCluster) -> None:
    with httpx.Client(transport=cluster.transport_as(None), base_url=cluster.url("m2")) as anon:
        assert anon.get("/livez").status_code == 200
        refused = anon.get("/v1/nodes")
        assert refused.status_code == 401
        assert MEMBERS_HEADER not in anon.get("/livez").headers
        assert MEMBERS_HEADER not in refused.headers
    with httpx.Client(transport=cluster.transport, base_url=cluster.url("m2")) as admin:
        named = admin.get("/v1/nodes").headers[MEMBERS_HEADER]
    assert parse_members(named) == {m: cluster.url(m) for m in cluster.members}


def test_the_header_reads_back_and_skips_what_is_not_a_member() -> None:
    urls = {"m2": "https://b:7001", "m1": "http://a:7001"}
    assert members_value(urls) == "m1=http://a:7001,m2=https://b:7001"
    assert parse_members(members_value(urls)) == urls
    assert parse_members("m1=ftp://x, =http://y,m3, m4=https://d:1") == {"m4": "https://d:1"}


def test_a_client_learns_only_urls_its_token_may_go_to() -> None:
    local = learnable(["https://127.0.0.1:7401"])  # may carry the local cluster's admin token
    assert local("https://localhost:7402") and not local("https://m2:7401")
    assert not local("http://127.0.0.1:7402")  # never plain HTTP for a client of HTTPS
    remote = learnable(["https://10.0.0.1:7401"])
    assert remote("https://m2.example:7401") and not remote("http://m2.example:7401")
    router = Router(["https://127.0.0.1:7401"])
    router.learn_endpoints("m1=https://127.0.0.1:7401/,m2=https://m2:7401,m3=https://[::1]:7403")
    assert router.known_endpoints() == ("https://127.0.0.1:7401", "https://[::1]:7403")


def test_a_member_that_failed_to_connect_lately_is_passed_over() -> None:
    router = Router(["http://a:1", "http://b:1", "http://c:1"])
    call = Call("GET", "/v1/nodes")
    router.unreached("http://b:1")  # b could not be reached: passed over for 10 s
    router.passed_over("http://a:1")  # a failed: not b next, but c
    assert router.endpoint_for(call) == "http://c:1"
    router.unreached("http://a:1")
    router.unreached("http://c:1")  # every one failed lately: simply the next
    assert router.endpoint_for(call) == "http://a:1"


def test_a_member_that_answered_before_is_followed_again_sooner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted leader: its clients reached it before, so its unreachable spell is short (a
    URL that never answered, another network's name, keeps the long one)."""
    router = Router(["http://a:1", "http://b:1", "http://c:1"])
    router.answered("http://b:1")
    router.unreached("http://b:1")
    router.unreached("http://c:1")
    assert not router.reachable("http://b:1") and not router.reachable("http://c:1")
    monkeypatch.setattr("hacoord.client.calls.UNREACHABLE_AFTER_ANSWERING", 0.0)
    assert router.reachable("http://b:1") and not router.reachable("http://c:1")
    router.set_leader("m2", "http://b:1")
    router.set_leader("m3", "http://c:1")  # not followed: c never answered
    assert router.endpoint_for(Call("POST", "/v1/nodes", to_leader=True)) == "http://b:1"
