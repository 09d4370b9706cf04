"""What client and server agree on, in one place: the error codes of
the API with their HTTP status and whether a retry can help (:mod:`.errors`), the headers it
uses (:mod:`.headers`), the change feed's events, one dataclass per type (:mod:`.events`), the
request bodies and answers of every route (:mod:`.requests`, :mod:`.responses`: pydantic
models, from which the OpenAPI document is built) and the formats of values (:mod:`.formats`).
The core, the server, the client library, the agent and the CLI import it; it imports nothing
of hacoord, and only the schemas import a library (pydantic)."""

from hacoord.protocol.errors import ErrorCode
from hacoord.protocol.headers import (
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
    parse_members,
)

__all__ = ["AUTHORIZATION_HEADER", "CLIENT_HEADER", "CLUSTER_HEADER", "FORWARDED_HEADER",
           "FORWARD_SEAL_HEADER",
           "LEADER_HEADER", "MEMBERS_HEADER", "REQUEST_ID_HEADER", "REVISION_HEADER", "ErrorCode",
           "members_value", "parse_members"]
