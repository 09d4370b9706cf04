"""Random but reproducible command sequences for the unit tests (no test functions here).

``random_commands(rng, steps)`` draws each command from a state it keeps applying to, so the
sequence reaches interesting states (placements computed by the leader's own code, forced removals,
moves, nodes going down) and mixes in invalid, stale, duplicate and malformed commands.
"""

from __future__ import annotations

import random

from hacoord.core import ClusterState, apply, commands
from hacoord.placement import place_resource, replacements_for

ZONES = ["z0", "z1", "z2"]
RESOURCES = ["orders", "users", "logs", "metrics", "audit"]


def _node_ids(state: ClusterState) -> list[str]:
    return sorted(state.nodes)


def next_command(rng: random.Random, state: ClusterState, step: int, now: float,
                 used_rids: list[str]) -> commands.Command | commands.DecodeError:
    """One command for ``state``; mostly valid, sometimes not."""
    if used_rids and rng.random() < 0.05:
        rid = rng.choice(used_rids)  # a retried write
    elif rng.random() < 0.2:
        rid = ""
    else:
        rid = f"rid-{step}"
        used_rids.append(rid)
    nodes = _node_ids(state)
    kind = rng.choices(
        ["register", "set", "create", "delete", "move", "remove", "barrier", "garbage", "session",
         "liveness", "start_move", "caught_up", "cancel_move", "leader", "rebalance"],
        weights=[5 if len(nodes) < 8 else 1, 4, 3, 1, 2, 2, 1, 1, 1, 3, 4, 4, 1, 2, 1],
    )[0]
    if kind in ("start_move", "leader") and state.resources and nodes:
        return _partition_command(rng, state, kind, rid, now, nodes)
    if kind == "caught_up" and state.moves:
        move = state.moves[rng.choice(sorted(state.moves))]
        node = state.nodes[move.to_node]
        part = state.resources[move.resource].partitions[move.partition]
        stale = rng.random() < 0.1
        return commands.ReportCaughtUp(request_id=rid, time=now, node_id=node.id,
                                       epoch=node.epoch - stale, resource=move.resource,
                                       partition=move.partition,
                                       partition_epoch=part.epoch - (rng.random() < 0.1))
    if kind == "cancel_move" and state.moves:
        move = state.moves[rng.choice(sorted(state.moves))]
        return commands.CancelMove(request_id=rid, time=now, resource=move.resource,
                                   partition=move.partition, reason="test",
                                   term=state.leader_term)
    if kind == "rebalance":
        return rng.choice([
            commands.ConfigureRebalance(request_id=rid, time=now, max_moves=rng.choice([1, 3, 0]),
                                        max_moves_per_node=rng.choice([None, 1, 2])),
            commands.ConfigureRebalance(request_id=rid, time=now, maintenance=rng.random() < 0.5,
                                        reason=rng.choice(["", "upgrade"])),
            commands.StartRebalance(request_id=rid, time=now, run_id=f"run-{step}"),
            commands.UpdateResource(request_id=rid, time=now, name=rng.choice(RESOURCES),
                                    replication_factor=rng.choice([None, 1, 2, 3]),
                                    balance_metric=rng.choice([None, "", "disk"])),
            commands.EndRebalance(request_id=rid, time=now, term=state.leader_term,
                                  run_id=(state.rebalance.run or {}).get("id", "none")),
        ])
    if kind == "register" or not nodes:
        node_id = f"n{rng.randrange(12)}"
        capacity: object = rng.choice([1, 1, 2, 0.5, 4])
        if rng.random() < 0.1:
            capacity = rng.choice([0, -1, "x"])
        return commands.RegisterNode(request_id=rid, time=now, node_id=node_id,
                                     address=f"10.0.{rng.randrange(4)}.{rng.randrange(250)}:7000",
                                     zone=rng.choice(ZONES), capacity=capacity,
                                     tags={"rack": f"r{rng.randrange(3)}"})
    if kind == "set":
        tags = {rng.choice(["rack", "disk"]): rng.choice([None, "a", "b"])}
        metrics = {rng.choice(["cpu", "mem"]): rng.choice([None, 0.5, 1, 99.9])}
        return commands.SetNodeState(request_id=rid, time=now, node_id=rng.choice(nodes),
                                     status=rng.choice([None, "up", "down", "down"]),
                                     tags=tags, metrics=metrics)
    if kind == "create":
        name = rng.choice(RESOURCES)
        partitions = rng.randrange(1, 7)
        rf = rng.randrange(1, 4)
        assignment = place_resource(state, name, partitions, rf)
        if assignment and assignment[0] and rng.random() < 0.1:
            assignment[0][0] = "gone"  # a plan computed against an older state
        return commands.CreateResource(request_id=rid, time=now, name=name, partitions=partitions,
                                       replication_factor=rf, assignment=assignment)
    if kind == "delete":
        return commands.DeleteResource(request_id=rid, time=now, name=rng.choice(RESOURCES))
    if kind == "move" and state.resources:
        res = state.resources[rng.choice(sorted(state.resources))]
        index = rng.randrange(len(res.partitions))
        replicas = res.partitions[index].replicas
        source = rng.choice(replicas) if replicas else rng.choice(nodes)
        target = rng.choice(nodes)
        return commands.MovePartition(request_id=rid, time=now, resource=res.name, partition=index,
                                      from_node=source, to_node=target)
    if kind == "remove":
        node_id = rng.choice(nodes)
        plan = replacements_for(state, node_id)
        if plan and rng.random() < 0.15:
            res_name = rng.choice(sorted(plan))
            plan[res_name][rng.choice(sorted(plan[res_name]))] = node_id  # stale
        return commands.RemoveNode(request_id=rid, time=now, node_id=node_id,
                                   force=rng.random() < 0.8, replacements=plan)
    if kind == "session":
        return commands.StartNodeSession(request_id=rid, time=now, node_id=rng.choice(nodes))
    if kind == "liveness":
        node = state.nodes[rng.choice(nodes)]
        # Mostly the leader's judgement in the current term or a later one; sometimes a stale one.
        epoch = node.epoch if rng.random() < 0.85 else max(1, node.epoch - 1)
        term = state.leader_term + rng.choice([0, 0, 0, 1, 1, -1])
        return commands.SetNodeLiveness(time=now, node_id=node.id, epoch=epoch, term=max(0, term),
                                        status=rng.choice(["up", "suspect", "suspect", "down"]))
    if kind == "garbage":
        return commands.decode(rng.choice([b"{", b'{"type":"Nope"}', b"[1]", b'{"type":"Barrier","x":1}']))
    return commands.Barrier(request_id=rid, time=now)


