"""``hacoord member``: the coordinator's members (``list``, ``add``, ``remove``, through the API)
and operations on a member's own files (``rejoin``, ``secret``, ``certs``).

``hacoord member rejoin --data-dir DIR`` is the documented way out when a member refuses to
start from damaged files (see :mod:`hacoord.replication.rejoin`): the member's journal and
snapshot move aside, and at its next start it catches up from the other members, taking no part
in elections until it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from hacoord.cli.common import CliError, json_option
from hacoord.cli.common import cli_state as _state
from hacoord.cli.output import table

if TYPE_CHECKING:  # the client is loaded only by the commands that call the API
    from hacoord.client import MembershipChange


@click.group()
def member() -> None:
    """The coordinator's members, and a member's own files (run on the member's host)."""


@member.command("list")
@json_option
def member_list() -> None:
    """The coordinator's members: id, API URL, Raft address, and which one leads (as the member
    that answers knows them)."""
    state = _state()
    members = state.client().member_list()
    if state.out.as_json:
        state.out.document([m.to_dict() for m in members])
        return
    click.echo(table(["ID", "API", "RAFT", "LEADER"], [
        [m.id, m.api_url, m.raft_address, "*" if m.leader else ""] for m in members]))


def _show_change(result: MembershipChange, done: str, already: str) -> None:
    state = _state()
    if state.out.as_json:
        state.out.document(result.to_dict())
        return
    click.echo(done if result.changed else already)
    click.echo(table(["ID", "API", "RAFT", "LEADER"], [
        [m.id, m.api_url, m.raft_address, "*" if m.leader else ""] for m in result.members]))


@member.command("add")
@click.argument("member_id", metavar="ID")
@click.option("--raft", "raft_address", required=True, metavar="HOST:PORT",
              help="The new member's Raft peer address.")
@click.option("--api", "api_url", required=True, metavar="URL",
              help="The URL clients and members reach the new member's API at.")
@json_option
def member_add(member_id: str, raft_address: str, api_url: str) -> None:
    """Add the coordinator member ID (admin token). Start it first, with an empty data
    directory and the current members as its peers; it catches up from the leader once added.
    Refused if it does not answer on its Raft port, or while the members the leader reaches
    would be no majority of the new membership: remove a dead member first."""
    result = _state().client().member_add(member_id, raft_address, api_url)
    _show_change(result, f"added {member_id}; it catches up from the leader now",
                 f"{member_id} already is a member")


@member.command("remove")
@click.argument("member_id", metavar="ID")
@json_option
def member_remove(member_id: str) -> None:
    """Remove the coordinator member ID (admin token); the leader hands over first when it is
    the one. Stop the removed member afterwards, and delete its data directory before the host
    serves another member."""
    result = _state().client().member_remove(member_id)
    _show_change(result, f"removed {member_id}; stop its process now",
                 f"{member_id} is not a member")


@member.command("rejoin")
@click.option("--data-dir", required=True, envvar="HACOORD_DATA_DIR",
              type=click.Path(file_okay=False), help="The stopped member's data directory.")
@click.option("--force", is_flag=True,
              help="Rejoin even if the member's vote record cannot be read, or its data was "
                   "lost altogether (its directory removed).")
def member_rejoin(data_dir: str, force: bool) -> None:
    """Move a stopped member's journal and snapshot aside so that it catches up from the others.

    Use it when the member refuses to start from damaged files, and only while the other members
    form a quorum: they hold the data this member lost. The files are kept in DIR/rejoin-<time>.
    """
    from hacoord.replication.rejoin import RejoinError, rejoin  # server-side code, loaded here only

    try:
        aside = rejoin(Path(data_dir), force=force)
    except RejoinError as exc:
        raise CliError(str(exc), 2) from None
    except OSError as exc:
        raise CliError(f"cannot move the member's files aside: {exc}", 1) from None
    done = "marked this member, whose data was lost, as rejoining" if aside is None else \
        f"moved this member's journal and snapshot to {aside}"
    click.echo(f"{done}; start the member again: it catches up from the other members and votes "
               "again once it has")


@member.command("secret")
@click.argument("path", type=click.Path(dir_okay=False))
def member_secret(path: str) -> None:
    """Write a new cluster secret to PATH (mode 0600; refused if PATH exists): every member of a
    cluster is started with the same one (--secret-file); it authenticates the Raft peer port."""
    from hacoord.server.settings import ensure_secret  # server-side code, loaded here only

    if Path(path).exists():
        raise CliError(f"{path} exists: a secret is never overwritten", 2)
    try:
        ensure_secret(Path(path))
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror}", 2) from None
    click.echo(f"wrote a new cluster secret to {path}; give every member this file (--secret-file)")


@member.command("certs")
@click.option("--ca-dir", required=True, type=click.Path(file_okay=False),
              help="Where the cluster's CA lives (ca.pem, ca.key; made if absent). Keep ca.key "
                   "off the members.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where the member's tls.pem and tls.key are written (kept if present).")
@click.option("--id", "member_id", required=True, help="The member's id (the certificate's name).")
@click.option("--host", "hosts", multiple=True, required=True,
              help="A DNS name or IP address clients and members reach it by (repeat).")
def member_certs(ca_dir: str, out_dir: str, member_id: str, hosts: tuple[str, ...]) -> None:
    """Make (or keep) a CA in --ca-dir and a certificate for one member signed by it, good for
    serving the API and for the member's own calls to the others (mutual TLS). For clusters
    without a CA of their own; give members --tls-cert, --tls-key and --tls-ca (ca.pem)."""
    from hacoord.server.certs import ensure_ca, issue  # server-side code, loaded here only

    try:
        ca = ensure_ca(Path(ca_dir), "hacoord cluster CA")
        cert, key = issue(ca, Path(out_dir), member_id, list(hosts))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot make the certificates: {exc}", 2) from None
    click.echo(f"CA {ca[0]}; {member_id}: certificate {cert}, key {key} (for {', '.join(hosts)})")
