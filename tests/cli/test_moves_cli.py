"""The CLI commands that move data: cordon, drain with progress, rebalance runs, throttles,
maintenance, leadership handover (in-process members; data nodes simulated)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hacoord.cli.main import CliState, main
from hacoord.client import Client
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1, rebalance_interval=3600.0) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.urls, timeout=2, deadline=5, transport=cluster.transport) as c:
        for i in range(4):
            c.node_add(f"n{i}", address=f"127.0.0.1:{9000 + i}", zone=f"z{i % 2}")
        c.resource_create("a", partitions=6, replicas=2)
        yield c


def cli(cluster: InProcessCluster, *args: str) -> Result:
    def factory(_: Any) -> Client:
        return Client(cluster.urls, timeout=2, deadline=5, transport=cluster.transport)
    return CliRunner().invoke(main, list(args), obj=CliState(client_factory=factory))


def one_line_error(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_cordon_and_uncordon(client: Client, cluster: InProcessCluster) -> None:
    done = cli(cluster, "node", "cordon", "n1", "--reason", "bad disk")
    assert done.exit_code == 0 and "cordoned" in done.stdout
    node = client.node_show("n1")
    assert node.admin == "cordoned" and node.admin_reason == "bad disk"
    shown = cli(cluster, "node", "show", "n1")
    assert "cordoned (bad disk)" in shown.stdout
    assert cli(cluster, "node", "uncordon", "n1").exit_code == 0
    assert client.node_show("n1").admin == "active"
    one_line_error(cli(cluster, "node", "cordon", "nope"), 2, "nope")


def test_drain_reports_progress_and_removes_an_empty_node(client: Client,
                                                          cluster: InProcessCluster) -> None:
    client.node_add("spare", address="127.0.0.1:9100")
    done = cli(cluster, "node", "drain", "spare", "--remove", "--interval", "0.05")
    assert done.exit_code == 0, done.output
    assert "spare: 0 replicas left of 0" in done.stdout and "removed" in done.stdout
    assert "spare" not in {n.id for n in client.node_list()}


def test_drain_gives_up_after_its_timeout(client: Client, cluster: InProcessCluster) -> None:
    # Nobody reports caught up here: the node cannot empty, the command gives up with exit 1.
    result = cli(cluster, "node", "drain", "n0", "--timeout", "0.3", "--interval", "0.1")
    one_line_error(result, 1, "still holds")
    assert "replicas left of" in result.stdout
    assert client.node_show("n0").admin == "draining"
    quick = cli(cluster, "node", "drain", "n1", "--no-wait")
    assert quick.exit_code == 0 and "draining" in quick.stdout


def test_rebalance_run_status_and_cancel(client: Client, cluster: InProcessCluster) -> None:
    client.node_add("n4", address="127.0.0.1:9004", zone="z2")
    started = cli(cluster, "rebalance")
    assert started.exit_code == 0 and "started" in started.stdout, started.output
    one_line_error(cli(cluster, "rebalance"), 2, "running")
    status = cli(cluster, "rebalance", "status", "--json")
    assert json.loads(status.stdout)["run"] is not None
    assert "rebalance:" in cli(cluster, "status").stdout
    cancelled = cli(cluster, "rebalance", "cancel")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    one_line_error(cli(cluster, "rebalance", "cancel"), 2, "no rebalance")


def test_throttles_and_maintenance(client: Client, cluster: InProcessCluster) -> None:
    shown = cli(cluster, "rebalance", "set", "--max-moves", "3", "--rereplicate-after", "60")
    assert shown.exit_code == 0 and "max moves 3" in shown.stdout and "60s" in shown.stdout
    one_line_error(cli(cluster, "rebalance", "set"), 2, "nothing to change")
    one_line_error(cli(cluster, "rebalance", "set", "--max-moves", "0"), 2, "--max-moves")
    on = cli(cluster, "maintenance", "on", "rack swap")
    assert on.exit_code == 0 and "maintenance: on (rack swap)" in on.stdout
    one_line_error(cli(cluster, "rebalance"), 2, "maintenance")
    status = cli(cluster, "rebalance", "status")
    assert "rack swap" in status.stdout
    assert "maintenance: off" in cli(cluster, "maintenance", "off").stdout
    one_line_error(cli(cluster, "maintenance", "on", " "), 2, "REASON")


def test_partition_leader_handover(client: Client, cluster: InProcessCluster) -> None:
    route = client.routing("a").route("a", 0)
    other = next(n for n in route.replicas if n != route.leader)
    done = cli(cluster, "partition", "leader", "a", "0", other)
    assert done.exit_code == 0 and f"led by {other}" in done.stdout
    assert client.routing("a").route("a", 0).epoch == route.epoch + 1
    outsider = next(n for n in ("n0", "n1", "n2", "n3") if n not in route.replicas)
    one_line_error(cli(cluster, "partition", "leader", "a", "0", outsider), 2, outsider)
    one_line_error(cli(cluster, "partition", "cancel-move", "a", "0"), 2, "no pending move")
