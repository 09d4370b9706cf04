"""CLI commands that move data: cordon, drain (with progress), rebalance runs, throttles,
maintenance mode, leadership handover. Registered on the ``hacoord`` command by
:func:`register`."""

from __future__ import annotations

import time
from typing import Any

import click

from hacoord.cli.common import CliError, CliState, consistent_option, json_option
from hacoord.cli.common import cli_state as _state
from hacoord.cli.output import progress_line


@click.command("cordon")
@click.argument("node_id", metavar="ID")
@click.option("--reason", default="", help="Why (recorded on the node).")
@json_option
def cordon(node_id: str, reason: str) -> None:
    """Cordon node ID: it keeps its replicas but gets no new ones (nor new leaderships)."""
    state = _state()
    result = state.client().node_set_state(node_id, admin="cordoned", admin_reason=reason)
    state.out.written(result, f"node {node_id} cordoned")


@click.command("uncordon")
@click.argument("node_id", metavar="ID")
@json_option
def uncordon(node_id: str) -> None:
    """Make node ID active again (takes replicas; stops a drain)."""
    state = _state()
    result = state.client().node_set_state(node_id, admin="active", admin_reason="")
    state.out.written(result, f"node {node_id} active")


@click.command("drain")
@click.argument("node_id", metavar="ID")
@click.option("--reason", default="", help="Why (recorded on the node).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Report progress until the node holds nothing.")
@click.option("--remove", is_flag=True, help="Remove the node once it is empty (implies --wait).")
@click.option("--timeout", "wait_timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, help="Give up waiting after this many seconds (exit 1).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between progress reports.")
@json_option
def drain(node_id: str, reason: str, wait: bool, remove: bool, wait_timeout: float,
          interval: float) -> None:
    """Drain node ID: every replica it holds moves off (two-phase, under the throttles); report
    progress until it is empty, then optionally remove it."""
    state = _state()
    client = state.client()
    result = client.node_set_state(node_id, admin="draining", admin_reason=reason)
    if not (wait or remove):
        state.out.written(result, f"node {node_id} draining")
        return
    start = time.monotonic()
    initial = None
    deadline = start + wait_timeout
    while True:
        node = client.node_show(node_id, consistent=True)
        held = sum(not r.catching_up for r in node.replicas)
        initial = held if initial is None else max(initial, held)
        if not state.as_json:
            click.echo(progress_line(node_id, held, initial, node.moves, time.monotonic() - start))
        if held == 0 and node.moves == 0:
            break
        if time.monotonic() + interval > deadline:
            raise CliError(f"node {node_id} still holds {held} replicas after {wait_timeout:g}s; "
                           "see 'hacoord rebalance status'", 1)
        time.sleep(interval)
    if remove:
        result = client.node_remove(node_id)
        state.out.written(result, f"node {node_id} drained and removed")
    else:
        state.out.written(result, f"node {node_id} drained: it holds nothing and can be removed")


@click.group("rebalance", invoke_without_command=True)
@click.option("--dry-run", is_flag=True, help="Show the plan; apply nothing.")
@click.option("--exclude", multiple=True, metavar="NODE", help="Plan as if NODE were drained (dry run).")
@consistent_option
@json_option
@click.pass_context
def rebalance(ctx: click.Context, dry_run: bool, exclude: tuple[str, ...], consistent: bool) -> None:
    """Apply the rebalance plan: the leader moves replicas two-phase under the throttles until
    balance is restored (see 'hacoord rebalance status'). With --dry-run: the moves, their count
    against the lower bound, balance before and after, the ETA; nothing applied."""
    if ctx.invoked_subcommand is not None:
        return
    state = _state()
    if dry_run:
        state.out.plan(state.client().rebalance_plan(exclude, consistent=consistent))
        return
    if exclude:
        raise click.UsageError("--exclude plans a dry run; drain the node to apply it "
                               "('hacoord node drain NODE')")
    answer = state.client().rebalance_start()
    state.out.rebalance(answer["progress"], started=answer["run"])


@rebalance.command("status")
@consistent_option
@json_option
def rebalance_status(consistent: bool) -> None:
    """Progress: the run, pending moves and their age, the moves left, the ETA, maintenance."""
    state = _state()
    state.out.rebalance(state.client().rebalance_status(consistent=consistent))


@rebalance.command("cancel")
@click.option("--cancel-moves", is_flag=True, help="Also abandon the moves in flight.")
@json_option
def rebalance_cancel(cancel_moves: bool) -> None:
    """End the running rebalance (moves in flight complete unless --cancel-moves)."""
    state = _state()
    answer = state.client().rebalance_cancel(cancel_moves)
    if state.as_json:
        state.out.document(answer)
    else:
        click.echo(f"rebalance {answer['run']['id']} cancelled; "
                   f"{answer['moves_cancelled']} moves abandoned (revision {answer['revision']})")


@rebalance.command("set")
@click.option("--max-moves", type=click.IntRange(1, 10_000), help="Moves in flight in the cluster.")
@click.option("--max-moves-per-node", type=click.IntRange(1, 10_000),
              help="Moves in flight per node (as source or target).")
@click.option("--rereplicate-after", type=click.FloatRange(0, 1e7), metavar="SECONDS",
              help="How long a down node's replicas wait before they are re-created elsewhere.")
@json_option
def rebalance_set(max_moves: int | None, max_moves_per_node: int | None,
                  rereplicate_after: float | None) -> None:
    """Set the rebalance throttles and the re-replication delay."""
    if max_moves is None and max_moves_per_node is None and rereplicate_after is None:
        raise click.UsageError("nothing to change: give --max-moves, --max-moves-per-node or "
                               "--rereplicate-after")
    state = _state()
    settings = state.client().rebalance_configure(max_moves=max_moves,
                                                  max_moves_per_node=max_moves_per_node,
                                                  rereplicate_after=rereplicate_after)
    _settings_written(state, settings)


@click.group("maintenance")
def maintenance() -> None:
    """Freeze (on) or resume (off) rebalancing; no move starts while frozen."""


@maintenance.command("on")
@click.argument("reason")
@json_option
def maintenance_on(reason: str) -> None:
    """Freeze rebalancing, recording REASON."""
    if not reason.strip():
        raise click.UsageError("REASON must not be empty")
    state = _state()
    _settings_written(state, state.client().rebalance_configure(maintenance=True, reason=reason))


@maintenance.command("off")
@json_option
def maintenance_off() -> None:
    """Resume rebalancing."""
    state = _state()
    _settings_written(state, state.client().rebalance_configure(maintenance=False))


def _settings_written(state: CliState, settings: dict[str, Any]) -> None:
    if state.as_json:
        state.out.document(settings)
        return
    frozen = settings["maintenance"]
    click.echo(f"max moves {settings['max_moves']}, per node {settings['max_moves_per_node']}, "
               f"re-replicate after {settings['rereplicate_after']:g}s, maintenance: "
               + (f"on ({frozen['reason']})" if frozen else "off"))


@click.command("leader")
@click.argument("resource_name", metavar="RESOURCE")
@click.argument("partition_index", metavar="PARTITION", type=click.IntRange(min=0))
@click.argument("node_id", metavar="NODE")
@json_option
def partition_leader(resource_name: str, partition_index: int, node_id: str) -> None:
    """Hand the leadership of RESOURCE's PARTITION to its replica on NODE (the epoch grows)."""
    state = _state()
    result = state.client().partition_set_leader(resource_name, partition_index, node_id)
    route = result.partition
    state.out.written(result, f"{resource_name}/{partition_index} led by {node_id}"
                      + (f", epoch {route.epoch}" if route else ""))


@click.command("cancel-move")
@click.argument("resource_name", metavar="RESOURCE")
@click.argument("partition_index", metavar="PARTITION", type=click.IntRange(min=0))
@json_option
def partition_cancel_move(resource_name: str, partition_index: int) -> None:
    """Abandon the pending move of RESOURCE's PARTITION."""
    state = _state()
    result = state.client().partition_cancel_move(resource_name, partition_index)
    state.out.written(result, f"{resource_name}/{partition_index}: move cancelled")


def register(main: click.Group, node: click.Group, partition: click.Group) -> None:
    """Add these commands to the ``hacoord`` command and its ``node``/``partition`` groups."""
    for command in (cordon, uncordon, drain):
        node.add_command(command)
    for command in (partition_leader, partition_cancel_move):
        partition.add_command(command)
    main.add_command(rebalance)
    main.add_command(maintenance)
