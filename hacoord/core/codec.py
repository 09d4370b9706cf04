"""Canonical encoding of the state: the bytes every member must agree on, and their digest."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hacoord.core.model import ClusterState


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_state(state: ClusterState) -> bytes:
    """The state's canonical bytes (schema version included)."""
    return canonical_json(state.to_dict())


def decode_state(raw: bytes) -> ClusterState:
    """Inverse of :func:`encode_state`. Raises ``ValueError`` on a malformed or foreign snapshot."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("state snapshot is not a JSON object")
    try:
        return ClusterState.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:  # valid JSON, wrong shape
        raise ValueError(f"malformed state snapshot: {type(exc).__name__}: {exc}") from exc


def digest(state: ClusterState) -> str:
    """A short hex digest of the canonical state; equal on members that applied the same log.
    The cluster's id is left out: a cluster restored from a backup digests like its source at
    the backup's revision."""
    return digest_of(state.to_dict())


def digest_of(data: dict[str, Any]) -> str:
    """:func:`digest` of a state already in its dict form (``ClusterState.to_dict()``)."""
    data = {key: value for key, value in data.items() if key != "cluster_id"}
    return hashlib.blake2b(canonical_json(data), digest_size=16).hexdigest()
