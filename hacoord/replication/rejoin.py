"""``hacoord member rejoin``: the way out when a member refuses to start from damaged files.

A member whose journal or snapshot is damaged must not start from them (it would serve, vote and
acknowledge with less than it had acknowledged). The operator's remedy, while the other members
still form a quorum, is to move this member's files aside and let it catch up from them:

* the journal and the snapshot (and staging files) move into ``DATA_DIR/rejoin-<time>/``, kept
  for inspection, never deleted;
* with ``force``, a member whose data is lost altogether (its directory removed while it ran:
  it stops, see :class:`~hacoord.replication.raft.RaftReplicator`) is marked the same way in
  its empty directory;
* the vote record keeps the term and vote when it can be read (so the member cannot vote twice
  in a term), drops the commit index, and is marked ``rejoining``: until the member has caught
  up with a leader it neither votes nor stands for election, because its empty log could
  otherwise elect a leader lacking entries it had acknowledged
  (:class:`~hacoord.replication.raft_safety.SafeSyncObj` enforces this).

The member must be stopped: :func:`member_lock` is the lock a running member holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from hacoord.replication.driver import JOURNAL_FILE, SNAPSHOT_FILE
from hacoord.replication.storage import DIR_MODE, ensure_private_dir, fsync_dir, replace_atomically

LOCK_FILE = "member.lock"


class RejoinError(Exception):
    """The member's files cannot be moved aside (it runs, or its vote record is unreadable)."""


def member_lock(data_dir: Path) -> int:
    """Take the data directory's exclusive lock (held for the life of a member process).
    Returns the descriptor; raises ``BlockingIOError`` if another process holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def rejoin(data_dir: Path, force: bool = False) -> Path | None:
    """Move the member's Raft files aside and mark it rejoining; return where they went (None
    when, with ``force``, there were none: the member's data was lost)."""
    data_dir = Path(data_dir)
    if not (data_dir / JOURNAL_FILE).exists() and not (data_dir / SNAPSHOT_FILE).exists() \
            and not (data_dir / (JOURNAL_FILE + ".meta")).exists():
        if not force:
            raise RejoinError(f"{data_dir} holds no member data (no {JOURNAL_FILE}, "
                              f"{SNAPSHOT_FILE}); if this member's data was lost (its directory "
                              "removed), --force makes it catch up from the others before it votes")
        if data_dir.exists() and any(p.name != LOCK_FILE for p in data_dir.iterdir()):
            raise RejoinError(f"{data_dir} holds no member data but is not empty: not a "
                              "member's data directory? (a member whose data was lost is "
                              "rejoined in an empty or new directory)")
        ensure_private_dir(data_dir)
        lost = True
    else:
        lost = False
    try:
        lock = member_lock(data_dir)
    except BlockingIOError:
        raise RejoinError(f"a member process is running on {data_dir}: stop it first") from None
    try:
        meta_path = data_dir / (JOURNAL_FILE + ".meta")
        meta = _read_vote(meta_path, force)
        aside = None if lost else data_dir / time.strftime("rejoin-%Y%m%dT%H%M%S", time.gmtime())
        if aside is not None:
            aside.mkdir(mode=DIR_MODE)
            for name in sorted(os.listdir(data_dir)):
                if name.startswith((JOURNAL_FILE, SNAPSHOT_FILE)):
                    os.replace(data_dir / name, aside / name)
            fsync_dir(aside)
        record = {"term": meta.get("term", 0), "voted_for": meta.get("voted_for"),
                  "rejoining": True}
        replace_atomically(meta_path, json.dumps(record, sort_keys=True).encode())
        fsync_dir(data_dir)
        return aside
    finally:
        os.close(lock)


def _read_vote(meta_path: Path, force: bool) -> dict[str, object]:
    try:
        meta = json.loads(meta_path.read_bytes())
        if isinstance(meta, dict) and isinstance(meta.get("term", 0), int):
            return meta
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        pass
    if force:
        return {}
    raise RejoinError(f"{meta_path} (the vote record) is unreadable; the member could then vote "
                      "twice in a term it already voted in. With --force it rejoins without it "
                      "(it still votes for nobody until it has caught up)")
