"""The ``hacoord`` command over a client on the in-process cluster (``hacoord.testing.inprocess``).

The CLI gets its client from ``CliState.client_factory``; these tests pass one through
``CliRunner.invoke(obj=...)`` that builds the client on the in-process transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hacoord.cli.main import CliState, main, make_client
from hacoord.client import Client
from hacoord.testing.inprocess import InProcessCluster

Run = Callable[..., Result]


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m1") as running:
        yield running


@pytest.fixture
def run(cluster: InProcessCluster) -> Run:
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        def factory(state: CliState) -> Client:
            return Client(state.endpoints or cluster.urls, timeout=state.timeout, deadline=state.deadline,
                          transport=cluster.transport)

        return runner.invoke(main, list(args), obj=CliState(client_factory=factory), env=env)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    return result.stdout


def as_json(result: Result) -> Any:
    return json.loads(ok(result))


def fails(result: Result, code: int, fragment: str) -> str:
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    return lines[0]


def setup_cluster(run: Run, nodes: int = 3, resource: tuple[str, int, int] | None = ("orders", 4, 2)) -> None:
    for i in range(1, nodes + 1):
        ok(run("node", "add", f"n{i}", "--address", f"10.0.0.{i}:9000", "--zone", f"z{i}"))
    if resource:
        name, partitions, replicas = resource
        ok(run("resource", "create", name, "--partitions", str(partitions), "--replicas", str(replicas)))


# --- commands, text and JSON ------------------------------------------------------------------

def test_status(run: Run, cluster: InProcessCluster) -> None:
    cluster.down.add("m3")
    text = ok(run("status"))
    assert text.startswith("data plane: healthy\n")
    assert "coordinator: healthy  leader: m1" in text
    assert "unreachable" in text and "http://m3.test" in text
    data = as_json(run("status", "--json"))
    assert data["leader"] == "m1" and data["healthy"] is True and data["data_plane_healthy"]
    assert [(m["member_id"], m["reachable"]) for m in data["members"]] == [("m1", True), ("m2", True),
                                                                           ("m3", False)]
    assert {"role", "term", "commit_index", "applied_index", "revision"} <= set(data["members"][0])


def test_status_leads_with_the_data_plane_and_check_fails_when_unhealthy(run: Run) -> None:
    setup_cluster(run, nodes=3, resource=("orders", 4, 3))
    assert run("status", "--check").exit_code == 0
    ok(run("node", "set-state", "n3", "--status", "down"))
    checked = run("status", "--check")
    assert checked.exit_code == 3, checked.output
    lines = checked.stdout.splitlines()
    assert lines[:3] == ["data plane: UNHEALTHY", "  nodes: 2 up, 0 suspect, 1 down",
                         "  partitions: 0 healthy, 4 under-replicated, 0 leaderless, 0 unavailable"]
    assert lines[3].startswith("  worst: orders/0 under-replicated") and "coordinator: healthy" in lines[4]
    assert run("status").exit_code == 0  # without --check the answer alone tells
    data = json.loads(run("status", "--json", "--check").stdout)
    assert data["data_plane_healthy"] is False and data["health"]["nodes"]["down"] == 1


def test_node_list_tells_a_node_without_a_session_and_keepalive_speaks_for_it(run: Run) -> None:
    added = ok(run("node", "add", "n1", "--address", "10.0.0.1:9000"))
    assert "note: n1 will be judged down unless its agent starts a session" in added
    ok(run("node", "add", "n2", "--address", "10.0.0.2:9000"))
    listing = ok(run("node", "list"))
    assert listing.count("no session yet") == 2
    kept = ok(run("node", "keepalive", "n1", "--interval", "0.1", "--duration", "0.3"))
    assert "keeping alive n1 (epoch 2)" in kept and "stopped after 3 heartbeats each" in kept
    rows = {line.split()[0]: line for line in ok(run("node", "list")).splitlines()[1:]}
    assert "epoch 2" in rows["n1"] and "no session yet" in rows["n2"]
    fails(run("node", "keepalive", "ghost", "--duration", "0.1"), 2, "ghost")


def test_node_add_list_show(run: Run) -> None:
    out = ok(run("node", "add", "n1", "--address", "10.0.0.1:9000", "--zone", "a", "--capacity", "2",
                 "--tag", "rack=r7", "--tag", "os=linux"))
    assert "node n1 added (revision 1)" in out
    added = as_json(run("node", "add", "n2", "--address", "10.0.0.2:9000", "--json"))
    assert added["node"]["id"] == "n2" and added["revision"] == 2 and len(added["request_id"]) == 32

    listing = ok(run("node", "list"))
    assert listing.splitlines()[0].split() == ["ID", "ADDRESS", "ZONE", "CAPACITY", "STATUS", "SESSION",
                                               "ADMIN", "TAGS"]
    assert "os=linux,rack=r7" in listing
    nodes = as_json(run("--json", "node", "list", "--consistent"))["nodes"]
    assert [(n["id"], n["capacity"], n["tags"]) for n in nodes] == [
        ("n1", 2.0, {"os": "linux", "rack": "r7"}), ("n2", 1.0, {})]

    shown = ok(run("node", "show", "n1"))
    assert "address:    10.0.0.1:9000" in shown and "replicas:   none" in shown
    assert as_json(run("node", "show", "n1", "--json"))["zone"] == "a"


def test_node_set_state(run: Run, cluster: InProcessCluster) -> None:
    ok(run("node", "add", "n1", "--address", "10.0.0.1:9000", "--tag", "rack=r7", "--tag", "old=x"))
    out = ok(run("node", "set-state", "n1", "--status", "down", "--zone", "b", "--capacity", "3",
                 "--address", "10.0.0.9:9000", "--tag", "new=y", "--untag", "old", "--metric", "cpu=0.5"))
    assert "node n1 updated (revision 2)" in out
    node = cluster.state("m1").nodes["n1"]
    assert (node.status, node.zone, node.capacity, node.address) == ("down", "b", 3.0, "10.0.0.9:9000")
    assert node.tags == {"rack": "r7", "new": "y"} and node.metrics == {"cpu": 0.5}
    data = as_json(run("node", "set-state", "n1", "--status", "up", "--json"))
    assert data["node"]["status"] == "up"


def test_node_remove(run: Run, cluster: InProcessCluster) -> None:
    setup_cluster(run, 3, ("orders", 2, 2))
    fails(run("node", "remove", "n1"), 2, "holds")
    out = ok(run("node", "remove", "n1", "--force"))
    assert "node n1 removed" in out
    assert "n1" not in cluster.state("m1").nodes
    assert as_json(run("node", "remove", "n2", "--force", "--json"))["node_id"] == "n2"


def test_resource_create_list_delete(run: Run) -> None:
    setup_cluster(run, 3, None)
    out = ok(run("resource", "create", "orders", "--partitions", "12", "--replicas", "3"))
    assert "resource orders created: 12 partitions x 3 replicas" in out
    assert as_json(run("resource", "create", "cache", "--partitions", "1", "--replicas", "1", "--json"))[
        "resource"] == {"name": "cache", "partitions": 1, "replication_factor": 1, "balance_metric": None}
    listing = ok(run("resource", "list"))
    assert listing.splitlines()[0].split() == ["NAME", "PARTITIONS", "REPLICAS", "BALANCE_ON", "CREATED"]
    assert [r["name"] for r in as_json(run("resource", "list", "--json"))["resources"]] == ["cache", "orders"]
    assert "resource cache deleted" in ok(run("resource", "delete", "cache"))
    assert as_json(run("--json", "resource", "list"))["resources"][0]["name"] == "orders"
    assert ok(run("resource", "delete", "orders", "--json"))
    assert ok(run("resource", "list")).strip() == "no resources"


def test_routing(run: Run) -> None:
    assert ok(run("routing")).splitlines() == ["revision: 0", "no resources"]
    setup_cluster(run)
    text = ok(run("routing", "orders"))
    lines = text.splitlines()
    assert lines[0] == "revision: 4"
    assert lines[1].split() == ["RESOURCE", "PARTITION", "LEADER", "LEADER_ADDRESS", "EPOCH", "REPLICAS"]
    assert len(lines) == 2 + 4
    table = as_json(run("routing", "orders", "--consistent", "--json"))
    assert table["revision"] == 4
    assert [p["partition"] for p in table["partitions"]] == [0, 1, 2, 3]
    assert all(p["resource"] == "orders" and p["leader"] == p["replicas"][0] for p in table["partitions"])
    assert set(table["addresses"]) == {"n1", "n2", "n3"}
    assert as_json(run("--json", "routing"))["replication_factors"] == {"orders": 2}


def test_partition_move(run: Run, cluster: InProcessCluster) -> None:
    setup_cluster(run)
    replicas = list(cluster.state("m1").resources["orders"].partitions[0].replicas)
    outsider, = [n for n in ("n1", "n2", "n3") if n not in replicas]
    out = ok(run("partition", "move", "orders", "0", "--from", replicas[1], "--to", outsider))
    assert f"orders/0 moved from {replicas[1]} to {outsider}" in out and "epoch 2" in out
    data = as_json(run("partition", "move", "orders", "0", "--from", outsider, "--to", replicas[1],
                       "--json"))
    assert data["partition"]["epoch"] == 3


def test_client_settings_reach_the_factory(cluster: InProcessCluster) -> None:
    seen: list[CliState] = []

    def factory(state: CliState) -> Client:
        seen.append(state)
        return Client(cluster.urls, transport=cluster.transport)

    runner = CliRunner()
    result = runner.invoke(main, ["--timeout", "2", "--deadline", "3", "node", "list"],
                           obj=CliState(client_factory=factory), env={"HACOORD_ENDPOINTS": "h1:1,h2:2"})
    ok(result)
    assert (seen[0].endpoints, seen[0].timeout, seen[0].deadline) == ("h1:1,h2:2", 2.0, 3.0)
    assert make_client(CliState(endpoints="h1:1,h2:2")).endpoints == ("https://h1:1", "https://h2:2")


def test_serve_commands_are_registered() -> None:
    assert {"serve", "cluster", "status", "node", "resource", "partition", "routing"} <= set(main.commands)


# --- bad input: exit 2, one line; unavailable: exit 1, one line -------------------------------

@pytest.mark.parametrize(("args", "fragment"), [
    (["node", "show", "n9"], "unknown node 'n9'"),
    (["node", "add", "n1", "--address", "nowhere"], "malformed address"),
    (["node", "add", "n1", "--address", "a:1", "--tag", "rack"], "--tag"),
    (["node", "add", "n1"], "Missing option '--address'"),
    (["node", "add"], "Missing argument 'ID'"),
    (["node", "set-state", "n1"], "nothing to change"),
    (["node", "set-state", "n1", "--status", "sideways"], "--status"),
    (["node", "set-state", "n1", "--metric", "cpu=lots"], "--metric"),
    (["node", "set-state", "n1", "--tag", "a=b", "--untag", "a"], "--untag"),
    (["node", "remove", "n9"], "unknown node"),
    (["resource", "create", "r", "--partitions", "0", "--replicas", "1"], "--partitions"),
    (["resource", "create", "r", "--partitions", "2", "--replicas", "5"], "5 replicas requested"),
    (["resource", "delete", "nope"], "unknown resource 'nope'"),
    (["partition", "move", "nope", "0", "--from", "a", "--to", "b"], "unknown resource"),
    (["partition", "move", "r", "x", "--from", "a", "--to", "b"], "PARTITION"),
    (["routing", "nope"], "unknown resource 'nope'"),
    (["nonsense"], "No such command"),
    (["node", "list", "--bogus"], "No such option"),
    (["--endpoints", "ftp://x", "node", "list"], "--endpoints"),
])
def test_bad_input_exits_2_with_one_line(run: Run, args: list[str], fragment: str) -> None:
    fails(run(*args), 2, fragment)


def test_conflicts_exit_2(run: Run) -> None:
    setup_cluster(run)
    fails(run("node", "add", "n1", "--address", "10.0.0.1:9000"), 2, "exists")
    fails(run("resource", "create", "orders", "--partitions", "1", "--replicas", "1", "--json"), 2, "exists")
    holder = "n1"
    fails(run("partition", "move", "orders", "9", "--from", holder, "--to", "n2"), 2, "no partition 9")


def test_unavailable_cluster_exits_1_with_one_line(run: Run, cluster: InProcessCluster) -> None:
    cluster.down.update({"m1", "m2", "m3"})
    fails(run("--deadline", "0.2", "node", "list"), 1, "cluster unavailable")
    fails(run("--deadline", "0.2", "status", "--json"), 1, "no coordinator member answered")
    fails(run("--deadline", "0.2", "node", "add", "n1", "--address", "a:1"), 1, "ConnectError")


def test_no_leader_exits_1(run: Run, cluster: InProcessCluster) -> None:
    cluster.set_leader(None)
    fails(run("--deadline", "0.2", "resource", "create", "r", "--partitions", "1", "--replicas", "1"), 1,
          "no_leader")


def test_help_and_version(run: Run) -> None:
    assert "node" in ok(run("--help"))
    assert "--address" in ok(run("node", "add", "--help"))
    assert "0.1.0" in ok(run("--version"))
