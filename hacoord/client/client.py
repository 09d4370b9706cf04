"""The synchronous client: several endpoints, leader following, bounded retries, typed results.

Routing: see :mod:`hacoord.client.calls`. A write or consistent read answered through a follower
(which forwarded it) names the leader in ``X-Hacoord-Leader``; the client then sends the next ones
to the leader directly.

Retries. Every call runs under one tenacity policy: exponential backoff with full jitter, stopped
before the call's ``deadline`` would be overrun, on transport errors (refused connection, timeout,
reset) and on 503/504 answers. A write generates one request id (``uuid4().hex``) and sends it with
every attempt, so a write retried after a lost answer is applied once. 4xx answers are raised at once
as typed errors; when the retries are spent the caller gets :class:`UnavailableError`.

The calls themselves (what each sends, how each answer is read) are written once, in
:mod:`hacoord.client.operations`; :class:`~hacoord.client.AsyncClient` runs the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx
import tenacity

from hacoord.client import operations as ops
from hacoord.client.base import ClientBase
from hacoord.client.calls import (
    DEFAULT_ENDPOINTS,
    ENDPOINTS_ENV,
    MIN_ATTEMPT_TIMEOUT,
    PROBE_ERRORS,
    Call,
    Op,
    Probes,
    cluster_status,
    parse_endpoints,
    probe_answer,
    probe_failed,
    sync_method,
    unasked,
    unavailable,
)
from hacoord.client.errors import ServiceUnavailable
from hacoord.client.models import ClusterStatus, MemberStatus, WatchEvent

__all__ = ["DEFAULT_ENDPOINTS", "ENDPOINTS_ENV", "Client", "parse_endpoints"]

T = TypeVar("T")


class Client(ClientBase):
    """A synchronous client of a hacoord cluster.

    ``endpoints`` are the members' API base URLs (a list, or one comma-separated string; ``None``
    reads ``HACOORD_ENDPOINTS`` and falls back on the local default cluster). ``timeout`` bounds each
    HTTP attempt, ``deadline`` each call including its retries (both in seconds). ``transport`` is an
    ``httpx.BaseTransport`` to use instead of the network (tests pass ``httpx.MockTransport``).
    ``token`` (or the file ``token_file``) is the API token sent with every request; without
    either, see :func:`hacoord.client.credentials.resolve_token` (``HACOORD_TOKEN``,
    ``HACOORD_TOKEN_FILE``, the local cluster's admin token). HTTPS endpoints are verified
    against ``ca`` (a PEM file), ``HACOORD_CA``, the local cluster's CA for members on this host,
    or else the system's CAs; ``cert`` is a (certificate, key) pair to show under mutual TLS
    (or ``HACOORD_CERT`` and ``HACOORD_KEY``). An unreadable token or CA file raises
    ``ValueError``. ``cluster_id`` (or ``HACOORD_CLUSTER_ID``) is the cluster every answer must
    come from: a member of another cluster is passed over
    (:class:`~hacoord.client.errors.WrongCluster`).

    Methods are named after the CLI commands and return the frozen dataclasses of
    :mod:`hacoord.client.models`; failures raise the errors of :mod:`hacoord.client.errors`. One
    instance may be shared by several threads. Close it (or use it as a context manager) to release
    its connections.
    """

    def __init__(self, endpoints: list[str] | str | None = None, *, timeout: float = 5.0,
                 deadline: float = 15.0, transport: httpx.BaseTransport | None = None,
                 token: str | None = None, token_file: str | None = None,
                 ca: str | None = None, cert: tuple[str, str] | None = None,
                 cluster_id: str | None = None) -> None:
        super().__init__(endpoints, timeout, deadline, token, token_file, ca, cert, cluster_id)
        self._http = httpx.Client(transport=transport, timeout=timeout, headers=self._headers,
                                  verify=self._verify)

    # --- lifecycle and introspection ----------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (and the transport)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- cluster status -----------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Ask each configured endpoint's ``/v1/status`` (once each, no retries, in parallel), then
        every member they name that has not answered yet. Unreachable members are reported,
        not raised; :class:`UnavailableError` only if no member answers at all. Also teaches the
        client the members' URLs and the leader."""
        probes = self._probe(list(self.endpoints))
        probes.update(self._probe(unasked(probes)))
        status = cluster_status(probes)
        self._router.learn_status(status)
        return status

    def _probe(self, endpoints: list[str]) -> Probes:
        if not endpoints:
            return {}
        timeout = min(self.timeout, self.deadline)
        if len(endpoints) == 1:
            results = [self._probe_one(endpoints[0], timeout)]
        else:
            with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
                results = list(pool.map(lambda e: self._probe_one(e, timeout), endpoints))
        return dict(zip(endpoints, results, strict=True))

    def _probe_one(self, endpoint: str, timeout: float) -> tuple[MemberStatus, dict[str, str]]:
        try:
            return probe_answer(endpoint, self._http.get(endpoint + "/v1/status", timeout=timeout))
        except PROBE_ERRORS as exc:
            return probe_failed(endpoint, exc)

    # --- the API calls (hacoord.client.operations) --------------------------------------------

    request_status = sync_method(ops.request_status)
    node_add = sync_method(ops.node_add)
    node_add_batch = sync_method(ops.node_add_batch)
    node_remove = sync_method(ops.node_remove)
    node_list = sync_method(ops.node_list)
    node_show = sync_method(ops.node_show)
    node_set_state = sync_method(ops.node_set_state)
    node_start_session = sync_method(ops.node_start_session)
    node_heartbeat = sync_method(ops.node_heartbeat)
    node_report_metrics = sync_method(ops.node_report_metrics)
    node_caught_up = sync_method(ops.node_caught_up)
    resource_create = sync_method(ops.resource_create)
    resource_update = sync_method(ops.resource_update)
    resource_list = sync_method(ops.resource_list)
    resource_delete = sync_method(ops.resource_delete)
    partition_move = sync_method(ops.partition_move)
    partition_set_leader = sync_method(ops.partition_set_leader)
    partition_cancel_move = sync_method(ops.partition_cancel_move)
    routing = sync_method(ops.routing)
    rebalance_status = sync_method(ops.rebalance_status)
    rebalance_start = sync_method(ops.rebalance_start)
    rebalance_cancel = sync_method(ops.rebalance_cancel)
    rebalance_configure = sync_method(ops.rebalance_configure)
    rebalance_plan = sync_method(ops.rebalance_plan)
    explain = sync_method(ops.explain)
    token_create = sync_method(ops.token_create)
    token_list = sync_method(ops.token_list)
    token_revoke = sync_method(ops.token_revoke)
    audit = sync_method(ops.audit)
    member_list = sync_method(ops.member_list)
    member_add = sync_method(ops.member_add)
    member_remove = sync_method(ops.member_remove)
    whoami = sync_method(ops.whoami)
    backup = sync_method(ops.backup)

    def watch(self, since: int | None = None, *, poll: float = 25.0,
              stop: Callable[[], bool] | None = None) -> Iterator[WatchEvent]:
        """Every change after revision ``since`` (default: from now), in order, with no gaps or
        repeats, for as long as the caller iterates (or until ``stop()`` returns True, checked
        between polls of at most ``poll`` seconds).

        It long-polls any member (each has the same history, since each applies the same log)
        and resumes from the last revision it yielded after a failover or a reconnect. Raises
        :class:`Compacted` if ``since`` is older than the members keep: re-read the state and
        watch from its revision; :class:`UnavailableError` if no member answers in ``deadline``.
        """
        last = since
        while stop is None or not stop():
            # The member sends only events after ``last``, whole revisions, in order.
            last, events = self._perform(ops.watch_poll(last, poll, self.timeout))
            yield from events

    # --- plumbing -----------------------------------------------------------------------------

    def _perform(self, op: Op[T]) -> T:
        """Run ``op``'s call under the retry policy; its result."""
        return op.result(self._run(op.call))

    def _run(self, call: Call) -> httpx.Response:
        """Run ``call`` under the retry policy; see the module docstring."""
        retrying = tenacity.Retrying(**self._policy(call))
        try:
            return retrying(self._attempt, call)
        except (httpx.TransportError, ServiceUnavailable) as exc:
            raise unavailable(call, exc) from exc

    def _attempt(self, call: Call) -> httpx.Response:
        endpoint, timeout = self._begin(call)
        try:
            response = self._http.request(call.method, endpoint + call.path, params=call.params,
                                          json=call.body, headers=call.headers(), timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout):  # refused, no route, unknown name
            self._router.unreached(endpoint)
            raise
        except httpx.TransportError:
            self._router.passed_over(endpoint)
            raise
        leader, error, lookup = self._settle(call, endpoint, response)
        url = None
        if leader is not None:
            url = self._router.member_url(leader) or self._members_of(endpoint, lookup).get(leader)
        self._steer(call, endpoint, leader, url, error)
        if error is not None:
            raise error
        return response

    def _members_of(self, endpoint: str, timeout: float) -> dict[str, str]:
        """The member URLs ``endpoint`` names (learnt for later)."""
        _, members = self._probe_one(endpoint, max(MIN_ATTEMPT_TIMEOUT, timeout))
        self._router.learn_members(members)
        return members
