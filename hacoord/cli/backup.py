"""``hacoord backup FILE`` and ``hacoord restore FILE --data-dir DIR``.

A backup is taken through the API (an admin token), with every acknowledged write in it; a
restore works on a stopped member's host, offline, and builds the data directory of a member of
a new cluster (:mod:`hacoord.replication.restore`).
"""

from __future__ import annotations

from pathlib import Path

import click

from hacoord.cli.common import CliError, cli_state, json_option
from hacoord.core.backup import BackupError, read_header


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
def backup(path: str, force: bool) -> None:
    """Save a backup of the whole cluster state to FILE (mode 0600: it holds the API tokens'
    digests). Every write acknowledged before the command is in it; the file names its
    revision, cluster id, state digest and schema, and is compressed and checksummed. Needs an
    admin token."""
    from hacoord.replication.storage import replace_atomically  # written like member files

    target = Path(path)
    if target.exists() and not force:
        raise CliError(f"{path} exists: give another name, or --force", 2)
    state = cli_state()
    data = state.client().backup()
    try:
        header, _ = read_header(data)
    except BackupError as exc:
        raise CliError(f"the cluster's answer is not a usable backup: {exc}", 1) from None
    try:
        replace_atomically(target, data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", 2) from None
    summary = {**header.to_dict(), "file": str(target), "bytes": len(data)}
    state.out.report(summary, f"backup of cluster {header.cluster_id or '(unnamed)'} at revision "
                              f"{header.revision}: {len(data):,} bytes, digest {header.digest}, "
                              f"written to {path}")


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, exists=True))
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="The new member's data directory (must hold no member data).")
@click.option("--cluster-id", metavar="ID",
              help="The new cluster's id, as the restore of its first member printed it (it "
                   "names the backup it was made from); without it, a new cluster is named.")
@json_option
def restore(path: str, data_dir: str, cluster_id: str | None) -> None:
    """Build the data directory of a member of a NEW cluster from backup FILE.

    Restore every first member of the new cluster (at least a majority) from the same FILE with
    the same --cluster-id, then start them with their peers. The new cluster has its own id, so
    members and clients of the source cluster refuse it; its state, tokens included, is the
    backup's, with the same digest."""
    from hacoord.replication.restore import RestoreError, read_backup
    from hacoord.replication.restore import restore as restore_into

    try:
        done = restore_into(read_backup(Path(path)), Path(data_dir), cluster_id)
    except RestoreError as exc:
        raise CliError(str(exc), 2) from None
    except OSError as exc:
        raise CliError(f"cannot restore into {data_dir}: {exc.strerror or exc}", 1) from None
    source = done.backup
    summary = {"backup": source.to_dict(), "data_dir": data_dir, "cluster_id": done.cluster_id,
               "raft_index": done.index, "raft_term": done.term}
    state = cli_state()
    state.out.report(summary, f"restored revision {source.revision} (digest {source.digest}) of "
                              f"cluster {source.cluster_id or '(unnamed)'} into {data_dir} as a "
                              f"member of the new cluster {done.cluster_id}; restore the other "
                              f"members with --cluster-id {done.cluster_id}, then start them")
