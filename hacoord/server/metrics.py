"""Prometheus metrics of one member (prometheus-client; one registry per app).

Gauges are read from the replicator and the state at scrape time; API latency is a histogram
filled by a middleware, labelled by route template (not raw path), method and status.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.core.health import summary
from hacoord.replication.base import Replicator

ROLES = ("follower", "candidate", "leader", "stopped")


Family = GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily


class MemberCollector(Collector):
    """Raft and state figures of one member, computed when scraped. ``extra`` yields the
    families of the member's leader-side services (liveness, rebalancing)."""

    def __init__(self, replicator: Replicator, watchers: Callable[[], int],
                 extra: Callable[[], Iterator[Family]] | None = None,
                 health: Callable[[], dict] | None = None) -> None:
        self.replicator = replicator
        self.watchers = watchers
        self.extra = extra
        self.health = health or (lambda: summary(replicator.state))

    def collect(self) -> Iterator[Family]:
        status = self.replicator.status()
        role = GaugeMetricFamily("hacoord_raft_role", "1 for this member's current Raft role",
                                 labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if status.role == name else 0.0)
        yield role
        yield GaugeMetricFamily("hacoord_raft_term", "Current Raft term", value=status.term)
        yield GaugeMetricFamily("hacoord_raft_commit_index", "Raft commit index",
                                value=status.commit_index)
        yield GaugeMetricFamily("hacoord_raft_applied_index", "Last applied Raft index",
                                value=status.applied_index)
        yield CounterMetricFamily("hacoord_raft_leader_changes", "Leaders seen by this member",
                                  value=status.leader_changes)
        yield _by_label("hacoord_raft_pre_votes", "Pre-votes: started and won by this member, "
                        "granted and refused to others (a member stands for election only after "
                        "winning one)", "event", status.pre_votes)
        yield _by_label("hacoord_raft_read_index", "Read-index rounds (started, confirmed by a "
                        "majority, failed) and the reads they confirmed (all, and those asked by "
                        "followers)", "event", status.read_index)
        yield CounterMetricFamily("hacoord_raft_tick_failures", "Raft ticks that raised",
                                  value=status.tick_failures)
        yield CounterMetricFamily("hacoord_invariant_violations",
                                  "State invariants found broken after an applied change",
                                  value=status.invariant_violations)
        yield GaugeMetricFamily("hacoord_ready", "1 when this member is ready",
                                value=1.0 if status.ready else 0.0)
        yield GaugeMetricFamily("hacoord_loaded", "1 once this member has caught up since it "
                                "started and serves reads", value=1.0 if status.loaded else 0.0)
        yield GaugeMetricFamily("hacoord_storage_ok", "0 while this member is out of Raft after "
                                "a failed write or sync of its files",
                                value=0.0 if status.storage_failure else 1.0)
        yield CounterMetricFamily("hacoord_storage_failures", "Failed writes or syncs of the "
                                  "member's files (each stopped it until it reopened them)",
                                  value=status.storage_failures)
        yield from _data_dir_space(getattr(self.replicator, "data_dir", None))
        yield GaugeMetricFamily("hacoord_raft_listening", "1 while the Raft peer listener is open",
                                value=1.0 if status.listening else 0.0)
        yield _by_label("hacoord_raft_peer_refused", "Connections the Raft peer port dropped "
                        "(oversized, unauthenticated, handshake timeout, too many pending, accept "
                        "failures)", "reason", status.peer_refused)
        yield GaugeMetricFamily("hacoord_snapshot_index", "Last log index the snapshot on disk "
                                "covers", value=status.snapshot_index)
        yield CounterMetricFamily("hacoord_snapshot_writes", "Snapshots this member wrote",
                                  value=status.snapshot_writes)
        yield CounterMetricFamily("hacoord_snapshot_write_failures", "Snapshot writes that failed "
                                  "(the journal stays uncompacted until one succeeds)",
                                  value=status.snapshot_write_failures)
        yield GaugeMetricFamily("hacoord_snapshot_write_seconds", "How long the last snapshot "
                                "write took (in a child process, off the event loop)",
                                value=status.snapshot_write_seconds)
        yield GaugeMetricFamily("hacoord_state_revision", "Revision of the applied state",
                                value=status.revision)
        yield GaugeMetricFamily("hacoord_commands_in_flight", "Writes waiting for their outcome",
                                value=status.in_flight)
        yield GaugeMetricFamily("hacoord_watchers", "Open watch requests", value=self.watchers())
        yield SummaryMetricFamily("hacoord_apply_seconds", "Time applying committed commands",
                                  count_value=status.applied_commands, sum_value=status.apply_seconds)
        state = self.replicator.state
        yield GaugeMetricFamily("hacoord_moves_in_flight", "Pending two-phase moves",
                                value=len(state.moves))
        yield CounterMetricFamily("hacoord_moves_completed", "Moves completed (replicated count)",
                                  value=state.rebalance.completed)
        yield GaugeMetricFamily("hacoord_rebalance_running", "1 while a rebalance run is going",
                                value=1.0 if state.rebalance.run is not None else 0.0)
        yield GaugeMetricFamily("hacoord_maintenance", "1 while rebalancing is frozen",
                                value=1.0 if state.rebalance.maintenance is not None else 0.0)
        if self.extra is not None:
            yield from self.extra()
        health = self.health()
        nodes = GaugeMetricFamily("hacoord_nodes", "Data nodes by status", labels=["status"])
        for name, count in sorted(health["nodes"].items()):
            nodes.add_metric([name], count)
        yield nodes
        parts = GaugeMetricFamily("hacoord_partitions", "Partitions by health", labels=["health"])
        for name, count in health["partitions"].items():
            parts.add_metric([name], count)
        yield parts


