"""A linearizability checker for registers (read, write, compare-and-set), per key.

Wing & Gong's search with Lowe's memoization: walk the history's call/return events in time
order; at a call, try to linearize that operation now (if the register allows it) and remember
(set of linearized operations, register value) so no configuration is explored twice; at a return
whose operation was not linearized yet, backtrack. Operations whose outcome is unknown (a timeout,
a lost answer) have no return event: they may take effect at any point after their invocation, or
never. Operations that certainly failed are not in the history at all.

``brute_force`` checks the same thing by enumerating orders, for testing the search on small
histories.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

INFINITY = math.inf


@dataclass(frozen=True)
class RegOp:
    """``f`` is read, write or cas. ``value``: the written value, or (expected, new) for cas.
    ``result``: the value a read returned, or whether a cas succeeded. ``completed`` is INFINITY
    when the outcome is unknown (then ``result`` is ignored)."""

    f: str
    value: Any
    result: Any
    invoked: float
    completed: float = INFINITY

    @property
    def known(self) -> bool:
        return self.completed != INFINITY


def step(state: Any, op: RegOp) -> tuple[bool, Any]:
    """Apply ``op`` to register value ``state``: (consistent with what the op observed, new state)."""
    if op.f == "write":
        return True, op.value
    if op.f == "read":
        return (not op.known or op.result == state), state
    if op.f == "cas":
        expected, new = op.value
        if state == expected:
            return (not op.known or op.result is True), new
        return (not op.known or op.result is False), state
    raise ValueError(f"unknown register operation {op.f!r}")


def check(ops: list[RegOp], initial: Any = None) -> bool:
    """True if the history of one register is linearizable (Wing-Gong-Lowe)."""
    # Events: (time, kind, index) with calls before returns at equal times (overlap is allowed).
    events = sorted([(op.invoked, 0, i) for i, op in enumerate(ops)]
                    + [(op.completed, 1, i) for i, op in enumerate(ops) if op.known])
    n = len(events)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    head = 0 if n else n  # index into events; n means "end"
    position = {(kind, i): e for e, (_, kind, i) in enumerate(events)}

    def unlink(e: int) -> None:
        nonlocal head
        if prev[e] >= 0:
            nxt[prev[e]] = nxt[e]
        else:
            head = nxt[e]
        if nxt[e] < n:
            prev[nxt[e]] = prev[e]

    def relink(e: int) -> None:
        nonlocal head
        if prev[e] >= 0:
            nxt[prev[e]] = e
        else:
            head = e
        if nxt[e] < n:
            prev[nxt[e]] = e

    linearized = 0
    state = initial
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []  # (call event, state before it)
    remaining_returns = sum(1 for op in ops if op.known)
    entry = head
    for _ in range(10_000_000):  # bounded: the search space is finite, this is a safety net
        if remaining_returns == 0:
            return True
        if entry >= n:
            return False  # cannot happen with a return left; defensive
        _, kind, i = events[entry]
        if kind == 0:
            ok, new_state = step(state, ops[i])
            key = (linearized | (1 << i), _freeze(new_state))
            if ok and key not in cache:
                cache.add(key)
                stack.append((entry, state))
                linearized |= 1 << i
                state = new_state
                unlink(entry)
                if ops[i].known:
                    unlink(position[(1, i)])
                    remaining_returns -= 1
                entry = head
            else:
                entry = nxt[entry]
        else:
            if not stack:
                return False
            entry, state = stack.pop()
            i = events[entry][2]
            linearized &= ~(1 << i)
            if ops[i].known:
                relink(position[(1, i)])
                remaining_returns += 1
            relink(entry)
            entry = nxt[entry]
    raise RuntimeError("linearizability search did not finish")


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def brute_force(ops: list[RegOp], initial: Any = None) -> bool:
    """Try every subset of unknown operations and every order respecting real time."""
    known = [op for op in ops if op.known]
    unknown = [op for op in ops if not op.known]
    for r in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, r):
            candidate = known + list(chosen)
            for order in itertools.permutations(candidate):
                if not _respects_real_time(order):
                    continue
                state, fine = initial, True
                for op in order:
                    fine, state = step(state, op)
                    if not fine:
                        break
                if fine:
                    return True
    return False


def _respects_real_time(order: tuple[RegOp, ...]) -> bool:
    for a, b in itertools.combinations(order, 2):  # a is placed before b
        if b.completed < a.invoked:
            return False
    return True
