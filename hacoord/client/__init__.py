"""The hacoord client: what services embed to talk to a coordinator cluster.

    from hacoord.client import Client, NotFound

    with Client(["http://10.0.0.1:7401", "http://10.0.0.2:7401"]) as client:
        client.node_add("n1", "10.0.1.1:9000", zone="a")
        table = client.routing("orders")

This package imports nothing from the server or replication layers (a data node embedding the
client must not pull in the coordinator). See :class:`Client` for routing and retry behaviour and
:mod:`hacoord.client.errors` for the error tree.

The names are loaded on first use (PEP 562): a program that needs only the errors (``hacoord
serve``, through the CLI) does not load the client's HTTP stack and models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover  (what type checkers see: every name, loaded at once)
    from hacoord.client.aio import AsyncClient
    from hacoord.client.calls import DEFAULT_ENDPOINTS, ENDPOINTS_ENV, parse_endpoints
    from hacoord.client.client import Client
    from hacoord.client.errors import (
        ApiError,
        Compacted,
        Conflict,
        HacoordError,
        InvalidArgument,
        NotFound,
        NotLeader,
        PermissionDenied,
        ProtocolError,
        ServerError,
        ServiceUnavailable,
        StaleEpoch,
        Unauthenticated,
        UnavailableError,
        WrongCluster,
    )
    from hacoord.client.models import (
        AuditEntry,
        ClusterStatus,
        DataPlaneHealth,
        Heartbeat,
        MemberInfo,
        MembershipChange,
        MemberStatus,
        NewToken,
        NodeInfo,
        NodeReplica,
        NodeSession,
        PartitionRoute,
        ResourceInfo,
        RoutingTable,
        TokenInfo,
        WatchEvent,
        WriteResult,
    )

__all__ = [
    "DEFAULT_ENDPOINTS",
    "ENDPOINTS_ENV",
    "ApiError",
    "AsyncClient",
    "AuditEntry",
    "Client",
    "ClusterStatus",
    "DataPlaneHealth",
    "Compacted",
    "Conflict",
    "HacoordError",
    "Heartbeat",
    "InvalidArgument",
    "MemberInfo",
    "MembershipChange",
    "MemberStatus",
    "NewToken",
    "NodeInfo",
    "NodeReplica",
    "NodeSession",
    "NotFound",
    "NotLeader",
    "PermissionDenied",
    "PartitionRoute",
    "ProtocolError",
    "ResourceInfo",
    "RoutingTable",
    "ServerError",
    "ServiceUnavailable",
    "StaleEpoch",
    "TokenInfo",
    "Unauthenticated",
    "UnavailableError",
    "WatchEvent",
    "WriteResult",
    "WrongCluster",
    "parse_endpoints",
]

#: The modules that define the names above, lightest first: a name is looked up in each in turn.
_HOMES = ("hacoord.client.errors", "hacoord.client.models", "hacoord.client.calls",
          "hacoord.client.client", "hacoord.client.aio")


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all for typos
    def __getattr__(name: str) -> Any:
        if name not in __all__:
            raise AttributeError(f"module 'hacoord.client' has no attribute {name!r}")
        for home in _HOMES:
            module = importlib.import_module(home)
            for other in __all__:  # every public name it defines, presented as ours
                obj = module.__dict__.get(other)
                if obj is not None and other not in globals():
                    if getattr(obj, "__module__", None) == home:
                        obj.__module__ = __name__
                    globals()[other] = obj
            if name in globals():
                return globals()[name]
        raise AttributeError(f"module 'hacoord.client' has no attribute {name!r}")  # pragma: no cover


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
