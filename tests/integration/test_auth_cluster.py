"""Tokens across real members: a token works on every member once its creation is answered,
and is refused by every member once its revocation is answered; expiry is judged by each
member's clock; a member restarted from its files still knows the tokens."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hacoord.client import Unauthenticated
from hacoord.testing.cluster import LocalCluster, bearer, running_cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path) as made:
        made.leader()
        yield made


def statuses(cluster: LocalCluster, token: str) -> dict[str, int]:
    """What each member answers a local read carrying ``token``."""
    return {m.id: httpx.get(m.url + "/v1/nodes", headers=bearer(token), timeout=5,
                            verify=cluster.verify).status_code
            for m in cluster.members.values()}


def test_creation_and_revocation_hold_on_every_member_when_answered(cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=2.0, deadline=20.0)
    created = admin.token_create("dashboard", "reader")
    assert created.token.role == "reader"
    assert statuses(cluster, created.secret) == {"m1": 200, "m2": 200, "m3": 200}
    revoked = admin.token_revoke("dashboard")
    assert revoked.data["applied_on"] == ["m1", "m2", "m3"] and revoked.data["unconfirmed"] == []
    assert statuses(cluster, created.secret) == {"m1": 401, "m2": 401, "m3": 401}
    with pytest.raises(Unauthenticated):
        cluster.client(token=created.secret, deadline=5.0).node_list()


def test_a_write_through_a_follower_is_audited_with_its_token_and_path(cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=2.0, deadline=20.0)
    ops = admin.token_create("ops", "operator")
    leader = cluster.leader()
    follower = next(m for m in cluster.members.values() if m.id != leader)
    with cluster.client(endpoints=[follower.url], token=ops.secret) as via_follower:
        written = via_follower.node_add("n1", address="127.0.0.1:9001", request_id="n1-once")
    entry = wait_for("the write in the audit trail", lambda: next(
        (e for e in admin.audit(0) if e.revision == written.revision), None))
    assert (entry.principal, entry.role, entry.command, entry.request_id, entry.via) == (
        "ops", "operator", "RegisterNode", "n1-once", follower.id)
    assert entry.client == "127.0.0.1" and entry.changes == ("NodeRegistered",)


def test_a_client_cannot_name_its_own_source_address(cluster: LocalCluster) -> None:
    """``X-Forwarded-For`` from a client on the member's own host is not believed: the audit
    (and the per-client write rate) keeps the connection's address."""
    admin = cluster.client(timeout=2.0, deadline=20.0)
    leader = cluster.members[cluster.leader()]
    answer = httpx.post(leader.url + "/v1/nodes", json={"id": "n7", "address": "127.0.0.1:9007"},
                        headers={**bearer(cluster.token), "X-Forwarded-For": "203.0.113.9"},
                        timeout=5, verify=cluster.verify)
    assert answer.status_code == 201, answer.text
    entry = wait_for("the write in the audit trail", lambda: next(
        (e for e in admin.audit(0) if e.revision == answer.json()["revision"]), None))
    assert entry.source == "127.0.0.1"


def test_expiry_is_judged_by_every_member(cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=2.0, deadline=20.0)
    brief = admin.token_create("brief", "reader", expires_in=1)
    lasting = admin.token_create("lasting", "reader")
    wait_for("every member refusing the expired token",
             lambda: set(statuses(cluster, brief.secret).values()) == {401}, timeout=20)
    assert set(statuses(cluster, lasting.secret).values()) == {200}
    assert {t.name: t.expired for t in admin.token_list()} == {"admin": False, "brief": True,
                                                                "lasting": False}


def test_tokens_outlive_a_restart_of_every_member(cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=2.0, deadline=20.0)
    kept = admin.token_create("kept", "operator")
    admin.token_revoke("admin")  # the bootstrap token too: the file no longer opens the door
    for member_id in cluster.members:
        cluster.kill(member_id, signal.SIGKILL)
    cluster.start()
    wait_for("every member ready after the restart",
             lambda: all(m.get("/readyz")["ready"] for m in cluster.members.values()), timeout=30)
    operator = cluster.client(token=kept.secret, timeout=2.0, deadline=30.0)
    assert operator.whoami().name == "kept"
    assert set(statuses(cluster, cluster.token).values()) == {401}
