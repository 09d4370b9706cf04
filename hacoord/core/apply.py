"""``apply(state, command)``: the deterministic, total transition function of the coordinator.

Contract (every replica relies on it):

* Deterministic: the outcome depends only on ``state`` and ``command``; no clock, randomness or
  I/O, no iteration over unordered collections.
* Total: it never raises. A malformed or invalid command becomes a :class:`Rejected` value.
* Atomic: each handler checks everything before it changes anything, so a rejection leaves the
  state exactly as it was (its digest included).
* Idempotent per request id: a write whose ``request_id`` was applied before is answered with the
  remembered outcome and changes nothing.

``apply`` mutates ``state`` in place when the command is accepted and returns the outcome.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

from hacoord.core import commands as c
from hacoord.core.access import BOOTSTRAP_NAME, HASH_PATTERN, MAX_TOKENS, ROLES, ApiToken
from hacoord.core.events import Event
from hacoord.core.model import (
    NODE_ADMIN,
    NODE_STATUSES,
    REMOVED_RETENTION,
    REQUEST_HISTORY,
    REQUEST_RETENTION,
    ClusterState,
    Node,
    Partition,
    PendingMove,
    Resource,
    move_key,
    valid_address,
    valid_id,
)
from hacoord.core.results import Applied, Outcome, Rejected
from hacoord.protocol import events as ev
from hacoord.protocol.formats import MAX_CAPACITY, MIN_CAPACITY

MAX_PARTITIONS = 100_000
MAX_JUDGEMENTS = 10_000  # liveness judgements in one command
MAX_CLUSTER_PARTITIONS = 300_000
MAX_CLUSTER_REPLICAS = 1_000_000
MAX_REPLICATION_FACTOR = 15
MAX_TAGS = 64
MAX_TEXT = 256
MAX_REQUEST_ID = 128
MAX_THROTTLE = 10_000
MAX_DELAY = 1e7


class _Reject(Exception):
    """Raised by the checks inside a handler, before any mutation, and turned into Rejected."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _require(condition: bool, code: str, message: str) -> None:
    if not condition:
        raise _Reject(code, message)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_node_id(state: ClusterState, node_id: object, must_exist: bool = True) -> Node:
    _require(valid_id(node_id), "invalid_argument", f"malformed node id {node_id!r}")
    node = state.nodes.get(node_id)  # type: ignore[arg-type]
    if must_exist:
        _require(node is not None, "not_found", f"unknown node {node_id!r}")
    return node  # type: ignore[return-value]


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_capacity(capacity: object) -> None:
    _require(_number(capacity) and MIN_CAPACITY <= capacity <= MAX_CAPACITY,  # type: ignore[operator]
             "invalid_argument", f"capacity must be a number in [{MIN_CAPACITY:g}, {MAX_CAPACITY:g}]")


def _check_zone(zone: object) -> None:
    _require(valid_id(zone), "invalid_argument", f"malformed zone {zone!r}")


def _check_map(values: object, what: str, allow_none: bool, value_ok: Callable[[Any], bool]) -> None:
    _require(isinstance(values, dict), "invalid_argument", f"{what} must be an object")
    assert isinstance(values, dict)
    _require(len(values) <= MAX_TAGS, "invalid_argument", f"at most {MAX_TAGS} {what}")
    for key, value in values.items():
        _require(valid_id(key), "invalid_argument", f"malformed {what} key {key!r}")
        _require((allow_none and value is None) or value_ok(value), "invalid_argument",
                 f"bad value for {what} {key!r}")


