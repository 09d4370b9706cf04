"""The HTTP headers of the API (lower case, as HTTP/2 and ASGI carry them; HTTP/1.1 ignores
case)."""

from collections.abc import Mapping

#: A write's id: retried with the same id, the write is applied once.
REQUEST_ID_HEADER = "x-request-id"
#: The revision an answer reflects.
REVISION_HEADER = "x-hacoord-revision"
#: The member that leads, as the member answering believes (clients go there next).
LEADER_HEADER = "x-hacoord-leader"
#: Set by a follower on what it forwards to the leader (who must not forward it again).
FORWARDED_HEADER = "x-hacoord-forwarded"
#: Set by a follower on what it forwards: the client the request counts for in the leader's
#: per-client limits.
CLIENT_HEADER = "x-hacoord-client"
#: Set by a follower on what it forwards: its seal over the two headers above and the request
#: (method, path, request id); the leader believes those headers only when the seal matches
#: (see :mod:`hacoord.server.forwarding`).
FORWARD_SEAL_HEADER = "x-hacoord-forward-seal"
#: ``Bearer <token>``: who the request comes from (see :mod:`hacoord.core.access`).
AUTHORIZATION_HEADER = "authorization"
#: The id of the cluster the answering member belongs to (on every answer once the cluster is
#: named); a client holds every member it talks to to one id.
CLUSTER_HEADER = "x-hacoord-cluster"
#: The coordinator's members as the answering member knows them, ``id=api_url`` pairs separated
#: by commas, on the answers to authenticated requests: a client given one endpoint learns the
#: others from its first answer (see :func:`members_value` and :func:`parse_members`).
MEMBERS_HEADER = "x-hacoord-members"


def members_value(urls: Mapping[str, str]) -> str:
    """The :data:`MEMBERS_HEADER` value for member id -> API URL (ids in order)."""
    return ",".join(f"{member}={urls[member].rstrip('/')}" for member in sorted(urls))


def parse_members(value: str) -> dict[str, str]:
    """Member id -> API URL from a :data:`MEMBERS_HEADER` value; pairs that are not
    ``id=http(s)://...`` are skipped; URLs lose a trailing ``/``."""
    urls = {}
    for pair in value.split(","):
        member, _, url = pair.strip().partition("=")
        if member and url.startswith(("http://", "https://")):
            urls[member] = url.rstrip("/")
    return urls
