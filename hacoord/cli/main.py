"""The ``hacoord`` command: click commands over :class:`hacoord.client.Client`.

Exit statuses: 0 success; 2 bad input (usage error, malformed ``--tag``, or a 4xx answer such as an
unknown node), with one ``error: ...`` line on stderr; 1 when the cluster cannot be reached or
answers with a server error, also one line. Output goes through :mod:`hacoord.cli.output`.

The client comes from :attr:`CliState.client_factory` (default :func:`make_client`); tests pass
``obj=CliState(client_factory=...)`` to ``CliRunner.invoke`` to run the commands against an
in-process app.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import click

from hacoord import __version__
from hacoord.cli.common import CliError, CliState, consistent_option, json_option, make_client
from hacoord.cli.common import cli_state as _state
from hacoord.client import ApiError, HacoordError

__all__ = ["CliState", "main", "make_client"]


def _usage(exc: click.UsageError) -> CliError:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return CliError(exc.format_message() + hint, exc.exit_code)


class _Main(click.Group):
    """The root group: turns usage errors and client errors into one line and an exit status."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage(exc) from None
        except ApiError as exc:
            raise CliError(exc.message, 2 if 400 <= exc.status < 500 else 1) from None
        except HacoordError as exc:
            raise CliError(str(exc), 1) from None


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=f"'{option}'")
        pairs[key.strip()] = value
    return pairs


