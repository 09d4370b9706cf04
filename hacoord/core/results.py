"""Outcomes of applying a command: :class:`Applied` or :class:`Rejected` (errors as values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hacoord.core.events import Event


@dataclass(frozen=True)
class Applied:
    """The command changed the state (or, for a barrier, observed it) at ``revision``."""

    revision: int
    result: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    duplicate: bool = False

    ok = True

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "revision": self.revision, "result": self.result}


@dataclass(frozen=True)
class Rejected:
    """The command was refused; the state is unchanged. ``code`` is machine-readable."""

    code: str
    message: str
    revision: int = 0
    duplicate: bool = False
    #: The exception behind an ``internal_error`` (a bug): never sent, logged by the caller
    #: (core does no I/O).
    error: BaseException | None = field(default=None, repr=False, compare=False)

    ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": False, "code": self.code, "message": self.message, "revision": self.revision}


Outcome = Applied | Rejected
