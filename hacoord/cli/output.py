"""Everything the CLI prints: tables for people, ``--json`` for programs, one-line errors.

Commands hand results (the client's models) to an :class:`Output`; nothing else in the CLI writes
to stdout. JSON goes to stdout as one document per command; errors go to stderr as a single
``error: ...`` line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from hacoord.client import ClusterStatus, NodeInfo, ResourceInfo, RoutingTable, WatchEvent, WriteResult


def error(message: str) -> None:
    """Print ``error: message`` as one line on stderr (newlines in the message are flattened)."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` shows as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *cells]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value)


def _time(stamp: float | None) -> str | None:
    if not stamp:
        return None
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Output:
    """Renders one command's result, as text or (``as_json``) as a JSON document."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def _json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2))

    def status(self, status: ClusterStatus) -> None:
        if self.as_json:
            self._json({**status.to_dict(), "healthy": status.healthy})
            return
        click.echo(f"leader: {_cell(status.leader)}  revision: {_cell(status.revision)}  "
                   f"healthy: {_cell(status.healthy)}")
        headers = ["MEMBER", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "REVISION", "READY"]
        rows = []
        for m in status.members:
            if m.reachable:
                rows.append([m.member_id, m.endpoint, m.role, m.term, m.leader, m.commit_index,
                             m.applied_index, m.revision, m.ready])
            else:
                rows.append([m.member_id, m.endpoint, "unreachable", None, None, None, None, None, False])
        if any(not m.reachable for m in status.members):
            headers.append("ERROR")
            for row, m in zip(rows, status.members, strict=True):
                row.append(m.error)
        click.echo(table(headers, rows))

    def nodes(self, nodes: Sequence[NodeInfo]) -> None:
        if self.as_json:
            self._json({"nodes": [n.to_dict() for n in nodes]})
            return
        if not nodes:
            click.echo("no nodes")
            return
        click.echo(table(["ID", "ADDRESS", "ZONE", "CAPACITY", "STATUS", "TAGS"],
                         [[n.id, n.address, n.zone, n.capacity, n.status, n.tags] for n in nodes]))

    def node(self, node: NodeInfo) -> None:
        if self.as_json:
            self._json(node.to_dict())
            return
        fields = [("id", node.id), ("address", node.address), ("zone", node.zone),
                  ("capacity", node.capacity), ("status", node.status), ("epoch", node.epoch),
                  ("tags", node.tags),
                  ("metrics", node.metrics), ("registered", _time(node.registered_at)),
                  ("updated", _time(node.updated_at))]
        for name, value in fields:
            click.echo(f"{name + ':':<12}{_cell(value)}")
        if not node.replicas:
            click.echo(f"{'replicas:':<12}none")
            return
        click.echo("replicas:")
        click.echo(table(["RESOURCE", "PARTITION", "LEADER", "EPOCH"],
                         [[r.resource, r.partition, r.leader, r.epoch] for r in node.replicas]))

    def resources(self, resources: Sequence[ResourceInfo]) -> None:
        if self.as_json:
            self._json({"resources": [r.to_dict() for r in resources]})
            return
        if not resources:
            click.echo("no resources")
            return
        click.echo(table(["NAME", "PARTITIONS", "REPLICAS", "CREATED"],
                         [[r.name, r.partitions, r.replication_factor, _time(r.created_at)]
                          for r in resources]))

    def event(self, event: WatchEvent) -> None:
        """One watch event a line: JSON lines with ``--json``, else revision, type and data."""
        if self.as_json:
            click.echo(json.dumps(event.to_dict(), sort_keys=True))
            return
        details = " ".join(f"{k}={_cell(v)}" for k, v in sorted(event.data.items())
                           if not isinstance(v, dict | list))
        click.echo(f"{event.revision:>8}  {event.type:<18} {details}".rstrip(), nl=True)

    def routing(self, routing: RoutingTable) -> None:
        if self.as_json:
            self._json(routing.to_dict())
            return
        click.echo(f"revision: {routing.revision}")
        routes = list(routing)
        if not routes:
            click.echo("no resources")
            return
        rows = [[r.resource, r.partition, r.leader,
                 routing.addresses.get(r.leader) if r.leader else None, r.epoch, r.replicas]
                for r in routes]
        click.echo(table(["RESOURCE", "PARTITION", "LEADER", "LEADER_ADDRESS", "EPOCH", "REPLICAS"], rows))

    def plan(self, answer: dict[str, Any]) -> None:
        """A rebalance dry run: the moves and leadership changes, and the balance figures."""
        if self.as_json:
            self._json(answer)
            return
        plan = answer["plan"]
        moves, leaders = plan["moves"], plan["leader_changes"]
        click.echo(f"revision: {answer['revision']}  dry run: nothing applied")
        click.echo(f"moves: {len(moves)} (lower bound {plan['lower_bound']})  "
                   f"leadership changes: {len(leaders)}")
        for label in ("before", "after"):
            figures = plan[label]
            shown = ", ".join(f"{k} {_cell(v)}" for k, v in figures.items()
                              if not isinstance(v, dict | list))
            click.echo(f"{label}: {shown}")
        rows = [[m["resource"], m["partition"], m["from_node"], m["to_node"], m["reason"]]
                for m in moves]
        if rows:
            click.echo(table(["RESOURCE", "PARTITION", "FROM", "TO", "REASON"], rows))
        for stuck in plan.get("stuck", []):
            click.echo(f"cannot satisfy: {stuck}")

    def explanation(self, answer: dict[str, Any]) -> None:
        """``hacoord explain``: always JSON-shaped (the explanation is a nested document)."""
        self._json(answer)

    def written(self, result: WriteResult, summary: str) -> None:
        """A write's outcome: ``summary`` and the revision, or the answer as JSON."""
        if self.as_json:
            self._json({**result.data, "request_id": result.request_id})
            return
        click.echo(f"{summary} (revision {result.revision})")