def _tag_value(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _partition(state: ClusterState, resource: object, index: object) -> tuple[Resource, Partition]:
    _require(valid_id(resource), "invalid_argument", f"malformed resource name {resource!r}")
    res = state.resources.get(resource)  # type: ignore[arg-type]
    _require(res is not None, "not_found", f"unknown resource {resource!r}")
    assert res is not None
    _require(isinstance(index, int) and not isinstance(index, bool)
             and 0 <= index < len(res.partitions), "not_found",
             f"resource {resource!r} has no partition {index!r}")
    return res, res.partitions[index]  # type: ignore[index]


def _up_successor(state: ClusterState, partition: Partition, excluding: str) -> str | None:
    """First other replica that is up, in replica order (deterministic)."""
    for node_id in partition.replicas:
        if node_id != excluding and state.nodes[node_id].status == "up":
            return node_id
    return None


def _partition_event(state: ClusterState, rev: int, resource: str, index: int, part: Partition,
                     reason: str) -> Event:
    """``PartitionChanged``: the partition's replicas, leader and epoch after the change, and the
    replica it is adding (``adding``: the target of its pending move, empty when none)."""
    move = state.move_of(resource, index)
    return Event.of(rev, ev.PartitionChanged(
        resource=resource, partition=index, replicas=list(part.replicas), leader=part.leader,
        epoch=part.epoch, adding=[move.to_node] if move else [], reason=reason))


def _node_event(kind: type[ev.NodeRecordEvent], rev: int, node: Node, **extra: Any) -> Event:
    """A ``kind`` event carrying ``node``'s whole record. Built as a dict: the fields of
    :class:`~hacoord.protocol.events.NodeRecordEvent` are ``Node.to_dict()``'s (the protocol's
    test holds them equal), and a liveness batch makes thousands of these on the Raft loop."""
    return Event(kind.TYPE, rev, {**node.to_dict(), **extra})


def _check_term(state: ClusterState, term: object) -> None:
    """A leader-only command carries the Raft term it was decided in; one from a term below the
    highest seen (a deposed leader's late decision) is refused. Accepting it raises the mark."""
    _require(_integer(term) and term >= 0, "invalid_argument",  # type: ignore[operator]
             "term must be a non-negative integer")
    _require(term >= state.leader_term, "stale_term",  # type: ignore[operator]
             f"decided in term {term}, but a leader of term {state.leader_term} has acted")


def _text(value: object, what: str) -> None:
    _require(isinstance(value, str) and len(value) <= MAX_TEXT, "invalid_argument",
             f"{what} must be a string of at most {MAX_TEXT} characters")


def _set_status(node: Node, status: str, now: float) -> bool:
    """Set a node's liveness status; True (and ``status_since`` reset) if it changed."""
    if node.status == status:
        return False
    node.status = status
    node.status_since = now
    return True


# --- handlers: check first, then mutate, then describe ---------------------------------------

def _register_node(state: ClusterState, cmd: c.RegisterNode, rev: int) -> Applied:
    _check_node_id(state, cmd.node_id, must_exist=False)
    _require(cmd.node_id not in state.nodes, "already_exists", f"node {cmd.node_id!r} exists")
    _require(valid_address(cmd.address), "invalid_argument",
             f"malformed address {cmd.address!r} (expected host:port)")
    _check_zone(cmd.zone)
    _check_capacity(cmd.capacity)
    _check_map(cmd.tags, "tags", False, _tag_value)
    # A node registered again within the retention of its removal continues its old epochs.
    gone = state.removed.pop(cmd.node_id, None)
    node = Node(id=cmd.node_id, address=cmd.address, zone=cmd.zone, capacity=float(cmd.capacity),
                tags=dict(cmd.tags), registered_at=cmd.time, updated_at=cmd.time,
                status_since=cmd.time, epoch=gone["epoch"] + 1 if gone else 1)
    state.nodes[node.id] = node
    return Applied(rev, {"node": node.to_dict()}, (_node_event(ev.NodeRegistered, rev, node),))


def _remove_node(state: ClusterState, cmd: c.RemoveNode, rev: int) -> Applied:
    _check_node_id(state, cmd.node_id)
    _require(isinstance(cmd.force, bool), "invalid_argument", "force must be a boolean")
    held = [(res, i, p) for res in state.resources.values()
            for i, p in enumerate(res.partitions) if cmd.node_id in p.replicas]
    _require(not held or cmd.force, "node_not_empty",
             f"node {cmd.node_id!r} holds {len(held)} replicas; move them first or force")
    involved = [m for m in state.moves.values() if cmd.node_id in (m.from_node, m.to_node)]
    _require(not involved or cmd.force, "node_busy",
             f"node {cmd.node_id!r} takes part in {len(involved)} pending moves; "
             "cancel them or force")
    _require(isinstance(cmd.replacements, dict), "invalid_argument", "replacements must be an object")
    plan: list[tuple[Resource, int, Partition, str | None]] = []
    for res, i, part in held:
        by_partition = cmd.replacements.get(res.name, {})
        _require(isinstance(by_partition, dict) and str(i) in by_partition, "stale_plan",
                 f"no replacement given for {res.name}/{i}")
        new = by_partition[str(i)]
        candidates = [n for n in state.nodes if n != cmd.node_id and n not in part.replicas]
        if new is None:
            _require(not candidates, "stale_plan", f"{res.name}/{i} can be re-replicated")
        else:
            _require(new in candidates, "stale_plan", f"replacement {new!r} unfit for {res.name}/{i}")
        plan.append((res, i, part, new))
    events = []
    for move in involved:
        del state.moves[move.key]
        part = state.resources[move.resource].partitions[move.partition]
        if cmd.node_id not in part.replicas:  # re-homed below otherwise, with its own epoch
            part.epoch += 1
            events.append(_partition_event(state, rev, move.resource, move.partition, part,
                                           "move cancelled: node removed"))
    for res, i, part, new in plan:
        slot = part.replicas.index(cmd.node_id)
        if new is None:
            del part.replicas[slot]
        else:
            part.replicas[slot] = new
            pending = state.move_of(res.name, i)
            if pending is not None and pending.to_node == new:
                del state.moves[pending.key]  # a forced removal places the replica at once
        if part.leader == cmd.node_id:
            state.set_leader(res.name, i, _up_successor(state, part, new or "") or (
                part.replicas[0] if part.replicas else None))
        part.epoch += 1
        events.append(_partition_event(state, rev, res.name, i, part, "node removed"))
    state.removed[cmd.node_id] = {"epoch": state.nodes[cmd.node_id].epoch, "removed_at": cmd.time}
    del state.nodes[cmd.node_id]
    events.append(Event.of(rev, ev.NodeRemoved(id=cmd.node_id)))
    return Applied(rev, {"node_id": cmd.node_id, "moved": len(plan)}, tuple(events))


def _set_node_state(state: ClusterState, cmd: c.SetNodeState, rev: int) -> Applied:
    node = _check_node_id(state, cmd.node_id)
    if cmd.epoch is not None:
        _require(cmd.epoch == node.epoch, "stale_epoch",
                 f"node {node.id!r} is at epoch {node.epoch}, not {cmd.epoch}")
    if cmd.status is not None:
        _require(cmd.status in NODE_STATUSES, "invalid_argument",
                 f"status must be one of {', '.join(NODE_STATUSES)}")
    if cmd.address is not None:
        _require(valid_address(cmd.address), "invalid_argument", f"malformed address {cmd.address!r}")
    if cmd.zone is not None:
        _check_zone(cmd.zone)
    if cmd.capacity is not None:
        _check_capacity(cmd.capacity)
    if cmd.tags is not None:
        _check_map(cmd.tags, "tags", True, _tag_value)
    if cmd.expect_tags is not None:
        _check_map(cmd.expect_tags, "expect_tags", True, _tag_value)
        for key, expected in cmd.expect_tags.items():
            _require(node.tags.get(key) == expected, "precondition_failed",
                     f"tag {key!r} of node {cmd.node_id!r} is {node.tags.get(key)!r}, "
                     f"not {expected!r}")
    if cmd.metrics is not None:
        _check_map(cmd.metrics, "metrics", True, _number)
    if cmd.admin is not None:
        _require(cmd.admin in NODE_ADMIN, "invalid_argument",
                 f"admin must be one of {', '.join(NODE_ADMIN)}")
    if cmd.admin_reason is not None:
        _text(cmd.admin_reason, "admin_reason")
    merged_tags = _merge(node.tags, cmd.tags)
    _require(len(merged_tags) <= MAX_TAGS, "invalid_argument", f"at most {MAX_TAGS} tags")
    merged_metrics = _merge(node.metrics, cmd.metrics)
    _require(len(merged_metrics) <= MAX_TAGS, "invalid_argument", f"at most {MAX_TAGS} metrics")

    changed = cmd.status is not None and _set_status(node, cmd.status, cmd.time)
    if cmd.admin is not None:
        node.admin = cmd.admin
        node.admin_reason = cmd.admin_reason or ""
    elif cmd.admin_reason is not None:
        node.admin_reason = cmd.admin_reason
    node.address = cmd.address if cmd.address is not None else node.address
    node.zone = cmd.zone if cmd.zone is not None else node.zone
    node.capacity = float(cmd.capacity) if cmd.capacity is not None else node.capacity
    node.tags = merged_tags
    node.metrics = {k: float(v) for k, v in merged_metrics.items()}
    node.updated_at = cmd.time
    events = [_node_event(ev.NodeStateChanged, rev, node, reason=ev.UPDATE)]
    if changed:
        events.extend(_follow_status(state, node, rev))
    return Applied(rev, {"node": node.to_dict()}, tuple(events))


def _merge(old: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(old)
    for key, value in (changes or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _follow_status(state: ClusterState, node: Node, rev: int) -> list[Event]:
    """Leadership follows a status change: away from a node going down (to another up replica),
    onto a node coming up for partitions left without a leader (none, or one that is down). A
    suspect node keeps its leaderships: it is not judged yet. Each change bumps the epoch."""
    return _follow_statuses(state, [node], rev)


def _follow_statuses(state: ClusterState, nodes: list[Node], rev: int) -> list[Event]:
    """:func:`_follow_status` for several nodes whose statuses changed together, in one pass
    over the partitions (statuses are all set first: a leadership leaving a node that went down
    goes to a replica that is up after the whole change). A partition without a live leader
    goes to the first of the nodes that came up holding it, in ``nodes`` order."""
    down = {n.id for n in nodes if n.status == "down"}
    up = [n.id for n in nodes if n.status == "up"]
    if not down and not up:  # only suspicions: nobody's leaderships move
        return []
    # Only partitions led by a node that went down, or (when a node came up) without a live
    # leader, can change: the leader index finds them without scanning every partition.
    leaders: set[str | None] = set(down)
    if up:
        leaders.add(None)
        leaders.update(n.id for n in state.nodes.values() if n.status == "down")
    events = []
    for name, i in state.leader_index().led_by(leaders):
        part = state.resources[name].partitions[i]
        new_leader, why = part.leader, ""
        if part.leader in down:
            new_leader, why = _up_successor(state, part, part.leader) or part.leader, "down"
        elif up and (part.leader is None or state.nodes[part.leader].status == "down"):
            new_leader = next((n for n in up if n in part.replicas), part.leader)
            why = "up"
        if new_leader != part.leader:
            state.set_leader(name, i, new_leader)
            part.epoch += 1
            events.append(_partition_event(state, rev, name, i, part, f"node {why}"))
    return events


def _start_node_session(state: ClusterState, cmd: c.StartNodeSession, rev: int) -> Applied:
    node = _check_node_id(state, cmd.node_id)
    if cmd.address is not None:
        _require(valid_address(cmd.address), "invalid_argument", f"malformed address {cmd.address!r}")
    node.epoch += 1
    changed = _set_status(node, "up", cmd.time)
    node.address = cmd.address if cmd.address is not None else node.address
    node.updated_at = cmd.time
    events = [_node_event(ev.NodeSessionStarted, rev, node)]
    if changed:
        events.extend(_follow_status(state, node, rev))
    return Applied(rev, {"node": node.to_dict(), "epoch": node.epoch}, tuple(events))


def _set_node_liveness(state: ClusterState, cmd: c.SetNodeLiveness, rev: int) -> Applied:
    node = _check_node_id(state, cmd.node_id)
    _require(cmd.status in NODE_STATUSES, "invalid_argument",
             f"status must be one of {', '.join(NODE_STATUSES)}")
    _require(_integer(cmd.epoch) and cmd.epoch >= 1, "invalid_argument",
             "epoch must be a positive integer")
    _require(_integer(cmd.term) and cmd.term >= 0, "invalid_argument",
             "term must be a non-negative integer")
    _require(cmd.epoch == node.epoch, "stale_epoch",
             f"node {node.id!r} is at epoch {node.epoch}, not {cmd.epoch}")
    _check_term(state, cmd.term)
    state.leader_term = cmd.term
    changed = _set_status(node, cmd.status, cmd.time)
    node.updated_at = cmd.time
    events = [_node_event(ev.NodeStateChanged, rev, node, reason=ev.LIVENESS)]
    if changed:
        events.extend(_follow_status(state, node, rev))
    return Applied(rev, {"node": node.to_dict()}, tuple(events))


def _set_nodes_liveness(state: ClusterState, cmd: c.SetNodesLiveness, rev: int) -> Applied:
    _require(isinstance(cmd.judgements, list) and 1 <= len(cmd.judgements) <= MAX_JUDGEMENTS,
             "invalid_argument", f"judgements must be a list of 1..{MAX_JUDGEMENTS}")
    for judgement in cmd.judgements:
        _require(isinstance(judgement, list) and len(judgement) == 3, "invalid_argument",
                 "a judgement is [node_id, status, epoch]")
        node_id, status, epoch = judgement
        _require(valid_id(node_id), "invalid_argument", f"malformed node id {node_id!r}")
        _require(status in NODE_STATUSES, "invalid_argument",
                 f"status must be one of {', '.join(NODE_STATUSES)}")
        _require(_integer(epoch) and epoch >= 1, "invalid_argument",
                 "epoch must be a positive integer")
    _require(_integer(cmd.term) and cmd.term >= 0, "invalid_argument",
             "term must be a non-negative integer")
    _check_term(state, cmd.term)
    state.leader_term = cmd.term
    events, changed, judged, skipped = [], [], [], []
    for node_id, status, epoch in cmd.judgements:
        node = state.nodes.get(node_id)
        if node is None or node.epoch != epoch or node_id in judged:
            skipped.append(node_id)  # gone, restarted since, or judged twice in one batch
            continue
        judged.append(node_id)
        if _set_status(node, status, cmd.time):
            changed.append(node)
        node.updated_at = cmd.time
        events.append(_node_event(ev.NodeStateChanged, rev, node, reason=ev.LIVENESS))
    events.extend(_follow_statuses(state, changed, rev))
    return Applied(rev, {"judged": judged, "skipped": skipped}, tuple(events))


def _create_resource(state: ClusterState, cmd: c.CreateResource, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed resource name {cmd.name!r}")
    _require(cmd.name not in state.resources, "already_exists", f"resource {cmd.name!r} exists")
    _require(isinstance(cmd.partitions, int) and not isinstance(cmd.partitions, bool)
             and 1 <= cmd.partitions <= MAX_PARTITIONS, "invalid_argument",
             f"partitions must be an integer in 1..{MAX_PARTITIONS}")
    rf = cmd.replication_factor
    _require(isinstance(rf, int) and not isinstance(rf, bool) and 1 <= rf <= MAX_REPLICATION_FACTOR,
             "invalid_argument", f"replicas must be an integer in 1..{MAX_REPLICATION_FACTOR}")
    _require(rf <= len(state.nodes), "not_enough_nodes",
             f"{rf} replicas requested but the cluster has {len(state.nodes)} nodes")
    _require(isinstance(cmd.assignment, list) and 1 <= len(cmd.assignment) <= cmd.partitions,
             "stale_plan", "assignment must cover the resource's first partitions (all or some)")
    _check_assignment(state, cmd.assignment, rf)
    over = over_cluster_limits(state, cmd.partitions, rf)
    _require(over is None, "limit_exceeded", over or "")
    if cmd.balance_metric is not None:
        _require(valid_id(cmd.balance_metric), "invalid_argument",
                 f"malformed metric name {cmd.balance_metric!r}")
    partitions = [Partition(replicas=list(r), leader=r[0], epoch=1) for r in cmd.assignment]
    size = cmd.partitions if len(partitions) < cmd.partitions else 0
    resource = Resource(cmd.name, rf, partitions, created_at=cmd.time,
                        balance_metric=cmd.balance_metric, size=size)
    state.resources[cmd.name] = resource
    state.partitions_added(cmd.name, 0)
    summary = {"name": cmd.name, "partitions": cmd.partitions, "replication_factor": rf,
               "balance_metric": cmd.balance_metric}
    if resource.creating:  # the request's answer waits for the remaining slices
        summary["creating"] = True
    return Applied(rev, {"resource": summary}, (Event.of(rev, ev.ResourceCreated(**resource.to_dict())),))


def _check_assignment(state: ClusterState, assignment: list[Any], rf: int) -> None:
    for replicas in assignment:
        _require(isinstance(replicas, list) and len(replicas) == rf
                 and len(set(map(str, replicas))) == rf
                 and all(isinstance(n, str) and n in state.nodes for n in replicas),
                 "stale_plan", "assignment names unknown or repeated nodes")


def over_cluster_limits(state: ClusterState, partitions: int, rf: int) -> str | None:
    """Why a new resource of ``partitions`` x ``rf`` would take the cluster over its limits
    (checked by ``apply``, and by the leader before it plans); None when it fits."""
    total_partitions, total_replicas = cluster_size(state)
    if (total_partitions + partitions <= MAX_CLUSTER_PARTITIONS
            and total_replicas + partitions * rf <= MAX_CLUSTER_REPLICAS):
        return None
    return (f"the cluster would hold more than {MAX_CLUSTER_PARTITIONS} partitions or "
            f"{MAX_CLUSTER_REPLICAS} replicas (it holds {total_partitions} and {total_replicas})")


def cluster_size(state: ClusterState) -> tuple[int, int]:
    """Partitions and replicas the cluster holds, counting resources still being created at
    their full size."""
    partitions = replicas = 0
    for res in state.resources.values():
        count = max(res.size, len(res.partitions))
        partitions += count
        replicas += count * res.replication_factor
    return partitions, replicas


def _add_partitions(state: ClusterState, cmd: c.AddPartitions, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed resource name {cmd.name!r}")
    res = state.resources.get(cmd.name)
    _require(res is not None, "not_found", f"unknown resource {cmd.name!r}")
    assert res is not None
    _require(res.creating, "conflict", f"resource {cmd.name!r} is complete")
    _require(_integer(cmd.start) and cmd.start == len(res.partitions), "stale_plan",
             f"resource {cmd.name!r} has {len(res.partitions)} partitions, not {cmd.start}")
    _require(isinstance(cmd.assignment, list)
             and 1 <= len(cmd.assignment) <= res.size - len(res.partitions),
             "invalid_argument", "a slice adds at least one partition, up to the resource's size")
    _check_assignment(state, cmd.assignment, res.replication_factor)
    added = [Partition(replicas=list(r), leader=r[0], epoch=1) for r in cmd.assignment]
    res.partitions.extend(added)
    state.partitions_added(res.name, cmd.start)
    if not res.creating:
        res.size = 0
    data = ev.PartitionsAdded(resource=res.name, start=cmd.start,
                              partitions=[p.to_dict() for p in added], complete=not res.creating)
    return Applied(rev, {"resource": res.name, "partitions": len(res.partitions),
                         "creating": res.creating}, (Event.of(rev, data),))


def _update_resource(state: ClusterState, cmd: c.UpdateResource, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed resource name {cmd.name!r}")
    res = state.resources.get(cmd.name)
    _require(res is not None, "not_found", f"unknown resource {cmd.name!r}")
    assert res is not None
    rf = cmd.replication_factor
    if rf is not None:
        _require(_integer(rf) and 1 <= rf <= MAX_REPLICATION_FACTOR, "invalid_argument",
                 f"replicas must be an integer in 1..{MAX_REPLICATION_FACTOR}")
        _require(not res.creating, "conflict", f"resource {cmd.name!r} is still being created")
        _, total_replicas = cluster_size(state)
        more = (rf - res.replication_factor) * max(res.size, len(res.partitions))
        _require(total_replicas + more <= MAX_CLUSTER_REPLICAS, "limit_exceeded",
                 f"the cluster would hold more than {MAX_CLUSTER_REPLICAS} replicas")
        shrinking = [i for i in range(len(res.partitions)) if move_key(res.name, i) in state.moves]
        _require(rf >= res.replication_factor or not shrinking, "move_pending",
                 f"{len(shrinking)} partitions of {res.name!r} have pending moves; cancel them or "
                 "wait before lowering the replication factor")
    if cmd.balance_metric is not None:
        _require(cmd.balance_metric == "" or valid_id(cmd.balance_metric), "invalid_argument",
                 f"malformed metric name {cmd.balance_metric!r}")
    events = []
    if cmd.balance_metric is not None:
        res.balance_metric = cmd.balance_metric or None
    if rf is not None:
        res.replication_factor = rf
        for i, part in enumerate(res.partitions):
            if len(part.replicas) <= rf:
                continue
            # Keep the leader; drop followers from the end of the list.
            keep = [part.leader] if part.leader in part.replicas else []
            for node_id in part.replicas:
                if len(keep) < rf and node_id not in keep:
                    keep.append(node_id)
            part.replicas = [n for n in part.replicas if n in keep]
            part.epoch += 1
            events.append(_partition_event(state, rev, res.name, i, part, "replication factor lowered"))
    summary = {"name": res.name, "partitions": len(res.partitions),
               "replication_factor": res.replication_factor, "balance_metric": res.balance_metric}
    return Applied(rev, {"resource": summary}, (Event.of(rev, ev.ResourceUpdated(
        name=res.name, replication_factor=res.replication_factor,
        balance_metric=res.balance_metric)), *events))


def _delete_resource(state: ClusterState, cmd: c.DeleteResource, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed resource name {cmd.name!r}")
    _require(cmd.name in state.resources, "not_found", f"unknown resource {cmd.name!r}")
    for key in [k for k, m in state.moves.items() if m.resource == cmd.name]:
        del state.moves[key]
    state.delete_resource(cmd.name)
    return Applied(rev, {"name": cmd.name}, (Event.of(rev, ev.ResourceDeleted(name=cmd.name)),))


def _move_partition(state: ClusterState, cmd: c.MovePartition, rev: int) -> Applied:
    res, part = _partition(state, cmd.resource, cmd.partition)
    _check_node_id(state, cmd.from_node)
    _check_node_id(state, cmd.to_node)
    # What the partition's replicas are now decides these (a rebalance may have moved them
    # since the caller looked): conflicts with the state, not malformed requests.
    _require(cmd.from_node in part.replicas, "conflict",
             f"{cmd.from_node!r} holds no replica of {res.name}/{cmd.partition}")
    _require(cmd.to_node not in part.replicas, "conflict",
             f"{cmd.to_node!r} already holds a replica of {res.name}/{cmd.partition}")
    _require(move_key(res.name, cmd.partition) not in state.moves, "move_pending",
             f"{res.name}/{cmd.partition} has a pending move; cancel it first")
    part.replicas[part.replicas.index(cmd.from_node)] = cmd.to_node
    if part.leader == cmd.from_node:
        # The new replica starts empty: leadership goes to a surviving replica if there is one.
        state.set_leader(res.name, cmd.partition, _up_successor(state, part, cmd.to_node) or cmd.to_node)
    part.epoch += 1
    event = _partition_event(state, rev, res.name, cmd.partition, part, "moved")
    return Applied(rev, {"partition": event.data}, (event,))


def _start_move(state: ClusterState, cmd: c.StartMove, rev: int) -> Applied:
    res, part = _partition(state, cmd.resource, cmd.partition)
    _check_term(state, cmd.term)
    _text(cmd.reason, "reason")
    settings = state.rebalance
    _require(settings.maintenance is None, "maintenance",
             f"rebalancing is frozen for maintenance: {(settings.maintenance or {}).get('reason')}")
    key = move_key(res.name, cmd.partition)
    _require(key not in state.moves, "move_pending", f"{key} already has a pending move")
    target = _check_node_id(state, cmd.to_node)
    _require(target.status == "up" and target.admin == "active", "conflict",
             f"node {target.id!r} cannot take replicas (status {target.status}, {target.admin})")
    _require(cmd.to_node not in part.replicas, "conflict",
             f"{cmd.to_node!r} already holds a replica of {key}")
    if cmd.from_node is None:
        _require(len(part.replicas) < res.replication_factor, "invalid_argument",
                 f"{key} has all its {res.replication_factor} replicas")
    else:
        _check_node_id(state, cmd.from_node)
        _require(cmd.from_node in part.replicas, "conflict",
                 f"{cmd.from_node!r} holds no replica of {key}")
    total, per_node = len(state.moves), state.moves_per_node()
    _require(total < settings.max_moves, "throttled",
             f"{total} moves in flight, the cluster limit is {settings.max_moves}")
    for node_id in (cmd.from_node, cmd.to_node):
        if node_id is not None:
            _require(per_node.get(node_id, 0) < settings.max_moves_per_node, "throttled",
                     f"node {node_id!r} takes part in {per_node.get(node_id, 0)} moves, the limit "
                     f"is {settings.max_moves_per_node}")
    state.leader_term = cmd.term
    move = PendingMove(res.name, cmd.partition, cmd.from_node, cmd.to_node, cmd.reason,
                       float(cmd.time), cmd.term)
    state.moves[key] = move
    part.epoch += 1
    event = _partition_event(state, rev, res.name, cmd.partition, part, "move started")
    return Applied(rev, {"partition": event.data, "move": move.to_dict()}, (event,))


def _report_caught_up(state: ClusterState, cmd: c.ReportCaughtUp, rev: int) -> Applied:
    node = _check_node_id(state, cmd.node_id)
    res, part = _partition(state, cmd.resource, cmd.partition)
    _require(_integer(cmd.epoch) and _integer(cmd.partition_epoch), "invalid_argument",
             "epoch and partition_epoch must be integers")
    _require(cmd.epoch == node.epoch, "stale_epoch",
             f"node {node.id!r} is at epoch {node.epoch}, not {cmd.epoch}")
    key = move_key(res.name, cmd.partition)
    move = state.moves.get(key)
    _require(move is not None and move.to_node == node.id, "no_move",
             f"{key} is not moving to {node.id!r}")
    _require(cmd.partition_epoch == part.epoch, "stale_epoch",
             f"{key} is at epoch {part.epoch}, not {cmd.partition_epoch}")
    assert move is not None
    del state.moves[key]
    if move.from_node is None:
        part.replicas.append(move.to_node)
    else:
        part.replicas[part.replicas.index(move.from_node)] = move.to_node
    if part.leader is None or part.leader == move.from_node:
        state.set_leader(res.name, cmd.partition, move.to_node)  # caught up: the natural successor
    part.epoch += 1
    duration = max(0.0, float(cmd.time) - move.started_at)
    settings = state.rebalance
    settings.completed += 1
    settings.move_seconds += duration
    if settings.run is not None:
        settings.run["completed"] = settings.run.get("completed", 0) + 1
    event = _partition_event(state, rev, res.name, cmd.partition, part, "move completed")
    return Applied(rev, {"partition": event.data, "move": {**move.to_dict(), "seconds": duration}},
                   (event,))


def _cancel_move(state: ClusterState, cmd: c.CancelMove, rev: int) -> Applied:
    res, part = _partition(state, cmd.resource, cmd.partition)
    _check_term(state, cmd.term)
    _text(cmd.reason, "reason")
    key = move_key(res.name, cmd.partition)
    _require(key in state.moves, "no_move", f"{key} has no pending move")
    state.leader_term = cmd.term
    move = state.moves.pop(key)
    part.epoch += 1
    event = _partition_event(state, rev, res.name, cmd.partition, part,
                             f"move cancelled: {cmd.reason}" if cmd.reason else "move cancelled")
    return Applied(rev, {"partition": event.data, "move": move.to_dict()}, (event,))


def _set_partition_leader(state: ClusterState, cmd: c.SetPartitionLeader, rev: int) -> Applied:
    res, part = _partition(state, cmd.resource, cmd.partition)
    _check_term(state, cmd.term)
    _text(cmd.reason, "reason")
    key = move_key(res.name, cmd.partition)
    node = _check_node_id(state, cmd.leader)
    _require(cmd.leader in part.replicas, "invalid_argument", f"{cmd.leader!r} holds no replica of {key}")
    _require(node.status == "up", "invalid_argument", f"node {cmd.leader!r} is {node.status}")
    _require(key not in state.moves, "move_pending", f"{key} has a pending move")
    state.leader_term = cmd.term
    changed = part.leader != cmd.leader
    if changed:
        state.set_leader(res.name, cmd.partition, cmd.leader)
        part.epoch += 1
    event = _partition_event(state, rev, res.name, cmd.partition, part, cmd.reason or "leader set")
    return Applied(rev, {"partition": event.data}, (event,) if changed else ())


def _configure_rebalance(state: ClusterState, cmd: c.ConfigureRebalance, rev: int) -> Applied:
    settings = state.rebalance
    for name in ("max_moves_per_node", "max_moves"):
        value = getattr(cmd, name)
        _require(value is None or (_integer(value) and 1 <= value <= MAX_THROTTLE), "invalid_argument",
                 f"{name} must be an integer in 1..{MAX_THROTTLE}")
    _require(cmd.rereplicate_after is None or (_number(cmd.rereplicate_after)
                                               and 0 <= cmd.rereplicate_after <= MAX_DELAY),
             "invalid_argument", f"rereplicate_after must be a number of seconds in 0..{MAX_DELAY:g}")
    _require(cmd.maintenance is None or isinstance(cmd.maintenance, bool), "invalid_argument",
             "maintenance must be a boolean")
    _text(cmd.reason, "reason")
    _require(not cmd.maintenance or cmd.reason.strip(), "invalid_argument",
             "maintenance needs a reason")
    if cmd.max_moves_per_node is not None:
        settings.max_moves_per_node = cmd.max_moves_per_node
    if cmd.max_moves is not None:
        settings.max_moves = cmd.max_moves
    if cmd.rereplicate_after is not None:
        settings.rereplicate_after = float(cmd.rereplicate_after)
    if cmd.maintenance is True:
        settings.maintenance = {"reason": cmd.reason, "since": float(cmd.time)}
    elif cmd.maintenance is False:
        settings.maintenance = None
    view = settings.to_dict()
    return Applied(rev, {"rebalance": view}, (Event.of(rev, ev.RebalanceConfigured.from_data(view)),))


def _start_rebalance(state: ClusterState, cmd: c.StartRebalance, rev: int) -> Applied:
    settings = state.rebalance
    _require(valid_id(cmd.run_id), "invalid_argument", f"malformed run id {cmd.run_id!r}")
    _require(settings.maintenance is None, "maintenance",
             f"rebalancing is frozen for maintenance: {(settings.maintenance or {}).get('reason')}")
    _require(settings.run is None, "already_exists",
             f"rebalance {(settings.run or {}).get('id')!r} is running")
    settings.run = {"id": cmd.run_id, "started_at": float(cmd.time), "revision": rev, "completed": 0}
    return Applied(rev, {"run": dict(settings.run)},
                   (Event.of(rev, ev.RebalanceStarted.from_data(settings.run)),))


def _end_rebalance(state: ClusterState, cmd: c.EndRebalance, rev: int) -> Applied:
    settings = state.rebalance
    _check_term(state, cmd.term)
    _require(cmd.outcome in ("done", "cancelled"), "invalid_argument",
             "outcome must be done or cancelled")
    _require(settings.run is not None and settings.run["id"] == cmd.run_id, "not_found",
             f"no running rebalance {cmd.run_id!r}")
    assert settings.run is not None
    state.leader_term = cmd.term
    record = {**settings.run, "ended_at": float(cmd.time), "outcome": cmd.outcome}
    settings.run, settings.last_run = None, record
    return Applied(rev, {"run": dict(record)}, (Event.of(rev, ev.RebalanceEnded.from_data(record)),))


def _create_token(state: ClusterState, cmd: c.CreateToken, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed token name {cmd.name!r}")
    _require(cmd.name not in state.tokens, "already_exists", f"token {cmd.name!r} exists")
    _require(state.auth_bootstrapped or cmd.name != BOOTSTRAP_NAME, "already_exists",
             f"token name {BOOTSTRAP_NAME!r} is kept for the bootstrap admin token")
    _require(cmd.role in ROLES, "invalid_argument",
             f"unknown role {cmd.role!r} (one of {', '.join(ROLES)})")
    if cmd.role == "node":
        _require(valid_id(cmd.node), "invalid_argument",
                 f"a node token needs the node id it speaks for, got {cmd.node!r}")
    else:
        _require(cmd.node is None, "invalid_argument", f"only a node token is bound to a node "
                 f"(role {cmd.role!r} given node {cmd.node!r})")
    _require(isinstance(cmd.hash, str) and HASH_PATTERN.fullmatch(cmd.hash) is not None,
             "invalid_argument", "hash must be a hex SHA-256 digest")
    _require(state.token_by_hash(cmd.hash) is None, "already_exists",
             "a token with this secret exists")
    _require(cmd.expires_at is None or (_number(cmd.expires_at) and cmd.expires_at > cmd.time),
             "invalid_argument", "expires_at must be a time after the token's creation")
    _require(len(state.tokens) < MAX_TOKENS, "limit_exceeded", f"at most {MAX_TOKENS} tokens")
    token = ApiToken(name=cmd.name, role=cmd.role, hash=cmd.hash, node=cmd.node,
                     created_at=float(cmd.time),
                     expires_at=None if cmd.expires_at is None else float(cmd.expires_at))
    state.add_token(token)
    return Applied(rev, {"token": token.public()}, (Event.of(rev, ev.TokenCreated(**token.public())),))


def _revoke_token(state: ClusterState, cmd: c.RevokeToken, rev: int) -> Applied:
    _require(valid_id(cmd.name), "invalid_argument", f"malformed token name {cmd.name!r}")
    _require(cmd.name in state.tokens, "not_found", f"unknown token {cmd.name!r}")
    token = state.remove_token(cmd.name)
    return Applied(rev, {"token": token.public()}, (Event.of(rev, ev.TokenRevoked(**token.public())),))


def _bootstrap_admin(state: ClusterState, cmd: c.BootstrapAdmin, rev: int) -> Applied:
    _require(not state.auth_bootstrapped, "already_exists", "the cluster is bootstrapped")
    _require(isinstance(cmd.hash, str) and HASH_PATTERN.fullmatch(cmd.hash) is not None,
             "invalid_argument", "hash must be a hex SHA-256 digest")
    _require(state.token_by_hash(cmd.hash) is None, "already_exists",
             "a token with this secret exists")
    token = ApiToken(name=BOOTSTRAP_NAME, role="admin", hash=cmd.hash, created_at=float(cmd.time))
    state.add_token(token)
    state.auth_bootstrapped = True
    return Applied(rev, {"token": token.public()}, (Event.of(rev, ev.TokenCreated(**token.public())),))


def _set_cluster_id(state: ClusterState, cmd: c.SetClusterId) -> Applied:
    """The cluster's name is not a change to its data: no new revision, no event (and the
    state's digest leaves it out)."""
    _require(not state.cluster_id, "already_exists", f"the cluster is named {state.cluster_id!r}")
    _require(valid_id(cmd.cluster_id), "invalid_argument",
             f"malformed cluster id {cmd.cluster_id!r}")
    state.cluster_id = cmd.cluster_id
    return Applied(state.revision, {"cluster_id": cmd.cluster_id})


_HANDLERS: dict[type[c.Command], Callable[[ClusterState, Any, int], Applied]] = {
    c.RegisterNode: _register_node,
    c.RemoveNode: _remove_node,
    c.SetNodeState: _set_node_state,
    c.StartNodeSession: _start_node_session,
    c.SetNodeLiveness: _set_node_liveness,
    c.SetNodesLiveness: _set_nodes_liveness,
    c.CreateResource: _create_resource,
    c.AddPartitions: _add_partitions,
    c.UpdateResource: _update_resource,
    c.DeleteResource: _delete_resource,
    c.MovePartition: _move_partition,
    c.StartMove: _start_move,
    c.ReportCaughtUp: _report_caught_up,
    c.CancelMove: _cancel_move,
    c.SetPartitionLeader: _set_partition_leader,
    c.ConfigureRebalance: _configure_rebalance,
    c.StartRebalance: _start_rebalance,
    c.EndRebalance: _end_rebalance,
    c.CreateToken: _create_token,
    c.RevokeToken: _revoke_token,
    c.BootstrapAdmin: _bootstrap_admin,
}


def apply(state: ClusterState, command: c.Command | c.DecodeError) -> Outcome:
    """Apply ``command`` to ``state`` (in place when accepted). Never raises; see module doc."""
    try:
        return _apply(state, command)
    except Exception as exc:  # a bug, not a user error: still must not stall the Raft log
        return Rejected("internal_error", f"internal error: {type(exc).__name__}", state.revision,
                        error=exc)


def _apply(state: ClusterState, command: c.Command | c.DecodeError) -> Outcome:
    if isinstance(command, c.DecodeError):
        return Rejected("invalid_argument", command.message, state.revision)
    rid = command.request_id
    if not isinstance(rid, str) or len(rid) > MAX_REQUEST_ID:
        return Rejected("invalid_argument", "request_id must be a string of at most 128 characters",
                        state.revision)
    if not isinstance(command.fingerprint, str) or len(command.fingerprint) > MAX_REQUEST_ID:
        return Rejected("invalid_argument", "fingerprint must be a string of at most 128 characters",
                        state.revision)
    # Checked before any handler runs: a bad time found after the handler mutated the state
    # would turn into an internal error with the state already changed.
    if not _number(command.time):
        return Rejected("invalid_argument", "time must be a finite number", state.revision)
    if command.audit is not None and not _audit_ok(command.audit):
        return Rejected("invalid_argument", "audit must map at most 8 names to short strings",
                        state.revision)
    if rid and rid in state.requests:
        record = state.requests[rid]
        if command.fingerprint and record.get("fp", command.fingerprint) != command.fingerprint:
            return Rejected("request_id_reused", f"request id {rid!r} was already used for "
                            "another request; use a new id for a new request", state.revision)
        return _recall(state, record)
    if isinstance(command, c.Barrier):
        return Applied(state.revision, {"revision": state.revision})
    if isinstance(command, c.SetClusterId):  # not data: no revision, time or request record
        try:
            return _set_cluster_id(state, command)
        except _Reject as rejection:
            return Rejected(rejection.code, rejection.message, state.revision)
    handler = _HANDLERS.get(type(command))
    if handler is None:
        return Rejected("invalid_argument", f"unsupported command {command.TYPE}", state.revision)
    try:
        outcome = handler(state, command, state.revision + 1)
    except _Reject as rejection:
        return Rejected(rejection.code, rejection.message, state.revision)
    if outcome.events:
        outcome = Applied(outcome.revision, outcome.result, _audited(command, outcome.events),
                          outcome.duplicate)
    state.revision = outcome.revision
    if _planner_sees(command):
        state.planning_revision = outcome.revision
    state.last_time = max(state.last_time, float(command.time))
    if rid:
        state.requests[rid] = _remember(command, outcome)
        _forget_old_requests(state, float(command.time))
    if state.removed:
        _forget_removed_nodes(state, float(command.time))
    return outcome


#: Commands whose changes the placement planner never reads.
_PLANNER_BLIND = (c.CreateToken, c.RevokeToken, c.BootstrapAdmin)
#: The fields of ``SetNodeState`` that change what the planner reads (a report of a node's
#: metrics alone changes none of them).
_PLANNED_NODE_FIELDS = tuple(
    f.name for f in dataclasses.fields(c.SetNodeState)
    if f.name not in {"request_id", "time", "fingerprint", "audit", "node_id", "metrics",
                      "expect_tags", "epoch"})


def _planner_sees(command: c.Command) -> bool:
    """False for tokens and for a node's metric report. Data nodes report metrics all the time,
    and each report would otherwise make the leader plan again (2.5 s of a core at 100,000
    partitions); only a resource that balances on a metric reads them, and the rebalancer
    watches the revision itself while one does."""
    if isinstance(command, _PLANNER_BLIND):
        return False
    if isinstance(command, c.SetNodeState):
        return any(getattr(command, name) is not None for name in _PLANNED_NODE_FIELDS)
    return True


def _audit_ok(audit: object) -> bool:
    return (isinstance(audit, dict) and len(audit) <= 8
            and all(valid_id(k) and (v is None or (isinstance(v, str) and len(v) <= MAX_TEXT))
                    for k, v in audit.items()))


def _audited(command: c.Command, events: tuple[Event, ...]) -> tuple[Event, ...]:
    """``events`` with who made them (one shared dict: events of a revision have one author)."""
    who = command.audit if command.audit is not None else {"principal": "system", "role": None}
    audit = {"command": command.TYPE, "request_id": command.request_id or None,
             "time": float(command.time), **who}
    return tuple(Event(event.type, event.revision, event.data, audit) for event in events)


def _remember(command: c.Command, outcome: Applied) -> dict[str, Any]:
    """What a request id keeps: its revision and time, and enough to answer a retry. Node results
    are re-read from the state instead of copied (they dominate the table)."""
    record: dict[str, Any] = {"revision": outcome.revision, "time": float(command.time)}
    if command.fingerprint:
        record["fp"] = command.fingerprint
    if isinstance(command, c.RegisterNode | c.SetNodeState | c.SetNodeLiveness):
        record["node"] = command.node_id
    elif isinstance(command, c.StartNodeSession):
        # A retry must get the epoch this session was given, not a later session's.
        record["node"] = command.node_id
        record["epoch"] = outcome.result["epoch"]
    else:
        # Partition changes included: a retry must learn the epoch its own change produced, not
        # the partition as a later change left it (their results are small).
        record["result"] = copy.deepcopy(outcome.result)
    return record


def _recall(state: ClusterState, record: dict[str, Any]) -> Applied:
    """The answer to a retried request: its original revision, the result as it stands now."""
    if "node" in record:
        node = state.nodes.get(record["node"])
        result = {"node": node.to_dict()} if node else {"node_id": record["node"]}
        if "epoch" in record:
            result["epoch"] = record["epoch"]
    elif "partition" in record:  # records in snapshots written before results were kept
        name, index = record["partition"]
        res = state.resources.get(name)
        if res is not None and 0 <= index < len(res.partitions):
            result = {"partition": _partition_event(state, record["revision"], name, index,
                                                    res.partitions[index], "moved").data}
        else:
            result = {"resource": name, "partition": index}
    else:
        result = copy.deepcopy(record.get("result", {}))
    return Applied(record["revision"], result, duplicate=True)


def _forget_old_requests(state: ClusterState, now: float) -> None:
    """Keep request ids for ``REQUEST_RETENTION`` seconds of leader time, at most
    ``REQUEST_HISTORY`` of them, oldest dropped first (deterministic: command time only)."""
    requests = state.requests
    while requests:
        oldest = next(iter(requests))
        if len(requests) <= REQUEST_HISTORY and requests[oldest]["time"] >= now - REQUEST_RETENTION:
            break
        del requests[oldest]


def _forget_removed_nodes(state: ClusterState, now: float) -> None:
    """Drop the records of nodes removed more than ``REMOVED_RETENTION`` seconds ago (oldest
    first; deterministic: command time only)."""
    removed = state.removed
    while removed:
        oldest = next(iter(removed))
        if removed[oldest]["removed_at"] >= now - REMOVED_RETENTION:
            break
        del removed[oldest]
