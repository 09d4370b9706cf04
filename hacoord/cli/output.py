"""Everything the CLI prints: tables for people, ``--json`` for programs, one-line errors.

Commands hand results (the client's models) to an :class:`Output`; nothing else in the CLI writes
to stdout. JSON goes to stdout as one document per command; errors go to stderr as a single
``error: ...`` line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the models are only named here: `hacoord serve` never loads them
    from hacoord.client import (
        ClusterStatus,
        DataPlaneHealth,
        NodeInfo,
        ResourceInfo,
        RoutingTable,
        WatchEvent,
        WriteResult,
    )


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


def timestamp(stamp: float | None) -> str | None:
    if not stamp:
        return None
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no move completed yet)"
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def session(node: NodeInfo) -> str:
    """``epoch N`` for a node that has started a session, ``no session yet`` for one only
    registered (nothing speaks for it: it is judged down once ``--down-after`` passes)."""
    return "no session yet" if node.epoch <= 1 else f"epoch {node.epoch}"


def rebalance_summary(progress: dict[str, Any]) -> str:
    """One line: the run (or repairs only), moves pending and left, the ETA."""
    run = progress["run"]
    what = f"run {run['id']}: {run.get('completed', 0)} moves done" if run else "repairs only"
    left = len(progress["pending"]) + progress["remaining"]
    eta = f", ETA {_duration(progress['eta_seconds'])}" if left else ""
    return f"{what}, {len(progress['pending'])} in flight, {progress['remaining']} to start{eta}"


def progress_line(node_id: str, held: int, initial: int, moves: int, elapsed: float) -> str:
    """A drain's progress: replicas still held (of how many), moves in flight, time so far."""
    done = initial - held
    share = 100.0 if not initial else 100.0 * done / initial
    return (f"{node_id}: {held} replicas left of {initial} ({share:.0f}% moved), {moves} moves in "
            f"flight, {_duration(elapsed)}")


#: Unhealthy partitions named by ``hacoord status`` (the API reports up to 100).
WORST_SHOWN = 5
PARTITION_WORDS = {"healthy": "healthy", "under_replicated": "under-replicated",
                   "leaderless": "leaderless", "unavailable": "unavailable"}


