"""Events: what an applied command changed, in the past tense (``NodeRegistered``).

Each event carries the revision it happened at, so a watcher can resume after any revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hacoord.protocol.events import EventData


@dataclass(frozen=True, slots=True)
class Event:
    """One change to the state. ``type`` is a past-tense name; ``data`` is JSON-ready, the
    ``to_data`` of the :mod:`hacoord.protocol.events` class of that name."""

    type: str
    revision: int
    data: dict[str, Any] = field(default_factory=dict)
    #: Who made the change: the command, its request id and time, and its ``principal``,
    #: ``role``, ``source`` and ``via`` (``principal`` "system" for the leader's own decisions).
    audit: dict[str, Any] | None = None

    @classmethod
    def of(cls, revision: int, data: EventData) -> Event:
        """The event ``data`` describes (its class names the type), at ``revision``."""
        return cls(data.TYPE, revision, data.to_data())

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type, "revision": self.revision, "data": self.data}
        if self.audit is not None:
            body["audit"] = self.audit
        return body
