"""The leader's rebalancer: carries out the planner's moves in two phases, under the throttles.

While this member leads, every ``interval`` seconds it:

1. cancels pending moves that can no longer complete: their target is gone, down or draining;
2. unless in maintenance, plans from the current state (:func:`hacoord.placement.schedule.plan_for`:
   draining and long-down nodes drained, cordoned, suspect and recently down nodes held, pending
   moves pinned) and starts the moves it wants (repairs always, balance moves during a run) as far
   as the throttles allow (``StartMove``; the data node then reports the new replica caught up and
   the move completes, see ``ReportCaughtUp``);
3. during a run, makes the plan's leadership changes once a partition has no pending move, and
   ends the run (``EndRebalance``) when nothing is left to move or hand over.

Every command it submits carries the Raft term it leads in, so a deposed leader's late decision is
refused. Planning is skipped while nothing that matters changed (:func:`plan_key`: data nodes'
metric reports alone do not count unless a resource balances on a metric); for a
large state it runs in a forked child (:mod:`hacoord.server.offload`) while the event loop goes on,
and a plan that has gone stale meanwhile is refused by ``apply`` and made again next pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client.core import CounterMetricFamily

from hacoord.core.model import ClusterState
from hacoord.placement.plan import Plan
from hacoord.placement.schedule import (
    Inputs,
    admissible,
    balance_metrics,
    inputs,
    plan_for,
    progress,
    wanted,
)
from hacoord.replication.base import Replicator
from hacoord.server.coordinator import Coordinator, replica_count
from hacoord.server.errors import ErrorReply
from hacoord.server.offload import offload

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.5
#: Leadership changes submitted per pass (they are cheap, but a burst would crowd the log).
LEADER_CHANGES_PER_PASS = 64
#: Seconds a resource being created may go without a new slice before the rebalancer adds them.
STALLED_CREATION = 5.0


class Rebalancer:
    """Drives rebalancing while this member leads. ``clock`` gives leader time in seconds since
    the epoch (the commands' time scale: a node's ``status_since``, a move's ``started_at``)."""

    def __init__(self, replicator: Replicator, coordinator: Coordinator,
                 interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.replicator = replicator
        self.coordinator = coordinator
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._cache: tuple[tuple[Any, ...], Plan, Inputs] | None = None
        self._planning: dict[tuple[Any, ...], asyncio.Future[Plan]] = {}
        self._creating: dict[str, tuple[int, float]] = {}  # name -> (partitions, since when)
        #: Moves started, completed-and-observed, cancelled and refused by this member (metrics).
        self.counts = {"started": 0, "cancelled": 0, "refused": 0, "leader_changes": 0}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rebalancer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if self.replicator.is_leader():
                    await self.step()
            except ErrorReply as exc:  # lost leadership, a timeout: try again next pass
                log.info("rebalance pass stopped: %s: %s", exc.code, exc.message)
            except Exception:  # keep going; a bug here must not stop repairs for good
                log.exception("rebalance pass failed")
            await asyncio.sleep(self.interval)

    # --- planning -----------------------------------------------------------------------------

    async def plan(self, now: float | None = None) -> tuple[Plan, Inputs]:
        """The current plan (cached while the state and the planner's inputs are unchanged;
        computed off the event loop for a large state, one computation shared by every caller
        that asks meanwhile)."""
        state = self.replicator.state
        now = self.clock() if now is None else now
        given = inputs(state, now)
        key = plan_key(state, given)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        pending = self._planning.get(key)
        if pending is None:
            pending = self._planning[key] = asyncio.ensure_future(
                offload(plan_for, state, given, size=replica_count(state), name="rebalance plan"))
            pending.add_done_callback(lambda _f, k=key: self._planning.pop(k, None))
        plan = await asyncio.shield(pending)
        self._cache = (key, plan, given)
        return plan, given

    async def progress(self) -> dict[str, Any]:
        """Rebalance progress as this member sees it (any member can answer)."""
        now = self.clock()
        plan, given = await self.plan(now)
        return progress(self.replicator.state, plan, given, now)

    def metrics(self) -> list[CounterMetricFamily]:
        """Prometheus families: what this member's rebalancer submitted, by kind."""
        family = CounterMetricFamily("hacoord_rebalancer_commands",
                                     "Commands this member's rebalancer submitted, by outcome",
                                     labels=["kind"])
        for kind, count in sorted(self.counts.items()):
            family.add_metric([kind], count)
        return [family]

    # --- one pass -----------------------------------------------------------------------------

    async def step(self) -> dict[str, int]:
        """One pass (leader only); returns what it submitted."""
        await self._finish_creations()
        done = {"cancelled": await self._cancel_hopeless(), "started": 0, "leader_changes": 0}
        state = self.replicator.state
        if state.rebalance.maintenance is not None:
            return done
        plan, given = await self.plan()
        state = self.replicator.state  # planning may have let the loop apply more meanwhile
        todo = wanted(plan, state, given.pinned)
        done["started"] = await self._submit_all(
            self.coordinator.start_move(uuid.uuid4().hex, m.resource, m.partition, m.from_node,
                                        m.to_node, m.reason)
            for m in admissible(todo, state))
        run = state.rebalance.run
        if run is None:
            return done
        changes = [ch for ch in plan.leader_changes
                   if (ch.resource, ch.partition) not in given.pinned][:LEADER_CHANGES_PER_PASS]
        done["leader_changes"] = await self._submit_all(
            self.coordinator.set_partition_leader(uuid.uuid4().hex, ch.resource, ch.partition,
                                                  ch.to_node, ch.reason)
            for ch in changes)
        if not todo and not state.moves and not changes:
            await self.coordinator.end_rebalance(uuid.uuid4().hex, run["id"], "done")
            log.info("rebalance %s done: %d moves", run["id"], run.get("completed", 0))
        self.counts["started"] += done["started"]
        self.counts["leader_changes"] += done["leader_changes"]
        return done

    async def _finish_creations(self) -> None:
        """Resources still being created whose slices stopped coming (the request that created
        them died with the former leader, or its client gave up): add the rest."""
        now = self.clock()
        seen, self._creating = self._creating, {}
        for name, res in self.replicator.state.resources.items():
            if not res.creating:
                continue
            count = len(res.partitions)
            previous = seen.get(name)
            since = previous[1] if previous is not None and previous[0] == count else now
            self._creating[name] = (count, since)
            if now - since >= STALLED_CREATION:
                log.info("finishing the creation of %s (%d of %d partitions)", name, count,
                         res.size)
                await self.coordinator.complete_resource(name, f"rebalancer-{name}-{count}")
                self._creating.pop(name, None)

    async def _cancel_hopeless(self) -> int:
        state = self.replicator.state
        hopeless = []
        for move in state.moves.values():
            target = state.nodes.get(move.to_node)
            if target is None or target.status == "down" or target.admin == "draining":
                why = "target gone" if target is None else f"target {target.status}, {target.admin}"
                hopeless.append((move, why))
        cancelled = await self._submit_all(
            self.coordinator.cancel_move(uuid.uuid4().hex, m.resource, m.partition, why)
            for m, why in hopeless)
        self.counts["cancelled"] += cancelled
        return cancelled

    async def _submit_all(self, submissions: Any) -> int:
        """Submit concurrently; count the applied ones. Refusals (a throttle reached meanwhile, a
        plan gone stale) are normal: the next pass plans again."""
        results = await asyncio.gather(*submissions, return_exceptions=True)
        applied = 0
        for result in results:
            if isinstance(result, ErrorReply):
                self.counts["refused"] += 1
                if result.code in ("not_leader", "stale_term", "timeout", "unavailable"):
                    raise result
                log.debug("rebalance command refused: %s: %s", result.code, result.message)
            elif isinstance(result, BaseException):
                raise result
            else:
                applied += 1
        return applied


def plan_key(state: ClusterState, given: Inputs) -> tuple[Any, ...]:
    """What a plan of ``state`` depends on: the changes the planner reads, and the nodes'
    metric reports too while a resource balances on a metric."""
    metrics = state.revision if balance_metrics(state) else 0
    return (id(state), state.planning_revision, metrics, given.exclude, given.hold)
