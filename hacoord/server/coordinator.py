"""The coordinator service on the leader: turns API intents into commands (placing replicas
where needed), submits them, and maps outcomes to results or :class:`ErrorReply`.

It is the only place that decides; HTTP handlers only translate. Placement is computed from the
leader's current state; if the state moved on before the command applied, ``apply`` rejects the
plan as stale and it is computed again (a bounded number of times).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

from hacoord.core import commands as c
from hacoord.core.apply import MAX_PARTITIONS, over_cluster_limits
from hacoord.core.results import Applied, Outcome, Rejected
from hacoord.placement import replacements_for
from hacoord.replication.base import (
    MemberInfo,
    MembershipRefused,
    NotAppliedError,
    NotLeaderError,
    OutcomeUnknownError,
    Replicator,
)
from hacoord.server.errors import ErrorReply
from hacoord.server.offload import offload
from hacoord.server.placed import PlacedSlices, place_in_slices

STALE_PLAN_RETRIES = 3
#: Partitions per log entry when a resource is created: applying a slice costs a member 2 ms
#: of its event loop on a quiet machine and 5-10 ms on a busy one (1,000 took up to 11 ms, in
#: ticks of 21 ms); a resource of 100,000 partitions arrives in 200 of them.
MAX_SLICE = 500

#: The fingerprint of the API request being served (set by the handler; see
#: ``hacoord.core.commands.Command.fingerprint``); empty for the leader's own commands.
request_fingerprint: contextvars.ContextVar[str] = contextvars.ContextVar("request_fingerprint",
                                                                         default="")
#: Who the API request being served comes from (set by :mod:`hacoord.server.auth`; see
#: ``Command.audit``); None for the leader's own commands.
request_audit: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "request_audit", default=None)


#: Commands of a batch stamped and queued per turn of the event loop (about 2 ms of work).
SUBMIT_SLICE = 200
#: Seconds consistent reads go without the read index after one found no majority in time.
READ_INDEX_BACKOFF = 10.0


def item_request_id(request_id: str, index: int) -> str:
    """The request id of item ``index`` of a batch sent with ``request_id``: the same on every
    retry of the batch, so each item is applied once."""
    return f"{hashlib.blake2b(request_id.encode(), digest_size=12).hexdigest()}.{index}"


class Coordinator:
    """Leader-side write path. ``submit_timeout`` bounds every wait for an outcome."""

    def __init__(self, replicator: Replicator, submit_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.replicator = replicator
        self.submit_timeout = submit_timeout
        self.clock = clock
        #: Until when consistent reads skip the read index (its last attempt found no majority
        #: to confirm it: members of an older release, mid-upgrade, do not answer its probes).
        self.read_index_off_until = float("-inf")

    async def submit(self, command: c.Command) -> Applied:
        """Submit one command, stamped with the leader's clock; raise ErrorReply unless applied."""
        outcome = await self._replicate(self._stamped(command))
        if isinstance(outcome, Rejected):
            raise ErrorReply.from_rejection(outcome)
        return outcome

    async def submit_many(self, commands: list[c.Command]) -> list[Outcome]:
        """Submit commands together (queued in one go, they share log entries); their outcomes
        in order. Raises ErrorReply if any could not be replicated (the caller retries them all
        with the same request ids: those applied are recalled, not applied again)."""
        pending = []
        for at in range(0, len(commands), SUBMIT_SLICE):
            if at:
                await asyncio.sleep(0)  # let the loop tick between slices
            pending += [asyncio.ensure_future(self._replicate(self._stamped(command)))
                        for command in commands[at:at + SUBMIT_SLICE]]
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(outcomes)  # type: ignore[arg-type]

    @staticmethod
    def _stamped(command: c.Command) -> c.Command:
        return dataclasses.replace(command, time=time.time(),
                                   fingerprint=command.fingerprint or request_fingerprint.get(),
                                   audit=command.audit or request_audit.get())

    async def _replicate(self, command: c.Command) -> Outcome:
        try:
            return await self.replicator.submit(command, self.submit_timeout)
        except NotLeaderError as exc:
            raise ErrorReply("not_leader", str(exc), leader=exc.leader_id) from None
        except NotAppliedError as exc:
            raise ErrorReply("unavailable", str(exc)) from None
        except OutcomeUnknownError as exc:
            raise ErrorReply("timeout", str(exc)) from None

    async def change_members(self, add: MemberInfo | None = None,
                             remove: str | None = None) -> bool:
        """Add or remove one coordinator member (on the leader); False when that was already
        so. Raises ErrorReply unless the change is committed."""
        try:
            return await self.replicator.change_members(add=add, remove=remove,
                                                        timeout=max(self.submit_timeout, 10.0))
        except NotLeaderError as exc:
            raise ErrorReply("not_leader", "this member leads no more (it handed over, to be "
                             "removed by the next leader); retry", leader=exc.leader_id) from None
        except MembershipRefused as exc:
            raise ErrorReply("precondition_failed", str(exc)) from None
        except NotAppliedError as exc:
            raise ErrorReply("unavailable", f"{exc}; nothing changed, retry") from None
        except OutcomeUnknownError as exc:
            raise ErrorReply("timeout", str(exc)) from None

    async def _submit_planned(self, request_id: str, plan: Any) -> Applied:
        """Submit ``await plan()``'s command, re-planning while apply calls the plan stale."""
        for attempt in range(STALE_PLAN_RETRIES):
            try:
                return await self.submit(await plan())
            except ErrorReply as exc:
                if exc.code != "stale_plan" or attempt == STALE_PLAN_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def register_node(self, request_id: str, **fields: Any) -> Applied:
        return await self.submit(c.RegisterNode(request_id=request_id, **fields))

    async def register_nodes(self, request_id: str, nodes: list[dict[str, Any]]) -> list[Outcome]:
        """Register every node of ``nodes`` (keyword fields of :class:`RegisterNode`), each
        under the request id ``item_request_id(request_id, i)``."""
        return await self.submit_many([
            c.RegisterNode(request_id=item_request_id(request_id, i), **fields)
            for i, fields in enumerate(nodes)])

    async def remove_node(self, request_id: str, node_id: str, force: bool) -> Applied:
        async def plan() -> c.RemoveNode:
            state = self.replicator.state
            replacements = await offload(replacements_for, state, node_id, size=replica_count(state),
                                         name="replacement plan") \
                if force and node_id in state.nodes else {}
            return c.RemoveNode(request_id=request_id, node_id=node_id, force=force,
                                replacements=replacements)

        return await self._submit_planned(request_id, plan)

    async def set_node_state(self, request_id: str, node_id: str, **fields: Any) -> Applied:
        return await self.submit(c.SetNodeState(request_id=request_id, node_id=node_id, **fields))

    async def start_node_session(self, request_id: str, node_id: str,
                                 address: str | None = None) -> Applied:
        return await self.submit(c.StartNodeSession(request_id=request_id, node_id=node_id,
                                                    address=address))

    async def create_token(self, request_id: str, name: str, role: str, digest: str,
                           node: str | None, expires_at: float | None) -> Applied:
        return await self.submit(c.CreateToken(request_id=request_id, name=name, role=role,
                                               hash=digest, node=node, expires_at=expires_at))

    async def revoke_token(self, request_id: str, name: str) -> Applied:
        return await self.submit(c.RevokeToken(request_id=request_id, name=name))

    async def create_resource(self, request_id: str, name: str, partitions: int,
                              replicas: int, balance_metric: str | None = None) -> Applied:
        """Place the resource (off the loop when large) and create it: in one entry, or for a
        large one in slices of ``MAX_SLICE`` partitions (see :meth:`complete_resource`)."""
        state = self.replicator.state
        over = over_cluster_limits(state, partitions, replicas)
        if over is not None:  # refused before it is placed, let alone logged
            raise ErrorReply("limit_exceeded", over)
        total = replica_count(state)
        placed: dict[str, PlacedSlices] = {}

        async def plan() -> c.CreateResource:
            # The work: the new replicas, and a count of every replica the cluster holds.
            placed["assignment"] = await offload(
                place_in_slices, self.replicator.state, name, 0, partitions, replicas, MAX_SLICE,
                size=partitions * replicas + total, name="placement")
            return c.CreateResource(request_id=request_id, name=name, partitions=partitions,
                                    replication_factor=replicas,
                                    assignment=placed["assignment"].take(0, MAX_SLICE),
                                    balance_metric=balance_metric)

        created = await self._submit_planned(request_id, plan)
        if created.result.get("resource", {}).get("creating"):
            await self.complete_resource(name, request_id, placed.get("assignment"))
            # The answer describes the finished resource (a new dict: the outcome remembered
            # for the request id belongs to the replicated state).
            summary = {k: v for k, v in created.result["resource"].items() if k != "creating"}
            created = dataclasses.replace(created, result={**created.result, "resource": summary})
        return created

    async def complete_resource(self, name: str, request_id: str,
                                assignment: PlacedSlices | None = None) -> None:
        """Add the missing slices of a resource being created (the request that created it, a
        retry of that request, or the leader's rebalancer after a failover). Each slice is an
        ``AddPartitions`` entry starting where the resource ends; a slice another caller added
        first, or one whose nodes left meanwhile, is planned again from the current state."""
        slice_id = hashlib.blake2b(request_id.encode(), digest_size=12).hexdigest()
        for _ in range(MAX_PARTITIONS // MAX_SLICE + STALE_PLAN_RETRIES * 4):
            res = self.replicator.state.resources.get(name)
            if res is None or not res.creating:
                return
            start, size, rf = len(res.partitions), res.size, res.replication_factor
            if assignment is None or assignment.end != size or start < assignment.start:
                state = self.replicator.state
                assignment = await offload(place_in_slices, state, name, start, size, rf,
                                           MAX_SLICE, name="placement",
                                           size=(size - start) * rf + replica_count(state))
            piece = assignment.take(start, MAX_SLICE)
            try:
                await self.submit(c.AddPartitions(request_id=f"{slice_id}:{start}", name=name,
                                                  start=start, assignment=piece))
            except ErrorReply as exc:
                if exc.code not in ("stale_plan", "request_id_reused"):
                    raise
                assignment = None  # the resource moved on, or a node left: plan the rest again
        raise ErrorReply("unavailable", f"resource {name!r} is still being created; retry")

    async def update_resource(self, request_id: str, name: str, replicas: int | None = None,
                              balance_metric: str | None = None) -> Applied:
        return await self.submit(c.UpdateResource(request_id=request_id, name=name,
                                                  replication_factor=replicas,
                                                  balance_metric=balance_metric))

    async def delete_resource(self, request_id: str, name: str) -> Applied:
        return await self.submit(c.DeleteResource(request_id=request_id, name=name))

    async def move_partition(self, request_id: str, resource: str, partition: int,
                             from_node: str, to_node: str) -> Applied:
        return await self.submit(c.MovePartition(request_id=request_id, resource=resource,
                                                 partition=partition, from_node=from_node,
                                                 to_node=to_node))

    def leading_term(self) -> int:
        """The Raft term this member leads in (leader-only commands carry it); ``not_leader``
        otherwise."""
        if not self.replicator.is_leader():
            raise ErrorReply("not_leader", f"{self.replicator.member_id} does not lead",
                             leader=self.replicator.leader_id())
        return self.replicator.term

    async def report_caught_up(self, request_id: str, node_id: str, epoch: int, resource: str,
                               partition: int, partition_epoch: int) -> Applied:
        return await self.submit(c.ReportCaughtUp(
            request_id=request_id, node_id=node_id, epoch=epoch, resource=resource,
            partition=partition, partition_epoch=partition_epoch))

    async def set_partition_leader(self, request_id: str, resource: str, partition: int,
                                   leader: str, reason: str = "operator") -> Applied:
        return await self.submit(c.SetPartitionLeader(
            request_id=request_id, resource=resource, partition=partition, leader=leader,
            reason=reason, term=self.leading_term()))

    async def start_move(self, request_id: str, resource: str, partition: int,
                         from_node: str | None, to_node: str, reason: str) -> Applied:
        return await self.submit(c.StartMove(
            request_id=request_id, resource=resource, partition=partition, from_node=from_node,
            to_node=to_node, reason=reason, term=self.leading_term()))

    async def cancel_move(self, request_id: str, resource: str, partition: int, reason: str) -> Applied:
        return await self.submit(c.CancelMove(request_id=request_id, resource=resource,
                                              partition=partition, reason=reason,
                                              term=self.leading_term()))

    async def configure_rebalance(self, request_id: str, **fields: Any) -> Applied:
        return await self.submit(c.ConfigureRebalance(request_id=request_id, **fields))

    async def start_rebalance(self, request_id: str, run_id: str) -> Applied:
        return await self.submit(c.StartRebalance(request_id=request_id, run_id=run_id))

    async def end_rebalance(self, request_id: str, run_id: str, outcome: str) -> Applied:
        return await self.submit(c.EndRebalance(request_id=request_id, run_id=run_id,
                                                outcome=outcome, term=self.leading_term()))

    async def barrier(self) -> int:
        """Linearizable read point: returns the revision once everything committed before the
        call is applied on this (leading) member. A read index (no log write) when the member
        can give one; a barrier command through the log until it has committed an entry of its
        own term."""
        try:
            if await self._read_index_served():
                return self.replicator.state.revision
        except NotLeaderError as exc:
            raise ErrorReply("not_leader", str(exc), leader=exc.leader_id) from None
        outcome = await self.submit(c.Barrier())
        return outcome.revision

    async def _read_index_served(self) -> bool:
        """True once the leader confirmed a read index and this member applied up to it; False
        when none can be had now (the leader's first entry of its term not yet committed, an
        older release mid-upgrade, or none confirmed in time: then none is asked for
        :data:`READ_INDEX_BACKOFF` seconds). Raises :class:`NotLeaderError`."""
        if self.clock() < self.read_index_off_until:
            return False
        try:
            return await self.replicator.read_index(self.submit_timeout) is not None
        except NotAppliedError:  # cut off, or members that ignore the read index's messages
            self.read_index_off_until = self.clock() + READ_INDEX_BACKOFF
            return False

    async def follower_read(self) -> bool:
        """On a follower: True once the local state holds every write acknowledged before the
        call (the leader confirmed a read index and this member applied up to it); False when
        none could be had (no leader connected, the leader's first entry of its term not yet
        committed, or no answer in time: then none is asked for a while): the read is then
        forwarded to the leader."""
        try:
            return await self._read_index_served()
        except NotLeaderError:
            return False


def replica_count(state: Any) -> int:
    """How many replicas the state holds (the size of a planning job over it)."""
    return sum(len(res.partitions) * res.replication_factor for res in state.resources.values())
