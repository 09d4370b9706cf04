"""The HTTP/JSON API of one member (FastAPI): the app, its lifespan, middleware and routers.
Handlers translate; the coordinator decides.

Routes live in :mod:`hacoord.server.routes` (one module per area); what they share - the
leader-or-forward rule, the read point, how answers are written - in
:class:`hacoord.server.context.ApiContext`.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from hacoord import __version__
from hacoord.replication.base import Replicator
from hacoord.server.auth import Authenticator, Permission, needs, require_declared
from hacoord.server.bootstrap import Bootstrapper
from hacoord.server.context import ApiContext
from hacoord.server.coordinator import Coordinator
from hacoord.server.cors import MemberOrigins
from hacoord.server.cutoff import CutOffAtStop
from hacoord.server.errors import install_error_handlers
from hacoord.server.forwarding import ForwardSeal
from hacoord.server.hot import HotRoutes, resolve
from hacoord.server.identity import ClusterIdentity
from hacoord.server.limits import HttpLimits, LimitsMiddleware
from hacoord.server.liveness import DEFAULT_DOWN_AFTER, DEFAULT_SUSPECT_AFTER, LivenessMonitor
from hacoord.server.looplag import LagMonitor
from hacoord.server.metrics import install_metrics, refusals
from hacoord.server.openapi import document_errors
from hacoord.server.rebalancer import DEFAULT_INTERVAL as DEFAULT_REBALANCE_INTERVAL
from hacoord.server.rebalancer import Rebalancer
from hacoord.server.routes import (
    audit,
    backup,
    members,
    nodes,
    rebalance,
    resources,
    routing,
    status,
    tokens,
    ui,
)
from hacoord.server.routes.nodes import HOT_ROUTES


def create_app(replicator: Replicator, submit_timeout: float = 5.0,
               manage_replicator: bool = True, unsafe_stale_reads: bool = False, *,
               suspect_after: float = DEFAULT_SUSPECT_AFTER, down_after: float = DEFAULT_DOWN_AFTER,
               liveness_clock: Callable[[], float] = time.monotonic,
               liveness_check_interval: float | None = None,
               rebalance_interval: float = DEFAULT_REBALANCE_INTERVAL,
               rebalance_clock: Callable[[], float] = time.time,
               limits: HttpLimits | None = None,
               forward_transport: httpx.AsyncBaseTransport | None = None,
               forward_tls: ssl.SSLContext | None = None,
               admin_token_hash: str | None = None, bootstrap: bool = True,
               metrics_open: bool = False, unsafe_no_auth: bool = False,
               auth_clock: Callable[[], float] = time.time, hot_routes: bool = True,
               forward_secret: str | None = None) -> FastAPI:
    """Build the API over ``replicator``. With ``manage_replicator`` the app's lifespan starts
    and stops it; otherwise the caller does. The lifespan also runs the leader's
    :class:`LivenessMonitor` (``app.state.liveness``) with the given timeouts and clock, and its
    :class:`Rebalancer` (``app.state.rebalancer``), a pass every ``rebalance_interval`` seconds
    on ``rebalance_clock`` (leader time, seconds since the epoch). ``limits`` bound what one
    client may ask (:mod:`hacoord.server.limits`). ``forward_transport`` carries what a follower
    forwards to the leader (the network by default), ``forward_tls`` how it verifies the leader
    (and shows itself, under mutual TLS) over HTTPS.

    Every route but the health probes needs an API token (:mod:`hacoord.server.auth`);
    ``admin_token_hash`` is the digest of the admin token this member was started with, accepted
    until the cluster is bootstrapped and then (with ``bootstrap``) written into the log by the
    leader.
    ``metrics_open`` serves ``/metrics`` without a token. ``auth_clock`` decides token expiry.
    ``unsafe_no_auth`` (the benchmark's baseline only) asks for no token at all.
    ``forward_secret`` (the cluster secret) seals what a follower says of the requests it
    forwards, and is how a leader tells a member's claims from a client's
    (:mod:`hacoord.server.forwarding`; without it, the claims are believed as they come).
    ``hot_routes`` serves a node's read, update, heartbeat and metrics report past FastAPI's
    routing (:mod:`hacoord.server.hot`); without it (the tests' reference) FastAPI serves all.

    ``unsafe_stale_reads`` is the chaos suite's canary: "consistent" reads are then served from
    whatever state the member asked has, which a linearizability checker must catch. Never set it
    outside that test."""
    coordinator = Coordinator(replicator, submit_timeout)
    liveness = LivenessMonitor(replicator, coordinator, liveness_clock, suspect_after, down_after,
                               liveness_check_interval)
    rebalancer = Rebalancer(replicator, coordinator, rebalance_interval, rebalance_clock)
    seal = ForwardSeal(forward_secret)
    auth = Authenticator(replicator, admin_token_hash, auth_clock, open_access=unsafe_no_auth,
                         seal=seal)
    bootstrapper = Bootstrapper(replicator, coordinator.submit,
                                admin_token_hash if bootstrap else None)
    ctx = ApiContext(replicator, coordinator, liveness, rebalancer, submit_timeout,
                     unsafe_stale_reads, forward_transport, forward_tls, seal)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.open()
        if manage_replicator:
            await replicator.start()
        await liveness.start()
        await rebalancer.start()
        await lag.start()
        await bootstrapper.start()
        try:
            yield
        finally:
            await bootstrapper.stop()
            await lag.stop()
            await rebalancer.stop()
            await liveness.stop()
            if manage_replicator:
                await replicator.stop()
            await ctx.close()

    app = FastAPI(title="hacoord", version=__version__, lifespan=lifespan,
                  description="Partition coordinator API: nodes, resources, routing, status.")
    install_error_handlers(app)
    guard: dict[str, LimitsMiddleware] = {}
    registry = install_metrics(app, replicator, lambda: ctx.watching,
                               lambda: iter(liveness.metrics() + rebalancer.metrics()
                                            + refusals(guard["limits"].refused if guard else {})
                                            + auth.metrics()),
                               ctx.health.summary, before_scrape=ctx.health.current,
                               permission=needs(Permission.OPEN if metrics_open else Permission.READ))
    lag = ctx.lag = LagMonitor(registry)

    def keep(middleware: LimitsMiddleware) -> LimitsMiddleware:
        guard["limits"] = middleware
        return middleware

    app.add_middleware(lambda inner: keep(LimitsMiddleware(inner, limits or HttpLimits(),
                                                           seal=seal)))
    app.add_middleware(lambda inner: ClusterIdentity(inner, replicator))
    app.add_middleware(lambda inner: MemberOrigins(inner, replicator))  # every answer
    app.add_middleware(CutOffAtStop)  # outermost: a request cut off at the end of a stop
    app.state.replicator = replicator
    app.state.coordinator = coordinator
    app.state.liveness = liveness
    app.state.rebalancer = rebalancer
    app.state.context = ctx
    app.state.auth = auth
    for area in (status, members, nodes, resources, rebalance, routing, tokens, audit, backup, ui):
        area.install(app, ctx)
    require_declared(app)
    document_errors(app)
    if hot_routes:
        # Innermost of the middleware (appended, where add_middleware inserts outermost): the
        # limits, cluster identity, CORS and latency metrics see hot requests too.
        resolved = resolve(app, HOT_ROUTES)  # refuses a route that would answer otherwise

        def hot(inner: ASGIApp) -> HotRoutes:
            app.state.hot_routes = HotRoutes(inner, app, auth, resolved)
            return app.state.hot_routes

        app.user_middleware.append(Middleware(hot))  # type: ignore[arg-type]
    return app
