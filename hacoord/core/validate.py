"""Invariants of :class:`~hacoord.core.model.ClusterState`, checked after every applied change in
tests and by the leader in the background. ``validate`` returns the violations (empty when sound);
``validate_transition`` adds the rules that compare two successive states."""

from __future__ import annotations

import math
from collections.abc import Iterable

from hacoord.core.events import Event
from hacoord.core.leadership import LeaderIndex
from hacoord.core.model import NODE_ADMIN, NODE_STATUSES, ClusterState, valid_address, valid_id
from hacoord.protocol import events as ev
from hacoord.protocol.events import parse_event


def _node_problems(state: ClusterState, node_id: str) -> list[str]:
    node = state.nodes[node_id]
    problems = []
    if node.id != node_id or not valid_id(node_id):
        problems.append(f"node key {node_id!r} does not match a valid id {node.id!r}")
    if not valid_address(node.address):
        problems.append(f"node {node_id}: malformed address {node.address!r}")
    if node.status not in NODE_STATUSES:
        problems.append(f"node {node_id}: unknown status {node.status!r}")
    if not (math.isfinite(node.capacity) and node.capacity > 0):
        problems.append(f"node {node_id}: capacity {node.capacity} is not positive")
    if node.epoch < 1:
        problems.append(f"node {node_id}: epoch {node.epoch} < 1")
    if node.admin not in NODE_ADMIN:
        problems.append(f"node {node_id}: unknown admin state {node.admin!r}")
    return problems


def _partition_problems(state: ClusterState, name: str, i: int) -> list[str]:
    res = state.resources[name]
    part = res.partitions[i]
    where = f"{name}/{i}"
    problems = []
    if len(set(part.replicas)) != len(part.replicas):
        problems.append(f"{where}: repeated replica in {part.replicas}")
    unknown = [n for n in part.replicas if n not in state.nodes]
    if unknown:
        problems.append(f"{where}: replicas on unknown nodes {unknown}")
    # Fewer than ``rf`` replicas is reachable (a forced removal with no node left to take a
    # replica, then a new node registering), so it is checked per step, not here.
    if len(part.replicas) > res.replication_factor:
        problems.append(f"{where}: {len(part.replicas)} replicas exceed factor "
                        f"{res.replication_factor}")
    if part.leader is not None and part.leader not in part.replicas:
        problems.append(f"{where}: leader {part.leader!r} is not a replica")
    if part.leader is None and part.replicas:
        problems.append(f"{where}: replicas but no leader")
    if part.epoch < 1:
        problems.append(f"{where}: epoch {part.epoch} < 1")
    move = state.move_of(name, i)
    if move is not None:
        if move.to_node in part.replicas or move.to_node not in state.nodes:
            problems.append(f"{where}: pending move to {move.to_node!r}, a replica or unknown node")
        if move.from_node is not None and move.from_node not in part.replicas:
            problems.append(f"{where}: pending move from {move.from_node!r}, not a replica")
        if move.from_node is None and len(part.replicas) >= res.replication_factor:
            problems.append(f"{where}: pending replica addition beyond the replication factor")
    return problems


def validate(state: ClusterState) -> list[str]:
    """Every broken invariant of ``state``, as readable sentences."""
    problems: list[str] = []
    if state.revision < 0:
        problems.append(f"negative revision {state.revision}")
    for node_id in state.nodes:
        problems += _node_problems(state, node_id)
    if state.leader_term < 0:
        problems.append(f"negative leader term {state.leader_term}")
    for name, res in state.resources.items():
        if res.name != name:
            problems.append(f"resource key {name!r} does not match its name {res.name!r}")
        for i in range(len(res.partitions)):
            problems += _partition_problems(state, name, i)
    for key, move in state.moves.items():
        res = state.resources.get(move.resource)
        if key != move.key or res is None or not 0 <= move.partition < len(res.partitions):
            problems.append(f"pending move {key!r} names no partition")
    if state.leader_index().as_dict() != LeaderIndex.build(state.resources).as_dict():
        problems.append("the leader index disagrees with the partitions' leaders")
    return problems


#: The events whose changes :func:`check_changes` checks.
CHECKED_EVENTS = frozenset({ev.NodeRegistered.TYPE, ev.NodeSessionStarted.TYPE,
                            ev.NodeStateChanged.TYPE, ev.NodeRemoved.TYPE} | ev.PARTITION_EVENTS)


def check_changes(state: ClusterState, events: Iterable[Event]) -> list[str]:
    """The invariants of what ``events`` touched, in ``state`` right after they happened: cheap
    enough to run after every applied command (a whole ``validate`` is not, at scale)."""
    problems: list[str] = []
    for event in events:
        data = parse_event(event.type, event.data) if event.type in CHECKED_EVENTS else None
        if isinstance(data, ev.NodeRecordEvent):
            if data.id in state.nodes:
                problems += _node_problems(state, data.id)
        elif isinstance(data, ev.NodeRemoved):
            holders = [f"{name}/{i}" for name, res in state.resources.items()
                       for i, part in enumerate(res.partitions) if data.id in part.replicas]
            if holders:
                problems.append(f"removed node {data.id!r} still holds {holders[:5]}")
        elif isinstance(data, ev.PartitionChanged):
            res = state.resources.get(data.resource)
            if res is not None and 0 <= data.partition < len(res.partitions):
                problems += _partition_problems(state, data.resource, data.partition)
        elif isinstance(data, ev.ResourceCreated | ev.PartitionsAdded):
            name, start, added = data.slice()
            res = state.resources.get(name)
            if res is not None:
                for i in range(start, start + len(added)):
                    problems += _partition_problems(state, name, i)
                if res.size and len(res.partitions) > res.size:
                    problems.append(f"{name}: {len(res.partitions)} partitions, above its size")
    return problems


def validate_transition(before: ClusterState, after: ClusterState) -> list[str]:
    """Rules across one step: the revision, the leader term, a node's epoch and a partition's
    epoch never go back, any change of a partition's replicas or leader comes with a higher epoch,
    and it loses a replica only when no other node could hold one."""
    problems: list[str] = []
    if after.revision < before.revision:
        problems.append(f"revision went back from {before.revision} to {after.revision}")
    if after.leader_term < before.leader_term:
        problems.append(f"leader term went back from {before.leader_term} to {after.leader_term}")
    for node_id, old_node in before.nodes.items():
        new_node = after.nodes.get(node_id)
        if new_node is not None and new_node.epoch < old_node.epoch:
            problems.append(f"node {node_id}: epoch went back {old_node.epoch} -> {new_node.epoch}")
    for name, old in before.resources.items():
        new = after.resources.get(name)
        if new is None or new.created_at != old.created_at:
            continue
        for i, (p_old, p_new) in enumerate(zip(old.partitions, new.partitions, strict=False)):
            if p_new.epoch < p_old.epoch:
                problems.append(f"{name}/{i}: epoch went back {p_old.epoch} -> {p_new.epoch}")
            changed = p_new.replicas != p_old.replicas or p_new.leader != p_old.leader
            if changed and p_new.epoch <= p_old.epoch:
                problems.append(f"{name}/{i}: ownership changed without a new epoch")
            spare = [n for n in after.nodes if n not in p_new.replicas]
            # Lowering the replication factor drops replicas on purpose, down to the new factor.
            floor = min(len(p_old.replicas), new.replication_factor)
            if len(p_new.replicas) < floor and spare:
                problems.append(f"{name}/{i}: lost a replica while {spare[0]!r} could hold it")
    return problems