def _parse_tags(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    return _pairs("--tag", values)


def _parse_metrics(_ctx: click.Context, _param: click.Parameter,
                   values: tuple[str, ...]) -> dict[str, float]:
    metrics = {}
    for key, value in _pairs("--metric", values).items():
        try:
            metrics[key] = float(value)
        except ValueError:
            raise click.BadParameter(f"{key}: {value!r} is not a number", param_hint="'--metric'") from None
    return metrics


# --- the group --------------------------------------------------------------------------------

@click.group(cls=_Main)
@click.option("--endpoints", envvar="HACOORD_ENDPOINTS", metavar="URL[,URL...]",
              help="Members' API URLs, comma-separated (default: the local cluster, 127.0.0.1:7401-7403).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              envvar="HACOORD_TIMEOUT", help="Seconds per HTTP attempt.")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
              envvar="HACOORD_DEADLINE", help="Seconds per command, retries included.")
@click.option("--token-file", envvar="HACOORD_TOKEN_FILE", metavar="FILE",
              help="File holding the API token to send (or HACOORD_TOKEN; default: the local "
                   "cluster's admin token, .hacoord/admin.token, for members on this host).")
@click.option("--ca", envvar="HACOORD_CA", metavar="FILE",
              help="CA (PEM) to verify the members' HTTPS with (default: the local cluster's "
                   ".hacoord/ca.pem for members on this host, else the system's).")
@click.option("--cert", nargs=2, metavar="CERT KEY", default=None,
              help="Client certificate and key (PEM) for members that require mutual TLS "
                   "(or HACOORD_CERT and HACOORD_KEY).")
@json_option
@click.version_option(__version__, prog_name="hacoord")
def main(endpoints: str | None, timeout: float, deadline: float, token_file: str | None,
         ca: str | None, cert: tuple[str, str] | None) -> None:
    """hacoord: a highly-available partition coordinator.

    Manage data nodes, resources and their partitions, and read the routing table. Exit status 2
    means bad input, 1 means the cluster could not be reached."""
    state = _state()
    state.endpoints = endpoints
    state.timeout = timeout
    state.deadline = deadline
    state.token_file = token_file
    state.ca = ca
    state.cert = cert or None


#: Nodes per ``node add-batch`` request (the API's limit).
BATCH = 1000

#: ``hacoord status --check``'s exit status when something is unhealthy.
UNHEALTHY = 3


@main.command()
@click.option("--check", is_flag=True,
              help=f"Exit {UNHEALTHY} if anything is unhealthy: a node not up, a partition not "
                   "healthy, or the coordinator without a leader or a ready majority.")
@json_option
def status(check: bool) -> None:
    """The data plane first (nodes up, suspect, down; partitions healthy, under-replicated,
    leaderless, unavailable; the worst named), then every member's role, term, commit/applied
    index and revision, the leader, and rebalance progress (moves in flight and left, ETA,
    maintenance)."""
    state = _state()
    client = state.client()
    cluster_status = client.status()
    try:
        progress = client.rebalance_status()
    except HacoordError as exc:  # the members' status is still worth showing
        progress = {"error": str(exc)}
    state.out.status(cluster_status, progress)
    health = cluster_status.health
    if check and not (cluster_status.healthy and health is not None and health.healthy):
        raise SystemExit(UNHEALTHY)


# --- nodes ------------------------------------------------------------------------------------

@main.group()
def node() -> None:
    """Register, inspect, change and remove data nodes."""


@node.command("add")
@click.argument("node_id", metavar="ID")
@click.option("--address", required=True, metavar="HOST:PORT", help="Where the node serves.")
@click.option("--zone", help="Failure zone (replicas of a partition spread over zones).")
@click.option("--capacity", type=float, help="Relative weight (default 1).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", callback=_parse_tags,
              help="A tag (repeatable).")
@json_option
def node_add(node_id: str, address: str, zone: str | None, capacity: float | None,
             tags: dict[str, str]) -> None:
    """Register data node ID. Its agent must then start a session and heartbeat (or run
    'hacoord node keepalive ID'): a node nothing heartbeats for is judged down."""
    state = _state()
    result = state.client().node_add(node_id, address, zone=zone, capacity=capacity, tags=tags)
    state.out.written(result, f"node {node_id} added",
                      note=f"{node_id} will be judged down unless its agent starts a session and "
                           f"heartbeats (to try things out: hacoord node keepalive {node_id})")


@node.command("add-batch")
@click.argument("source", metavar="FILE", type=click.File("r"))
@json_option
def node_add_batch(source: Any) -> None:
    """Register every node listed in FILE ('-' for stdin): a JSON array of objects with "id",
    "address" and optionally "zone", "capacity", "tags". Sent 1,000 to a request; each node
    gets its own result. Exits 2 if any node was refused (the others are registered)."""
    try:
        specs = json.load(source)
    except ValueError as exc:
        raise CliError(f"{source.name}: not JSON ({exc})", 2) from None
    if not isinstance(specs, list) or not all(isinstance(n, dict) for n in specs) or not specs:
        raise CliError(f"{source.name}: expected a non-empty JSON array of node objects", 2)
    state = _state()
    results: list[Any] = []
    for at in range(0, len(specs), BATCH):
        results += state.client().node_add_batch(specs[at:at + BATCH])
    refused = [(spec.get("id"), r) for spec, r in zip(specs, results, strict=True)
               if isinstance(r, ApiError)]
    state.out.report(
        {"registered": len(specs) - len(refused),
         "refused": [{"id": i, "code": r.code, "message": r.message} for i, r in refused]},
        "\n".join([f"registered {len(specs) - len(refused)} of {len(specs)} nodes",
                    *(f"refused {i}: {r.code}: {r.message}" for i, r in refused)]))
    if refused:
        raise CliError(f"{len(refused)} of {len(specs)} nodes were refused", 2)


@node.command("remove")
@click.argument("node_id", metavar="ID")
@click.option("--force", is_flag=True, help="Remove even if it holds replicas (they are re-placed).")
@json_option
def node_remove(node_id: str, force: bool) -> None:
    """Remove data node ID."""
    state = _state()
    result = state.client().node_remove(node_id, force=force)
    moved = result.data.get("moved", 0)
    state.out.written(result, f"node {node_id} removed" + (f", {moved} replicas re-placed" if moved else ""))


@node.command("keepalive")
@click.argument("node_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds between heartbeats.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (default: until interrupted).")
def node_keepalive(node_ids: tuple[str, ...], interval: float, duration: float | None) -> None:
    """Speak for nodes that have no agent: start a session for each ID, then heartbeat for them
    every INTERVAL seconds until interrupted (or for DURATION). For trying hacoord out with
    hand-added nodes; a real data node runs NodeAgent."""
    state = _state()
    client = state.client()
    epochs = {node_id: client.node_start_session(node_id).epoch for node_id in node_ids}
    click.echo("keeping alive " + ", ".join(f"{n} (epoch {e})" for n, e in epochs.items())
               + "; Ctrl-C stops")
    beats = None if duration is None else max(1, round(duration / interval))
    sent = 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop
        while beats is None or sent < beats:
            time.sleep(interval)
            for node_id, epoch in epochs.items():
                client.node_heartbeat(node_id, epoch)
            sent += 1
    click.echo(f"stopped after {sent} heartbeats each")


@node.command("list")
@consistent_option
@json_option
def node_list(consistent: bool) -> None:
    """List data nodes."""
    state = _state()
    state.out.nodes(state.client().node_list(consistent=consistent))


@node.command("show")
@click.argument("node_id", metavar="ID")
@consistent_option
@json_option
def node_show(node_id: str, consistent: bool) -> None:
    """Show node ID and the replicas it holds."""
    state = _state()
    state.out.node(state.client().node_show(node_id, consistent=consistent))


@node.command("set-state")
@click.argument("node_id", metavar="ID")
@click.option("--status", "status_", type=click.Choice(["up", "down"]),
              help="Mark the node up or down (partition leadership follows).")
@click.option("--address", metavar="HOST:PORT")
@click.option("--zone")
@click.option("--capacity", type=float)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", callback=_parse_tags,
              help="Set a tag (repeatable).")