def _partition_command(rng: random.Random, state: ClusterState, kind: str, rid: str, now: float,
                       nodes: list[str]) -> commands.Command:
    """A ``StartMove`` or ``SetPartitionLeader`` for a random partition (valid or not)."""
    res = state.resources[rng.choice(sorted(state.resources))]
    index = rng.randrange(len(res.partitions))
    replicas = res.partitions[index].replicas
    term = max(0, state.leader_term + rng.choice([0, 0, 0, 1, -1]))
    if kind == "leader":
        return commands.SetPartitionLeader(request_id=rid, time=now, resource=res.name,
                                           partition=index, term=term,
                                           leader=rng.choice(replicas or nodes), reason="test")
    source = rng.choice(replicas) if replicas and rng.random() < 0.8 else None
    return commands.StartMove(request_id=rid, time=now, resource=res.name, partition=index,
                              from_node=source, to_node=rng.choice(nodes), reason="test", term=term)


def random_commands(rng: random.Random, steps: int) -> list[commands.Command | commands.DecodeError]:
    """``steps`` commands, each drawn against the state the previous ones produced."""
    state = ClusterState()
    used_rids: list[str] = []
    now = 1_700_000_000.0
    out = []
    for step in range(steps):
        now += round(rng.random() * 3, 3)
        command = next_command(rng, state, step, now, used_rids)
        apply(state, command)
        out.append(command)
    return out


def build_state(rng: random.Random, steps: int) -> ClusterState:
    """A reachable state: ``random_commands`` applied to an empty one."""
    state = ClusterState()
    for command in random_commands(rng, steps):
        apply(state, command)
    return state
