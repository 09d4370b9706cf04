"""Where the other data nodes are: node id -> ``host:port``, from the routing and the change feed.

A data node needs its peers' addresses to copy a partition from its leader or to replicate writes to
the other replicas. The node list (read with each routing table) and the routing table give every
address; node events (registration, a new session, a changed address, a removal) keep them
current. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from hacoord.client import NodeInfo, RoutingTable, WatchEvent
from hacoord.protocol import events as ev


class NodeDirectory:
    """Node addresses, as last seen."""

    def __init__(self) -> None:
        self._addresses: dict[str, str] = {}
        self._lock = threading.Lock()

    def address_of(self, node_id: str) -> str | None:
        """``host:port`` of ``node_id``, or None if unknown."""
        with self._lock:
            return self._addresses.get(node_id)

    def addresses(self) -> dict[str, str]:
        """Every known address (a copy)."""
        with self._lock:
            return dict(self._addresses)

    def apply_nodes(self, nodes: Iterable[NodeInfo]) -> None:
        """Learn the addresses of a node list."""
        with self._lock:
            self._addresses.update((node.id, node.address) for node in nodes)

    def apply_table(self, table: RoutingTable) -> None:
        """Learn the addresses a routing table gives."""
        with self._lock:
            self._addresses.update(table.addresses)

    def apply_event(self, event: WatchEvent) -> None:
        """Follow a node event; other events are ignored."""
        data = event.payload if event.type in ev.NODE_EVENTS else None
        with self._lock:
            if isinstance(data, ev.NodeRecordEvent):
                self._addresses[data.id] = data.address
            elif isinstance(data, ev.NodeRemoved):
                self._addresses.pop(data.id, None)
