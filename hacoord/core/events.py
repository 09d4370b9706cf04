"""Events: what an applied command changed, in the past tense (``NodeRegistered``).

Each event carries the revision it happened at, so a watcher can resume after any revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One change to the state. ``type`` is a past-tense name; ``data`` is JSON-ready."""

    type: str
    revision: int
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "revision": self.revision, "data": self.data}
