"""Node liveness on the leader: heartbeats held in memory, only transitions committed.

Data nodes heartbeat (through any member; followers forward to the leader) with their node epoch.
The leader keeps when it last heard from each node in memory and never writes a heartbeat to the
Raft log. A background task judges every node once per ``check_interval``: silent for
``suspect_after`` seconds -> ``suspect``, for ``down_after`` seconds -> ``down``, and a heartbeat
from a suspect or down node brings it back ``up``. The judgements of a pass go in one
command (``SetNodesLiveness``: one scan of the partitions however many nodes it judges), each
judgement submitted once per (node, status) until the state shows it. Heartbeats that bring
nodes back within ``RETURN_WINDOW`` of each other share one command too (after an election,
every node whose heartbeats went to the old leader comes back within a second or two).

Leadership. A member that becomes leader cannot know when its predecessor last heard from each
node, so on every leadership gain (a new Raft term) it grants every node one full timeout of grace:
``last_seen`` starts at the moment of the gain. Every judgement carries the term it was made in,
and ``apply`` refuses one whose term is below the highest term a judgement was applied with, so a
deposed leader's late judgement cannot undo a newer leader's.

A leader that could not listen cannot blame the nodes for it: when a pass comes more than one
``check_interval`` late (the process was paused, or its event loop was starved), every node is
credited with the extra time, so an overloaded or stalled leader does not judge live nodes.

A node whose status an operator set (``SetNodeState``) is judged like any other: a node marked
down that keeps heartbeating is brought back up, and one marked up that is silent goes suspect.

Threading: everything here runs on the member's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from hacoord.core import commands as c
from hacoord.core.apply import MAX_JUDGEMENTS
from hacoord.replication.base import Replicator
from hacoord.server.coordinator import Coordinator
from hacoord.server.errors import ErrorReply

log = logging.getLogger(__name__)

DEFAULT_SUSPECT_AFTER = 3.0
DEFAULT_DOWN_AFTER = 8.0


#: How long the first heartbeat of a returning node waits for others to join its judgement.
RETURN_WINDOW = 0.02


class _Returning:
    """Nodes (id -> epoch) to be judged up in one command, and that command's outcome."""

    def __init__(self, term: int) -> None:
        self.term = term
        self.nodes: dict[str, int] = {}
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def default_check_interval(suspect_after: float) -> float:
    """How often nodes are judged: often enough that a judgement is late by a small part of the
    shortest timeout."""
    return min(0.5, suspect_after / 4)