@click.option("--untag", "untags", multiple=True, metavar="KEY", help="Delete a tag (repeatable).")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=NUMBER", callback=_parse_metrics,
              help="Set a metric (repeatable).")
@json_option
def node_set_state(node_id: str, status_: str | None, address: str | None, zone: str | None,
                   capacity: float | None, tags: dict[str, str], untags: tuple[str, ...],
                   metrics: dict[str, float]) -> None:
    """Change node ID's status and metadata."""
    both = sorted(set(tags) & set(untags))
    if both:
        raise click.UsageError(f"--tag and --untag both name {', '.join(both)}")
    tag_changes: dict[str, str | None] = {**tags, **{k: None for k in untags}}
    if not (status_ or address or zone or capacity is not None or tag_changes or metrics):
        raise click.UsageError("nothing to change: give --status, --address, --zone, --capacity, "
                               "--tag, --untag or --metric")
    state = _state()
    result = state.client().node_set_state(node_id, status=status_, address=address, zone=zone,
                                           capacity=capacity, tags=tag_changes or None,
                                           metrics=dict(metrics) or None)
    state.out.written(result, f"node {node_id} updated")


# --- resources, partitions, routing -----------------------------------------------------------

@main.group()
def resource() -> None:
    """Create, list and delete resources."""


@resource.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), required=True, help="Number of partitions.")
@click.option("--replicas", type=click.IntRange(min=1), required=True, help="Copies of each partition.")
@click.option("--balance-metric", metavar="METRIC",
              help="Balance on this node metric (e.g. disk_bytes) instead of replica counts.")
@json_option
def resource_create(name: str, partitions: int, replicas: int, balance_metric: str | None) -> None:
    """Create resource NAME; the leader places its replicas."""
    state = _state()
    result = state.client().resource_create(name, partitions, replicas, balance_metric=balance_metric)
    state.out.written(result, f"resource {name} created: {partitions} partitions x {replicas} replicas")


@resource.command("update")
@click.argument("name")
@click.option("--replicas", type=click.IntRange(min=1),
              help="New replication factor (missing copies are added two-phase; extra ones dropped).")
@click.option("--balance-metric", metavar="METRIC",
              help="Balance on this node metric; '' for replica counts.")
