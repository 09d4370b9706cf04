"""Read models: the JSON the API returns for parts of the state. Every read says which revision
it reflects."""

from __future__ import annotations

from typing import Any

from hacoord.core.model import ClusterState, Resource


def resource_summary(resource: Resource) -> dict[str, Any]:
    return {
        "name": resource.name,
        "partitions": len(resource.partitions),
        "replication_factor": resource.replication_factor,
        "created_at": resource.created_at,
        "balance_metric": resource.balance_metric,
        "creating": resource.creating,
        "size": max(resource.size, len(resource.partitions)),
    }


def routing(state: ClusterState, resource_name: str | None = None) -> dict[str, Any]:
    """Partition -> replicas, leader and fencing epoch, with the replicas' addresses. ``adding``
    names the node catching up for a pending move (it copies from the replicas, serves nothing)."""
    names = [resource_name] if resource_name else sorted(state.resources)
    resources = {}
    used: set[str] = set()
    for name in names:
        res = state.resources[name]
        parts = []
        for i, part in enumerate(res.partitions):
            move = state.move_of(name, i)
            adding = [move.to_node] if move else []
            parts.append({"partition": i, "replicas": list(part.replicas), "leader": part.leader,
                          "epoch": part.epoch, "adding": adding})
            used.update(part.replicas)
            used.update(adding)
        resources[name] = {"replication_factor": res.replication_factor, "partitions": parts}
    addresses = {n: state.nodes[n].address for n in sorted(used) if n in state.nodes}
    return {"revision": state.revision, "resources": resources, "addresses": addresses}


def node_view(state: ClusterState, node_id: str) -> dict[str, Any]:
    """A node with the replicas and leaderships it holds, and the replicas it is catching up on
    (``catching_up``: targets of pending moves), and how many pending moves it takes part in."""
    node = state.nodes[node_id].to_dict()
    held = []
    for res in state.resources.values():
        for i, part in enumerate(res.partitions):
            if node_id in part.replicas:
                held.append({"resource": res.name, "partition": i, "leader": part.leader == node_id,
                             "epoch": part.epoch, "catching_up": False})
    for move in state.moves.values():
        if move.to_node == node_id:
            part = state.resources[move.resource].partitions[move.partition]
            held.append({"resource": move.resource, "partition": move.partition, "leader": False,
                         "epoch": part.epoch, "catching_up": True})
    node["replicas"] = held
    node["moves"] = state.moves_per_node().get(node_id, 0)
    return node


def routing_from(past: dict[str, Any], state: ClusterState, revision: int,
                 resource_name: str | None = None) -> dict[str, Any]:
    """The same shape as :func:`routing`, from a past routing (``ChangeFeed.routing_at``).
    Addresses are the nodes' current ones (node records are not versioned)."""
    names = [resource_name] if resource_name else sorted(past)
    resources = {}
    used: set[str] = set()
    for name in names:
        rf, parts = past[name]
        resources[name] = {"replication_factor": rf, "partitions": [
            {"partition": i, "replicas": list(replicas), "leader": leader, "epoch": epoch,
             "adding": list(adding)}
            for i, (replicas, leader, epoch, adding) in enumerate(parts)]}
        for replicas, _, _, adding in parts:
            used.update(replicas)
            used.update(adding)
    addresses = {n: state.nodes[n].address for n in sorted(used) if n in state.nodes}
    return {"revision": revision, "resources": resources, "addresses": addresses}
