"""Canonical encoding of the state: the bytes every member must agree on, and their digest."""

from __future__ import annotations

import hashlib
import json
import re
from json.decoder import scanstring
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


#: How deep :func:`loads_in_pieces` descends: a state's partitions sit at depth 4
#: (state, ``resources``, a resource, its ``partitions``), so each one is parsed on its own.
PIECE_DEPTH = 4
#: How a state is decoded in pieces (:func:`loads_state`): its partitions each on their own, and
#: each entry of its other parts (a node, a remembered request) whole. Parsing those entries'
#: fields piece by piece too cost 0.55 s for a full request memory (50,000 entries), most of a
#: member's start.
STATE_DEPTH = 2
STATE_KEY_DEPTHS = {"resources": PIECE_DEPTH - 1}
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def loads_state(text: str) -> Any:
    """A state's JSON (:func:`encode_state`), parsed in pieces as :data:`STATE_DEPTH` and
    :data:`STATE_KEY_DEPTHS` say (see :func:`loads_in_pieces`)."""
    return loads_in_pieces(text, STATE_DEPTH, STATE_KEY_DEPTHS)


def loads_in_pieces(text: str, depth: int = PIECE_DEPTH,
                    key_depths: dict[str, int] | None = None) -> Any:
    """``json.loads(text)``, parsed as many small pieces: the objects and arrays of the first
    ``depth`` levels are walked here and only what lies below them is handed to the C parser,
    one value at a time. ``key_depths`` gives, for some keys of the top-level object, the depth
    their values are walked to instead (as ``depth`` is for the whole text: 0, handed to the C
    parser whole).

    The result (and every error, a ``ValueError``) is the same as ``json.loads``'s. What
    differs is that no single call holds the interpreter for long: the C parser keeps the GIL
    until it has read the whole document (a quarter of a second for a state of 100,000
    partitions), so a worker thread decoding with ``json.loads`` stalls the event loop for as
    long, while between these pieces the loop gets its turn."""
    value, end = _piece(text, _skip(text, 0), depth, key_depths)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, at: int) -> int:
    """The index of the first character at or after ``at`` that is not JSON whitespace."""
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # always matches


def _piece(text: str, at: int, depth: int,
           key_depths: dict[str, int] | None = None) -> tuple[Any, int]:
    """The JSON value starting at ``at`` and the index after it (``key_depths``: for the keys
    of this value, if it is an object, how deep to walk below each)."""
    opening = text[at:at + 1]
    if depth <= 0 or opening not in ("{", "["):
        return _DECODER.raw_decode(text, at)
    closing = "}" if opening == "{" else "]"
    at = _skip(text, at + 1)
    members: dict[str, Any] = {}
    items: list[Any] = []
    if text[at:at + 1] == closing:
        return (members if opening == "{" else items), at + 1
    while True:
        if opening == "{":
            if text[at:at + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes",
                                           text, at)
            key, at = scanstring(text, at + 1)
            at = _skip(text, at)
            if text[at:at + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            below = depth - 1 if key_depths is None else key_depths.get(key, depth - 1)
            members[key], at = _piece(text, _skip(text, at + 1), below)
        else:
            item, at = _piece(text, at, depth - 1)
            items.append(item)
        at = _skip(text, at)
        separator = text[at:at + 1]
        if separator == closing:
            return (members if opening == "{" else items), at + 1
        if separator != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
        at = _skip(text, at + 1)
