"""Cross-origin reads between the members of one cluster, for the status page (``/ui``).

The page is served by one member and, when that member fails, reads from another: a different
origin to the browser. Only the origins of the cluster's own members (their ``api_url``) may read
across, with ``GET`` and an ``Authorization`` header; no cookies are involved (tokens travel as
bearer headers), and any other origin gets no CORS headers, so its scripts cannot read answers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

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
    """CORS for the members' origins only, looked up on each request (the member list may change)."""

    def __init__(self, app: ASGIApp, replicator: Replicator) -> None:
        super().__init__(app, allow_origins=(), allow_methods=("GET",),
                         allow_headers=("Authorization",), max_age=600)
        self.replicator = replicator

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in member_origins(self.replicator)
