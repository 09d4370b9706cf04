"""The synchronous client: several endpoints, leader following, bounded retries, typed results.

Routing. The client keeps the base URLs it was given, plus member URLs it learns from
``/v1/status``. Reads go to the last endpoint that answered; writes and consistent reads go straight
to the leader once it is known (from a ``not_leader`` hint or from :meth:`Client.status`), and to the
last endpoint that answered otherwise (any member forwards them to its leader). An endpoint that
fails is passed over: the next attempt goes to the next known endpoint.

A write or consistent read answered through a follower (which forwarded it) names the leader
in ``X-Hacoord-Leader``; the client then sends the next ones to the leader directly.

Retries. Every call runs under one tenacity policy: exponential backoff with full jitter, stopped
before the call's ``deadline`` would be overrun, on transport errors (refused connection, timeout,
reset) and on 503/504 answers. A write generates one request id (``uuid4().hex``) and sends it with
every attempt, so a write retried after a lost answer is applied once. 4xx answers are raised at once
as typed errors; when the retries are spent the caller gets :class:`UnavailableError`.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import tenacity

from hacoord import __version__
from hacoord.client.credentials import resolve_token, tls_context
from hacoord.client.errors import (
    ApiError,
    NotLeader,
    ProtocolError,
    ServiceUnavailable,
    UnavailableError,
    error_for,
)
from hacoord.client.models import (
    AuditEntry,
    ClusterStatus,
    Heartbeat,
    MemberStatus,
    NewToken,
    NodeInfo,
    NodeSession,
    PartitionRoute,
    ResourceInfo,
    RoutingTable,
    TokenInfo,
    WatchEvent,
    WriteResult,
)
from hacoord.protocol import LEADER_HEADER, REQUEST_ID_HEADER
from hacoord.protocol.tokens import new_token

#: Environment variable read when no endpoints are given: base URLs separated by commas.
ENDPOINTS_ENV = "HACOORD_ENDPOINTS"
#: The local cluster ``hacoord cluster up`` starts (members m1..m3, API port 7400 + k).
DEFAULT_ENDPOINTS = ("https://127.0.0.1:7401", "https://127.0.0.1:7402", "https://127.0.0.1:7403")


#: Backoff between attempts: a random wait in [0, initial * 2**n], capped at max (seconds).
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 1.0
#: Leader redirects in a row followed without waiting (more means the hints go round in circles).
FREE_REDIRECTS = 2
#: No attempt gets less time than this, even at the very end of the deadline.
MIN_ATTEMPT_TIMEOUT = 0.05

T = TypeVar("T")


def parse_endpoints(endpoints: str | Iterable[str] | None) -> list[str]:
    """Normalise endpoints into base URLs. A string is split on commas; ``host:port`` gets
    ``https://``; duplicates are dropped. ``None`` reads ``HACOORD_ENDPOINTS``, then falls back on
    :data:`DEFAULT_ENDPOINTS`. Raises ``ValueError`` when nothing usable remains."""
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV, "").strip() or DEFAULT_ENDPOINTS
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    urls: list[str] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        if "://" not in text:
            text = "https://" + text
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ValueError(f"bad endpoint {item.strip()!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"bad endpoint {item.strip()!r}: expected http(s)://host:port")
        base = str(url).rstrip("/")
        if base not in urls:
            urls.append(base)
    if not urls:
        raise ValueError("no endpoints given")
    return urls


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.retryable)


def _describe(exc: BaseException, where: bool = False) -> str:
    if isinstance(exc, ApiError):
        text, url = f"{exc.code}: {exc.message}", exc.endpoint
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            url = str(exc.request.url) if isinstance(exc, httpx.RequestError) else None
        except RuntimeError:  # an error raised without its request
            url = None
    return f"{text} (from {url})" if where and url else text


@dataclass
class _Call:
    """One logical call and the state shared by its attempts."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    to_leader: bool = False
    request_id: str | None = None
    attempt_timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    redirects: int = 0
    redirected: bool = False