@json_option
def resource_update(name: str, replicas: int | None, balance_metric: str | None) -> None:
    """Change resource NAME's replication factor or balance metric."""
    if replicas is None and balance_metric is None:
        raise click.UsageError("nothing to change: give --replicas or --balance-metric")
    state = _state()
    result = state.client().resource_update(name, replicas=replicas, balance_metric=balance_metric)
    info = result.resource
    summary = f"resource {name} updated"
    if info is not None:
        summary += f": {info.replication_factor} replicas, balance on {info.balance_metric or 'counts'}"
    state.out.written(result, summary)


@resource.command("list")
@consistent_option
@json_option
def resource_list(consistent: bool) -> None:
    """List resources."""
    state = _state()
    state.out.resources(state.client().resource_list(consistent=consistent))


@resource.command("delete")
@click.argument("name")
@json_option
def resource_delete(name: str) -> None:
    """Delete resource NAME and all its partitions."""
    state = _state()
    result = state.client().resource_delete(name)
    state.out.written(result, f"resource {name} deleted")


@main.group()
def partition() -> None:
    """Move partition replicas, hand over leadership, cancel pending moves."""


@partition.command("move")
@click.argument("resource_name", metavar="RESOURCE")
@click.argument("partition_index", metavar="PARTITION", type=click.IntRange(min=0))
@click.option("--from", "from_node", required=True, metavar="NODE", help="Node giving up the replica.")
@click.option("--to", "to_node", required=True, metavar="NODE", help="Node taking it.")
@click.option("--two-phase", is_flag=True,
              help="Add the new replica first; the old one goes when it reports caught up.")
@json_option
def partition_move(resource_name: str, partition_index: int, from_node: str, to_node: str,
                   two_phase: bool) -> None:
    """Move the replica of RESOURCE's PARTITION from one node to another (the epoch grows): at
    once, or --two-phase as the rebalancer does."""
    state = _state()
    result = state.client().partition_move(resource_name, partition_index, from_node, to_node,
                                           two_phase=two_phase)
    verb = "moving (waiting for its catch-up)" if two_phase else "moved"
    summary = f"{resource_name}/{partition_index} {verb} from {from_node} to {to_node}"
    if (route := result.partition) is not None:
        summary += f": replicas {','.join(route.replicas)}, leader {route.leader}, epoch {route.epoch}"
    state.out.written(result, summary)


@main.command()
@click.argument("resource_name", metavar="[RESOURCE]", required=False)
@consistent_option
@json_option
def routing(resource_name: str | None, consistent: bool) -> None:
    """Partition -> replicas, leader and epoch (of RESOURCE, or of all), with the revision."""
    state = _state()
    state.out.routing(state.client().routing(resource_name, consistent=consistent))


@main.command()
@click.option("--since", type=click.IntRange(min=0), default=None,
              help="Last revision already seen (default: only changes from now on).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N events.")
@json_option
def watch(since: int | None, count: int | None) -> None:
    """Print every change, in order, as it happens (Ctrl-C stops); rides through failovers."""
    state = _state()
    for seen, event in enumerate(state.client().watch(since), start=1):
        state.out.event(event)
        if count is not None and seen >= count:
            return


@main.command()
@click.argument("resource_name", metavar="RESOURCE")
@click.argument("partition_index", metavar="PARTITION", type=click.IntRange(min=0))
@consistent_option
@json_option
def explain(resource_name: str, partition_index: int, consistent: bool) -> None:
    """Why each replica of a partition is where it is, and whether a rebalance would move it."""
    state = _state()
    state.out.explanation(state.client().explain(resource_name, partition_index, consistent))


# --- serving (hacoord/cli/serve.py) -----------------------------------------------------------

from hacoord.cli.backup import backup, restore  # noqa: E402  (registered last, as the layout asks)
from hacoord.cli.member import member  # noqa: E402
from hacoord.cli.moves import register  # noqa: E402
from hacoord.cli.serve import cluster, serve  # noqa: E402
from hacoord.cli.tokens import audit, token  # noqa: E402

register(main, node, partition)
main.add_command(serve)
main.add_command(cluster)
main.add_command(member)
main.add_command(token)
main.add_command(audit)
main.add_command(backup)
main.add_command(restore)
