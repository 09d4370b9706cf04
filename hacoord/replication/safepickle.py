"""Raft log entries are decoded without running code.

PySyncObj stores every command as a pickle (protocol 2) in the log and unpickles it to apply it,
so a crafted record in a member's journal (or a crafted entry from a peer) would run whatever it
names. hacoord's entries name nothing: a regular command is ``(method id, (payload bytes,),
{})``, where protocol 2 spells bytes through ``_codecs.encode``; the library's own version and
membership entries carry an int and its node objects. :func:`loads` decodes with an unpickler
that finds only those globals and refuses any other with :class:`UnsafeLogEntry`;
:func:`install` makes it the library's decoder. :func:`check_entry` is the journal's check of a
record it reads from disk.
"""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj.syncobj import _COMMAND_TYPE

from hacoord.replication.memberset import CONFIG_TYPE, MembershipError, decode_config

#: The only globals a log entry may name (module, name).
ALLOWED = frozenset({
    ("_codecs", "encode"),          # bytes, as protocol 2 writes them
    ("pysyncobj.node", "Node"),     # membership entries (the library's own)
    ("pysyncobj.node", "TCPNode"),
})


class UnsafeLogEntry(pickle.UnpicklingError):
    """A log entry names a global hacoord never writes: it was not written by a member."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise UnsafeLogEntry(f"a log entry names {module}.{name}, which no member writes")
        return super().find_class(module, name)


def loads(data: bytes | str) -> Any:
    """``pickle.loads`` that refuses every global outside :data:`ALLOWED`."""
    raw = data if isinstance(data, bytes) else data.encode()
    return _Unpickler(io.BytesIO(raw)).load()


def check_entry(command: bytes) -> str | None:
    """Why the journal record's ``command`` cannot be one a member wrote, or None."""
    if not command:
        return "an empty command"
    if command[0] == _COMMAND_TYPE.NO_OP:
        return None
    if command[0] == CONFIG_TYPE:
        try:
            decode_config(command)
        except MembershipError as exc:
            return str(exc)
        return None
    if command[0] not in (_COMMAND_TYPE.REGULAR, _COMMAND_TYPE.MEMBERSHIP, _COMMAND_TYPE.VERSION):
        return f"an unknown command type {command[0]}"
    try:
        loads(command[1:])
    except Exception as exc:  # noqa: BLE001 (any failure to decode is the answer)
        return f"a command that does not decode safely ({exc})"
    return None


def install() -> None:
    """Make :func:`loads` the decoder of PySyncObj's log entries (idempotent)."""
    library = _syncobj_module.pickle
    if getattr(library, "hacoord_safe", False):
        return
    _syncobj_module.pickle = SimpleNamespace(dumps=library.dumps, loads=loads, hacoord_safe=True)
