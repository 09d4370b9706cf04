"""End to end: the example kv nodes (real processes, each with a NodeAgent) against a real 3-member
coordinator cluster. They keep serving, and their agents ride through, when the coordinator leader
is SIGKILLed; a drained node hands its partitions over in two phases without losing a key; stale
epochs are refused."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hacoord import Client
from hacoord.client import RoutingTable
from hacoord.examples.kvclient import KVClient
from hacoord.examples.kvhttp import KVCallError, KVNodeCaller
from hacoord.examples.kvstore import partition_for
from hacoord.testing.cluster import LocalCluster, wait_for
from tests.agent.kvprocs import KVNodeProcess, start_kv_nodes, stop_kv_nodes

pytestmark = pytest.mark.integration

#: After a failover an agent finds the new leader through its client's retries, whose backoff
#: reaches 1 s: a node is only sure to be heard within the suspect timeout if that is longer.
SUSPECT_AFTER, DOWN_AFTER = 2.0, 4.0
HEARTBEAT = 0.2
#: Each copy for a move lasts this long (plus the real copy): writes are sure to land meanwhile.
COPY_DELAY = 0.3
RESOURCE, PARTITIONS, REPLICAS = "kv", 8, 3
NODE_IDS = ["kv1", "kv2", "kv3", "kv4"]


@dataclass
class Setup:
    cluster: LocalCluster
    nodes: dict[str, KVNodeProcess]
    client: Client
    kv: KVClient


def held_as_routed(nodes: dict[str, KVNodeProcess], table: RoutingTable) -> bool:
    """Every node holds exactly what ``table`` routes to it, under the same epochs and roles."""
    for node_id, node in nodes.items():
        held = {key: (p["epoch"], p["role"]) for key, p in node.held().items()}
        routed = {}
        for route in table:
            if node_id in route.replicas:
                routed[(route.resource, route.partition)] = (
                    route.epoch, "leader" if route.leader == node_id else "follower")
            elif node_id in route.adding:
                routed[(route.resource, route.partition)] = (route.epoch, "catching_up")
        if held != routed:
            return False
    return True


def settled(setup: Setup) -> RoutingTable | None:
    """The routing, once no move is pending and every node holds what it routes."""
    table = setup.client.routing(consistent=True)
    if any(route.adding for route in table):
        return None
    return table if held_as_routed(setup.nodes, table) else None


def down_or_suspect(cluster: LocalCluster, member: str, since: int) -> list[dict]:
    """The kv nodes' liveness changes after revision ``since``, as ``member`` recorded them."""
    url = cluster.members[member].url + "/v1/watch"
    events = httpx.get(url, params={"since": since, "timeout": 0, "limit": 10_000}, timeout=5,
                       headers=cluster.headers, verify=cluster.verify).json()
    return [e["data"] for e in events["events"] if e["type"] == "NodeStateChanged"
            and e["data"]["id"] in NODE_IDS and e["data"]["status"] != "up"]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    cluster = LocalCluster(tmp_path / "coordinator", 3, ("--suspect-after", str(SUSPECT_AFTER),
                                                         "--down-after", str(DOWN_AFTER)))
    cluster.start()
    nodes: dict[str, KVNodeProcess] = {}
    client = cluster.client(timeout=1.0, deadline=15.0)
    kv = KVClient(client, RESOURCE)
    try:
        nodes = start_kv_nodes(tmp_path / "kv", cluster.endpoints, NODE_IDS,
                               "--heartbeat-interval", str(HEARTBEAT), "--watch-poll", "1",
                               "--metrics-interval", "1", "--copy-delay", str(COPY_DELAY),
                               token_file=cluster.token_file, ca=cluster.ca)
        client.resource_create(RESOURCE, PARTITIONS, REPLICAS)
        running = Setup(cluster, nodes, client, kv)
        wait_for("every kv node holding what it is routed", lambda: settled(running), timeout=20)
        yield running
    finally:
        kv.close()
        client.close()
        stop_kv_nodes(nodes)
        cluster.stop_all()
    for node in nodes.values():
        assert "Traceback" not in node.log(), node.log()
    assert "Traceback" not in cluster.logs(), cluster.logs()


def write_keys(kv: KVClient, prefix: str, count: int) -> dict[str, str]:
    written = {}
    for i in range(count):
        key, value = f"{prefix}{i}", f"{prefix}-value-{i}"
        kv.put(key, value)
        written[key] = value
    return written


def assert_readable(kv: KVClient, expected: dict[str, str]) -> None:
    wrong = {key: kv.get(key) for key, value in expected.items() if kv.get(key) != value}
    assert wrong == {}, f"{len(wrong)} of {len(expected)} keys wrong, e.g. {list(wrong.items())[:3]}"


