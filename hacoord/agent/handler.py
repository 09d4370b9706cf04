"""What a data node implements to be told about its assignments by :class:`~hacoord.agent.NodeAgent`.

Subclass :class:`AssignmentHandler` and override what the node needs; every method has a default
that does nothing. The agent calls ``on_assign``, ``on_release`` and ``on_session_lost`` one at a
time, in the order the changes happened (never two at once), from its own threads; ``catch_up``
runs in a worker thread of its own, concurrently with them. An exception raised by a method is
logged and does not stop the agent (``catch_up`` is called again, with backoff).
"""

from __future__ import annotations

from hacoord.agent.assignments import Assignment


class AssignmentHandler:
    """The data node's side of the agent. The defaults do nothing (``catch_up`` returns at once:
    a node that keeps no data has nothing to copy)."""

    def on_assign(self, assignment: Assignment) -> None:
        """The node now holds ``assignment.partition`` of ``assignment.resource`` under
        ``assignment.epoch`` as ``assignment.role`` (leader, follower, or catching up for a move).
        Called again whenever the epoch or the role changes. Requests stamped with an older epoch
        must be refused from now on (see :class:`hacoord.fencing.EpochGuard`)."""

    def on_release(self, resource: str, partition: int) -> None:
        """The node no longer holds the partition: stop serving it (its data may be dropped)."""

    def catch_up(self, assignment: Assignment) -> None:
        """Copy the partition for a pending move (``assignment.role`` is catching up), from its
        leader (``assignment.route.leader``), and return when the copy is complete; the agent then
        reports it caught up and the move completes. Writes made meanwhile must reach this node
        too (the leader sends them to the route's ``adding`` replica). Raise to have it retried."""

    def on_session_lost(self, reason: str) -> None:
        """The node's session ended for good (a newer session of the same node id was started,
        or the node was removed): everything was released just before, and the agent stopped."""
