"""Every answer names the cluster it comes from (``x-hacoord-cluster``), once the cluster is named.

A client that was given, or has learned, the id of the cluster it works with refuses a member
that answers with another one: an endpoint that points at a restored copy or a neighbouring
cluster by mistake is found at the first answer instead of silently read from or written to.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.protocol import CLUSTER_HEADER
from hacoord.replication.base import Replicator

_HEADER = CLUSTER_HEADER.encode()


class ClusterIdentity:
    """Pure ASGI middleware adding the cluster id header to every HTTP answer."""

    def __init__(self, app: ASGIApp, replicator: Replicator) -> None:
        self.app = app
        self.replicator = replicator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cluster_id = self.replicator.state.cluster_id if scope["type"] == "http" else ""
        if not cluster_id:
            await self.app(scope, receive, send)
            return
        value = cluster_id.encode()

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (_HEADER, value)]
            await send(message)

        await self.app(scope, receive, named)
