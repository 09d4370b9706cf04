"""The key-value example's data: keys hashed to partitions, and one partition's versioned entries.

Every write gets a version from the partition's leader: ``(epoch, sequence)``, the partition epoch
the leader served it under and a counter of the leader's. A later leader serves under a greater
epoch, so versions grow across leader changes, and a copy can merge entries from any source (a
partition dump, a replicated write, in any order): the greater version of a key wins.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Version = tuple[int, int]


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (CRC-32 of its UTF-8 bytes, a stable hash)."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True)
class Entry:
    """A key's value and the version of the write that set it."""

    value: str
    version: Version

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "version": list(self.version)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        epoch, sequence = data["version"]
        return cls(str(data["value"]), (int(epoch), int(sequence)))


class PartitionData:
    """One partition's entries. Not thread-safe: the node serialises access per partition."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, or None."""
        return self._entries.get(key)

    def merge(self, key: str, entry: Entry) -> bool:
        """Keep ``entry`` for ``key`` if it is newer than the one held; True if it was."""
        held = self._entries.get(key)
        if held is not None and held.version >= entry.version:
            return False
        self._entries[key] = entry
        return True

    def merge_all(self, entries: Mapping[str, Entry]) -> int:
        """Merge many entries; how many were newer."""
        return sum(self.merge(key, entry) for key, entry in entries.items())

    def dump(self) -> dict[str, Entry]:
        """Every entry (a copy)."""
        return dict(self._entries)
