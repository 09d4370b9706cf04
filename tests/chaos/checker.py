"""Offline checks of a recorded history. Each returns a list of violations (empty: it holds).

The set workload adds unique elements (node registrations) and reads the whole set through the
leader (``consistent=True``). For a grow-only set, linearizability comes down to two rules per
successful read: it contains every element whose add completed before the read was invoked (no
stale read), and nothing whose add was invoked after the read completed (no read from the future).
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.chaos.history import Op
from tests.chaos.linearizability import INFINITY, RegOp, check


def check_registers(ops: list[Op], keys: int) -> list[str]:
    """Each register's history (reads, writes, compare-and-sets; unknown outcomes allowed) must
    be linearizable. Operations that certainly failed are left out."""
    problems = []
    for k in range(keys):
        key = f"reg-{k}"
        history = [RegOp(op.f, op.value, op.result, op.invoked,
                         INFINITY if op.status == "unknown" else float(op.completed or INFINITY))
                   for op in ops if getattr(op, "key", None) == key and op.status in ("ok", "unknown")]
        if not check(history, initial=None):
            problems.append(f"register {key}: history of {len(history)} operations is not "
                            "linearizable")
    return problems


def check_set(ops: list[Op], final: set[str]) -> list[str]:
    """Lost, phantom and duplicated adds, and non-linearizable reads."""
    problems: list[str] = []
    adds = [op for op in ops if op.f == "add"]
    acked = {op.value for op in adds if op.status == "ok"}
    attempted = {op.value for op in adds}
    lost = sorted(acked - final)
    if lost:
        problems.append(f"{len(lost)} acknowledged adds missing from the final state: {lost[:5]}")
    phantom = sorted(e for e in final if e.startswith("e-") and e not in attempted)
    if phantom:
        problems.append(f"elements nobody added: {phantom[:5]}")
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
    return problems


def check_one_leader_per_term(observations: Iterable[tuple[int, str]]) -> list[str]:
    """``(term, leader)`` pairs seen by polling members: at most one leader per term."""
    leaders: dict[int, set[str]] = {}
    for term, leader in observations:
        leaders.setdefault(term, set()).add(leader)
    return [f"term {term} had leaders {sorted(who)}" for term, who in sorted(leaders.items())
            if len(who) > 1]
