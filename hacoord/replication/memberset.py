"""Membership configurations as Raft log entries and snapshot header rows.

A configuration is the whole member set, in order: each member's id, Raft address and API
URL. A log entry holding one is :data:`CONFIG_TYPE` followed by JSON; PySyncObj's apply skips
entries of a type it does not know. :mod:`hacoord.replication.membership` says when one is in
force.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from hacoord.core.model import valid_id
from hacoord.replication.base import MemberInfo

#: The first byte of a configuration entry (PySyncObj's own types are 0 to 3).
CONFIG_TYPE = 0x10
MAX_MEMBERS = 15
MAX_URL = 300
Config = tuple[MemberInfo, ...]


def _plain(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= MAX_URL and text.isprintable() and " " not in text


class MembershipError(ValueError):
    """A configuration that cannot be a member set (ids or addresses repeated, malformed)."""


def check_config(members: Sequence[MemberInfo]) -> None:
    """Raise :class:`MembershipError` unless ``members`` is a well-formed member set."""
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise MembershipError(f"a cluster has 1 to {MAX_MEMBERS} members, not {len(members)}")
    for m in members:
        if not valid_id(m.id):
            raise MembershipError(f"malformed member id {m.id[:80]!r}")
        if not _plain(m.raft_address) or not m.raft_address:
            raise MembershipError(f"member {m.id}: malformed Raft address {m.raft_address[:80]!r}")
        if not _plain(m.api_url):
            raise MembershipError(f"member {m.id}: malformed API URL {m.api_url[:80]!r}")
    for key in ("id", "raft_address", "api_url"):
        values = [getattr(m, key) for m in members if key != "api_url" or m.api_url]
        if len(set(values)) != len(values):
            raise MembershipError(f"two members have the same {key.replace('_', ' ')}")


def encode_config(members: Sequence[MemberInfo]) -> bytes:
    """The log entry that makes ``members`` (in this order) the group's configuration."""
    body = {"members": config_rows(members)}
    return bytes([CONFIG_TYPE]) + json.dumps(body, separators=(",", ":")).encode()


def decode_config(command: bytes) -> Config | None:
    """The configuration a log entry sets, or None if it is another kind of entry. Raises
    :class:`MembershipError` for a configuration entry that is malformed."""
    if not command or command[0] != CONFIG_TYPE:
        return None
    try:
        rows = json.loads(bytes(command[1:]))["members"]
        members = tuple(MemberInfo(*row[:3], added=len(row) == 4) for row in rows
                        if isinstance(row, list) and len(row) in (3, 4)
                        and all(isinstance(v, str) for v in row[:3])
                        and (len(row) == 3 or row[3] == 1))
    except (ValueError, KeyError, TypeError) as exc:
        raise MembershipError(f"unreadable membership entry ({exc})") from None
    if len(members) != len(rows):
        raise MembershipError("malformed member in a membership entry")
    check_config(members)
    return members


def config_rows(members: Iterable[MemberInfo]) -> list[list[str | int]]:
    """``members`` as JSON rows: id, Raft address, API URL, and 1 for a member that was
    added (log entries, snapshot headers)."""
    return [[m.id, m.raft_address, m.api_url, *([1] if m.added else [])] for m in members]


def config_from_rows(rows: Any) -> Config:
    """The inverse of :func:`config_rows`; raises :class:`MembershipError`."""
    if not isinstance(rows, list):
        raise MembershipError("malformed member list")
    return decode_config(bytes([CONFIG_TYPE]) + json.dumps({"members": rows}).encode()) or ()


def changed(current: Config, add: MemberInfo | None = None, remove: str | None = None) -> Config | None:
    """``current`` with ``add`` added or the member ``remove`` removed; None when that is
    already so (a retried change). Raises :class:`MembershipError` when the change clashes with the
    membership (the id or an address in use by another member, the last member removed)."""
    ids = {m.id: m for m in current}
    if add is not None:
        add = MemberInfo(add.id, add.raft_address, add.api_url, added=True)
        same = ids.get(add.id)
        if same is not None and (same.raft_address, same.api_url) == (add.raft_address,
                                                                      add.api_url):
            return None
        if add.id in ids:
            raise MembershipError(f"{add.id} is already a member, with other addresses; remove it "
                              "first to change them")
        for m in current:
            if m.raft_address == add.raft_address or (add.api_url and m.api_url == add.api_url):
                raise MembershipError(f"member {m.id} already uses that address")
        new = (*current, add)
    elif remove is not None:
        if remove not in ids:
            return None
        if len(current) == 1:
            raise MembershipError(f"{remove} is the only member: a cluster needs one")
        new = tuple(m for m in current if m.id != remove)
    else:
        raise MembershipError("nothing to change")
    check_config(new)
    return new


def majority(count: int) -> int:
    """How many members of ``count`` make a majority."""
    return count // 2 + 1