class Client:
    """A synchronous client of a hacoord cluster.

    ``endpoints`` are the members' API base URLs (a list, or one comma-separated string; ``None``
    reads ``HACOORD_ENDPOINTS`` and falls back on the local default cluster). ``timeout`` bounds each
    HTTP attempt, ``deadline`` each call including its retries (both in seconds). ``transport`` is an
    ``httpx.BaseTransport`` to use instead of the network (tests pass ``httpx.MockTransport``).
    ``token`` (or the file ``token_file``) is the API token sent with every request; without
    either, see :func:`hacoord.client.credentials.resolve_token` (``HACOORD_TOKEN``,
    ``HACOORD_TOKEN_FILE``, the local cluster's admin token). HTTPS endpoints are verified
    against ``ca`` (a PEM file), ``HACOORD_CA``, the local cluster's CA for members on this host,
    or else the system's CAs; ``cert`` is a (certificate, key) pair to show under mutual TLS
    (or ``HACOORD_CERT`` and ``HACOORD_KEY``). An unreadable token or CA file raises
    ``ValueError``.

    Methods are named after the CLI commands and return the frozen dataclasses of
    :mod:`hacoord.client.models`; failures raise the errors of :mod:`hacoord.client.errors`. One
    instance may be shared by several threads. Close it (or use it as a context manager) to release
    its connections.
    """

    def __init__(self, endpoints: list[str] | str | None = None, *, timeout: float = 5.0,
                 deadline: float = 15.0, transport: httpx.BaseTransport | None = None,
                 token: str | None = None, token_file: str | None = None,
                 ca: str | None = None, cert: tuple[str, str] | None = None) -> None:
        if timeout <= 0 or deadline <= 0:
            raise ValueError("timeout and deadline must be positive")
        self.timeout = timeout
        self.deadline = deadline
        self._known = parse_endpoints(endpoints)
        self._configured = tuple(self._known)
        self._current = self._known[0]
        self._leader_id: str | None = None
        self._leader_url: str | None = None
        self._member_urls: dict[str, str] = {}
        self._lock = threading.Lock()
        self._backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX)
        headers = {"User-Agent": f"hacoord-client/{__version__}", "Accept": "application/json"}
        secret = resolve_token(self._known, token, token_file)
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        self._http = httpx.Client(transport=transport, timeout=timeout, headers=headers,
                                  verify=tls_context(self._known, ca, cert))

    # --- lifecycle and introspection ----------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (and the transport)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(endpoints={list(self._configured)!r})"

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The base URLs this client was configured with (normalised)."""
        return self._configured

    @property
    def leader(self) -> str | None:
        """The member id the client currently believes leads, if it learned one."""
        return self._leader_id

    # --- cluster status -----------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Ask each configured endpoint's ``/v1/status`` (once each, no retries, in parallel), then
        every member they name that has not answered yet. Unreachable members are reported,
        not raised; :class:`UnavailableError` only if no member answers at all. Also teaches the
        client the members' URLs and the leader."""
        probes = self._probe(list(self._configured))
        urls: dict[str, str] = {}
        for _, members in probes.values():
            urls.update(members)
        answered = {s.member_id for s, _ in probes.values() if s.reachable}
        extra = [u for m, u in sorted(urls.items()) if m not in answered and u not in probes]
        probes.update(self._probe(extra))

        by_url = {u: m for m, u in urls.items()}
        members = []
        for endpoint, (member, _) in probes.items():
            if not member.reachable and member.member_id is None and endpoint in by_url:
                member = MemberStatus(endpoint, False, member_id=by_url[endpoint], error=member.error)
            members.append(member)
        members.sort(key=lambda m: (m.member_id is None, m.member_id or "", m.endpoint))
        reachable = [m for m in members if m.reachable]
        if not reachable:
            errors = "; ".join(f"{m.endpoint}: {m.error}" for m in members)
            raise UnavailableError(f"no coordinator member answered ({errors})", attempts=len(members))
        leaders = [m for m in reachable if m.role == "leader"]
        if leaders:
            leader = max(leaders, key=lambda m: m.term or 0).member_id
        else:
            leader = max(reachable, key=lambda m: m.term or 0).leader
        revision = max(m.revision or 0 for m in reachable)
        with self._lock:
            self._member_urls.update(urls)
            if leader is not None and leader in urls and any(m.member_id == leader for m in reachable):
                self._set_leader(leader, urls[leader])
        return ClusterStatus(members=tuple(members), leader=leader, revision=revision,
                             member_urls=dict(sorted(urls.items())))

    def _probe(self, endpoints: list[str]) -> dict[str, tuple[MemberStatus, dict[str, str]]]:
        if not endpoints:
            return {}
        timeout = min(self.timeout, self.deadline)
        if len(endpoints) == 1:
            results = [self._probe_one(endpoints[0], timeout)]
        else:
            with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
                results = list(pool.map(lambda e: self._probe_one(e, timeout), endpoints))
        return dict(zip(endpoints, results, strict=True))

    def _probe_one(self, endpoint: str, timeout: float) -> tuple[MemberStatus, dict[str, str]]:
        try:
            response = self._http.get(endpoint + "/v1/status", timeout=timeout)
            if not response.is_success:
                raise self._error(response, endpoint)
            data = self._json(response)
            status = MemberStatus.from_api(endpoint, data)
            members = {m: str(info["api_url"]).rstrip("/") for m, info in data.get("members", {}).items()}
        except (httpx.TransportError, ApiError, ProtocolError, KeyError, TypeError, AttributeError) as exc:
            return MemberStatus(endpoint, False, error=_describe(exc)), {}
        return status, members

    def request_status(self, request_id: str, consistent: bool = True) -> int | None:
        """The revision the write with ``request_id`` was applied at, or None if it was not
        (or so long ago that the cluster forgot: ids are kept five minutes, at most 50,000). Use
        it after a write ended in :class:`UnavailableError` to learn whether it landed; with
        ``consistent`` (the default) the answer covers every write committed before the call."""
        data = self._read(f"/v1/requests/{_segment(request_id)}", consistent)
        return self._parse(lambda: int(data["applied_revision"]) if data["applied"] else None)

    # --- nodes --------------------------------------------------------------------------------

    def node_add(self, id: str, address: str, *, zone: str | None = None, capacity: float | None = None,
                 tags: Mapping[str, str] | None = None, request_id: str | None = None) -> WriteResult:
        """Register data node ``id`` listening on ``address`` (``host:port``). ``zone`` and
        ``capacity`` default on the server (``default``, 1.0). Raises :class:`Conflict` if the id
        is taken, :class:`InvalidArgument` for malformed fields."""
        body: dict[str, Any] = {"id": id, "address": address}
        if zone is not None:
            body["zone"] = zone
        if capacity is not None:
            body["capacity"] = capacity
        if tags:
            body["tags"] = dict(tags)
        return self._write("POST", "/v1/nodes", body, request_id)

    def node_remove(self, id: str, force: bool = False, *, request_id: str | None = None) -> WriteResult:
        """Remove node ``id``. A node holding replicas is refused (:class:`Conflict`,
        ``node_not_empty``) unless ``force``, which first re-places its replicas elsewhere."""
        params = {"force": "true"} if force else None
        return self._write("DELETE", f"/v1/nodes/{_segment(id)}", None, request_id, params=params)

    def node_list(self, consistent: bool = False) -> list[NodeInfo]:
        """All registered nodes, sorted by id. ``consistent`` reads through the leader
        (linearizable); otherwise any member answers from its applied state."""
        data = self._read("/v1/nodes", consistent)
        return self._parse(lambda: [NodeInfo.from_api(n) for n in data["nodes"]])

    def node_show(self, id: str, consistent: bool = False) -> NodeInfo:
        """Node ``id`` with the replicas it holds; :class:`NotFound` if unknown."""
        data = self._read(f"/v1/nodes/{_segment(id)}", consistent)
        return self._parse(lambda: NodeInfo.from_api(data["node"]))

    def node_set_state(self, id: str, status: str | None = None, address: str | None = None,
                       zone: str | None = None, capacity: float | None = None,
                       tags: Mapping[str, str | None] | None = None,
                       metrics: Mapping[str, float | None] | None = None, *,
                       expect_tags: Mapping[str, str | None] | None = None,
                       admin: str | None = None, admin_reason: str | None = None,
                       request_id: str | None = None) -> WriteResult:
        """Change node ``id``: ``status`` (``up``/``down``; partition leadership follows), address,
        zone, capacity. ``tags`` and ``metrics`` are merged into the node's; a ``None`` value deletes
        that key. Arguments left ``None`` are unchanged. With ``expect_tags`` the change is a
        compare-and-set: :class:`Conflict` with code ``precondition_failed`` unless each named tag
        has the given value (``None``: absent). ``admin`` is ``active``, ``cordoned`` (no new
        replicas) or ``draining`` (everything moves off); ``admin_reason`` records why."""
        body: dict[str, Any] = {}
        for key, value in (("status", status), ("address", address), ("zone", zone),
                           ("capacity", capacity), ("tags", tags), ("metrics", metrics),
                           ("expect_tags", expect_tags), ("admin", admin),
                           ("admin_reason", admin_reason)):
            if value is not None:
                body[key] = dict(value) if isinstance(value, Mapping) else value
        return self._write("PATCH", f"/v1/nodes/{_segment(id)}", body, request_id)

    def node_start_session(self, id: str, address: str | None = None, *,
                           request_id: str | None = None) -> NodeSession:
        """Start a new session of node ``id`` (call it when the node process starts): its epoch
        grows by one, it is marked up, and ``address`` (if given) replaces the registered one.
        Heartbeats and reports must carry the returned ``epoch``; older epochs are refused."""
        body = {"address": address} if address is not None else None
        call = _Call("POST", f"/v1/nodes/{_segment(id)}/session", body=body, to_leader=True,
                     request_id=request_id or uuid.uuid4().hex)
        data = self._json(self._run(call))
        return self._parse(lambda: NodeSession.from_api(data, call.request_id or ""))

    def node_heartbeat(self, id: str, epoch: int) -> Heartbeat:
        """Tell the leader node ``id`` is alive in the session of ``epoch`` (any member forwards
        it). Not logged; a suspect or down node is judged up again before the answer. Raises
        :class:`StaleEpoch` if the node started a newer session, :class:`NotFound` if unknown."""
        call = _Call("POST", f"/v1/nodes/{_segment(id)}/heartbeat", body={"epoch": epoch},
                     to_leader=True)
        data = self._json(self._run(call))
        return self._parse(lambda: Heartbeat.from_api(data))

    def node_report_metrics(self, id: str, epoch: int, metrics: Mapping[str, float | None], *,
                            request_id: str | None = None) -> WriteResult:
        """Node ``id`` (in the session of ``epoch``) reports metrics, merged into its record (a
        ``None`` value deletes one). A resource may balance on such a metric. Raises
        :class:`StaleEpoch` if the node started a newer session."""
        body = {"epoch": epoch, "metrics": dict(metrics)}
        return self._write("POST", f"/v1/nodes/{_segment(id)}/metrics", body, request_id)

    def node_caught_up(self, id: str, epoch: int, resource: str, partition: int, partition_epoch: int,
                       *, request_id: str | None = None) -> WriteResult:
        """Node ``id`` (session ``epoch``) reports its new replica of ``resource``/``partition``
        caught up, as of ``partition_epoch`` (the epoch of the route that named it ``adding``). The
        move completes; the result's ``partition`` is the new route. :class:`StaleEpoch` for an
        older session or partition epoch; :class:`Conflict` (``no_move``) if no move goes there."""
        body = {"epoch": epoch, "resource": resource, "partition": partition,
                "partition_epoch": partition_epoch}
        return self._write("POST", f"/v1/nodes/{_segment(id)}/caught-up", body, request_id)

    # --- resources and routing ----------------------------------------------------------------

    def resource_create(self, name: str, partitions: int, replicas: int, *,
                        balance_metric: str | None = None,
                        request_id: str | None = None) -> WriteResult:
        """Create resource ``name`` with ``partitions`` partitions of ``replicas`` copies each,
        placed by the leader. :class:`Conflict` (``not_enough_nodes``) if fewer nodes than copies.
        ``balance_metric`` names a node metric (reported by the data nodes, e.g. ``disk_bytes``)
        that rebalancing evens out for this resource instead of replica counts."""
        body: dict[str, Any] = {"name": name, "partitions": partitions, "replicas": replicas}
        if balance_metric is not None:
            body["balance_metric"] = balance_metric
        return self._write("POST", "/v1/resources", body, request_id)

    def resource_update(self, name: str, *, replicas: int | None = None,
                        balance_metric: str | None = None,
                        request_id: str | None = None) -> WriteResult:
        """Change resource ``name``'s replication factor (more: the missing copies are added
        two-phase by the rebalancer; fewer: dropped at once) or balance metric (``""``: back to
        replica counts)."""
        body = {k: v for k, v in (("replicas", replicas), ("balance_metric", balance_metric))
                if v is not None}
        return self._write("PATCH", f"/v1/resources/{_segment(name)}", body, request_id)

    # --- tokens -------------------------------------------------------------------------------

    def token_create(self, name: str, role: str, *, node: str | None = None,
                     expires_in: float | None = None, request_id: str | None = None) -> NewToken:
        """Create an API token (needs an admin token). The secret is drawn here and sent once,
        so a retried request keeps it; the answer is the only place it is shown."""
        secret = new_token()
        body: dict[str, Any] = {"name": name, "role": role, "token": secret}
        if node is not None:
            body["node"] = node
        if expires_in is not None:
            body["expires_in"] = expires_in
        result = self._write("POST", "/v1/tokens", body, request_id)
        return self._parse(lambda: NewToken(TokenInfo.from_api(result.data["token"]), secret,
                                            result.revision))

    def token_list(self, consistent: bool = False) -> list[TokenInfo]:
        """Every token (needs an admin token), in creation order."""
        data = self._read("/v1/tokens", consistent)
        return self._parse(lambda: [TokenInfo.from_api(t) for t in data["tokens"]])

    def token_revoke(self, name: str, *, request_id: str | None = None) -> WriteResult:
        """Revoke token ``name``; answered once the members have applied it (``data`` has
        ``applied_on`` and ``unconfirmed``)."""
        return self._write("DELETE", f"/v1/tokens/{_segment(name)}", None, request_id)

    def audit(self, since: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Who made each change after revision ``since`` (oldest first, at most about ``limit``
        events' worth); :class:`Compacted` if the member no longer keeps them."""
        data = self._read("/v1/audit", False, {"since": since, "limit": limit})
        return self._parse(lambda: [AuditEntry.from_api(e) for e in data["entries"]])

    def whoami(self) -> TokenInfo:
        """The token this client sends, as the cluster knows it."""
        data = self._read("/v1/whoami", False)
        return self._parse(lambda: TokenInfo.from_api(data))

    def resource_list(self, consistent: bool = False) -> list[ResourceInfo]:
        """All resources, sorted by name."""
        data = self._read("/v1/resources", consistent)
        return self._parse(lambda: [ResourceInfo.from_api(r) for r in data["resources"]])

    def resource_delete(self, name: str, *, request_id: str | None = None) -> WriteResult:
        """Delete resource ``name`` and all its partitions; :class:`NotFound` if unknown."""
        return self._write("DELETE", f"/v1/resources/{_segment(name)}", None, request_id)

    def partition_move(self, resource: str, partition: int, from_node: str, to_node: str, *,
                       two_phase: bool = False, request_id: str | None = None) -> WriteResult:
        """Move the replica of ``resource``/``partition`` held by ``from_node`` to ``to_node``. The
        partition's epoch grows; the result's ``partition`` is its new route. By default the move
        is forced, at once; with ``two_phase`` ``to_node`` is only added (the route's ``adding``)
        and replaces ``from_node`` when it reports caught up (:class:`Conflict` ``throttled`` or
        ``maintenance`` when the rebalance settings forbid a move now)."""
        path = f"/v1/resources/{_segment(resource)}/partitions/{_segment(partition)}/move"
        body: dict[str, Any] = {"from": from_node, "to": to_node}
        if two_phase:
            body["two_phase"] = True
        return self._write("POST", path, body, request_id)

    def partition_set_leader(self, resource: str, partition: int, node: str, *,
                             request_id: str | None = None) -> WriteResult:
        """Hand the leadership of ``resource``/``partition`` to its replica on ``node`` (up); the
        epoch grows. :class:`Conflict` (``move_pending``) while the partition is moving."""
        path = f"/v1/resources/{_segment(resource)}/partitions/{_segment(partition)}/leader"
        return self._write("POST", path, {"node": node}, request_id)

    def partition_cancel_move(self, resource: str, partition: int, *,
                              request_id: str | None = None) -> WriteResult:
        """Abandon the pending move of ``resource``/``partition``; :class:`Conflict` (``no_move``)
        if it has none."""
        path = f"/v1/resources/{_segment(resource)}/partitions/{_segment(partition)}/move"
        return self._write("DELETE", path, None, request_id)

    def rebalance_status(self, consistent: bool = False) -> dict[str, Any]:
        """Rebalance progress: ``settings``, ``maintenance``, ``run``, ``pending`` moves (with
        ``age``), ``remaining`` moves, ``eta_seconds``, ``stuck``..."""
        return self._read("/v1/rebalance", consistent)

    def rebalance_start(self, *, request_id: str | None = None) -> dict[str, Any]:
        """Apply the rebalance plan: start a run (``{"run", "progress", "revision"}``). The leader
        moves replicas two-phase under the throttles and ends the run when done.
        :class:`Conflict` if a run is going or in maintenance."""
        return self._write("POST", "/v1/rebalance", None, request_id).data

    def rebalance_cancel(self, cancel_moves: bool = False, *,
                         request_id: str | None = None) -> dict[str, Any]:
        """End the running rebalance; pending moves complete unless ``cancel_moves``."""
        params = {"cancel_moves": "true"} if cancel_moves else None
        return self._write("DELETE", "/v1/rebalance", None, request_id, params=params).data

    def rebalance_configure(self, *, max_moves_per_node: int | None = None,
                            max_moves: int | None = None, rereplicate_after: float | None = None,
                            maintenance: bool | None = None, reason: str | None = None,
                            request_id: str | None = None) -> dict[str, Any]:
        """Set throttles, the re-replication delay (seconds a down node's replicas wait), or
        maintenance mode (``maintenance=True`` needs a ``reason``); None leaves a field as is."""
        body = {k: v for k, v in (("max_moves_per_node", max_moves_per_node),
                                  ("max_moves", max_moves), ("rereplicate_after", rereplicate_after),
                                  ("maintenance", maintenance), ("reason", reason)) if v is not None}
        return self._write("PATCH", "/v1/rebalance", body, request_id).data["rebalance"]

    def rebalance_plan(self, exclude: Iterable[str] = (), consistent: bool = False) -> dict[str, Any]:
        """Dry run of a rebalance: ``{"revision", "plan": {"moves", "leader_changes",
        "lower_bound", "before", "after", "stuck", ...}}``, planning as if the ``exclude``d nodes
        were drained. Nothing is applied."""
        params = {"exclude": list(exclude)} if exclude else None
        return self._read("/v1/rebalance/plan", consistent, params)

    def explain(self, resource: str, partition: int, consistent: bool = False) -> dict[str, Any]:
        """Why each replica of ``resource``/``partition`` is where it is (constraints, score, the
        runner-up node), and whether the current rebalance plan would move it and why."""
        path = f"/v1/resources/{_segment(resource)}/partitions/{_segment(partition)}/explain"
        return self._read(path, consistent)

    def routing(self, resource: str | None = None, consistent: bool = False) -> RoutingTable:
        """The routing table of ``resource`` (or of every resource) with the revision it reflects;
        :class:`NotFound` if the resource is unknown."""
        params = {"resource": resource} if resource is not None else {}
        data = self._read("/v1/routing", consistent, params)
        return self._parse(lambda: RoutingTable.from_api(data))

    def watch(self, since: int | None = None, *, poll: float = 25.0,
              stop: Callable[[], bool] | None = None) -> Iterator[WatchEvent]:
        """Every change after revision ``since`` (default: from now), in order, with no gaps or
        repeats, for as long as the caller iterates (or until ``stop()`` returns True, checked
        between polls of at most ``poll`` seconds).

        It long-polls any member (each has the same history, since each applies the same log)
        and resumes from the last revision it yielded after a failover or a reconnect. Raises
        :class:`Compacted` if ``since`` is older than the members keep: re-read the state and
        watch from its revision; :class:`UnavailableError` if no member answers in ``deadline``.
        """
        last = since
        while stop is None or not stop():
            params: dict[str, Any] = {"timeout": poll}
            if last is not None:
                params["since"] = last
            call = _Call("GET", "/v1/watch", params=params, attempt_timeout=poll + self.timeout)
            data = self._json(self._run(call))
            if last is None:
                last = int(data["since"])
            events = self._parse(lambda d=data: [WatchEvent.from_api(raw) for raw in d["events"]])
            # The member sends only events after ``last``, whole revisions, in order.
            for event in events:
                last = max(last, event.revision)
                yield event

    # --- plumbing -----------------------------------------------------------------------------

    def _read(self, path: str, consistent: bool, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = dict(params or {})
        if consistent:
            params["consistent"] = "true"
        call = _Call("GET", path, params=params or None, to_leader=consistent)
        return self._json(self._run(call))

    def _write(self, method: str, path: str, body: Any, request_id: str | None,
               params: dict[str, Any] | None = None) -> WriteResult:
        call = _Call(method, path, params=params, body=body, to_leader=True,
                     request_id=request_id or uuid.uuid4().hex)
        response = self._run(call)
        data = self._json(response)
        assert call.request_id is not None

        def build() -> WriteResult:
            node = NodeInfo.from_api(data["node"]) if "node" in data else None
            resource = ResourceInfo.from_api(data["resource"]) if "resource" in data else None
            part = data.get("partition")
            route = PartitionRoute.from_api(part["resource"], part) if part else None
            return WriteResult(revision=int(data["revision"]), request_id=call.request_id or "",
                               data=data, node=node, resource=resource, partition=route)

        return self._parse(build)

    def _run(self, call: _Call) -> httpx.Response:
        """Run ``call`` under the retry policy; see the module docstring."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_before_delay(self.deadline),
            wait=lambda state: self._wait(call, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, call)
        except (httpx.TransportError, ServiceUnavailable) as exc:
            elapsed = time.monotonic() - call.started
            raise UnavailableError(
                f"cluster unavailable after {call.attempts} attempt(s) in {elapsed:.1f}s: "
                f"{_describe(exc, where=True)}",
                cause=exc, attempts=call.attempts) from exc

    def _wait(self, call: _Call, state: tenacity.RetryCallState) -> float:
        if call.redirected and call.redirects <= FREE_REDIRECTS:
            return 0.0
        return float(self._backoff(state))

    def _attempt(self, call: _Call) -> httpx.Response:
        with self._lock:
            endpoint = self._leader_url if call.to_leader and self._leader_url else self._current
        call.attempts += 1
        call.redirected = False
        remaining = self.deadline - (time.monotonic() - call.started)
        headers = {REQUEST_ID_HEADER: call.request_id} if call.request_id else None
        try:
            response = self._http.request(
                call.method, endpoint + call.path, params=call.params, json=call.body, headers=headers,
                timeout=max(MIN_ATTEMPT_TIMEOUT, min(call.attempt_timeout or self.timeout, remaining)))
        except httpx.TransportError:
            self._passed_over(endpoint)
            raise
        if response.is_success:
            with self._lock:
                self._current = endpoint
            leader = response.headers.get(LEADER_HEADER)
            if call.to_leader and leader:
                self._learn_leader(endpoint, leader)
            return response
        error = self._error(response, endpoint)
        if isinstance(error, NotLeader):
            self._follow(call, endpoint, error)
        elif error.retryable:
            self._passed_over(endpoint)
        else:
            with self._lock:
                self._current = endpoint
        raise error

    def _passed_over(self, endpoint: str) -> None:
        """``endpoint`` failed: forget it as leader, and move on from it."""
        with self._lock:
            if self._leader_url == endpoint:
                self._leader_id = self._leader_url = None
            if self._current == endpoint:
                at = self._known.index(endpoint) if endpoint in self._known else -1
                self._current = self._known[(at + 1) % len(self._known)]

    def _follow(self, call: _Call, endpoint: str, error: NotLeader) -> None:
        """Go to the member a ``not_leader`` answer names, learning its URL if need be."""
        with self._lock:
            url = self._member_urls.get(error.leader) if error.leader else None
        if error.leader and url is None:
            remaining = self.deadline - (time.monotonic() - call.started)
            _, members = self._probe_one(endpoint, max(MIN_ATTEMPT_TIMEOUT, min(self.timeout, remaining)))
            with self._lock:
                self._member_urls.update(members)
            url = members.get(error.leader)
        if url is None or url == endpoint:
            self._passed_over(endpoint)
            return
        with self._lock:
            self._set_leader(error.leader, url)
        call.redirects += 1
        call.redirected = True

    def _learn_leader(self, endpoint: str, leader: str) -> None:
        """``endpoint`` forwarded a call to ``leader``: send the next ones there directly
        (learning the members' URLs from ``endpoint`` first if need be)."""
        with self._lock:
            url = self._member_urls.get(leader)
        if url is None:
            _, members = self._probe_one(endpoint, min(self.timeout, self.deadline))
            with self._lock:
                self._member_urls.update(members)
            url = members.get(leader)
        if url is not None and url != endpoint:
            with self._lock:
                self._set_leader(leader, url)

    def _set_leader(self, member_id: str | None, url: str) -> None:
        """Remember the leader (called with the lock held)."""
        self._leader_id, self._leader_url = member_id, url
        if url not in self._known:
            self._known.append(url)

    @staticmethod
    def _error(response: httpx.Response, endpoint: str) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code") or f"http_{response.status_code}")
        message = str(body.get("message") or response.reason_phrase or code)
        leader = body.get("leader") if isinstance(body.get("leader"), str) else None
        return error_for(code, message, response.status_code, leader=leader, endpoint=endpoint)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ProtocolError(f"{response.request.url}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"{response.request.url}: answer is not a JSON object")
        return data

    @staticmethod
    def _parse(build: Callable[[], T]) -> T:
        try:
            return build()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"unexpected answer shape: {type(exc).__name__}: {exc}") from None
