"""Offline checks of a recorded history. Each returns a list of violations (empty: it holds).

The set workload adds unique elements (node registrations) and reads the whole set through the
leader (``consistent=True``). For a grow-only set, linearizability comes down to two rules per
successful read: it contains every element whose add completed before the read was invoked (no
stale read), and nothing whose add was invoked after the read completed (no read from the future).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from tests.chaos.history import Op
from tests.chaos.linearizability import INFINITY, RegOp, check

#: A partition route seen at a revision: (revision, resource, partition, replicas, leader, epoch).
Route = tuple[int, str, int, tuple[str, ...], str | None, int]


class FencedEntry(Protocol):
    """What a fenced resource accepted: a write, or an epoch it was told of (``kind`` fence)."""

    partition: int
    epoch: int
    leader: str | None
    kind: str


def check_registers(ops: list[Op], keys: int, resolved_at: float = INFINITY) -> list[str]:
    """Each register's history (reads, writes, compare-and-sets) must be linearizable.

    Operations that certainly failed are left out, and so are unknown ones the cluster's record
    of request ids says were never applied (a refused compare-and-set is not recorded either:
    it had no effect). An unknown one recorded as applied took effect before ``resolved_at``
    (when the record was read), as a successful write or compare-and-set; an unknown one nobody
    could resolve may have taken effect at any point after its invocation, or never."""
    problems = []
    for k in range(keys):
        key = f"reg-{k}"
        history = [_register_op(op, resolved_at) for op in ops
                   if op.key == key and op.status in ("ok", "unknown") and op.resolved != "not_applied"]
        if not check(history, initial=None):
            problems.append(f"register {key}: history of {len(history)} operations is not "
                            "linearizable")
    return problems


def _register_op(op: Op, resolved_at: float) -> RegOp:
    if op.status == "ok":
        return RegOp(op.f, op.value, op.result, op.invoked, float(op.completed or INFINITY))
    if op.resolved == "applied":
        return RegOp(op.f, op.value, True, op.invoked, resolved_at)
    return RegOp(op.f, op.value, None, op.invoked, INFINITY)


def check_set(ops: list[Op], final: set[str]) -> list[str]:
    """Lost, phantom and duplicated adds, and non-linearizable reads. An add whose answer was
    lost counts as acknowledged if the cluster recorded its request id as applied, and must be
    absent if it recorded it as not applied."""
    problems: list[str] = []
    adds = [op for op in ops if op.f == "add"]
    applied = {op.value for op in adds if op.status == "ok" or op.resolved == "applied"}
    attempted = {op.value for op in adds}
    lost = sorted(applied - final)
    if lost:
        problems.append(f"{len(lost)} acknowledged adds missing from the final state: {lost[:5]}")
    phantom = sorted(e for e in final if e.startswith("e-") and e not in attempted)
    if phantom:
        problems.append(f"elements nobody added: {phantom[:5]}")
    never = sorted(op.value for op in adds if op.resolved == "not_applied" and op.value in final)
    if never:
        problems.append(f"{len(never)} adds recorded as not applied are in the final state: {never[:5]}")
    doubled = [op for op in adds if op.error and "already_exists" in op.error]
    if doubled:
        problems.append(f"{len(doubled)} adds applied twice (already_exists on retry): "
                        f"{[op.value for op in doubled[:5]]}")
    problems += check_reads(ops)
    return problems


def check_reads(ops: list[Op]) -> list[str]:
    problems: list[str] = []
    adds = [op for op in ops if op.f == "add"]
    acked = sorted((op for op in adds if op.status == "ok"), key=lambda op: op.completed or 0.0)
    invoked_at = {op.value: op.invoked for op in adds}
    never = {op.value for op in adds if op.resolved == "not_applied"}
    for read in (op for op in ops if op.f == "read" and op.status == "ok"):
        seen = set(read.result)
        stale = [a.value for a in acked
                 if a.completed is not None and a.completed < read.invoked and a.value not in seen]
        if stale:
            problems.append(f"stale read by {read.process} at {read.invoked:.3f}: missing "
                            f"{len(stale)} completed adds, e.g. {stale[:3]}")
        future = [e for e in seen if e in invoked_at and read.completed is not None
                  and invoked_at[e] > read.completed]
        if future:
            problems.append(f"read by {read.process} saw adds invoked after it completed: {future[:3]}")
        ghosts = sorted(seen & never)
        if ghosts:
            problems.append(f"read by {read.process} saw adds recorded as never applied: {ghosts[:3]}")
    return problems


def check_revisions(ops: list[Op]) -> list[str]:
    """Every applied change has a revision of its own: two request ids acknowledged (or recorded)
    at the same revision mean one change was reported for two writes."""
    owners: dict[int, set[str]] = {}
    for op in ops:
        if op.revision is not None and op.request_id is not None:
            owners.setdefault(op.revision, set()).add(op.request_id)
    shared = sorted(r for r, rids in owners.items() if len(rids) > 1)
    if not shared:
        return []
    return [f"{len(shared)} revisions acknowledged for more than one write, e.g. {shared[:5]}"]


def check_one_leader_per_term(observations: Iterable[tuple[int, str]]) -> list[str]:
    """``(term, leader)`` pairs seen by polling members: at most one leader per term."""
    leaders: dict[int, set[str]] = {}
    for term, leader in observations:
        leaders.setdefault(term, set()).add(leader)
    return [f"term {term} had leaders {sorted(who)}" for term, who in sorted(leaders.items())
            if len(who) > 1]


def check_epochs(routes: Iterable[Route]) -> list[str]:
    """Per partition, in revision order: one route per revision, epochs never going back, and a
    new epoch whenever the replicas or the leader change (so one epoch never names two owners)."""
    by_partition: dict[tuple[str, int], dict[int, set[tuple[tuple[str, ...], str | None, int]]]] = {}
    for revision, resource, partition, replicas, leader, epoch in routes:
        by_partition.setdefault((resource, partition), {}).setdefault(revision, set()).add(
            (replicas, leader, epoch))
    problems = []
    for (resource, partition), seen in sorted(by_partition.items()):
        where = f"{resource}/{partition}"
        previous: tuple[int, tuple[tuple[str, ...], str | None, int]] | None = None
        for revision in sorted(seen):
            if len(seen[revision]) > 1:
                problems.append(f"{where}: {len(seen[revision])} routes at revision {revision}: "
                                f"{sorted(seen[revision], key=repr)}")
                continue
            (current,) = seen[revision]
            if previous is not None:
                (replicas, leader, epoch), (was_replicas, was_leader, was_epoch) = current, previous[1]
                if epoch < was_epoch:
                    problems.append(f"{where}: epoch went back from {was_epoch} (revision {previous[0]}) "
                                    f"to {epoch} (revision {revision})")
                elif epoch == was_epoch and (replicas, leader) != (was_replicas, was_leader):
                    problems.append(f"{where}: epoch {epoch} names two owners: {was_replicas} led by "
                                    f"{was_leader} (revision {previous[0]}) and {replicas} led by "
                                    f"{leader} (revision {revision})")
            previous = (revision, current)
    return problems


def check_fenced_writes(log: Sequence[FencedEntry], routes: Iterable[Route]) -> list[str]:
    """The fenced resource never accepted an epoch older than one it knew (entries in acceptance
    order), and each accepted write named the leader the coordinator gave that epoch."""
    leader_at = {(partition, epoch): leader for _, _, partition, _, leader, epoch in routes}
    known: dict[int, int] = {}
    problems = []
    for entry in log:
        if entry.epoch < known.get(entry.partition, 0):
            problems.append(f"partition {entry.partition}: {entry.kind} at stale epoch {entry.epoch} "
                            f"accepted after epoch {known[entry.partition]}")
        known[entry.partition] = max(known.get(entry.partition, 0), entry.epoch)
        expected = leader_at.get((entry.partition, entry.epoch), entry.leader)
        if entry.kind == "write" and entry.leader != expected:
            problems.append(f"partition {entry.partition}: write at epoch {entry.epoch} as leader "
                            f"{entry.leader}, but the coordinator's leader at that epoch is {expected}")
    return problems
