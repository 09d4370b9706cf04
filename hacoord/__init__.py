"""hacoord: a highly-available partition coordinator replicated with Raft.

The public surface for services is the client: ``from hacoord import Client``. The client and its
errors are loaded on first use, so importing ``hacoord.core`` (or the server) does not pull in the
client's dependencies, and the client never pulls in the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "HacoordError",
    "ApiError",
    "InvalidArgument",
    "NotFound",
    "Conflict",
    "ServiceUnavailable",
    "NotLeader",
    "ServerError",
    "UnavailableError",
    "ProtocolError",
]

if TYPE_CHECKING:  # pragma: no cover
    from hacoord.client import (
        ApiError,
        AsyncClient,
        Client,
        Conflict,
        HacoordError,
        InvalidArgument,
        NotFound,
        NotLeader,
        ProtocolError,
        ServerError,
        ServiceUnavailable,
        UnavailableError,
    )


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        import hacoord.client

        return getattr(hacoord.client, name)
    raise AttributeError(f"module 'hacoord' has no attribute {name!r}")
