"""``hacoord restore``: the data directory of a member of a new cluster, built from a backup.

The backup's state (:mod:`hacoord.core.backup`) becomes the member's snapshot, and its journal
holds the two entries that snapshot covers, so the member starts as if it had applied a log up to
there and compacted it. Every member of the new cluster is restored from the same backup with
the same cluster id, and they are then started with their peers: with identical logs, any of them
can lead. (Restore at least a majority of the first members: an empty member beside them could
otherwise win an election with another empty one and overwrite the restored log.)

Details that keep the new cluster safe:

* **A new cluster id**, drawn by the first restore and given to the others: members of the
  source cluster and of the restored one refuse each other on the peer port, and clients holding
  the source's id refuse the copy. The id ends with the backup's digest, and a restore refuses
  an id made from another backup: members restored from different backups would otherwise hold
  logs that look alike to Raft (same two entries) over different states.
* **The term.** The entries are written in the term of the latest leader-only decision in the
  state (``leader_term``), and the vote record starts there: the new cluster's first leader has a
  higher term than any decision in the state, so its own decisions are not refused as stale, and
  log terms never go down.
* **Nothing is overwritten.** A directory that holds a journal, a snapshot or a vote record is
  refused.

The state is restored exactly (the digest the backup names is checked), including the API tokens
and every partition's fencing epoch. Data nodes must start new sessions with the new cluster.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from hacoord.core.backup import BackupHeader, decode_backup
from hacoord.core.model import valid_id
from hacoord.replication.driver import JOURNAL_FILE, SNAPSHOT_FILE
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.snapshot import encode_snapshot
from hacoord.replication.storage import ensure_private_dir, replace_atomically

NO_OP = struct.pack("B", 1)  # PySyncObj's no-op entry (_COMMAND_TYPE.NO_OP)
FIRST_INDEX = 1
DIGEST_PART = 12  # hex digits of the backup's digest that end a restored cluster's id


class RestoreError(Exception):
    """The backup cannot be restored there (unreadable, or the directory is in use)."""


@dataclass(frozen=True)
class Restored:
    """What a restore wrote: the backup's header, the new cluster's id, the Raft index and term
    the member starts from."""

    backup: BackupHeader
    cluster_id: str
    index: int
    term: int


def restore(raw: bytes, data_dir: Path, cluster_id: str | None = None) -> Restored:
    """Build a member's data directory in ``data_dir`` from the backup ``raw``, as a member of
    the new cluster ``cluster_id`` (None: a new one, for the first member). Raises
    :class:`RestoreError` (or ``OSError`` if the directory cannot be written)."""
    if cluster_id is not None and not valid_id(cluster_id):
        raise RestoreError(f"malformed cluster id {cluster_id!r}")
    try:
        header, state = decode_backup(raw)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    suffix = "-" + header.digest[:DIGEST_PART]
    if cluster_id is None:
        cluster_id = secrets.token_hex(8) + suffix
    elif not cluster_id.endswith(suffix):
        raise RestoreError(f"cluster id {cluster_id!r} was not made from this backup (digest "
                           f"{header.digest}): restore every member from the same file, with the "
                           "id the first restore printed")
    data_dir = Path(data_dir)
    taken = [name for name in (JOURNAL_FILE, JOURNAL_FILE + ".meta", SNAPSHOT_FILE)
             if (data_dir / name).exists()]
    if taken:
        raise RestoreError(f"{data_dir} already holds member data ({', '.join(taken)}): restore "
                           "into a new, empty directory")
    ensure_private_dir(data_dir)
    state.cluster_id = cluster_id
    term = max(1, state.leader_term)
    prev, last = (NO_OP, FIRST_INDEX, term), (NO_OP, FIRST_INDEX + 1, term)
    # The snapshot first, then the journal: a member never starts from a journal alone that
    # claims a term without the state it belongs to.
    replace_atomically(data_dir / SNAPSHOT_FILE, encode_snapshot(state, (last, prev, [])))
    journal = HacoordJournal(str(data_dir / JOURNAL_FILE), durable=True)
    try:
        journal.replace([prev, last])
        journal.setRaftCommitIndex(last[1])
        journal.setCurrentTerm(term, None)
        journal.sync()
    finally:
        journal.abandon()
    return Restored(header, cluster_id, last[1], term)


def read_backup(path: Path) -> bytes:
    """The bytes of a backup file (``OSError`` if unreadable)."""
    with open(path, "rb") as f:
        return f.read()


__all__ = ["RestoreError", "Restored", "read_backup", "restore", "NO_OP"]
