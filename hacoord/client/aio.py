"""The asyncio client: :class:`AsyncClient` has every method of :class:`~hacoord.client.Client`,
as coroutines, with the same routing, leader following, retries and typed errors (the calls are
the same :mod:`hacoord.client.operations`), over ``httpx.AsyncClient``.

    async with AsyncClient(["https://10.0.0.1:7401"]) as client:
        await client.node_add("n1", "10.0.1.1:9000")
        async for event in client.watch(since=revision):
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import httpx
import tenacity

from hacoord.client import operations as ops
from hacoord.client.base import ClientBase
from hacoord.client.calls import (
    MIN_ATTEMPT_TIMEOUT,
    PROBE_ERRORS,
    Call,
    Op,
    Probes,
    async_method,
    cluster_status,
    probe_answer,
    probe_failed,
    unasked,
    unavailable,
)
from hacoord.client.errors import ServiceUnavailable
from hacoord.client.models import ClusterStatus, MemberStatus, WatchEvent

T = TypeVar("T")


class AsyncClient(ClientBase):
    """An asyncio client of a hacoord cluster. Takes the arguments of
    :class:`~hacoord.client.Client` (``transport`` is an ``httpx.AsyncBaseTransport``) and has its
    methods as coroutines; :meth:`watch` is an async iterator. Use it from one event loop; close
    it (``await client.aclose()``, or ``async with``) to release its connections."""

    def __init__(self, endpoints: list[str] | str | None = None, *, timeout: float = 5.0,
                 deadline: float = 15.0, transport: httpx.AsyncBaseTransport | None = None,
                 token: str | None = None, token_file: str | None = None,
                 ca: str | None = None, cert: tuple[str, str] | None = None,
                 cluster_id: str | None = None) -> None:
        super().__init__(endpoints, timeout, deadline, token, token_file, ca, cert, cluster_id)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, headers=self._headers,
                                       verify=self._verify)

    # --- lifecycle and introspection ----------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (and the transport)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- cluster status -----------------------------------------------------------------------

    async def status(self) -> ClusterStatus:
        """Ask each configured endpoint's ``/v1/status`` (once each, no retries, concurrently),
        then every member they name that has not answered yet; see
        :meth:`hacoord.client.Client.status`."""
        probes = await self._probe(list(self.endpoints))
        probes.update(await self._probe(unasked(probes)))
        status = cluster_status(probes)
        self._router.learn_status(status)
        return status

    async def _probe(self, endpoints: list[str]) -> Probes:
        timeout = min(self.timeout, self.deadline)
        results = await asyncio.gather(*(self._probe_one(e, timeout) for e in endpoints))
        return dict(zip(endpoints, results, strict=True))

    async def _probe_one(self, endpoint: str, timeout: float) -> tuple[MemberStatus, dict[str, str]]:
        try:
            return probe_answer(endpoint, await self._http.get(endpoint + "/v1/status", timeout=timeout))
        except PROBE_ERRORS as exc:
            return probe_failed(endpoint, exc)

    # --- the API calls (hacoord.client.operations) --------------------------------------------

    request_status = async_method(ops.request_status)
    node_add = async_method(ops.node_add)
    node_add_batch = async_method(ops.node_add_batch)
    node_remove = async_method(ops.node_remove)
    node_list = async_method(ops.node_list)
    node_show = async_method(ops.node_show)
    node_set_state = async_method(ops.node_set_state)
    node_start_session = async_method(ops.node_start_session)
    node_heartbeat = async_method(ops.node_heartbeat)
    node_report_metrics = async_method(ops.node_report_metrics)
    node_caught_up = async_method(ops.node_caught_up)
    resource_create = async_method(ops.resource_create)
    resource_update = async_method(ops.resource_update)
    resource_list = async_method(ops.resource_list)
    resource_delete = async_method(ops.resource_delete)
    partition_move = async_method(ops.partition_move)
    partition_set_leader = async_method(ops.partition_set_leader)
    partition_cancel_move = async_method(ops.partition_cancel_move)
    routing = async_method(ops.routing)
    rebalance_status = async_method(ops.rebalance_status)
    rebalance_start = async_method(ops.rebalance_start)
    rebalance_cancel = async_method(ops.rebalance_cancel)
    rebalance_configure = async_method(ops.rebalance_configure)
    rebalance_plan = async_method(ops.rebalance_plan)
    explain = async_method(ops.explain)
    token_create = async_method(ops.token_create)
    token_list = async_method(ops.token_list)
    token_revoke = async_method(ops.token_revoke)
    audit = async_method(ops.audit)
    member_list = async_method(ops.member_list)
    member_add = async_method(ops.member_add)
    member_remove = async_method(ops.member_remove)
    whoami = async_method(ops.whoami)
    backup = async_method(ops.backup)

    async def watch(self, since: int | None = None, *, poll: float = 25.0,
                    stop: Callable[[], bool] | None = None) -> AsyncIterator[WatchEvent]:
        """Every change after revision ``since`` (default: from now), in order, with no gaps or
        repeats, for as long as the caller iterates; see :meth:`hacoord.client.Client.watch`.
        Cancelling the task that iterates ends it at once."""
        last = since
        while stop is None or not stop():
            last, events = await self._perform(ops.watch_poll(last, poll, self.timeout))
            for event in events:
                yield event

    # --- plumbing -----------------------------------------------------------------------------

    async def _perform(self, op: Op[T]) -> T:
        return op.result(await self._run(op.call))

    async def _run(self, call: Call) -> httpx.Response:
        retrying = tenacity.AsyncRetrying(**self._policy(call))
        try:
            return await retrying(self._attempt, call)
        except (httpx.TransportError, ServiceUnavailable) as exc:
            raise unavailable(call, exc) from exc

    async def _attempt(self, call: Call) -> httpx.Response:
        endpoint, timeout = self._begin(call)
        try:
            response = await self._http.request(call.method, endpoint + call.path, params=call.params,
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
            url = self._router.member_url(leader) or (await self._members_of(endpoint, lookup)).get(leader)
        self._steer(call, endpoint, leader, url, error)
        if error is not None:
            raise error
        return response

    async def _members_of(self, endpoint: str, timeout: float) -> dict[str, str]:
        """The member URLs ``endpoint`` names (learnt for later)."""
        _, members = await self._probe_one(endpoint, max(MIN_ATTEMPT_TIMEOUT, timeout))
        self._router.learn_members(members)
        return members
