"""Talking to kv nodes over HTTP: their routes, their JSON and their errors, for the nodes'
peers (replication, partition copies) and for clients alike.

Every request names the partition and carries the partition epoch the caller acts under
(``epoch``). A refusal is a JSON body ``{"code", "message", ...}`` with its status: 409
``stale_epoch`` (the caller's epoch is older than the node's), 421 ``not_held`` / ``not_leader`` /
``not_serving`` (wrong node, or wrong role, for this request), 503 ``epoch_ahead`` (the node has
not seen the caller's epoch yet) or ``replication_failed``, 404 ``no_such_key``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from hacoord.examples.kvstore import Entry

KV_ROUTE = "/v1/kv/{resource}/{partition}/{key:path}"
REPLICATE_ROUTE = "/v1/internal/replicate/{resource}/{partition}"
DUMP_ROUTE = "/v1/internal/dump/{resource}/{partition}"
NODE_ROUTE = "/v1/node"


class KVCallError(Exception):
    """A kv node refused a request (``status``, ``code``, and the whole ``body``), or could not be
    reached (``status`` 0, ``code`` ``unreachable``)."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


def _path(route: str, resource: str, partition: int, key: str = "") -> str:
    return route.replace("{key:path}", quote(key, safe="")).format(
        resource=quote(resource, safe=""), partition=partition)


class KVNodeCaller:
    """Calls kv nodes at ``host:port`` addresses. Thread-safe; close it when done."""

    def __init__(self, timeout: float = 2.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def get(self, address: str, resource: str, partition: int, key: str, epoch: int) -> Entry | None:
        """The entry of ``key``, or None if the node has none."""
        try:
            data = self._call("GET", address, _path(KV_ROUTE, resource, partition, key), epoch)
        except KVCallError as exc:
            if exc.code == "no_such_key":
                return None
            raise
        return Entry.from_json(data)

    def put(self, address: str, resource: str, partition: int, key: str, value: str,
            epoch: int) -> Entry:
        """Write ``key`` through the partition's leader; the entry as written (with its version)."""
        return Entry.from_json(self._call("PUT", address, _path(KV_ROUTE, resource, partition, key), epoch,
                                          {"value": value}))

    def replicate(self, address: str, resource: str, partition: int, epoch: int, key: str,
                  entry: Entry) -> None:
        """Send one write to another replica (or the one being added)."""
        self._call("POST", address, _path(REPLICATE_ROUTE, resource, partition), epoch,
                   {"key": key, **entry.to_json()})

    def dump(self, address: str, resource: str, partition: int, epoch: int) -> dict[str, Entry]:
        """Every entry of the partition, from its leader."""
        data = self._call("GET", address, _path(DUMP_ROUTE, resource, partition), epoch)
        return {key: Entry.from_json(entry) for key, entry in data["entries"].items()}

    def _call(self, method: str, address: str, path: str, epoch: int,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, f"http://{address}{path}", params={"epoch": epoch},
                                          json=body)
        except httpx.TransportError as exc:
            raise KVCallError(0, "unreachable", f"{address}: {type(exc).__name__}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if not response.is_success:
            raise KVCallError(response.status_code, str(data.get("code", f"http_{response.status_code}")),
                              str(data.get("message", response.reason_phrase)), data)
        return data
