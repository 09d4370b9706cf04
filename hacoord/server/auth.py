"""Who may call which route: bearer tokens checked against the replicated state.

Every route declares one :class:`Permission` with :func:`needs` (``create_app`` refuses to build
an app with a route that declares none). A request's ``Authorization: Bearer <token>`` is looked
up by digest in the member's applied state (:mod:`hacoord.core.access`); no cache stands between
a revocation and the next request. Answers:

* 401 ``unauthenticated`` with ``WWW-Authenticate: Bearer``: no token, or one the member does not
  know (never issued, revoked or expired);
* 403 ``permission_denied``: the token's role may not do this, or a node token names another node.

A follower checks the token before it forwards a request, and the leader checks it again, so a
write is judged by the leader's state. Refusals are counted by reason for ``/metrics`` and logged
at most once a minute per source address (never with the token).

Until the cluster is bootstrapped, a member also accepts the admin token it was started with (its
digest only is kept); :class:`~hacoord.server.bootstrap.Bootstrapper` has the leader write it
into the log.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security, params
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.core import CounterMetricFamily

from hacoord.core.access import BOOTSTRAP_NAME, token_hash
from hacoord.replication.base import Replicator
from hacoord.server.coordinator import request_audit
from hacoord.server.errors import ErrorReply
from hacoord.server.forwarding import ForwardSeal

log = logging.getLogger(__name__)

#: How often a refusal from one source address is logged, at most (seconds).
LOG_EVERY = 60.0
#: Source addresses remembered for that (the table is cleared when it grows past this).
MAX_LOGGED_SOURCES = 10_000


class Permission(StrEnum):
    """What a route needs. Roles grant them as :data:`GRANTS` says."""

    #: Anyone: health probes.
    OPEN = "open"
    #: What a data node reads to do its job: routing, the change feed, nodes and resources.
    ROUTE = "route"
    #: Every other read: status, metrics, plans, explanations, request outcomes.
    READ = "read"
    #: Speak for one data node (the path's ``node_id``, or the body's ``id`` when registering):
    #: an operator for any node, a node token for its own only.
    NODE = "node"
    #: Change nodes, resources, moves, rebalancing and maintenance.
    OPERATE = "operate"
    #: Manage tokens.
    ADMIN = "admin"


GRANTS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "operator": frozenset({Permission.OPEN, Permission.ROUTE, Permission.READ, Permission.NODE,
                           Permission.OPERATE}),
    "reader": frozenset({Permission.OPEN, Permission.ROUTE, Permission.READ}),
    "node": frozenset({Permission.OPEN, Permission.ROUTE, Permission.NODE}),
}


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's name and role, and a node token's node."""

    name: str
    role: str
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "node": self.node}


