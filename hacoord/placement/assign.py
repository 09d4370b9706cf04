"""Initial placement of a new resource, and replacement replicas for a node that leaves.

Pure and deterministic: the same state and arguments give the same answer on any machine. Ties
are broken by rendezvous hashing (blake2b of resource, partition and node), never by ``hash()``.

Policy, in order of precedence for each replica slot:

1. a node that is up and does not already hold a replica of this partition;
2. a zone this partition does not use yet, while such a zone has a candidate;
3. the lowest load after placement relative to capacity, ``(replicas + 1) / capacity``;
4. the rendezvous score.

Leaders are chosen among a partition's replicas by the lowest ``(leaderships + 1) / capacity``.
The rebalancer (a later stage) starts from the assignment this produces and moves as little as it
can; this module only ever adds replicas.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Iterable

from hacoord.core.model import ClusterState, Node


def rendezvous(resource: str, partition: int, node_id: str) -> int:
    """Stable 64-bit score of a node for one partition (higher wins)."""
    key = f"{resource}\x00{partition}\x00{node_id}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class _Loads:
    """Replica and leadership counts that grow as placement proceeds."""

    def __init__(self, state: ClusterState) -> None:
        self.replicas = state.replica_counts()
        self.leaders = state.leader_counts()


def _eligible(nodes: Iterable[Node]) -> list[Node]:
    return [n for n in nodes if n.status == "up"]


def _pick(candidates: list[Node], used_zones: set[str], loads: _Loads,
          resource: str, partition: int) -> Node | None:
    if not candidates:
        return None
    fresh = [n for n in candidates if n.zone not in used_zones]
    pool = fresh or candidates
    return min(pool, key=lambda n: ((loads.replicas[n.id] + 1) / n.capacity,
                                    -rendezvous(resource, partition, n.id)))


def _choose_replicas(state: ClusterState, loads: _Loads, resource: str, partition: int,
                     count: int, keep: list[str]) -> list[str]:
    chosen = list(keep)
    used_zones = {state.nodes[n].zone for n in chosen}
    pool = _eligible(state.nodes.values())
    # Fall back to nodes that are down only if the up ones cannot fill the slots.
    fallback = [n for n in state.nodes.values() if n.status != "up"]
    for _ in range(count):
        candidates = [n for n in pool if n.id not in chosen]
        if not candidates:
            candidates = [n for n in fallback if n.id not in chosen]
        node = _pick(candidates, used_zones, loads, resource, partition)
        if node is None:
            break
        chosen.append(node.id)
        used_zones.add(node.zone)
        loads.replicas[node.id] += 1
    return chosen[len(keep):]


def _choose_leader(state: ClusterState, loads: _Loads, replicas: list[str]) -> str:
    def score(node_id: str) -> tuple[int, float, int]:
        node = state.nodes[node_id]
        return (0 if node.status == "up" else 1, (loads.leaders[node_id] + 1) / node.capacity,
                replicas.index(node_id))

    leader = min(replicas, key=score)
    loads.leaders[leader] += 1
    return leader


def _slot_hash(prefix: hashlib._Hash, slot: int) -> int:
    h = prefix.copy()
    h.update(slot.to_bytes(2, "big"))
    return int.from_bytes(h.digest(), "big")


class _FastChooser:
    """The policy of ``_choose_replicas`` for many partitions in a row, at a cost per replica that
    does not grow with the number of nodes: up nodes are kept per zone in buckets of equal load
    (each a sorted list of node ids), so a slot looks only at the least-loaded bucket of each
    zone it may use, and picks one of the nodes tied there by one hash of resource, partition
    and slot (an index into the tied nodes in id order). Zones first, then load, as in
    ``_choose_replicas``; among equally loaded nodes the pick is pseudo-random per partition,
    so replica sets scatter across the cluster. A slot no up node can take falls back to the
    plain path (nodes that are down).
    """

    def __init__(self, state: ClusterState, loads: _Loads) -> None:
        self.state, self.loads = state, loads
        self.up = _eligible(state.nodes.values())
        self.by_id = {n.id: n for n in self.up}
        self.zones: dict[str, list[Node]] = {}
        for node in sorted(self.up, key=lambda n: (n.zone, n.id)):  # not registration order
            self.zones.setdefault(node.zone, []).append(node)
        self.buckets: dict[str, dict[float, list[str]]] = {z: {} for z in self.zones}
        self.heaps: dict[str, list[float]] = {z: [] for z in self.zones}
        for node in sorted(self.up, key=lambda n: n.id):
            self._file(node)

    def _load(self, node: Node) -> float:
        return (self.loads.replicas[node.id] + 1) / node.capacity

    def _file(self, node: Node) -> None:
        load = self._load(node)
        bucket = self.buckets[node.zone].get(load)
        if bucket is None:
            bucket = self.buckets[node.zone][load] = []
            heapq.heappush(self.heaps[node.zone], load)
        bisect.insort(bucket, node.id)

    def _least(self, zone: str) -> float | None:
        heap, buckets = self.heaps[zone], self.buckets[zone]
        while heap and heap[0] not in buckets:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _add(self, node: Node) -> None:
        buckets = self.buckets.get(node.zone)
        if buckets is not None and node.id in self.by_id:
            load = self._load(node)
            bucket = buckets[load]
            del bucket[bisect.bisect_left(bucket, node.id)]
            if not bucket:
                del buckets[load]
        self.loads.replicas[node.id] += 1
        if buckets is not None and node.id in self.by_id:
            self._file(node)

    def choose(self, resource: str, partition: int, count: int) -> list[str]:
        chosen: list[str] = []
        used: set[str] = set()
        prefix = hashlib.blake2b(f"{resource}\x00{partition}\x00".encode(), digest_size=8)
        for slot in range(count):
            node = self._tied(prefix, slot, [z for z in self.zones if z not in used], chosen) \
                or self._tied(prefix, slot, list(self.zones), chosen) \
                or self._plain(resource, partition, chosen, used)
            if node is None:
                break
            chosen.append(node.id)
            used.add(node.zone)
            self._add(node)
        return chosen

    def _tied(self, prefix: hashlib._Hash, slot: int, zones: list[str],
              chosen: list[str]) -> Node | None:
        """One of the least-loaded up nodes of ``zones`` not in ``chosen``, picked by hash."""
        leasts = {z: self._least(z) for z in zones}
        present = [load for load in leasts.values() if load is not None]
        if not present:
            return None
        least = min(present)
        groups = [self.buckets[z][least] for z in zones if leasts[z] == least]
        total = sum(len(g) for g in groups)
        start = _slot_hash(prefix, slot) % total
        for step in range(min(total, len(chosen) + 1)):
            k = (start + step) % total
            for group in groups:
                if k < len(group):
                    if group[k] not in chosen:
                        return self.by_id[group[k]]
                    break
                k -= len(group)
        return None

    def _plain(self, resource: str, partition: int, chosen: list[str], used: set[str]) -> Node | None:
        candidates = [n for n in self.up if n.id not in chosen]
        if not candidates:
            candidates = [n for n in self.state.nodes.values() if n.status != "up" and n.id not in chosen]
        return _pick(candidates, used, self.loads, resource, partition)


def place_resource(state: ClusterState, name: str, partitions: int,
                   replication_factor: int, start: int = 0) -> list[list[str]]:
    """Replicas for each partition of a new resource, leader first: partitions ``start`` to
    ``start + partitions - 1`` (a resource created in slices is placed on from where it ends).

    Returns fewer than ``replication_factor`` replicas per partition only when the cluster has
    fewer nodes; the caller (``apply``) rejects that case.
    """
    loads = _Loads(state)
    chooser = _FastChooser(state, loads)
    assignment = []
    for p in range(start, start + partitions):
        replicas = chooser.choose(name, p, replication_factor)
        if not replicas:
            assignment.append([])
            continue
        leader = _choose_leader(state, loads, replicas)
        replicas.remove(leader)
        assignment.append([leader, *replicas])
    return assignment


def replacements_for(state: ClusterState, node_id: str) -> dict[str, dict[str, str | None]]:
    """Where each replica held by ``node_id`` should go if the node is removed.

    Maps resource name -> partition index (as a string) -> the replacement node, or ``None``
    when no other node can take it.
    """
    loads = _Loads(state)
    loads.replicas.pop(node_id, None)
    plan: dict[str, dict[str, str | None]] = {}
    without = ClusterState(nodes={k: v for k, v in state.nodes.items() if k != node_id})
    for res in state.resources.values():
        for i, part in enumerate(res.partitions):
            if node_id not in part.replicas:
                continue
            keep = [n for n in part.replicas if n != node_id]
            new = _choose_replicas(without, loads, res.name, i, 1, keep)
            plan.setdefault(res.name, {})[str(i)] = new[0] if new else None
    return plan
