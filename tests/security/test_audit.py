"""The audit trail: every accepted change says who made it (token name and role, source address,
forwarding member, command and request id) in the log, in the watch events and in
``GET /v1/audit``; refused attempts leave no entry; the leader's own decisions are "system"."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from hacoord.cli.main import CliState, main
from hacoord.client import Client
from hacoord.core import commands as c
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(2) as made:
        yield made


def as_token(cluster: InProcessCluster, member: str, token: str | None) -> httpx.Client:
    return httpx.Client(transport=cluster.transport_as(token), base_url=cluster.url(member),
                        timeout=10)


def test_each_change_names_who_made_it_and_refusals_name_no_one(cluster: InProcessCluster) -> None:
    with as_token(cluster, "m1", cluster.admin_token) as admin:
        made = admin.post("/v1/tokens", json={"name": "ops", "role": "operator"})
        ops_token = made.json()["secret"]
        reader = admin.post("/v1/tokens", json={"name": "look", "role": "reader"}).json()["secret"]
    with as_token(cluster, "m1", ops_token) as ops:
        added = ops.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:1"},
                         headers={"X-Request-Id": "add-n1"})
        assert added.status_code == 201, added.text
    with as_token(cluster, "m1", reader) as spy:
        assert spy.post("/v1/nodes", json={"id": "n2", "address": "10.0.0.2:1"}).status_code == 403
        trail = spy.get("/v1/audit", params={"since": 0})
    assert trail.status_code == 200, trail.text
    entries = trail.json()["entries"]
    assert [(e["principal"], e["role"], e["command"], e["changes"]) for e in entries] == [
        ("admin", "admin", "CreateToken", ["TokenCreated"]),
        ("admin", "admin", "CreateToken", ["TokenCreated"]),
        ("ops", "operator", "RegisterNode", ["NodeRegistered"])]
    last = entries[-1]
    assert last["request_id"] == "add-n1" and last["via"] is None and last["source"]
    with as_token(cluster, "m1", reader) as spy:
        events = spy.get("/v1/watch", params={"since": 0, "timeout": 0}).json()["events"]
    assert events[-1]["audit"]["principal"] == "ops"
    log_entry = cluster.replicators["m1"].state.requests["add-n1"]
    assert log_entry["revision"] == last["revision"]


def test_the_leaders_own_decisions_are_system_and_the_audit_field_is_checked() -> None:
    from hacoord.core import ClusterState, apply

    state = ClusterState()
    outcome = apply(state, c.RegisterNode(node_id="n1", address="h:1", time=1.0))
    assert outcome.events[0].audit == {"command": "RegisterNode", "request_id": None,  # type: ignore[union-attr]
                                       "time": 1.0, "principal": "system", "role": None}
    bad = apply(state, c.RegisterNode(node_id="n2", address="h:1", time=1.0,
                                      audit={"principal": "x" * 1000}))
    assert not bad.ok and bad.code == "invalid_argument"  # type: ignore[union-attr]
    assert c.decode(c.encode(c.Barrier(audit={"principal": "a"}))) == c.Barrier(audit={"principal": "a"})


def test_the_cli_lists_the_trail(cluster: InProcessCluster) -> None:
    def factory(state: CliState) -> Client:
        return Client(cluster.urls, timeout=state.timeout, deadline=state.deadline,
                      transport=cluster.transport)

    with as_token(cluster, "m1", cluster.admin_token) as admin:
        admin.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:1"})
    result = CliRunner().invoke(main, ["audit"], obj=CliState(client_factory=factory))
    assert result.exit_code == 0, result.output
    assert "admin" in result.stdout and "RegisterNode" in result.stdout
    assert "NodeRegistered" in result.stdout
    compacted = CliRunner().invoke(main, ["audit", "--since", "-1"], obj=CliState(client_factory=factory))
    assert compacted.exit_code == 2


FORGED = {"x-hacoord-forwarded": "m2", "x-hacoord-client": "203.0.113.9",
          "x-hacoord-forward-seal": "0" * 64}


def test_a_forward_names_its_member_and_client_and_a_client_cannot_claim_one(
        cluster: InProcessCluster) -> None:
    """A follower's forward is audited with the follower (``via``) and the client it forwarded
    for: its seal matches. A client sending the same headers itself, with no seal or a wrong
    one, is audited as itself: no ``via``, no ``client``."""
    with as_token(cluster, "m2", cluster.admin_token) as via_follower:
        assert via_follower.post("/v1/nodes", json={"id": "n1", "address": "10.0.0.1:1"},
                                 headers={"X-Request-Id": "through-m2"}).status_code == 201
    with as_token(cluster, "m1", cluster.admin_token) as direct:
        for k, headers in enumerate([FORGED, {k: v for k, v in FORGED.items() if "seal" not in k}]):
            assert direct.post("/v1/nodes", json={"id": f"f{k}", "address": "10.0.0.9:1"},
                               headers={"X-Request-Id": f"forged-{k}", **headers}).status_code == 201
        entries = {e["request_id"]: e for e in
                   direct.get("/v1/audit", params={"since": 0}).json()["entries"]}
    assert (entries["through-m2"]["via"], entries["through-m2"]["client"]) == ("m2", "127.0.0.1")
    for k in (0, 1):
        assert (entries[f"forged-{k}"]["via"], entries[f"forged-{k}"]["client"]) == (None, None)