def refusals(counts: dict[str, int]) -> list[Family]:
    """Requests the HTTP limits refused, by reason (headers, body, watches, writes)."""
    family = CounterMetricFamily("hacoord_http_refused", "Requests refused by the HTTP limits",
                                 labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return [family]


class InFlight(Collector):
    """How many API requests are being answered right now (a plain count: the loop is the only
    writer, and a Gauge's lock would cost every request)."""

    def __init__(self) -> None:
        self.requests = 0

    def collect(self) -> Iterator[Family]:
        yield GaugeMetricFamily("hacoord_api_requests_in_flight",
                                "API requests being answered (long polls included)",
                                value=self.requests)


class _LatencyMiddleware:
    """Pure ASGI middleware timing each HTTP request (Starlette's BaseHTTPMiddleware costs a task
    group per request, measured at a fifth of the leader's CPU under load)."""

    def __init__(self, app: ASGIApp, latency: Histogram, counts: InFlight) -> None:
        self.app = app
        self.latency = latency
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        self.counts.requests += 1

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.counts.requests -= 1
            route = getattr(scope.get("route"), "path", "unmatched")
            self.latency.labels(route, scope["method"], str(status[0])).observe(
                time.perf_counter() - started)


def install_metrics(app: FastAPI, replicator: Replicator, watchers: Callable[[], int],
                    extra: Callable[[], Iterator[Family]] | None = None,
                    health: Callable[[], dict] | None = None,
                    before_scrape: Callable[[], Awaitable[Any]] | None = None,
                    permission: Any = None) -> CollectorRegistry:
    """Add ``GET /metrics`` and the API latency middleware to ``app``; return the registry
    (others register their metrics there). ``before_scrape`` is awaited before each scrape
    (to bring figures that are computed off the loop up to date). ``permission`` is the route's
    dependency declaring who may scrape (see :mod:`hacoord.server.auth`)."""
    registry = CollectorRegistry()
    registry.register(MemberCollector(replicator, watchers, extra, health))
    latency = Histogram("hacoord_api_request_seconds", "API request latency",
                        ["route", "method", "status"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    counts = InFlight()
    registry.register(counts)
    app.add_middleware(_LatencyMiddleware, latency=latency, counts=counts)

    @app.get("/metrics", tags=["health"], include_in_schema=False,
             dependencies=[permission] if permission is not None else None)
    async def metrics() -> Response:
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry


def _by_label(name: str, documentation: str, label: str,
              counts: dict[str, int]) -> CounterMetricFamily:
    """A counter family with one sample per key of ``counts`` (label ``label``)."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def _data_dir_space(data_dir: Any) -> Iterator[Family]:
    """Free and total bytes of the file system the member's data directory is on (none for a
    member without one, or when it cannot be read): a member stops when its disk is full."""
    if data_dir is None:
        return
    try:
        fs = os.statvfs(data_dir)
    except OSError:
        return
    yield GaugeMetricFamily("hacoord_data_dir_free_bytes", "Bytes free to this member on the "
                            "file system of its data directory", value=fs.f_bavail * fs.f_frsize)
    yield GaugeMetricFamily("hacoord_data_dir_size_bytes", "Size of the file system of this "
                            "member's data directory", value=fs.f_blocks * fs.f_frsize)
