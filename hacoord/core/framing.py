"""Self-checking files: a magic line, a one-line JSON header, a body, and a digest of it all.

Layout::

    <magic, ending in a newline>
    {"body_bytes": N, ...}\\n        <- one line of canonical JSON
    <N bytes of body>
    <32 bytes: blake2b-256 of everything above>

The digest covers the header too, so what the header claims is checked with the content. Used by
snapshots (:mod:`hacoord.replication.snapshot`) and backups (:mod:`hacoord.core.backup`); each
checks its own header's fields and version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hacoord.core.codec import canonical_json

DIGEST_SIZE = 32


class FrameError(ValueError):
    """The bytes are not a whole, undamaged frame."""


def frame(magic: bytes, header: dict[str, Any], body: bytes) -> bytes:
    """The file's bytes: ``header`` gets ``body_bytes`` added."""
    head = magic + canonical_json({**header, "body_bytes": len(body)}) + b"\n"
    return head + body + hashlib.blake2b(head + body, digest_size=DIGEST_SIZE).digest()


def unframe(raw: bytes, magic: bytes) -> tuple[dict[str, Any], bytes]:
    """Check the digest; return the header and the body. Raises :class:`FrameError`."""
    if not raw.startswith(magic):
        raise FrameError("bad header (not this kind of file)")
    end = raw.find(b"\n", len(magic))
    if end < 0:
        raise FrameError("truncated header")
    try:
        header = json.loads(raw[len(magic):end])
    except ValueError as exc:
        raise FrameError(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise FrameError("malformed header")
    size = header.get("body_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FrameError("malformed header")
    body_start = end + 1
    body_end = body_start + size
    if len(raw) != body_end + DIGEST_SIZE:
        raise FrameError(f"{len(raw)} bytes where the header promises {body_end + DIGEST_SIZE} "
                         "(truncated or extended)")
    expected = hashlib.blake2b(raw[:body_end], digest_size=DIGEST_SIZE).digest()
    if raw[body_end:] != expected:
        raise FrameError("checksum mismatch (the file was changed or damaged)")
    return header, raw[body_start:body_end]
