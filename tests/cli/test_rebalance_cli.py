"""Rebalance dry run and explain, through the API, the client and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hacoord.cli.main import CliState, main
from hacoord.client import Client, NotFound
from hacoord.testing.inprocess import InProcessCluster


def populated(cluster: InProcessCluster) -> Client:
    client = Client(cluster.urls, timeout=2, deadline=5, transport=cluster.transport)
    for i in range(4):
        client.node_add(f"n{i}", address=f"127.0.0.1:{i + 1}", zone=f"z{i % 2}")
    client.resource_create("a", partitions=12, replicas=2)
    client.node_add("n4", address="127.0.0.1:9", zone="z2")  # new, empty: the plan fills it
    return client


def test_dry_run_plans_moves_onto_a_new_node_and_changes_nothing() -> None:
    with InProcessCluster(1) as cluster:
        client = populated(cluster)
        before = client.routing()
        answer = client.rebalance_plan()
        plan = answer["plan"]
        assert plan["moves"] and all(m["to_node"] == "n4" for m in plan["moves"])
        assert len(plan["moves"]) <= 1.05 * plan["lower_bound"] + 1
        assert client.routing() == before  # a dry run applies nothing
        drained = client.rebalance_plan(exclude=["n0"])["plan"]
        assert any(m["from_node"] == "n0" for m in drained["moves"])

        runner = CliRunner()

        def run(*args: str):
            factory = lambda state: Client(cluster.urls, timeout=2, deadline=5,  # noqa: E731
                                           transport=cluster.transport)
            return runner.invoke(main, list(args), obj=CliState(client_factory=factory))

        shown = run("rebalance", "--dry-run")
        assert shown.exit_code == 0 and "dry run: nothing applied" in shown.stdout
        assert "n4" in shown.stdout
        as_json = json.loads(run("rebalance", "--dry-run", "--json").stdout)
        assert as_json["plan"]["lower_bound"] == plan["lower_bound"]
        refused = run("rebalance", "--exclude", "n0")  # a drain is applied by draining
        assert refused.exit_code == 2 and "drain" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        unknown = run("rebalance", "--dry-run", "--exclude", "nope")
        assert unknown.exit_code == 2 and "nope" in unknown.stderr

        why = json.loads(run("explain", "a", "0").stdout)
        assert why["resource"] == "a" and why["partition"] == 0
        assert {r["node"] for r in why["replicas"]} == set(client.routing("a").partitions[0].replicas)
        missing = run("explain", "a", "99")
        assert missing.exit_code == 2
        with pytest.raises(NotFound):
            client.explain("a", 99)
