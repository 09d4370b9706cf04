"""Exceptions raised by :class:`hacoord.client.Client`.

The tree::

    HacoordError                     anything this package raises on purpose
    ├── ApiError                     a member answered with an error body (.code, .message, .status)
    │   ├── InvalidArgument          400 invalid_argument: the request is malformed
    │   ├── Unauthenticated          401 unauthenticated: no token, or one no member accepts
    │   ├── PermissionDenied         403 permission_denied: the token's role or node may not do this
    │   ├── NotFound                 404 not_found: no such node, resource or partition
    │   ├── Conflict                 409 already_exists, node_not_empty, not_enough_nodes, stale_plan,
    │   │                                request_id_reused, ...
    │   │   └── StaleEpoch           409 stale_epoch: the node started a newer session; start one
    │   ├── Compacted                410 compacted: watch asked for history no longer kept
    │   ├── ServiceUnavailable       503 no_leader / not_ready / unavailable, 504 timeout: retried
    │   │   └── NotLeader            503 not_leader: .leader names the member that leads, if known
    │   └── ServerError              500 internal_error and any other unexpected status
    ├── UnavailableError             no endpoint answered usefully before the deadline (.cause)
    └── ProtocolError                an answer that is not the JSON the API promises

Only :class:`ServiceUnavailable` (with :class:`NotLeader`) and transport failures (refused
connections, timeouts) are retried, and only inside the client: when the retry budget is spent the
caller gets :class:`UnavailableError` whose ``cause`` is the last failure. Every 4xx is final: the
same request would be refused again. A 4xx answer to a retried write can also mean the first try
was applied (for example ``already_exists`` after a lost answer to ``node_add``), but writes carry a
request id the state machine de-duplicates, so a retried write normally gets the first answer back.
"""

from __future__ import annotations

from hacoord.protocol import ErrorCode


class HacoordError(Exception):
    """Base of every error the client raises on purpose."""


class ApiError(HacoordError):
    """A member answered with an error body.

    ``code`` is machine-readable (``not_found``, ``already_exists``, ...), ``message`` is for
    people, ``status`` is the HTTP status, ``leader`` the leader hint the member gave (if any) and
    ``endpoint`` the base URL that answered.
    """

    retryable = False

    def __init__(self, code: str, message: str, status: int, *, leader: str | None = None,
                 endpoint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.leader = leader
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status})"

    def __reduce__(self) -> tuple[object, ...]:  # picklable despite the keyword-only arguments
        return (type(self), (self.code, self.message, self.status),
                {"leader": self.leader, "endpoint": self.endpoint})


class InvalidArgument(ApiError):
    """400: the request is malformed (bad id, address, capacity, field...)."""


class Unauthenticated(ApiError):
    """401: the request carried no token, or one the cluster does not accept (never issued,
    revoked or expired). Give the client a token (``token=``, ``HACOORD_TOKEN``,
    ``HACOORD_TOKEN_FILE``)."""


class PermissionDenied(ApiError):
    """403: the token is valid, but its role may not do this, or a node token was used for
    another node."""


class NotFound(ApiError):
    """404: the node, resource or partition does not exist."""


class Conflict(ApiError):
    """409: the request clashes with the current state (``already_exists``, ``node_not_empty``,
    ``not_enough_nodes``, ``stale_plan``)."""


class StaleEpoch(Conflict):
    """409 ``stale_epoch``: a heartbeat or report carried a node epoch that is not the node's
    current one (a newer session was started, by a restart or by another process). The sender
    must stop acting on its old state and start a new session."""


class Compacted(ApiError):
    """410: the watch asked for events older than the member keeps; re-read the state (its
    revision) and watch from there."""


class ServiceUnavailable(ApiError):
    """503/504: the cluster cannot serve the request right now (no leader, leader unreachable,
    commit timed out). The client retries these itself; callers see them only as the ``cause`` of
    an :class:`UnavailableError`."""

    retryable = True