def test_kv_nodes_keep_serving_and_their_agents_ride_through_a_coordinator_leader_kill(
        setup: Setup) -> None:
    cluster, nodes, kv = setup.cluster, setup.nodes, setup.kv
    acked = write_keys(kv, "before", 100)
    epochs = {node_id: node.state()["agent"]["epoch"] for node_id, node in nodes.items()}
    leader = cluster.leader()
    since = cluster.status(leader)["revision"]

    cluster.kill(leader, signal.SIGKILL)
    # The kv nodes need no coordinator to serve: reads and writes go on during the election.
    assert_readable(kv, acked)
    acked |= write_keys(kv, "during", 50)

    survivors = cluster.live()
    new_leader = cluster.leader(among=survivors)
    assert new_leader != leader
    # Heartbeats resume through the new leader; let them go on for two down-timeouts' worth of
    # beats, time enough for the new leader to judge (and wrongly mark down) a silent node.
    beats = {node_id: node.state()["agent"]["heartbeats"] for node_id, node in nodes.items()}
    enough = math.ceil(2 * DOWN_AFTER / HEARTBEAT)
    for node_id, node in nodes.items():
        wait_for(f"{node_id} heartbeating through the new leader",
                 lambda n=node, b=beats[node_id]: n.state()["agent"]["heartbeats"] >= b + enough,
                 timeout=60)

    # The feed resumed too: a resource created after the failover reaches every node.
    setup.client.resource_create("after", 4, 2)
    wait_for("the nodes holding the new resource", lambda: settled(setup), timeout=20)

    cluster.converged()
    for member in survivors:
        with cluster.client(endpoints=[cluster.members[member].url]) as direct:
            statuses = {n.id: n.status for n in direct.node_list() if n.id in nodes}
        assert statuses == dict.fromkeys(nodes, "up"), (member, statuses)
        assert down_or_suspect(cluster, member, since) == []
    for node_id, node in nodes.items():
        agent = node.state()["agent"]
        assert agent["running"] and agent["lost"] is None, agent
        assert agent["epoch"] == epochs[node_id], "the agent started a new session"
        assert (agent["heartbeat_failures"], agent["watch_failures"]) == (0, 0), agent
    assert_readable(kv, acked)


def test_a_drained_kv_node_hands_its_partitions_over_without_losing_a_key(setup: Setup) -> None:
    client, nodes, kv = setup.client, setup.nodes, setup.kv
    acked = write_keys(kv, "key", 100)
    before = client.routing(RESOURCE)
    victim = max(NODE_IDS, key=lambda n: (sum(r.leader == n for r in before), n))  # leads some
    moving = {r.partition: r for r in before if victim in r.replicas}
    assert any(r.leader == victim for r in moving.values())

    # Writes go on throughout the moves: each must reach the replica being added.
    stop_writing = threading.Event()
    failures: list[Exception] = []

    def writer() -> None:
        with KVClient(client, RESOURCE) as own:
            for i in range(5000):
                if stop_writing.is_set():
                    return
                key, value = f"during{i}", f"during-value-{i}"
                try:
                    own.put(key, value)
                except KVCallError as exc:
                    failures.append(exc)
                    return
                acked[key] = value

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        client.node_set_state(victim, admin="draining", admin_reason="e2e test")
        wait_for(f"{victim} drained", lambda: not nodes[victim].held() and settled(setup), timeout=45)
    finally:
        stop_writing.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and failures == []

    after = client.routing(RESOURCE)
    assert all(victim not in r.replicas for r in after)
    assert all(after.route(RESOURCE, p).epoch >= route.epoch + 2 for p, route in moving.items())
    completed = sum(nodes[n].state()["agent"]["moves_completed"] for n in NODE_IDS)
    assert completed == len(moving)

    # Every replica of every partition has every acknowledged key, not just the leaders.
    caller = KVNodeCaller()
    try:
        for key, value in acked.items():
            route = after.route(RESOURCE, partition_for(key, PARTITIONS))
            for replica in route.replicas:
                entry = caller.get(after.addresses[replica], RESOURCE, route.partition, key, route.epoch)
                assert entry is not None and entry.value == value, (key, replica, entry)
        assert_readable(kv, acked)

        # Stale epochs are refused: a write stamped with a moved partition's old epoch...
        partition, old = next(iter(moving.items()))
        new = after.route(RESOURCE, partition)
        with pytest.raises(KVCallError) as refused:
            caller.put(after.addresses[new.leader], RESOURCE, partition, "stale", "x", old.epoch)
        assert (refused.value.status, refused.value.code, refused.value.body["known"]) == (
            409, "stale_epoch", new.epoch)
        # ...and the drained node serves the partition no more, whatever the epoch.
        with pytest.raises(KVCallError) as gone:
            caller.get(nodes[victim].address, RESOURCE, partition, "key0", new.epoch)
        assert (gone.value.status, gone.value.code) == (421, "not_held")
    finally:
        caller.close()
