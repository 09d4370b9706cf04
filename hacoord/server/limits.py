"""What one HTTP client may ask of a member: request sizes, open long polls, write rate.

A pure ASGI middleware in front of the app, so a refused request costs the member (and its Raft
loop) almost nothing and never reaches a handler:

* headers beyond ``max_headers`` entries or ``max_header_bytes`` bytes: 431;
* a body beyond ``max_body`` bytes (announced by ``Content-Length`` or found while reading it):
  413, without reading the rest;
* more than ``max_watches`` open long polls on the member, or ``max_watches_per_client`` from one
  client address: 429 with ``Retry-After``;
* writes beyond ``writes_per_client`` per second (a token bucket with ``write_burst`` tokens) from
  one client address: 429 with ``Retry-After`` (heartbeats, which are never logged, excepted).

Every refusal is the API's JSON error body. A write a follower forwards is counted for the client
that sent it (the ``X-Hacoord-Client`` header the follower adds, believed when the follower's seal
matches: :mod:`hacoord.server.forwarding`), not for the follower.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.server.forwarding import ForwardSeal

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WATCH_PATH = "/v1/watch"
HEARTBEAT_SUFFIX = "/heartbeat"


@dataclass(frozen=True)
class HttpLimits:
    """The limits (see the module docstring); 0 for a rate means no limit."""

    max_body: int = 1 << 20
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024
    max_watches: int = 5000
    max_watches_per_client: int = 500
    writes_per_client: float = 1000.0
    write_burst: int = 2000


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class LimitsMiddleware:
    """Applies :class:`HttpLimits` (see the module docstring). ``clock`` is monotonic seconds."""

    MAX_BUCKETS = 100_000  # clients remembered for the write rate; the idlest are forgotten

    def __init__(self, app: ASGIApp, limits: HttpLimits,
                 clock: Callable[[], float] = time.monotonic,
                 seal: ForwardSeal | None = None) -> None:
        self.app = app
        self.limits = limits
        self.clock = clock
        self.seal = seal or ForwardSeal(None)
        self.watches = 0
        self.watches_by_client: dict[str, int] = {}
        self.buckets: dict[str, _Bucket] = {}
        self.refused: dict[str, int] = {"headers": 0, "body": 0, "watches": 0, "writes": 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        headers = scope["headers"]
        if len(headers) > limits.max_headers or \
                sum(len(k) + len(v) for k, v in headers) > limits.max_header_bytes:
            await self._refuse(send, "headers", 431, "request_too_large",
                               "request headers too large")
            return
        client = self._client(scope)
        method = scope["method"]
        if method in WRITE_METHODS:
            # Heartbeats are held in the leader's memory, never logged: not counted as writes.
            wait = 0.0 if scope["path"].endswith(HEARTBEAT_SUFFIX) else self._take_write_token(client)
            if wait > 0:
                await self._refuse(send, "writes", 429, "too_many_requests",
                                   f"more than {limits.writes_per_client:g} writes/s from "
                                   f"{client}; retry later", retry_after=wait)
                return
            receive = await self._bounded_body(scope, receive, send)
            if receive is None:
                return
        if scope["path"] == WATCH_PATH and method == "GET":
            await self._watch(scope, receive, send, client)
            return
        await self.app(scope, receive, send)

    # --- bodies ----------------------------------------------------------------------------------

    async def _bounded_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the body up to the limit and hand it on; None once a 413 was sent."""
        limit = self.limits.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = limit + 1
                if announced > limit or announced < 0:
                    await self._too_large(send)
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message])
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(send)
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}],
                       receive)

    async def _too_large(self, send: Send) -> None:
        await self._refuse(send, "body", 413, "request_too_large",
                           f"request body larger than {self.limits.max_body} bytes")

    # --- long polls ------------------------------------------------------------------------------

    async def _watch(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        limits = self.limits
        mine = self.watches_by_client.get(client, 0)
        if self.watches >= limits.max_watches or mine >= limits.max_watches_per_client:
            await self._refuse(send, "watches", 429, "too_many_requests",
                               f"too many open watches ({self.watches} on this member, {mine} from "
                               f"{client}); retry later", retry_after=1.0)
            return
        self.watches += 1
        self.watches_by_client[client] = mine + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.watches -= 1
            left = self.watches_by_client[client] - 1
            if left:
                self.watches_by_client[client] = left
            else:
                del self.watches_by_client[client]

    # --- write rate ------------------------------------------------------------------------------

    def _take_write_token(self, client: str) -> float:
        """0 if a write may go now; else the seconds until it may."""
        rate = self.limits.writes_per_client
        if rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= self.MAX_BUCKETS:
                del self.buckets[next(iter(self.buckets))]
            bucket = self.buckets[client] = _Bucket(float(self.limits.write_burst), now)
        else:
            # Move it to the end: the first bucket is then the longest unused one.
            del self.buckets[client]
            self.buckets[client] = bucket
        bucket.tokens = min(float(self.limits.write_burst),
                            bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    # --- answers ---------------------------------------------------------------------------------

    async def _refuse(self, send: Send, kind: str, status: int, code: str, message: str,
                      retry_after: float | None = None) -> None:
        self.refused[kind] += 1
        body = json.dumps({"code": code, "message": message}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        if status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _client(self, scope: Scope) -> str:
        """The client a request counts for: the sender, or for a request a member forwarded
        (its seal matches: :mod:`hacoord.server.forwarding`) the client that member names."""
        forwarded = self.seal.forwarded(scope)
        if forwarded is not None:
            return forwarded.client[:64]
        peer = scope.get("client")
        return peer[0] if peer else "unknown"


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive callable that hands out ``messages`` first, then defers to ``then``."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
