"""Snapshot files: the state machine plus the Raft bookkeeping PySyncObj needs, as JSON.

PySyncObj's default full dump is a pickle; hacoord writes its own format instead (through the
library's ``serializer``/``deserializer`` hooks) so that a snapshot is readable, versioned, never
unpickled, and fsynced before it replaces the previous one. The Raft part is the last two applied
log entries and the member set, exactly what the library hands over.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from hacoord.core.codec import canonical_json
from hacoord.core.model import ClusterState

SNAPSHOT_FORMAT = "hacoord-snapshot"
SNAPSHOT_VERSION = 1

Entry = tuple[bytes, int, int]


def _entry_out(entry: Entry) -> list[Any]:
    command, index, term = entry
    return [base64.b64encode(bytes(command)).decode(), index, term]


def _entry_in(data: list[Any]) -> Entry:
    return base64.b64decode(data[0]), int(data[1]), int(data[2])


def write_snapshot(path: str | Path, state: ClusterState, raft_data: tuple[Any, ...]) -> None:
    """Write ``state`` and PySyncObj's ``raft_data`` (last entry, previous entry, cluster) to
    ``path`` and fsync it. The library renames it into place afterwards."""
    last, prev, cluster = raft_data
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "raft": {
            "last": _entry_out(last),
            "prev": _entry_out(prev),
            "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
        },
        "state": state.to_dict(),
    }
    with open(path, "wb") as f:
        f.write(canonical_json(document))
        f.flush()
        os.fsync(f.fileno())


def read_snapshot(path: str | Path) -> tuple[ClusterState, tuple[Entry, Entry, list[str]]]:
    """Load a snapshot. Raises ``ValueError`` (or ``OSError``) if it is missing or malformed."""
    with open(path, "rb") as f:
        document = json.loads(f.read())
    if document.get("format") != SNAPSHOT_FORMAT or document.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"{path}: not a hacoord snapshot of version {SNAPSHOT_VERSION}")
    raft = document["raft"]
    state = ClusterState.from_dict(document["state"])
    return state, (_entry_in(raft["last"]), _entry_in(raft["prev"]), list(raft["cluster"]))
