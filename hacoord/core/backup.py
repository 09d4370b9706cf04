"""Backup files: the whole state at one revision, compressed and checksummed, with its schema.

A backup is what ``GET /v1/backup`` answers and ``hacoord backup`` saves; ``hacoord restore``
builds the members of a new cluster from it. It is a frame (:mod:`hacoord.core.framing`) whose
header says what the body holds::

    HACOORD-BACKUP-1\\n
    {"body_bytes": N, "cluster_id": "...", "codec": "zlib", "digest": "...", "format": 1,
     "revision": R, "schema": 1, "time": T}\\n
    <N bytes: the state's canonical JSON, zlib-compressed>
    <32 bytes: blake2b-256 of everything above>

``digest`` is :func:`hacoord.core.codec.digest` of the state (cluster id left out), checked
again after decoding, so a restored cluster can be compared with its source at ``revision``.
``time`` is the leader time of the last change in it. A state of a newer schema than this build
reads is refused with a message that says so.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from hacoord.core.codec import canonical_json, digest, digest_of
from hacoord.core.framing import FrameError, frame, unframe
from hacoord.core.model import SCHEMA_VERSION, ClusterState

MAGIC = b"HACOORD-BACKUP-1\n"
FORMAT = 1
COMPRESSION_LEVEL = 6


class BackupError(ValueError):
    """Not a backup, a damaged one, or one this build cannot read."""


@dataclass(frozen=True)
class BackupHeader:
    """What a backup holds: the state of cluster ``cluster_id`` at ``revision``."""

    revision: int
    cluster_id: str
    digest: str
    schema: int
    time: float
    body_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "cluster_id": self.cluster_id, "digest": self.digest,
                "schema": self.schema, "time": self.time, "body_bytes": self.body_bytes}


def encode_backup(state: ClusterState) -> bytes:
    """A backup of ``state`` as it is now."""
    data = state.to_dict()
    body = zlib.compress(canonical_json(data), COMPRESSION_LEVEL)
    header = {"format": FORMAT, "codec": "zlib", "schema": SCHEMA_VERSION,
              "revision": state.revision, "cluster_id": state.cluster_id,
              "digest": digest_of(data), "time": state.last_time}
    return frame(MAGIC, header, body)


def read_header(raw: bytes) -> tuple[BackupHeader, bytes]:
    """Check the frame and the header; return it with the compressed body."""
    try:
        fields, body = unframe(raw, MAGIC)
    except FrameError as exc:
        raise BackupError(f"not a usable hacoord backup: {exc}") from None
    if fields.get("format") != FORMAT or fields.get("codec") != "zlib":
        raise BackupError(f"a backup of an unknown format {fields.get('format')!r} (this build "
                          f"reads format {FORMAT})")
    schema = fields.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise BackupError(f"a backup of state schema {schema!r}, written by a newer hacoord (this "
                          f"build reads schema {SCHEMA_VERSION}): restore it with the newer release")
    try:
        header = BackupHeader(int(fields["revision"]), str(fields["cluster_id"]),
                              str(fields["digest"]), schema, float(fields["time"]), len(body))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"malformed backup header ({type(exc).__name__}: {exc})") from None
    return header, body


def decode_backup(raw: bytes) -> tuple[BackupHeader, ClusterState]:
    """Check and decode a backup. Raises :class:`BackupError`."""
    header, body = read_header(raw)
    try:
        state = ClusterState.from_dict(json.loads(zlib.decompress(body)))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, zlib.error) as exc:
        raise BackupError(f"unreadable state in the backup ({type(exc).__name__}: {exc})") from None
    if state.revision != header.revision or digest(state) != header.digest:
        raise BackupError("the backup's state does not match its header (revision or digest)")
    return header, state
