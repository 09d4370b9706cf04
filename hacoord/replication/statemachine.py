"""The replicated state machine: one PySyncObj consumer whose only replicated method applies a
batch of encoded commands through :func:`hacoord.core.apply`.

Runs on whatever thread ticks PySyncObj (in hacoord, the member's event loop). The replicated
method is total: PySyncObj re-applies an entry forever if its method raises, so nothing escapes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from pysyncobj import SyncObjConsumer, replicated

from hacoord.core.commands import AddPartitions, Command, CreateResource, DecodeError, from_dict
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.replication.applying import apply_logged
from hacoord.replication.gcpolicy import state_grew
from hacoord.replication.release import release
from hacoord.replication.steps import STEPS
from hacoord.replication.storage import NewerRelease

log = logging.getLogger(__name__)

AppliedHook = Callable[[str, Outcome], None]
#: ``StateMachine.restore``'s default: the restored state was not prepared ahead.
UNPREPARED: object = object()
#: Commands after which the state holds many more objects (see hacoord.replication.gcpolicy).
GROWING = (CreateResource, AddPartitions)


#: The schema of the log entries this build writes and reads. Schema 1 is a bare JSON array of
#: commands (what every release so far writes and reads, so a rolling upgrade from an earlier
#: one keeps every member applying the same entries); a later schema will write
#: ``{"schema": N, "commands": [...]}``, which this build already recognises: a member that meets
#: an entry of a newer schema stops (:class:`NewerEntry`) rather than apply or reject it
#: differently from the members that can read it.
ENTRY_SCHEMA = 1


class NewerEntry(NewerRelease):
    """A committed log entry was written by a newer hacoord than this member's: applying it or
    rejecting it could make this member's state differ from the others'. Fatal."""


def encode_batch(encoded_commands: list[bytes]) -> bytes:
    """Join already-encoded commands into one log entry's payload (schema 1: a JSON array)."""
    return b"[" + b",".join(encoded_commands) + b"]"


def decode_batch(payload: bytes | str) -> list[Command | DecodeError]:
    """Split a batch payload back into commands; a malformed payload gives one DecodeError.
    Raises :class:`NewerEntry` for an entry of a newer schema. (A bare JSON array is schema 1.)"""
    try:
        items = json.loads(payload)
    except (ValueError, TypeError) as exc:
        return [DecodeError(f"batch is not valid JSON: {exc}")]
    if isinstance(items, dict):
        schema = items.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > ENTRY_SCHEMA:
            raise NewerEntry(f"a committed log entry of schema {schema} was written by a newer "
                             f"hacoord (this build reads schema {ENTRY_SCHEMA}): run the newer "
                             "release on this member")
        if schema != ENTRY_SCHEMA:
            return [DecodeError(f"batch has an unknown schema {schema!r}")]
        items = items.get("commands")
    if not isinstance(items, list):
        return [DecodeError("batch is not a list")]
    return [from_dict(item) for item in items]


class StateMachine(SyncObjConsumer):
    """Holds the :class:`ClusterState` and applies committed batches to it.

    ``on_applied(request_id, outcome)`` is called after each command, on the ticking thread;
    ``on_restored(prepared)`` after a snapshot replaced the state (:meth:`restore`: a follower
    installing one, or a restart), with what ``prepare(state)`` made of the new state (see
    :meth:`prepare`).
    """

    def __init__(self, on_applied: AppliedHook, on_restored: Callable[[object], None],
                 prepare: Callable[[ClusterState], object] = lambda _state: None) -> None:
        super().__init__()
        self.state = ClusterState()
        self.applied_commands = 0
        #: Seconds spent in ``apply`` (all commands so far), for the apply latency metric.
        self.apply_seconds = 0.0
        self._on_applied = on_applied
        self._on_restored = on_restored
        self._prepare = prepare

    @replicated
    def apply_batch(self, payload: bytes) -> None:
        """Apply every command of a committed batch, in order (replicated). Raises only
        :class:`NewerEntry`, before applying anything: the member must stop."""
        grew = False
        for command in decode_batch(payload):
            started = time.perf_counter()
            outcome = apply_logged(self.state, command)
            took = time.perf_counter() - started
            self.apply_seconds += took
            STEPS.note(f"apply {getattr(command, 'TYPE', 'undecodable')}", took)
            self.applied_commands += 1
            grew = grew or (outcome.ok and isinstance(command, GROWING))
            try:
                self._on_applied(getattr(command, "request_id", ""), outcome)
            except Exception:  # a waiter's failure must not stall the log
                log.exception("on_applied hook failed")
        self.state.tidy()
        if grew:
            state_grew()

    def prepare(self, state: ClusterState) -> object:
        """What installing ``state`` needs that takes long at 100,000 partitions, done ahead:
        its leader index, and what the ``prepare`` hook makes of it (the replicator's routing
        shadow). Touches nothing but ``state``, so a worker thread may call it."""
        state.leader_index()
        return self._prepare(state)

    def restore(self, state: ClusterState, prepared: object = UNPREPARED) -> None:
        """A snapshot replaced the state (loaded at start or installed from the leader).
        ``prepared`` is :meth:`prepare`'s result if it was made off the loop; otherwise it is
        made now, within the restore's own pause (rather than by the first liveness change or
        watch after it)."""
        if prepared is UNPREPARED:
            with STEPS.timed("prepare restored state"):
                prepared = self.prepare(state)
        previous, self.state = self.state, state
        release(previous)  # freeing the old state whole would hold the loop (see its module)
        del previous
        state_grew()
        with STEPS.timed("answer restored waiters"):
            self._on_restored(prepared)
