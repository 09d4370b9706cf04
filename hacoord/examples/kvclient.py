"""A client of the example kv nodes: routes each key to its partition's leader by the coordinator's
routing table, stamps the request with the partition epoch, and re-reads the routing when a node
refuses (stale epoch, not the leader, not caught up yet) or cannot be reached.

    from hacoord import Client
    from hacoord.examples.kvclient import KVClient

    with KVClient(Client(), "kv") as kv:
        kv.put("user:1", "ada")
        assert kv.get("user:1") == "ada"

Between refusals it needs nothing from the coordinator: the nodes keep serving, and it keeps
reaching them, while the coordinator fails over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import tenacity

from hacoord.client import Client, HacoordError, PartitionRoute, RoutingTable
from hacoord.examples.kvhttp import KVCallError, KVNodeCaller
from hacoord.examples.kvstore import Entry, partition_for

T = TypeVar("T")

#: Node answers worth another try once the routing is re-read.
RETRY_STATUSES = frozenset({0, 409, 421, 503})


class NoLeader(KVCallError):
    """The routing names no leader (or no address for it) for the key's partition."""

    def __init__(self, route: PartitionRoute) -> None:
        super().__init__(0, "no_leader", f"{route.resource}/{route.partition} has no reachable leader")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, KVCallError) and exc.status in RETRY_STATUSES


class KVClient:
    """Reads and writes keys of ``resource`` through ``coordinator``'s routing. Each call retries
    refusals and unreachable nodes (re-reading the routing each time, with jittered backoff) for at
    most ``deadline`` seconds, then raises the last :class:`KVCallError`. Thread-safe."""

    def __init__(self, coordinator: Client, resource: str, *, timeout: float = 2.0,
                 deadline: float = 10.0) -> None:
        self.coordinator = coordinator
        self.resource = resource
        self.deadline = deadline
        self._nodes = KVNodeCaller(timeout=timeout)
        self._lock = threading.Lock()
        self._table: RoutingTable | None = None

    def close(self) -> None:
        """Close the connections to the nodes (not the coordinator client)."""
        self._nodes.close()

    def __enter__(self) -> KVClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def table(self) -> RoutingTable:
        """The routing table in use (read on first use)."""
        with self._lock:
            table = self._table
        return table if table is not None else self.refresh()

    def refresh(self) -> RoutingTable:
        """Re-read the resource's routing (kept only if newer than the one in use)."""
        fresh = self.coordinator.routing(self.resource)
        with self._lock:
            if self._table is None or fresh.revision >= self._table.revision:
                self._table = fresh
            return self._table

    def route_of(self, key: str) -> PartitionRoute:
        """The route of ``key``'s partition, as the table in use has it."""
        table = self.table
        return table.route(self.resource, partition_for(key, len(table.partitions)))

    def get(self, key: str) -> str | None:
        """The value of ``key`` (None if it has none), read from its partition's leader."""
        entry = self._call(key, lambda address, route: self._nodes.get(
            address, self.resource, route.partition, key, route.epoch))
        return entry.value if entry is not None else None

    def put(self, key: str, value: str) -> Entry:
        """Set ``key`` to ``value`` through its partition's leader; acknowledged once every replica
        has it. Returns the entry written (with its version)."""
        return self._call(key, lambda address, route: self._nodes.put(
            address, self.resource, route.partition, key, value, route.epoch))

    def _call(self, key: str, request: Callable[[str, PartitionRoute], T]) -> T:
        """``request(leader address, route)`` for ``key``'s partition, under the retry policy."""

        def attempt() -> T:
            table = self.table
            route = table.route(self.resource, partition_for(key, len(table.partitions)))
            address = table.addresses.get(route.leader) if route.leader is not None else None
            if address is None:
                raise NoLeader(route)
            return request(address, route)

        def reroute(_: tenacity.RetryCallState) -> None:
            try:
                self.refresh()
            except HacoordError:  # the coordinator is away: keep the table, try the nodes again
                pass

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_delay(self.deadline),
            wait=tenacity.wait_random_exponential(multiplier=0.02, max=0.5),
            before_sleep=reroute, reraise=True)
        return retrying(attempt)
