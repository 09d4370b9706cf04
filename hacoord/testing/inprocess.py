"""An in-process hacoord cluster for API, client and CLI tests: no sockets, no processes.

Each member is the real FastAPI app (``create_app``) over its own :class:`MemoryReplicator`, all
driven by one event loop in a background thread (an anyio blocking portal). Members are reached by
URL (``http://m1.test`` ...) through :attr:`InProcessCluster.transport`, a synchronous httpx
transport, so a plain ``httpx.Client`` or a ``hacoord.client.Client`` can talk to them. A
follower's forwarding to its leader goes through the same in-process routing: each app is given
an async transport over the apps (``create_app(forward_transport=...)``).

Each member keeps its own state, as a lagging follower would: writes apply on the member that
leads, non-consistent reads answer from the member asked.

Every member is started with the same admin token (:attr:`InProcessCluster.admin_token`), which
:attr:`InProcessCluster.transport` adds to each request that carries no ``Authorization`` header;
:meth:`InProcessCluster.transport_as` sends another token, or none. The leader does not write the
token into the log unless asked (``bootstrap=True``): the members accept it as the bootstrap admin
token throughout, and the revisions a test sees are those of its own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from hacoord.core.access import token_hash
from hacoord.protocol.tokens import new_token
from hacoord.replication.base import MemberInfo
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.app import create_app

FORWARDED_HEADER = "x-hacoord-forwarded"

T = TypeVar("T")


class InProcessCluster:
    """Members ``m1..m<size>`` at ``http://m<k>.test``; every member believes ``leader`` leads."""

    def __init__(self, size: int = 3, leader: str | None = "m1", bootstrap: bool = False,
                 **app_options: Any) -> None:
        """``app_options`` go to every member's ``create_app`` (liveness timeouts and clock...)."""
        #: The admin token every member was started with.
        self.admin_token = new_token()
        app_options.setdefault("admin_token_hash", token_hash(self.admin_token))
        app_options.setdefault("bootstrap", bootstrap)
        # One cluster secret, as real members share: followers seal what they forward.
        app_options.setdefault("forward_secret", secrets.token_urlsafe(24))
        self.members = {f"m{k}": MemberInfo(f"m{k}", f"127.0.0.1:{7500 + k}", f"http://m{k}.test")
                        for k in range(1, size + 1)}
        self.replicators = {m: MemoryReplicator(m, dict(self.members)) for m in self.members}
        self.apps = {m: create_app(r, forward_transport=_AsyncTransport(self), **app_options)
                     for m, r in self.replicators.items()}
        self.down: set[str] = set()
        #: (member id, request) for every request a member received, forwarded ones included.
        self.received: list[tuple[str, httpx.Request]] = []
        self.set_leader(leader)
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self.transport = _SyncTransport(self, self.admin_token)

    def transport_as(self, token: str | None) -> httpx.BaseTransport:
        """A transport that sends ``token`` (None: no token) on requests that carry none."""
        return _SyncTransport(self, token)

    def async_transport(self, token: str | None | bool = True) -> httpx.AsyncBaseTransport:
        """An ``httpx.AsyncBaseTransport`` to the members for an asyncio client (an
        :class:`~hacoord.client.AsyncClient`) on the caller's own event loop. It sends the admin
        token (or ``token``; None: no token) on requests that carry none."""
        return _ForeignLoopTransport(self, self.admin_token if token is True else token)

    # --- control ------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Every member's base URL (reached through :attr:`transport`)."""
        return [m.api_url for m in self.members.values()]

    def url(self, member_id: str) -> str:
        """One member's base URL."""
        return self.members[member_id].api_url

    def set_leader(self, leader: str | None) -> None:
        """Every member now believes ``leader`` leads (``leader`` itself then leads)."""
        for replicator in self.replicators.values():
            replicator.set_leader(leader)

    def state(self, member_id: str) -> Any:
        """The member's applied state (a ``ClusterState``)."""
        return self.replicators[member_id].state

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``function(*args)`` on the members' event loop and return its result."""
        assert self._portal is not None, "start the cluster first"
        return self._portal.call(function, *args)

    def hits(self, member_id: str, method: str | None = None,
             forwarded: bool | None = None) -> list[httpx.Request]:
        """Requests ``member_id`` received, optionally only one method / only (not) forwarded ones."""
        return [r for m, r in self.received if m == member_id
                and (method is None or r.method == method)
                and (forwarded is None or (FORWARDED_HEADER in r.headers) == forwarded)]

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> InProcessCluster:
        """Start the event loop and every app's lifespan."""
        portal = self._stack.enter_context(start_blocking_portal())
        self._portal = portal
        for app in self.apps.values():
            self._stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        return self

    def close(self) -> None:
        """Stop every app and the event loop."""
        self._stack.close()

    def __enter__(self) -> InProcessCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Deliver ``request`` to the member its URL names; refuse it if that member is down."""
        member = next((m for m, info in self.members.items()
                       if httpx.URL(info.api_url).host == request.url.host), None)
        if member is None or member in self.down:
            raise httpx.ConnectError(f"connection refused: {request.url.host}", request=request)
        body = await request.aread()
        copy = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        self.received.append((member, copy))
        transport = httpx.ASGITransport(app=self.apps[member], raise_app_exceptions=False)
        response = await transport.handle_async_request(copy)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              request=request)


def _with_token(request: httpx.Request, body: bytes, token: str | None) -> httpx.Request:
    """A copy of ``request`` that carries ``token`` unless it has an ``Authorization`` header."""
    headers = request.headers.copy()
    if token is not None and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Request(request.method, request.url, headers=headers, content=body,
                         extensions=request.extensions)


class _SyncTransport(httpx.BaseTransport):
    def __init__(self, cluster: InProcessCluster, token: str | None) -> None:
        self.cluster = cluster
        self.token = token

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        portal = self.cluster._portal
        assert portal is not None, "start the cluster first"
        copy = _with_token(request, request.read(), self.token)
        response = portal.call(self.cluster.dispatch, copy)
        return httpx.Response(response.status_code, headers=response.headers, content=response.content,
                              request=request)

    def close(self) -> None:
        """Clients come and go; the cluster outlives them."""


class _ForeignLoopTransport(httpx.AsyncBaseTransport):
    """For an asyncio client running on another event loop than the cluster's: each request is
    handed to the cluster's loop and awaited from the client's."""

    def __init__(self, cluster: InProcessCluster, token: str | None) -> None:
        self.cluster = cluster
        self.token = token

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        portal = self.cluster._portal
        assert portal is not None, "start the cluster first"
        copy = _with_token(request, await request.aread(), self.token)
        response = await asyncio.wrap_future(portal.start_task_soon(self.cluster.dispatch, copy))
        return httpx.Response(response.status_code, headers=response.headers, content=response.content,
                              request=request)

    async def aclose(self) -> None:
        """Clients come and go; the cluster outlives them."""


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.cluster.dispatch(request)


@contextlib.contextmanager
def running_cluster(size: int = 3, leader: str | None = "m1") -> Iterator[InProcessCluster]:
    """A started :class:`InProcessCluster` for a ``with`` block."""
    with InProcessCluster(size, leader) as cluster:
        yield cluster