_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer hc_...`")


class _Check:
    """The dependency behind :func:`needs` (its ``permission`` is what the route declares)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: Request, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Security(_bearer)]) -> Principal | None:
        auth: Authenticator = request.app.state.auth
        return await auth.authorize(request, self.permission, credentials)


class _Open(_Check):
    """The dependency of an open route: no token asked for (nor documented)."""

    async def __call__(self) -> None:  # type: ignore[override]
        return None


async def bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """The request's bearer token as a route's dependency reads it (None when it has none)."""
    return await _bearer(request)


def needs(permission: Permission) -> params.Depends:
    """The dependency a route declares its permission with: ``dependencies=[needs(...)]``."""
    if permission is Permission.OPEN:
        return Security(_Open(permission))
    return Security(_Check(permission))


def declared(route: APIRoute) -> Permission | None:
    """The permission ``route`` declares, or None."""
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, _Check):
            return dependency.call.permission
    return None


def require_declared(app: FastAPI) -> None:
    """Raise if some API route of ``app`` declares no permission (it would be open to all)."""
    for route in app.routes:
        if isinstance(route, APIRoute) and declared(route) is None:
            methods = ",".join(sorted(route.methods))
            raise RuntimeError(f"route {methods} {route.path} declares no permission")


class Authenticator:
    """Judges requests by the member's applied state. ``bootstrap_hash`` is the digest of the
    admin token this member was started with (accepted until the cluster is bootstrapped);
    ``clock`` (seconds since the epoch) decides expiry."""

    def __init__(self, replicator: Replicator, bootstrap_hash: str | None = None,
                 clock: Callable[[], float] = time.time, open_access: bool = False,
                 seal: ForwardSeal | None = None) -> None:
        self.replicator = replicator
        #: Whose forwarding claims are believed (:mod:`hacoord.server.forwarding`).
        self.seal = seal or ForwardSeal(None)
        #: The benchmark's baseline: every request is an anonymous admin.
        self.open_access = open_access
        self.bootstrap_hash = bootstrap_hash
        self.clock = clock
        #: Refusals by reason (``unauthenticated``, ``permission_denied``).
        self.refused: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def principal(self, token: str) -> Principal | None:
        """Who ``token`` is, or None if no member should accept it."""
        digest = token_hash(token)
        state = self.replicator.state
        found = state.token_by_hash(digest)
        if found is not None and hmac.compare_digest(found.hash, digest):
            if found.expired(self.clock()):
                return None
            return Principal(found.name, found.role, found.node)
        if (not state.auth_bootstrapped and self.bootstrap_hash is not None
                and hmac.compare_digest(self.bootstrap_hash, digest)):
            return Principal(BOOTSTRAP_NAME, "admin")
        return None

    async def authorize(self, request: Request, permission: Permission,
                        credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
        """The request's principal if it may use a route that needs ``permission``; otherwise
        raise ``unauthenticated`` or ``permission_denied``."""
        if permission is Permission.OPEN:
            return None
        if self.open_access:
            return self._admit(request, Principal("anonymous", "admin"))
        if credentials is None:
            self._refuse(request, "unauthenticated", "no bearer token")
            raise ErrorReply("unauthenticated", "this route needs an API token "
                             "(Authorization: Bearer ...)", headers=_challenge())
        principal = self.principal(credentials.credentials)
        if principal is None:
            self._refuse(request, "unauthenticated", "unknown, revoked or expired token")
            raise ErrorReply("unauthenticated", "unknown, revoked or expired token",
                             headers=_challenge("invalid_token"))
        if permission not in GRANTS.get(principal.role, frozenset()):
            self._refuse(request, "permission_denied", f"role {principal.role} lacks {permission}")
            raise ErrorReply("permission_denied", f"token {principal.name!r} (role "
                             f"{principal.role}) may not do this (needs {permission})")
        if permission is Permission.NODE and principal.role == "node":
            target = await _target_node(request)
            if target != principal.node:
                self._refuse(request, "permission_denied", "node token for another node")
                raise ErrorReply("permission_denied", f"token {principal.name!r} speaks for node "
                                 f"{principal.node!r} only, not {target!r}")
        return self._admit(request, principal)

    def _admit(self, request: Request, principal: Principal) -> Principal:
        request.state.principal = principal
        # What the forwarding member says, if a member did (its seal matches), bounded there:
        # apply refuses a longer audit, and a client's own headers must not get its writes
        # refused in the log, nor name a member or client in it.
        forwarded = self.seal.forwarded(request.scope)
        request_audit.set({"principal": principal.name, "role": principal.role,
                           "source": request.client.host if request.client else None,
                           "via": forwarded.via if forwarded else None,
                           "client": forwarded.client if forwarded else None})
        return principal

    def _refuse(self, request: Request, reason: str, why: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        source = request.client.host if request.client else "unknown"
        now = time.monotonic()
        if now - self._logged.get(source, -LOG_EVERY) < LOG_EVERY:
            return
        if len(self._logged) >= MAX_LOGGED_SOURCES:
            self._logged.clear()
        self._logged[source] = now
        log.warning("refused %s %s from %s: %s: %s (further refusals from this address are "
                    "not logged for %.0f s)", request.method, request.url.path, source, reason,
                    why, LOG_EVERY)

    def metrics(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily("hacoord_auth_refused", "Requests refused by authentication "
                                     "or authorization", labels=["reason"])
        for reason in ("unauthenticated", "permission_denied"):
            family.add_metric([reason], self.refused.get(reason, 0))
        return [family]


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="hacoord"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


async def _target_node(request: Request) -> str | None:
    """The node a request speaks for: the path's ``node_id``, or a registration's body ``id``."""
    if "node_id" in request.path_params:
        return str(request.path_params["node_id"])
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        body = json.loads(await request.body())
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return body["id"]
    return None
