"""What :class:`~hacoord.client.Client` and :class:`~hacoord.client.AsyncClient` are made of
besides I/O: their settings, the :class:`~hacoord.client.calls.Router`, the backoff, and how an
attempt's answer moves the routing (:meth:`ClientBase._settle`, :meth:`ClientBase._steer`). Each
client adds only the sending (blocking or awaited)."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import httpx
import tenacity

from hacoord.client.calls import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    BASE_HEADERS,
    FREE_REDIRECTS,
    Call,
    Router,
    error_of,
    parse_endpoints,
    retryable,
)
from hacoord.client.credentials import resolve_token, tls_context
from hacoord.client.errors import ApiError, NotLeader, WrongCluster
from hacoord.protocol import CLUSTER_HEADER, LEADER_HEADER, MEMBERS_HEADER

#: The cluster id a client holds members to, when not given (see ``ClientBase.cluster_id``).
CLUSTER_ID_ENV = "HACOORD_CLUSTER_ID"


class ClientBase:
    """Settings and routing shared by both clients (see :class:`~hacoord.client.Client` for the
    arguments)."""

    def __init__(self, endpoints: list[str] | str | None, timeout: float, deadline: float,
                 token: str | None, token_file: str | None, ca: str | None,
                 cert: tuple[str, str] | None, cluster_id: str | None = None) -> None:
        if timeout <= 0 or deadline <= 0:
            raise ValueError("timeout and deadline must be positive")
        #: The cluster every answer must come from (given, or ``HACOORD_CLUSTER_ID``); None: any.
        #: It is not learned from answers: a stray endpoint that leads a cluster of its own (a
        #: restored copy) could otherwise lock the client out of its real cluster.
        self.cluster_id = cluster_id or os.environ.get(CLUSTER_ID_ENV) or None
        self.timeout = timeout
        self.deadline = deadline
        self._router = Router(parse_endpoints(endpoints))
        self._backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX)
        self._headers = dict(BASE_HEADERS)
        secret = resolve_token(self._router.known, token, token_file)
        if secret is not None:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._verify: ssl.SSLContext | bool = tls_context(self._router.known, ca, cert)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoints={list(self.endpoints)!r})"

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The base URLs this client was configured with (normalised)."""
        return self._router.configured

    @property
    def known_endpoints(self) -> tuple[str, ...]:
        """The base URLs this client tries: those configured, then the members its answers
        named (``X-Hacoord-Members``), so that one live endpoint is enough to find the rest."""
        return self._router.known_endpoints()

    @property
    def leader(self) -> str | None:
        """The member id the client currently believes leads, if it learned one."""
        return self._router.leader_id

    def _policy(self, call: Call) -> dict[str, Any]:
        """The retry policy of ``call`` (tenacity's arguments): retried on what may pass, up to
        the deadline, with backoff (see :meth:`_wait`); the last error is raised."""
        return {"retry": tenacity.retry_if_exception(retryable),
                "stop": tenacity.stop_before_delay(self._deadline(call)),
                "wait": lambda state: self._wait(call, state), "reraise": True}

    def _deadline(self, call: Call) -> float:
        """Seconds ``call`` may take, its retries included."""
        return self.deadline + call.extra_time

    def _wait(self, call: Call, state: tenacity.RetryCallState) -> float:
        """The pause before the next attempt: none after a fresh leader redirect."""
        if call.redirected and call.redirects <= FREE_REDIRECTS:
            return 0.0
        return float(self._backoff(state))

    def _begin(self, call: Call) -> tuple[str, float]:
        """Start an attempt of ``call``: where it goes and its timeout."""
        call.attempts += 1
        call.redirected = False
        return self._router.endpoint_for(call), call.attempt_timeout_now(self.timeout, self._deadline(call))

    def _settle(self, call: Call, endpoint: str,
                response: httpx.Response) -> tuple[str | None, ApiError | None, float]:
        """What ``endpoint``'s ``response`` to ``call`` says: the member to send leader calls to
        from now on (a forwarding member's ``X-Hacoord-Leader``, a ``not_leader`` hint), the
        error to raise, and how long finding that member's URL may take."""
        named = response.headers.get(CLUSTER_HEADER)
        if self.cluster_id is not None and named and named != self.cluster_id:
            self._router.unreached(endpoint)
            message = (f"{endpoint} belongs to cluster {named[:64]!r}, not to {self.cluster_id!r}"
                       " (a wrong endpoint, or a cluster restored from a backup)")
            return None, WrongCluster("wrong_cluster", message, response.status_code,
                                      endpoint=endpoint), 0.0
        if response.is_success:
            self._router.answered(endpoint)
            if members := response.headers.get(MEMBERS_HEADER):
                self._router.learn_endpoints(members)
            leader = response.headers.get(LEADER_HEADER)
            return (leader if call.to_leader and leader else None), None, min(self.timeout, self.deadline)
        error = error_of(response, endpoint)
        if isinstance(error, NotLeader):
            remaining = self._deadline(call) - (time.monotonic() - call.started)
            return error.leader, error, min(self.timeout, remaining)
        if error.retryable:
            self._router.passed_over(endpoint)
        else:
            self._router.answered(endpoint)
        return None, error, 0.0

    def _steer(self, call: Call, endpoint: str, leader: str | None, url: str | None,
               error: ApiError | None) -> None:
        """Follow what :meth:`_settle` found, now that ``leader``'s ``url`` is known (or not)."""
        if isinstance(error, NotLeader):
            self._router.redirect(call, endpoint, leader, url)
        elif error is None and leader is not None and url is not None and url != endpoint:
            self._router.set_leader(leader, url)
