"""API tokens in the replicated state: who may call the API, in which role.

A token is a random secret (``hc_`` and 43 URL-safe characters: 256 bits). Only its SHA-256 digest
enters the log and the state, with the token's name, role, the node a ``node`` token speaks for,
and when it expires. The state indexes tokens by digest, so a member finds the token behind a
request in one dictionary lookup, and every member judges a request by what it has applied: there
is no cache to outlive a revocation.

Roles, from most to least trusted:

* ``admin``: everything, tokens included;
* ``operator``: nodes, resources, moves, rebalancing and maintenance, and every read;
* ``node``: bound to one node id; that node's own session, heartbeats, metrics and caught-up
  reports, and the reads a data node needs (routing, the change feed, the node directory);
* ``reader``: every read, the change feed and routing.

The first admin token comes from outside: each member is started with the same admin token file,
accepts it as ``admin`` until the state says the cluster is bootstrapped, and the first leader
writes its digest into the log (``BootstrapAdmin``). From then on the state alone decides.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from hacoord.protocol.tokens import TOKEN_PATTERN

ROLES = ("admin", "operator", "node", "reader")
#: The name of the token the cluster is bootstrapped with.
BOOTSTRAP_NAME = "admin"
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_TOKENS = 10_000


def token_hash(token: str) -> str:
    """The digest a token is known by in the state (hex SHA-256 of its text)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def well_formed(token: str) -> bool:
    """True if ``token`` has the shape of a hacoord token (says nothing of whether it is valid)."""
    return TOKEN_PATTERN.fullmatch(token) is not None


@dataclass
class ApiToken:
    """One token as the state keeps it: no secret, only its digest (``hash``)."""

    name: str
    role: str
    hash: str
    node: str | None = None
    created_at: float = 0.0
    #: Seconds since the epoch (leader time) after which the token is refused; None: never.
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """What the API shows of the token: everything but its digest."""
        return {"name": self.name, "role": self.role, "node": self.node,
                "created_at": self.created_at, "expires_at": self.expires_at}

    def to_dict(self) -> dict[str, Any]:
        return {**self.public(), "hash": self.hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApiToken:
        return cls(name=data["name"], role=data["role"], hash=data["hash"], node=data.get("node"),
                   created_at=data.get("created_at", 0.0), expires_at=data.get("expires_at"))