class NotLeader(ServiceUnavailable):
    """503 ``not_leader``: the member that got the request does not lead; ``leader`` names the
    member it believes does (or is None)."""


class WrongCluster(ServiceUnavailable):
    """Raised by the client itself (code ``wrong_cluster``): a member answered with another
    cluster's id (``X-Hacoord-Cluster``) than the one the client was given or first saw. The
    client passes that endpoint over and tries the others; if none belongs to the cluster, the
    :class:`UnavailableError` it raises has this as its ``cause``."""


class ServerError(ApiError):
    """500 or any status the API does not document: a bug on the server side. Not retried."""


class UnavailableError(HacoordError):
    """No endpoint gave a usable answer before the deadline (all unreachable, or the cluster kept
    answering 503/504). ``cause`` is the last failure (an :class:`httpx.TransportError` or a
    :class:`ServiceUnavailable`), ``attempts`` how many requests were tried."""

    def __init__(self, message: str, *, cause: BaseException | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        self.attempts = attempts


class ProtocolError(HacoordError):
    """The answer was not what the API promises (not JSON, missing fields): probably not a hacoord
    member at that address, or a version mismatch."""


#: The exception class for each error code (every :class:`ErrorCode` has one; a code this
#: version does not know falls back on the status).
_CLASS_BY_CODE: dict[ErrorCode, type[ApiError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.HTTP_ERROR: InvalidArgument,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.UNAUTHENTICATED: Unauthenticated,
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
    ErrorCode.METHOD_NOT_ALLOWED: ApiError,
    ErrorCode.REQUEST_TOO_LARGE: ApiError,
    ErrorCode.TOO_MANY_REQUESTS: ApiError,
    ErrorCode.ALREADY_EXISTS: Conflict,
    ErrorCode.NODE_NOT_EMPTY: Conflict,
    ErrorCode.NOT_ENOUGH_NODES: Conflict,
    ErrorCode.STALE_PLAN: Conflict,
    ErrorCode.STALE_EPOCH: StaleEpoch,
    ErrorCode.PRECONDITION_FAILED: Conflict,
    ErrorCode.NODE_BUSY: Conflict,
    ErrorCode.MOVE_PENDING: Conflict,
    ErrorCode.NO_MOVE: Conflict,
    ErrorCode.MAINTENANCE: Conflict,
    ErrorCode.THROTTLED: Conflict,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.REQUEST_ID_REUSED: Conflict,
    ErrorCode.LIMIT_EXCEEDED: Conflict,
    ErrorCode.COMPACTED: Compacted,
    ErrorCode.STALE_TERM: ServiceUnavailable,
    ErrorCode.NOT_LEADER: NotLeader,
    ErrorCode.NO_LEADER: ServiceUnavailable,
    ErrorCode.NOT_READY: ServiceUnavailable,
    ErrorCode.UNAVAILABLE: ServiceUnavailable,
    ErrorCode.TIMEOUT: ServiceUnavailable,
    ErrorCode.INTERNAL_ERROR: ServerError,
}

_CLASS_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Compacted,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


def error_for(code: str, message: str, status: int, *, leader: str | None = None,
              endpoint: str | None = None) -> ApiError:
    """The typed exception for an error answer. The status decides whether it is retryable: a
    503/504 is always a :class:`ServiceUnavailable`, whatever its code says."""
    known = ErrorCode.lookup(code)
    cls = (_CLASS_BY_CODE.get(known) if known is not None else None) or _CLASS_BY_STATUS.get(status)
    if cls is None:
        cls = ApiError if 400 <= status < 500 else ServerError
    if status in (503, 504) and not issubclass(cls, ServiceUnavailable):
        cls = ServiceUnavailable
    elif status not in (503, 504) and issubclass(cls, ServiceUnavailable):
        cls = ApiError if 400 <= status < 500 else ServerError
    return cls(code, message, status, leader=leader, endpoint=endpoint)
