"""Every error code the API answers with, its HTTP status, and whether the same request may
succeed if retried (with the same request id, for a write).

Rule of thumb: 4xx never helps to retry (the same request would be refused again), except 429
after its ``Retry-After``; 503 and 504 do (another member, or the same one shortly). The error
body is ``{"code": ..., "message": ...}`` (and ``leader`` when the member knows who leads).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """An API error code (its value is the wire string) with ``status`` and ``retryable``."""

    status: int
    retryable: bool

    def __new__(cls, value: str, status: int, retryable: bool) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.retryable = retryable
        return member

    # The request itself is wrong.
    INVALID_ARGUMENT = ("invalid_argument", 400, False)
    NOT_FOUND = ("not_found", 404, False)
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, False)
    HTTP_ERROR = ("http_error", 400, False)
    REQUEST_TOO_LARGE = ("request_too_large", 413, False)  # 431 when the headers are
    #: No token, or one no member knows (unknown, revoked or expired): 401 with
    #: ``WWW-Authenticate``.
    UNAUTHENTICATED = ("unauthenticated", 401, False)
    #: The token's role (or, for a node token, its node) may not do this.
    PERMISSION_DENIED = ("permission_denied", 403, False)
    # It clashes with the state as it is.
    ALREADY_EXISTS = ("already_exists", 409, False)
    NODE_NOT_EMPTY = ("node_not_empty", 409, False)
    NOT_ENOUGH_NODES = ("not_enough_nodes", 409, False)
    STALE_PLAN = ("stale_plan", 409, False)
    STALE_EPOCH = ("stale_epoch", 409, False)
    PRECONDITION_FAILED = ("precondition_failed", 409, False)
    NODE_BUSY = ("node_busy", 409, False)
    MOVE_PENDING = ("move_pending", 409, False)
    NO_MOVE = ("no_move", 409, False)
    MAINTENANCE = ("maintenance", 409, False)
    THROTTLED = ("throttled", 409, False)
    CONFLICT = ("conflict", 409, False)
    #: The request id was already used for another request (method, path or body differ).
    REQUEST_ID_REUSED = ("request_id_reused", 409, False)
    #: The cluster would hold more partitions or replicas than a member is built for.
    LIMIT_EXCEEDED = ("limit_exceeded", 409, False)
    #: History older than the member keeps (re-read the state, watch from its revision).
    COMPACTED = ("compacted", 410, False)
    #: Too many requests from one client (or long polls): retry after ``Retry-After``.
    TOO_MANY_REQUESTS = ("too_many_requests", 429, True)
    # The cluster cannot serve it right now: another member, or the same one shortly, can.
    #: A judgement made in an older term than one already applied: this member was deposed.
    STALE_TERM = ("stale_term", 503, True)
    NOT_LEADER = ("not_leader", 503, True)
    NO_LEADER = ("no_leader", 503, True)
    #: The member is loading its state (at start, or reopening after a storage failure).
    NOT_READY = ("not_ready", 503, True)
    UNAVAILABLE = ("unavailable", 503, True)
    TIMEOUT = ("timeout", 504, True)
    INTERNAL_ERROR = ("internal_error", 500, False)

    @classmethod
    def lookup(cls, code: str) -> ErrorCode | None:
        """The member for a wire string, or None for a code this version does not know."""
        try:
            return cls(code)
        except ValueError:
            return None
