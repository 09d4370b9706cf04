"""``hacoord member``: operations on a coordinator member's own data directory.

``hacoord member rejoin --data-dir DIR`` is the documented way out when a member refuses to
start from damaged files (see :mod:`hacoord.replication.rejoin`): the member's journal and
snapshot move aside, and at its next start it catches up from the other members, taking no part
in elections until it has.
"""

from __future__ import annotations

from pathlib import Path

import click

from hacoord.cli.common import CliError


@click.group()
def member() -> None:
    """A coordinator member's own data (run on the member's host)."""


@member.command("rejoin")
@click.option("--data-dir", required=True, envvar="HACOORD_DATA_DIR",
              type=click.Path(file_okay=False, exists=True), help="The stopped member's data directory.")
@click.option("--force", is_flag=True,
              help="Rejoin even if the member's vote record cannot be read.")
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
    click.echo(f"moved this member's journal and snapshot to {aside}; start the member again: it "
               "catches up from the other members and votes again once it has")