class LivenessMonitor:
    """Tracks heartbeats and commits liveness transitions while this member leads.

    ``clock`` gives seconds on a monotonic scale (tests pass a controllable one). Raises
    ``ValueError`` unless ``0 < suspect_after < down_after`` and ``check_interval > 0``.
    """

    def __init__(self, replicator: Replicator, coordinator: Coordinator,
                 clock: Callable[[], float] = time.monotonic,
                 suspect_after: float = DEFAULT_SUSPECT_AFTER, down_after: float = DEFAULT_DOWN_AFTER,
                 check_interval: float | None = None) -> None:
        if not 0 < suspect_after < down_after:
            raise ValueError(f"need 0 < suspect_after ({suspect_after}) < down_after ({down_after})")
        check_interval = default_check_interval(suspect_after) if check_interval is None else check_interval
        if check_interval <= 0:
            raise ValueError(f"check_interval must be positive, got {check_interval}")
        self.replicator = replicator
        self.coordinator = coordinator
        self.clock = clock
        self.suspect_after = suspect_after
        self.down_after = down_after
        self.check_interval = check_interval
        #: node id -> clock reading of its last heartbeat (or of the grace granted it).
        self.last_seen: dict[str, float] = {}
        #: Nodes that heartbeated (with their current epoch) during this leadership; only these
        #: are brought back up by the periodic check.
        self._heard: set[str] = set()
        #: node id -> (status, node epoch) of the judgement in flight for it.
        self._pending: dict[str, tuple[str, int]] = {}
        #: Nodes whose heartbeats are bringing them back up, in the batch not yet submitted.
        self._returning: _Returning | None = None
        self._term: int | None = None
        self._last_pass: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._submissions: set[asyncio.Task[Any]] = set()
        #: Judgements this member had applied, by status (for tests and metrics).
        self.transitions: dict[str, int] = {"up": 0, "suspect": 0, "down": 0}
        #: Seconds this member could not listen, forgiven to every node.
        self.deaf_seconds = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start judging in the background (it acts only while this member leads)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="liveness-monitor")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._submissions) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._submissions.clear()

    async def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # keep judging; a bug here must not silence liveness for good
                log.exception("liveness check failed")
            await asyncio.sleep(self.check_interval)

    # --- leadership ---------------------------------------------------------------------------

    def leading_term(self) -> int | None:
        """The term this member leads in, or None. On a leadership gain, every node gets one full
        timeout of grace from now and nothing learned under an earlier leadership is kept."""
        if not self.replicator.is_leader():
            self._term = None
            return None
        term = self.replicator.term
        if term != self._term:
            now = self.clock()
            self._term = term
            self.last_seen = dict.fromkeys(self.replicator.state.nodes, now)
            self._heard.clear()
            self._pending.clear()
            self._last_pass = now
            log.info("leading in term %d: %d nodes get %.1fs of grace", term, len(self.last_seen),
                     self.down_after)
        return term

    def metrics(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """Prometheus families: transitions this member committed by status, nodes it tracks,
        heartbeat-silence forgiven, and the longest silence among tracked nodes."""
        transitions = CounterMetricFamily("hacoord_liveness_transitions",
                                          "Liveness judgements this member committed", labels=["status"])
        for status, count in sorted(self.transitions.items()):
            transitions.add_metric([status], count)
        leading = self.leading_term() is not None
        now = self.clock()
        silent = max((now - seen for seen in self.last_seen.values()), default=0.0) if leading else 0.0
        return [
            transitions,
            GaugeMetricFamily("hacoord_liveness_tracked_nodes", "Nodes whose heartbeats this leader judges",
                              value=len(self.replicator.state.nodes) if leading else 0),
            GaugeMetricFamily("hacoord_liveness_longest_silence_seconds",
                              "Longest time since a tracked node's last heartbeat (leader only)",
                              value=max(0.0, silent)),
            CounterMetricFamily("hacoord_liveness_deaf_seconds",
                                "Seconds this leader could not listen, forgiven to every node",
                                value=self.deaf_seconds),
        ]

    # --- heartbeats ---------------------------------------------------------------------------

    async def heartbeat(self, node_id: str, epoch: int) -> dict[str, Any]:
        """Record a heartbeat from ``node_id`` at ``epoch`` (leader only). Raises ErrorReply
        ``not_found`` for an unknown node, ``stale_epoch`` unless ``epoch`` is the node's current
        one. Writes nothing unless the node was suspect or down: then it waits for the node to be
        judged up again. Answers the node's status, epoch and the revision it reflects."""
        term = self.leading_term()
        if term is None:
            raise ErrorReply("not_leader", f"{self.replicator.member_id} does not lead",
                             leader=self.replicator.leader_id())
        node = self.replicator.state.nodes.get(node_id)
        if node is None:
            raise ErrorReply("not_found", f"unknown node {node_id!r}")
        if epoch != node.epoch:
            raise ErrorReply("stale_epoch", f"node {node_id!r} is at epoch {node.epoch}, not {epoch}: "
                                          "start a new session")
        self.last_seen[node_id] = self.clock()
        self._heard.add(node_id)
        if node.status != "up" and node_id not in self._pending:
            await self._come_up(node_id, epoch, term)
        state = self.replicator.state
        node = state.nodes.get(node_id)
        if node is None:
            raise ErrorReply("not_found", f"unknown node {node_id!r}")
        return {"node_id": node_id, "status": node.status, "epoch": node.epoch,
                "revision": state.revision}

    async def _come_up(self, node_id: str, epoch: int, term: int) -> None:
        """Judge ``node_id`` up together with every node whose heartbeat brings it back within
        ``RETURN_WINDOW`` (after an election, hundreds of nodes come back within a second: one
        command each would crowd the log), and wait for that command's outcome."""
        batch = self._returning
        if batch is None or batch.term != term or batch.done.done():
            batch = self._returning = _Returning(term)
            self._track(self._submit_returning(batch))
        batch.nodes[node_id] = epoch
        self._pending[node_id] = ("up", epoch)  # the periodic pass leaves it to this batch
        await asyncio.shield(batch.done)

    async def _submit_returning(self, batch: _Returning) -> None:
        try:
            await asyncio.sleep(RETURN_WINDOW)
            if self._returning is batch:
                self._returning = None
            await self._judge([(n, "up", e) for n, e in batch.nodes.items()], batch.term)
        except asyncio.CancelledError:  # the monitor stops
            self._unmark(batch)
            batch.done.cancel()
            raise
        except Exception as exc:
            self._unmark(batch)
            batch.done.set_exception(exc)
            batch.done.exception()  # retrieved here: the waiting heartbeats may all be gone
        else:
            batch.done.set_result(None)

    def _unmark(self, batch: _Returning) -> None:
        for node_id, epoch in batch.nodes.items():
            if self._pending.get(node_id) == ("up", epoch):
                del self._pending[node_id]

    def session_started(self, node_id: str) -> None:
        """A node began a new session (so it is alive, at a new epoch): hear from it now."""
        if self.leading_term() is not None:
            self.last_seen[node_id] = self.clock()
            self._heard.add(node_id)

    # --- judging ------------------------------------------------------------------------------

    def due(self) -> dict[str, str]:
        """The transitions due now (node id -> status), leaving out those in flight."""
        if self.leading_term() is None:
            return {}
        now = self.clock()
        self._forgive_deafness(now)
        nodes = self.replicator.state.nodes
        for gone in [n for n in self.last_seen if n not in nodes]:
            del self.last_seen[gone]
            self._heard.discard(gone)
        due = {}
        for node_id, node in nodes.items():
            if node_id in self._pending:
                continue
            # A node registered since the last pass gets a full timeout from now.
            silent = now - self.last_seen.setdefault(node_id, now)
            if silent >= self.down_after:
                target = "down"
            elif silent >= self.suspect_after:
                target = "suspect"
            else:
                target = "up"
            if target == node.status:
                continue
            if target == "up" and node_id not in self._heard:
                continue  # within its grace, but not heard from: no evidence it is alive
            if target == "suspect" and node.status == "down":
                continue  # judged down already; only a heartbeat brings it back
            due[node_id] = target
        return due

    def _forgive_deafness(self, now: float) -> None:
        """Credit every node with the time by which this pass is late beyond one interval."""
        last, self._last_pass = self._last_pass, now
        if last is None:
            return
        late = now - last - self.check_interval
        if late > self.check_interval:
            self.deaf_seconds += late
            log.warning("liveness pass %.2fs late (paused or overloaded): not held against nodes", late)
            for node_id, seen in self.last_seen.items():
                self.last_seen[node_id] = min(now, seen + late)

    def check(self) -> int:
        """Submit every due transition in the background, in one command (a slow commit must
        not hold up later passes); returns how many were submitted."""
        term = self.leading_term()
        if term is None:
            return 0
        due = self.due()
        if due:
            self._track(self._judge_quietly(self._epochs(due), term))
        return len(due)

    def _track(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background until it ends or the monitor stops."""
        task = asyncio.create_task(work)
        self._submissions.add(task)
        task.add_done_callback(self._submissions.discard)

    async def judge(self) -> dict[str, str]:
        """Submit every due transition and wait for the outcome; returns those applied (node id
        -> status). Refused ones are logged and judged again on a later pass if still due."""
        term = self.leading_term()
        if term is None:
            return {}
        due = self.due()
        if not due:
            return {}
        return await self._judge_quietly(self._epochs(due), term)

    def _epochs(self, due: dict[str, str]) -> list[tuple[str, str, int]]:
        nodes = self.replicator.state.nodes
        return [(node_id, status, nodes[node_id].epoch) for node_id, status in due.items()]

    async def _judge_quietly(self, judgements: list[tuple[str, str, int]],
                             term: int) -> dict[str, str]:
        applied: dict[str, str] = {}
        for start in range(0, len(judgements), MAX_JUDGEMENTS):
            batch = judgements[start:start + MAX_JUDGEMENTS]
            try:
                applied.update(await self._judge(batch, term))
            except ErrorReply as exc:
                log.warning("%d judgements (%s...) not applied: %s: %s", len(batch),
                            ", ".join(f"{n} {s}" for n, s, _ in batch[:3]), exc.code, exc.message)
        return applied

    async def _judge(self, judgements: list[tuple[str, str, int]], term: int) -> dict[str, str]:
        """Commit judgements in one command; the pending marks stop them being submitted twice
        meanwhile. Returns those applied."""
        keys = {node_id: (status, epoch) for node_id, status, epoch in judgements}
        self._pending.update(keys)
        try:
            outcome = await self.coordinator.submit(c.SetNodesLiveness(
                judgements=[[n, s, e] for n, s, e in judgements], term=term))
        finally:
            for node_id, key in keys.items():
                if self._pending.get(node_id) == key:
                    del self._pending[node_id]
        applied = {}
        for node_id in outcome.result.get("judged", []):
            status, epoch = keys[node_id]
            applied[node_id] = status
            self.transitions[status] += 1
            log.info("node %s judged %s (epoch %d, term %d)", node_id, status, epoch, term)
        for node_id in outcome.result.get("skipped", []):
            log.info("node %s: judgement not applied (gone or restarted meanwhile)", node_id)
        return applied
