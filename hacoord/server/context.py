"""What every route of a member's API shares: its services, the leader-or-forward rule, the read
point, and how answers are written (:class:`ApiContext`), with the path parameter types and the
headers of the API.

Writes are served by the leader: a follower forwards them over HTTP (once; a forwarded request
that lands on a non-leader is answered ``not_leader`` with a hint, and the client library
retries). Reads asked with ``consistent=true`` are answered by any member once the leader has
confirmed a read index and the member has applied up to it (else forwarded like writes). A
route that writes is wrapped by :meth:`ApiContext.leading`, one that reads by
:meth:`ApiContext.reading` (which passes its ``consistent`` flag to the read point). Ordinary
reads are served from the member's own applied state and say which revision they reflect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import ssl
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Annotated, Any

import httpx
from fastapi import Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from hacoord.core.codec import canonical_json
from hacoord.protocol import (
    AUTHORIZATION_HEADER,
    CLIENT_HEADER,
    CLUSTER_HEADER,
    FORWARD_SEAL_HEADER,
    FORWARDED_HEADER,
    LEADER_HEADER,
    MEMBERS_HEADER,
    REQUEST_ID_HEADER,
    REVISION_HEADER,
    members_value,
)
from hacoord.protocol.formats import ID
from hacoord.replication.base import Replicator
from hacoord.server.coordinator import Coordinator, replica_count, request_fingerprint
from hacoord.server.errors import ErrorReply
from hacoord.server.forwarding import ForwardSeal
from hacoord.server.health import HealthCache
from hacoord.server.liveness import LivenessMonitor
from hacoord.server.looplag import LagMonitor
from hacoord.server.reads import HeavyReads
from hacoord.server.rebalancer import Rebalancer

FORWARD_CHECK = 0.05  # seconds between checks that the leader a forward went to still leads
CONFIRM_EVERY = 0.02  # seconds between asking members whether they applied a revision
CONFIRM_WAIT = 2.0  # seconds at most to wait for them (healthy members apply within milliseconds)
#: Headers of the leader's answer that a forwarding follower passes back beside its own.
ANSWER_HEADERS = frozenset({"retry-after", "www-authenticate"})
MAX_REVISION = 2**53  # revisions asked for are bounded (JSON numbers are exact up to here)

# Path parameters are checked before a handler runs (and before a follower forwards them).
NodeId = Annotated[str, Path(pattern=ID, description="a data node's id")]
ResourceName = Annotated[str, Path(pattern=ID, description="a resource's name")]
PartitionIndex = Annotated[int, Path(ge=0, le=10_000_000, description="a partition's index")]
RequestIdPath = Annotated[str, Path(pattern=r"^[\x21-\x7e]{1,128}$",
                                    description="a write's X-Request-Id")]

Handler = Callable[..., Awaitable[Response]]


async def request_id(request: Request) -> str:
    """The write's request id (``X-Request-Id``, or a new one), and its fingerprint set for the
    coordinator: a digest of method, path and body (JSON bodies in canonical form), so that
    the id reused with another request is refused (409 ``request_id_reused``)."""
    rid = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    if len(rid) > 128:
        raise ErrorReply("invalid_argument", "X-Request-Id longer than 128 characters")
    body = await request.body()
    with contextlib.suppress(ValueError):  # not JSON: the bytes themselves
        body = canonical_json(json.loads(body)) if body else b""
    digest = hashlib.blake2b(digest_size=12)
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    request_fingerprint.set(digest.hexdigest())
    return rid


class ApiContext:
    """One member's API services and rules (see the module docstring). ``forward_transport``
    carries the requests a follower forwards to the leader (the network by default; the
    in-process test cluster passes its own); ``forward_tls`` verifies the leader over HTTPS."""

    def __init__(self, replicator: Replicator, coordinator: Coordinator,
                 liveness: LivenessMonitor, rebalancer: Rebalancer, submit_timeout: float,
                 unsafe_stale_reads: bool = False,
                 forward_transport: httpx.AsyncBaseTransport | None = None,
                 forward_tls: ssl.SSLContext | None = None,
                 seal: ForwardSeal | None = None) -> None:
        self.replicator = replicator
        #: Seals what this member says of the requests it forwards.
        self.seal = seal or ForwardSeal(None)
        self.coordinator = coordinator
        self.liveness = liveness
        self.rebalancer = rebalancer
        self.submit_timeout = submit_timeout
        self.unsafe_stale_reads = unsafe_stale_reads
        self.forward_transport = forward_transport
        self.forward_tls = forward_tls
        #: The members as this one knows them, on every answer a handler writes (not on the
        #: health probes or refusals, which need no token); worked out again when the
        #: membership changes.
        self._members_header: tuple[object, str] = (None, "")
        self.heavy = HeavyReads()
        self.health = HealthCache(replicator, self.heavy)
        #: Long polls open now.
        self.watching = 0
        #: The event loop's lag monitor (set by ``create_app`` once the metrics registry exists).
        self.lag: LagMonitor | None = None
        self._client: httpx.AsyncClient | None = None
        self._opening: asyncio.Future[httpx.AsyncClient] | None = None

    # --- lifecycle (the app's lifespan) -------------------------------------------------------

    async def open(self) -> None:
        """Start building the client that talks to other members, on a worker thread: it
        loads httpcore and the system's CA certificates, tens of milliseconds that would hold
        the loop (and Raft's ticks) and delay the first answer of a starting member."""
        self._opening = asyncio.ensure_future(asyncio.to_thread(
            httpx.AsyncClient, timeout=self.submit_timeout + 2.0,
            transport=self.forward_transport, verify=self.forward_tls or True))

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        client, self._client = self._client, None
        if opening is not None:
            client = await opening
        if client is not None:
            await client.aclose()

    async def members_client(self) -> httpx.AsyncClient:
        """The client for other members (forwarding, confirmations), once it is built.
        Raises :class:`ErrorReply` (``unavailable``) once the member is stopping."""
        if self._client is None:
            opening = self._opening
            client = await asyncio.shield(opening) if opening is not None else None
            if client is None or self._opening is not opening:  # closed, perhaps meanwhile
                raise ErrorReply("unavailable", "this member is stopping; retry at another")
            self._client = client
        return self._client

    # --- the leader ---------------------------------------------------------------------------

    def leading(self, handler: Handler) -> Handler:
        """``handler`` runs on the leader; a follower answers with the leader's answer to the
        same request. The handler must take ``request: Request`` (by name) and must not use
        postponed annotations (FastAPI reads its signature through this wrapper)."""
        return self._guarded(handler, ("request",),
                             lambda kwargs: self.leader_or_forward(kwargs["request"]))

    def reading(self, handler: Handler) -> Handler:
        """``handler`` answers a read from this member's state, past the read point its
        ``consistent`` query parameter asks for (:meth:`read_point`). Same rules for the
        handler's signature as :meth:`leading`, and it must take ``consistent: bool``."""
        return self._guarded(handler, ("request", "consistent"),
                             lambda kwargs: self.read_point(kwargs["request"], kwargs["consistent"]))

    @staticmethod
    def _guarded(handler: Handler, needs: tuple[str, ...],
                 check: Callable[[dict[str, Any]], Awaitable[Response | None]]) -> Handler:
        """``handler`` behind ``check``, which answers the request itself or returns None;
        ``handler`` must take the parameters ``needs`` names (checked now, not at a request).

        A wrapper rather than a FastAPI dependency, for the order: FastAPI runs a route's
        dependencies before it validates the route's parameters and body, and a follower is to
        refuse a malformed request itself rather than forward it to the leader."""
        missing = set(needs) - set(inspect.signature(handler).parameters)
        if missing:
            raise TypeError(f"{handler.__name__} must take {', '.join(sorted(missing))}")

        @functools.wraps(handler)
        async def endpoint(**kwargs: Any) -> Response:
            answered = await check(kwargs)
            if answered is not None:
                return answered
            return await handler(**kwargs)

        return endpoint

    async def leader_or_forward(self, request: Request) -> Response | None:
        """None if this member leads; otherwise the leader's answer to the same request."""
        replicator = self.replicator
        if replicator.is_leader():
            return None
        leader = replicator.leader_id()
        if replicator.done_waiting:
            raise ErrorReply("unavailable", f"{replicator.member_id} is stopping; retry at "
                             "another member", leader=leader)
        if request.headers.get(FORWARDED_HEADER):
            raise ErrorReply("not_leader", f"{replicator.member_id} does not lead", leader=leader)
        if leader is None or leader == replicator.member_id:
            raise ErrorReply("no_leader", "no leader is elected right now; retry shortly")
        client = await self.members_client()
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        known = replicator.members.get(leader)
        if known is None:  # a leader outside the membership this member has (a change under way)
            raise ErrorReply("no_leader", f"leader {leader} is not among this member's members "
                             "yet; retry shortly", leader=leader)
        target = known.api_url.rstrip("/") + raw_path.decode("ascii", "replace")
        if request.url.query:
            target += "?" + request.url.query
        for_client = request.client.host if request.client else "unknown"
        headers: dict[str, str | bytes] = {FORWARDED_HEADER: replicator.member_id,
                                           CLIENT_HEADER: for_client}
        # The client's own bytes (the first of each, as the handlers read them): httpx would
        # refuse a non-ASCII value given as text.
        passed_on = (b"content-type", REQUEST_ID_HEADER.encode(), AUTHORIZATION_HEADER.encode())
        for name, value in request.headers.raw:
            if name in passed_on and name.decode() not in headers:
                headers[name.decode()] = value
        # A request id on every forward: the leader deduplicates by it, and the seal covers it,
        # so a seal is good for that one request only.
        rid = headers.setdefault(REQUEST_ID_HEADER, uuid.uuid4().hex.encode())
        seal = self.seal.seal(replicator.member_id, for_client, request.method,
                              request.scope["path"], bytes(rid).decode("latin-1"))
        if seal is not None:
            headers[FORWARD_SEAL_HEADER] = seal
        try:
            body = await request.body()
        except ClientDisconnect:  # the client gave up meanwhile: nobody reads the answer
            raise ErrorReply("unavailable", "the client went away before the request was "
                             "forwarded") from None
        forward = asyncio.ensure_future(client.request(
            request.method, target, headers=headers, content=body))
        try:
            answer = await self._unless_leader_changes(forward, leader)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ErrorReply("unavailable", f"leader {leader} unreachable: {type(exc).__name__}",
                             leader=leader) from None
        # The cluster id is added by this member's own middleware (the same id: one cluster).
        # When to retry, and how to authenticate, go back with the answer they belong to.
        passed = {k: v for k, v in answer.headers.items()
                  if (k.startswith("x-hacoord-") and k != CLUSTER_HEADER) or k in ANSWER_HEADERS}
        # Tells the client who answered, so it can go to the leader directly next time (a data
        # node heartbeating through a follower would otherwise cost that follower a forward each
        # time, for ever).
        passed[LEADER_HEADER] = leader
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type", "application/json"),
                        headers=passed)

    async def _unless_leader_changes(self, forward: asyncio.Future[httpx.Response],
                                     leader: str) -> httpx.Response:
        """The leader's answer; but if this member sees another leader (or none) meanwhile, or
        begins to stop, give up on it: a paused or cut-off leader would hold the caller until
        its timeout, while a retry can go to the new leader now. (Safe: the write keeps its
        request id.)"""
        for _ in range(int((self.submit_timeout + 2.0) / FORWARD_CHECK) + 1):
            done, _pending = await asyncio.wait([forward], timeout=FORWARD_CHECK)
            if done:
                return forward.result()
            if self.replicator.done_waiting:
                forward.cancel()
                raise ErrorReply("unavailable", f"{self.replicator.member_id} is stopping before "
                                 f"leader {leader} answered; retry with the same request id (the "
                                 "leader may have applied it)", leader=leader)
            now = self.replicator.leader_id()
            if now != leader:
                forward.cancel()
                raise ErrorReply("not_leader", f"leadership moved from {leader} to {now or 'nobody'} "
                                 "while forwarding; retry", leader=now)
        forward.cancel()
        raise ErrorReply("unavailable", f"leader {leader} did not answer in time", leader=leader)

    async def applied_everywhere(self, revision: int) -> tuple[list[str], list[str]]:
        """Wait (at most :data:`CONFIRM_WAIT`, or the write timeout if shorter) until every
        member says it has applied ``revision``; return the members that said so and those that
        did not."""
        me = self.replicator.member_id
        confirmed = {me} if self.replicator.state.revision >= revision else set()
        others = [m for m in self.replicator.members.values() if m.id != me]
        loop = asyncio.get_running_loop()
        wait = min(CONFIRM_WAIT, self.submit_timeout)
        deadline = loop.time() + wait
        for _ in range(int(wait / CONFIRM_EVERY) + 1):
            pending = [m for m in others if m.id not in confirmed]
            if not pending or loop.time() >= deadline or self.replicator.done_waiting:
                break
            seen = await asyncio.gather(*(self._member_revision(m.api_url) for m in pending))
            confirmed.update(m.id for m, at in zip(pending, seen, strict=True) if at >= revision)
            if len(confirmed) < len(others) + 1:
                await asyncio.sleep(CONFIRM_EVERY)
        if me not in confirmed and self.replicator.state.revision >= revision:
            confirmed.add(me)
        everyone = sorted([me, *(m.id for m in others)])
        return [m for m in everyone if m in confirmed], [m for m in everyone if m not in confirmed]

    async def _member_revision(self, api_url: str) -> int:
        """The revision a member says it has applied (-1 if it does not answer)."""
        client = await self.members_client()
        try:
            answer = await client.get(api_url.rstrip("/") + "/readyz", timeout=1.0)
            return int(answer.json()["member"]["revision"])
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError):
            return -1

    # --- reads --------------------------------------------------------------------------------

    def loaded(self) -> None:
        """Refuse reads until this member has applied everything it had (503 ``not_ready``)."""
        if not self.replicator.loaded:
            raise ErrorReply("not_ready", f"member {self.replicator.member_id} is still loading its "
                             "state (or reopening it after a storage failure); ask another member")

    async def read_point(self, request: Request, consistent: bool) -> Response | None:
        """For a consistent read: on the leader, pass a read point; on a follower, wait for the
        leader's read index and answer from the local state, or (when none can be had) forward
        to the leader. A local read is refused while the member's state is not loaded."""
        if not consistent or self.unsafe_stale_reads:
            self.loaded()
            return None
        if (self.replicator.loaded and not self.replicator.is_leader()
                and await self.coordinator.follower_read()):
            return None
        forwarded = await self.leader_or_forward(request)
        if forwarded is None:
            await self.coordinator.barrier()
            self.loaded()
        return forwarded

    @staticmethod
    def not_reached(revision: int, current: int) -> ErrorReply:
        return ErrorReply("not_found", f"revision {revision} is ahead of this member (at {current}); "
                          "ask the leader, or with consistent=true")

    # --- answers ------------------------------------------------------------------------------

    def reply(self, body: dict[str, Any], status: int = 200) -> JSONResponse:
        """``body`` as JSON, its revision (or the state's) in the revision header."""
        revision = body.get("revision", self.replicator.state.revision)
        return JSONResponse(body, status_code=status, headers=self._headers(revision))

    def written(self, applied: Any, status: int = 200, **extra: Any) -> JSONResponse:
        """The answer to a write: its revision, the command's result and ``extra``."""
        return self.reply({"revision": applied.revision, **applied.result, **extra}, status)

    async def reply_heavy(self, key: Hashable, fn: Callable[..., dict[str, Any]],
                          *args: Any) -> Response:
        """``reply(fn(*args))`` for an answer that walks the whole state: built off the loop
        when the state is large, and shared by readers of the same revision (see
        :mod:`hacoord.server.reads`)."""
        state = self.replicator.state
        revision, body = await self.heavy.answer(key, state.revision, fn, *args,
                                                 size=replica_count(state), name=f"read {key[0]}")
        return Response(body, media_type="application/json", headers=self._headers(revision))

    def _headers(self, revision: int) -> dict[str, str]:
        """The headers of every answer a handler writes."""
        return {REVISION_HEADER: str(revision), MEMBERS_HEADER: self.members_header}

    @property
    def members_header(self) -> str:
        """The members header's value for the membership in force now."""
        members = self.replicator.members
        seen, value = self._members_header
        if seen is not members:
            value = members_value({m.id: m.api_url for m in members.values()})
            self._members_header = (members, value)
        return value
