"""Cross-origin reads between the members of one cluster, for the status page (``/ui``).

The page is served by one member and, when that member fails, reads from another: a different
origin to the browser. Only the origins of the cluster's own members (their ``api_url``) may read
across, with ``GET`` and an ``Authorization`` header; no cookies are involved (tokens travel as
bearer headers), and any other origin gets no CORS headers, so its scripts cannot read answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.replication.base import Replicator


def member_origins(replicator: Replicator) -> set[str]:
    """The origins (``scheme://host:port``) of the members' API URLs, as the cluster names them."""
    origins = set()
    for member in replicator.members.values():
        parts = urlsplit(member.api_url)
        if parts.scheme and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


class MemberOrigins(CORSMiddleware):
    """CORS for the members' origins only, looked up on each request (the member list may change).

    A request without an ``Origin`` header (every request but a browser's cross-origin ones)
    gets what Starlette's CORS gives it, ``Vary: Origin``, without its header objects: they
    cost a tenth of a hot route's answer."""

    def __init__(self, app: ASGIApp, replicator: Replicator) -> None:
        super().__init__(app, allow_origins=(), allow_methods=("GET",),
                         allow_headers=("Authorization",), max_age=600)
        self.replicator = replicator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not isinstance(scope["headers"], list):
            scope["headers"] = list(scope["headers"])  # as Starlette's Headers leaves them
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _vary_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, vary)

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in member_origins(self.replicator)


def _vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Origin`` added to ``Vary``, as Starlette's CORS writes it: one
    ``vary`` header where the first was (or at the end), its values joined by ", "."""
    headers = list(headers)
    found = [i for i, (name, _) in enumerate(headers) if name == b"vary"]
    if not found:
        headers.append((b"vary", b"Origin"))
        return headers
    value = b", ".join([*(headers[i][1] for i in found), b"Origin"])
    headers[found[0]] = (b"vary", value)
    for i in reversed(found[1:]):
        del headers[i]
    return headers