def data_plane_lines(health: DataPlaneHealth | None) -> list[str]:
    """The data nodes and partitions in two or three lines: counts by status, the verdict and
    the worst partitions by name."""
    if health is None:
        return ["data plane: unknown (no member reported it)"]
    nodes = ", ".join(f"{health.nodes.get(s, 0)} {s}" for s in ("up", "suspect", "down"))
    parts = ", ".join(f"{health.partitions.get(k, 0)} {word}" for k, word in PARTITION_WORDS.items())
    verdict = "healthy" if health.healthy else "UNHEALTHY"
    lines = [f"data plane: {verdict}", f"  nodes: {nodes}", f"  partitions: {parts}"]
    order = list(PARTITION_WORDS)
    worst = sorted(health.unhealthy, key=lambda u: -order.index(u[2]) if u[2] in order else 0)
    if worst:
        shown = ", ".join(f"{res}/{part} {PARTITION_WORDS.get(h, h)}"
                          for res, part, h in worst[:WORST_SHOWN])
        more = sum(health.partitions.get(k, 0) for k in order[1:]) - min(len(worst), WORST_SHOWN)
        lines.append(f"  worst: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    return lines


class Output:
    """Renders one command's result, as text or (``as_json``) as a JSON document."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def _json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2))

    def status(self, status: ClusterStatus, rebalance: dict[str, Any] | None = None) -> None:
        health = status.health
        if self.as_json:
            self._json({**status.to_dict(), "healthy": status.healthy,
                        "data_plane_healthy": health.healthy if health else None,
                        "health": health.to_dict() if health else None, "rebalance": rebalance})
            return
        for line in data_plane_lines(health):
            click.echo(line)
        click.echo(f"coordinator: {'healthy' if status.healthy else 'UNHEALTHY'}  "
                   f"leader: {_cell(status.leader)}  revision: {_cell(status.revision)}")
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
        if rebalance is not None:
            if "error" in rebalance:
                click.echo(f"rebalance: unknown ({rebalance['error']})")
                return
            frozen = rebalance["maintenance"]
            click.echo("rebalance: " + rebalance_summary(rebalance)
                       + (f"; maintenance: {frozen['reason']}" if frozen else ""))

    def nodes(self, nodes: Sequence[NodeInfo]) -> None:
        if self.as_json:
            self._json({"nodes": [n.to_dict() for n in nodes]})
            return
        if not nodes:
            click.echo("no nodes")
            return
        click.echo(table(["ID", "ADDRESS", "ZONE", "CAPACITY", "STATUS", "SESSION", "ADMIN", "TAGS"],
                         [[n.id, n.address, n.zone, n.capacity, n.status, session(n), n.admin,
                           n.tags] for n in nodes]))

    def node(self, node: NodeInfo) -> None:
        if self.as_json:
            self._json(node.to_dict())
            return
        admin = node.admin + (f" ({node.admin_reason})" if node.admin_reason else "")
        fields = [("id", node.id), ("address", node.address), ("zone", node.zone),
                  ("capacity", node.capacity), ("status", node.status), ("admin", admin),
                  ("epoch", node.epoch), ("session", session(node)),
                  ("tags", node.tags),
                  ("metrics", node.metrics), ("registered", timestamp(node.registered_at)),
                  ("updated", timestamp(node.updated_at))]
        for name, value in fields:
            click.echo(f"{name + ':':<12}{_cell(value)}")
        if not node.replicas:
            click.echo(f"{'replicas:':<12}none")
            return
        click.echo("replicas:")
        click.echo(table(["RESOURCE", "PARTITION", "LEADER", "EPOCH", "CATCHING_UP"],
                         [[r.resource, r.partition, r.leader, r.epoch, r.catching_up]
                          for r in node.replicas]))

    def resources(self, resources: Sequence[ResourceInfo]) -> None:
        if self.as_json:
            self._json({"resources": [r.to_dict() for r in resources]})
            return
        if not resources:
            click.echo("no resources")
            return
        click.echo(table(["NAME", "PARTITIONS", "REPLICAS", "BALANCE_ON", "CREATED"],
                         [[r.name, r.partitions, r.replication_factor, r.balance_metric or "replicas",
                           timestamp(r.created_at)] for r in resources]))

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
        if "waves" in answer:
            throttle = answer["throttle"]
            click.echo(f"throttle: {throttle['max_moves']} moves in flight, "
                       f"{throttle['max_moves_per_node']} per node: {answer['waves']} waves, "
                       f"ETA {_duration(answer['eta_seconds'])}")
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

    def rebalance(self, progress: dict[str, Any], started: dict[str, Any] | None = None) -> None:
        """Rebalance progress (``hacoord rebalance status``), or a run just started."""
        if self.as_json:
            self._json({"run": started, "progress": progress} if started else progress)
            return
        if started:
            click.echo(f"rebalance run {started['id']} started")
        run, frozen = progress["run"], progress["maintenance"]
        if frozen:
            click.echo(f"maintenance: on since {timestamp(frozen['since'])} ({frozen['reason']}): "
                       "no move starts")
        click.echo(rebalance_summary(progress))
        if run is None and progress["balance_moves_available"]:
            click.echo(f"{progress['balance_moves_available']} balance moves available: "
                       "'hacoord rebalance' applies them")
        last = progress.get("last_run")
        if run is None and last:
            click.echo(f"last run: {last['id']} {last['outcome']} at {timestamp(last['ended_at'])}, "
                       f"{last.get('completed', 0)} moves")
        if progress["pending"]:
            click.echo(table(["RESOURCE", "PARTITION", "FROM", "TO", "REASON", "AGE"],
                             [[m["resource"], m["partition"], m["from_node"], m["to_node"],
                               m["reason"], _duration(m["age"])] for m in progress["pending"]]))
        for stuck in progress.get("stuck", []):
            click.echo(f"cannot satisfy: {stuck}")

    def document(self, data: Any) -> None:
        """Any JSON document, as is."""
        self._json(data)

    def report(self, data: dict[str, Any], line: str) -> None:
        """The outcome of a command that acts on files (backup, restore): ``line``, or
        ``data`` as JSON."""
        if self.as_json:
            self._json(data)
        else:
            click.echo(line)

    def explanation(self, answer: dict[str, Any]) -> None:
        """``hacoord explain``: always JSON-shaped (the explanation is a nested document)."""
        self._json(answer)

    def written(self, result: WriteResult, summary: str, note: str | None = None) -> None:
        """A write's outcome: ``summary`` and the revision (and a ``note:`` line), or the answer
        as JSON."""
        if self.as_json:
            self._json({**result.data, "request_id": result.request_id})
            return
        click.echo(f"{summary} (revision {result.revision})")
        if note:
            click.echo(f"note: {note}")
