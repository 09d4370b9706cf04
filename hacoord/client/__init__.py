"""The hacoord client: what services embed to talk to a coordinator cluster.

    from hacoord.client import Client, NotFound

    with Client(["http://10.0.0.1:7401", "http://10.0.0.2:7401"]) as client:
        client.node_add("n1", "10.0.1.1:9000", zone="a")
        table = client.routing("orders")

This package imports nothing from the server or replication layers (a data node embedding the
client must not pull in the coordinator). See :class:`Client` for routing and retry behaviour and
:mod:`hacoord.client.errors` for the error tree.
"""

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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("hacoord.client."):
        _obj.__module__ = "hacoord.client"
del _name, _obj
