"""The HTTP headers of the API (lower case, as HTTP/2 and ASGI carry them; HTTP/1.1 ignores
case)."""

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
#: ``Bearer <token>``: who the request comes from (see :mod:`hacoord.core.access`).
AUTHORIZATION_HEADER = "authorization"
#: The id of the cluster the answering member belongs to (on every answer once the cluster is
#: named); a client holds every member it talks to to one id.
CLUSTER_HEADER = "x-hacoord-cluster"
