"""Snapshot files: the state machine plus the Raft bookkeeping PySyncObj needs, checksummed.

PySyncObj's default full dump is a pickle; hacoord writes its own format instead, so that a
snapshot is versioned, compressed, never unpickled, and refused when damaged. Layout::

    HACOORD-SNAPSHOT-2\\n
    {"body_bytes": N, "cluster": [...], "codec": "zlib", "last": [cmd, index, term],
     "prev": [cmd, index, term], "version": 2}\\n          <- one line of canonical JSON
    <N bytes: the state's canonical JSON, zlib-compressed>
    <32 bytes: blake2b-256 of everything above>

The digest covers the header too, so the index and term a snapshot claims to cover are checked
with its content. The Raft part is the last two applied log entries (``last`` and ``prev``) and
the member set, exactly what the library hands over, and the membership in force at ``last``
(``members``: id, Raft address and API URL of each; absent from snapshots of earlier
releases). Files of format 1 (plain JSON, no checksum) written by earlier releases are still
read, with a warning that nothing verified them
(refusing them would leave a cluster upgraded from such a release with no member able to start);
the next compaction rewrites them in format 2.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hacoord.core.codec import canonical_json, loads_state
from hacoord.core.framing import FrameError, frame, unframe
from hacoord.core.model import ClusterState, NewerSchema
from hacoord.replication.base import MemberInfo
from hacoord.replication.memberset import MembershipError, config_from_rows, config_rows

MAGIC = b"HACOORD-SNAPSHOT-2\n"
SNAPSHOT_VERSION = 2
LEGACY_FORMAT = "hacoord-snapshot"  # format 1: one JSON document

log = logging.getLogger(__name__)
COMPRESSION_LEVEL = 3

Entry = tuple[bytes, int, int]


class SnapshotError(ValueError):
    """A snapshot file is malformed, damaged or of a format this build cannot read."""


class NewerSnapshot(SnapshotError):
    """A snapshot whose state a newer hacoord wrote: intact, but not for this build."""


@dataclass(frozen=True)
class SnapshotHeader:
    """What a snapshot covers: its last two log entries and the member set."""

    last: Entry
    prev: Entry
    cluster: tuple[str, ...]
    #: The membership in force at ``last`` (None: written before snapshots carried it).
    members: tuple[MemberInfo, ...] | None = None

    @property
    def index(self) -> int:
        return self.last[1]

    @property
    def term(self) -> int:
        return self.last[2]


def _entry_out(entry: Entry) -> list[Any]:
    command, index, term = entry
    return [base64.b64encode(bytes(command)).decode(), int(index), int(term)]


def _entry_in(data: Any) -> Entry:
    if not (isinstance(data, list) and len(data) == 3 and isinstance(data[0], str)
            and isinstance(data[1], int) and isinstance(data[2], int)):
        raise SnapshotError(f"malformed log entry {data!r}")
    return base64.b64decode(data[0]), data[1], data[2]


def encode_snapshot(state: ClusterState, raft_data: tuple[Any, ...],
                    members: tuple[MemberInfo, ...] | None = None) -> bytes:
    """The file's bytes for ``state`` and PySyncObj's ``raft_data`` (last, prev, cluster), with
    the membership in force at the last entry."""
    last, prev, cluster = raft_data
    body = zlib.compress(canonical_json(state.to_dict()), COMPRESSION_LEVEL)
    header: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "codec": "zlib",
        "last": _entry_out(last),
        "prev": _entry_out(prev),
        "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
    }
    if members:
        header["members"] = config_rows(members)
    return frame(MAGIC, header, body)


def _split(raw: bytes) -> tuple[SnapshotHeader, bytes]:
    """Check the digest; return the header and the compressed body."""
    try:
        header, body = unframe(raw, MAGIC)
    except FrameError as exc:
        raise SnapshotError(str(exc)) from None
    if header.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported snapshot version in header {str(header)[:80]!r}")
    if header.get("codec") != "zlib":
        raise SnapshotError("malformed header")
    cluster = header.get("cluster", [])
    if not isinstance(cluster, list) or not all(isinstance(c, str) for c in cluster):
        raise SnapshotError("malformed member list")
    members = None
    if "members" in header:
        try:
            members = config_from_rows(header["members"])
        except MembershipError as exc:
            raise SnapshotError(str(exc)) from None
    return (SnapshotHeader(_entry_in(header.get("last")), _entry_in(header.get("prev")),
                           tuple(cluster), members), body)


def _decode_state(body: bytes) -> ClusterState:
    try:
        # In pieces: a follower decodes a received snapshot on a worker thread (engine.py).
        return ClusterState.from_dict(loads_state(zlib.decompress(body).decode()))
    except NewerSchema as exc:
        raise NewerSnapshot(str(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, zlib.error) as exc:
        raise SnapshotError(f"unreadable state ({type(exc).__name__}: {exc})") from None


def _read_legacy(raw: bytes) -> tuple[SnapshotHeader, ClusterState]:
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise SnapshotError(f"not a hacoord snapshot ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != LEGACY_FORMAT \
            or document.get("version") != 1:
        raise SnapshotError("not a hacoord snapshot")
    raft = document.get("raft") or {}
    header = SnapshotHeader(_entry_in(raft.get("last")), _entry_in(raft.get("prev")),
                            tuple(raft.get("cluster", [])))
    try:
        state = ClusterState.from_dict(document["state"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"unreadable state ({type(exc).__name__}: {exc})") from None
    log.warning("read a format-1 snapshot (index %d): that format has no checksum, so nothing "
                "verified it; the next compaction rewrites it in format 2", header.last[1])
    return header, state


def decode_snapshot(raw: bytes, with_state: bool = True) -> tuple[SnapshotHeader, ClusterState | None]:
    """Check and decode a snapshot's bytes; raises :class:`SnapshotError`. Without
    ``with_state`` only the header is returned (the checksum is still verified)."""
    if raw.startswith(MAGIC):
        header, body = _split(raw)
        return header, (_decode_state(body) if with_state else None)
    if raw.lstrip().startswith(b"{"):
        header, state = _read_legacy(raw)
        return header, (state if with_state else None)
    raise SnapshotError("not a hacoord snapshot (bad header)")


def read_snapshot(path: str | Path, with_state: bool = True) -> tuple[SnapshotHeader, ClusterState | None]:
    """Read and check the snapshot at ``path``. Raises ``OSError`` or :class:`SnapshotError`."""
    with open(path, "rb") as f:
        return decode_snapshot(f.read(), with_state)
