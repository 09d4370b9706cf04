"""A new resource's placement as the planning child hands it back: pickled one slice at a time.

The child (:mod:`hacoord.server.offload`) pickles its result and the member unpickles it on its
event loop. The replicas of 100,000 partitions took 28 ms to unpickle in one go there, while
the coordinator needs them one slice (one log entry, ``MAX_SLICE`` partitions) at a time. So
the child pickles each slice on its own, and the member unpickles a slice when it submits it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from hacoord.placement import place_resource

Assignment = list[list[str]]


@dataclass(frozen=True)
class PlacedSlices:
    """Replicas of partitions ``start .. end - 1`` of a resource, pickled ``step`` at a time."""

    start: int
    end: int
    step: int
    pieces: tuple[bytes, ...]

    @classmethod
    def of(cls, start: int, assignment: Assignment, step: int) -> PlacedSlices:
        """``assignment`` (the replicas of partitions ``start`` onwards), in pieces of ``step``."""
        pieces = tuple(pickle.dumps(assignment[at:at + step], protocol=pickle.HIGHEST_PROTOCOL)
                       for at in range(0, len(assignment), step))
        return cls(start, start + len(assignment), step, pieces)

    def take(self, begin: int, count: int) -> Assignment:
        """The replicas of partitions ``begin .. begin + count - 1`` (as far as they are
        covered), unpickling only the pieces that hold them."""
        end = min(begin + count, self.end)
        if begin < self.start or begin >= end:
            return []
        first = (begin - self.start) // self.step
        last = (end - 1 - self.start) // self.step
        rows: Assignment = []
        for index in range(first, last + 1):
            rows.extend(pickle.loads(self.pieces[index]))  # noqa: S301 (our own child's bytes)
        skip = begin - (self.start + first * self.step)
        return rows[skip:skip + end - begin]


def place_in_slices(state: Any, name: str, start: int, size: int, replicas: int,
                    step: int) -> PlacedSlices:
    """Replicas for partitions ``start .. size - 1`` of resource ``name`` (a new one from 0, or
    the rest of one being created), as :class:`PlacedSlices`. Runs in the planning child."""
    return PlacedSlices.of(start, place_resource(state, name, size - start, replicas, start=start),
                           step)
