"""What the chaos clients do, and how their histories are checked: an add-only set and registers.

Each workload gives the runner a loop per client thread (bounded in count, stopped by an event),
optional background threads, and a check of the recorded history. Every write carries a request
id of its own, so that its outcome can be looked up afterwards (:mod:`tests.chaos.resolve`); a
write whose answer was lost is recorded as *unknown*, never as failed.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from hacoord.client import Client, Conflict, HacoordError
from tests.chaos.checker import Route, check_registers, check_set
from tests.chaos.history import History, Op
from tests.chaos.linearizability import INFINITY

#: Makes a client of the cluster under test (its endpoints, token and CA); options go to it.
Connect = Callable[..., Client]

LOOP_LIMIT = 5000


@dataclass
class Context:
    """What the runner learnt after the run, for the checks: the node ids in the final state and
    the partition routes seen (``(revision, resource, partition, replicas, leader, epoch)``)."""

    final_nodes: set[str] = field(default_factory=set)
    routes: list[Route] = field(default_factory=list)
    resolved_at: float = INFINITY


class Workload:
    """Base: no setup, no background threads."""

    name = "none"

    def setup(self, client: Client) -> None:
        """Create what the clients need before the run."""

    def client_loop(self, name: str, client: Client, reader: Client, history: History,
                    rng: random.Random, stop: threading.Event) -> None:
        raise NotImplementedError

    def background(self, connect: Connect, history: History, rng: random.Random,
                   stop: threading.Event) -> list[threading.Thread]:
        """Threads that run beside the clients (a mover, heartbeats); ``connect(**options)``
        makes their clients (of the cluster, with its token and CA)."""
        return []

    def check(self, ops: list[Op], context: Context) -> list[str]:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Workload-specific counts for the run's summary."""
        return {}


def new_write(history: History, process: str, f: str, value: object, key: str | None = None) -> Op:
    """Record the invocation of a write with a fresh request id."""
    op = history.invoke(process, f, value)
    op.key = key
    op.request_id = uuid.uuid4().hex
    return op


class SetWorkload(Workload):
    """Unique adds (node registrations ``e-<client>-<i>``) and consistent reads of the whole set."""

    name = "set"

    def __init__(self, read_share: float) -> None:
        self.read_share = read_share

    def client_loop(self, name: str, client: Client, reader: Client, history: History,
                    rng: random.Random, stop: threading.Event) -> None:
        for i in range(LOOP_LIMIT):
            if stop.is_set():
                return
            if rng.random() < self.read_share:
                op = history.invoke(name, "read", None)
                try:
                    nodes = reader.node_list(consistent=True)
                    history.complete(op, "ok", result=[n.id for n in nodes])
                except HacoordError as exc:
                    history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
                continue
            element = f"e-{name}-{i}"
            op = new_write(history, name, "add", element)
            try:
                op.revision = client.node_add(element, address="127.0.0.1:1",
                                              request_id=op.request_id).revision
                history.complete(op, "ok")
            except HacoordError as exc:  # the add may have been applied: unknown, not failed
                history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")

    def check(self, ops: list[Op], context: Context) -> list[str]:
        return check_set(ops, context.final_nodes)


class RegisterWorkload(Workload):
    """Read, write and compare-and-set the tag ``v`` of nodes ``reg-0..`` (one register each)."""

    name = "register"

    def __init__(self, read_share: float, keys: int) -> None:
        self.read_share = read_share
        self.keys = keys

    def setup(self, client: Client) -> None:
        for i in range(self.keys):
            client.node_add(f"reg-{i}", address="127.0.0.1:1")

    def client_loop(self, name: str, client: Client, reader: Client, history: History,
                    rng: random.Random, stop: threading.Event) -> None:
        for _ in range(LOOP_LIMIT):
            if stop.is_set():
                return
            key = f"reg-{rng.randrange(self.keys)}"
            roll = rng.random()
            if roll < self.read_share:
                op = history.invoke(name, "read", None)
                op.key = key
                try:
                    history.complete(op, "ok", result=reader.node_show(key, consistent=True).tags.get("v"))
                except HacoordError as exc:
                    history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
                continue
            new = str(rng.randrange(5))
            if roll < self.read_share + (1 - self.read_share) / 2:
                op, expect = new_write(history, name, "write", new, key), None
            else:
                expected = rng.choice([None, *map(str, range(5))])
                op = new_write(history, name, "cas", (expected, new), key)
                expect = {"v": expected}
            try:
                op.revision = client.node_set_state(key, tags={"v": new}, expect_tags=expect,
                                                    request_id=op.request_id).revision
                history.complete(op, "ok", result=True)
            except Conflict as exc:
                if exc.code == "precondition_failed":
                    history.complete(op, "ok", result=False)
                else:
                    history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            except HacoordError as exc:  # timeouts and lost answers: maybe applied
                history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")

    def check(self, ops: list[Op], context: Context) -> list[str]:
        return check_registers(ops, self.keys, context.resolved_at)
