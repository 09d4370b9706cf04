"""Health of partitions and nodes, read off the state (pure).

A partition is, in order of severity:

* ``unavailable``: no replica is on a node that is up or suspect (not yet judged down);
* ``leaderless``: it has no leader, or its leader's node is down, while some replica is not;
* ``under_replicated``: fewer replicas than its replication factor on nodes that are up (replicas
  on suspect or down nodes do not count);
* ``healthy``: otherwise.
"""

from __future__ import annotations

from typing import Any

from hacoord.core.model import NODE_STATUSES, ClusterState, Partition

PARTITION_HEALTH = ("healthy", "under_replicated", "leaderless", "unavailable")


def partition_health(state: ClusterState, partition: Partition, replication_factor: int) -> str:
    if all(state.nodes[n].status == "down" for n in partition.replicas):
        return "unavailable"
    if partition.leader is None or state.nodes[partition.leader].status == "down":
        return "leaderless"
    up = [n for n in partition.replicas if state.nodes[n].status == "up"]
    if len(up) < replication_factor:
        return "under_replicated"
    return "healthy"


def summary(state: ClusterState) -> dict[str, Any]:
    """Counts of nodes by status and partitions by health, and the unhealthy partitions (at most
    100 listed). One pass over the replicas; the same answer as :func:`partition_health` on
    every partition."""
    nodes = dict.fromkeys(NODE_STATUSES, 0)
    down: set[str] = set()
    up: set[str] = set()
    for node in state.nodes.values():
        nodes[node.status] = nodes.get(node.status, 0) + 1
        if node.status == "down":
            down.add(node.id)
        elif node.status == "up":
            up.add(node.id)
    everyone_up = len(up) == len(state.nodes)
    partitions = dict.fromkeys(PARTITION_HEALTH, 0)
    unhealthy = []
    for res in state.resources.values():
        rf = res.replication_factor
        for i, part in enumerate(res.partitions):
            replicas = part.replicas
            if everyone_up:
                if not replicas:
                    health = "unavailable"
                elif part.leader is None:
                    health = "leaderless"
                else:
                    health = "healthy" if len(replicas) >= rf else "under_replicated"
            elif all(n in down for n in replicas):
                health = "unavailable"
            elif part.leader is None or part.leader in down:
                health = "leaderless"
            elif sum(1 for n in replicas if n in up) < rf:
                health = "under_replicated"
            else:
                health = "healthy"
            partitions[health] += 1
            if health != "healthy" and len(unhealthy) < 100:
                unhealthy.append({"resource": res.name, "partition": i, "health": health})
    worst = next((h for h in reversed(PARTITION_HEALTH) if partitions[h]), "healthy")
    return {"nodes": nodes, "partitions": partitions, "status": worst, "unhealthy": unhealthy}
