"""Freeing a large structure a piece at a time (``hacoord.replication.release``): every step
frees a bounded amount, everything is freed in the end, and what someone else still holds is
left whole."""

from __future__ import annotations

import weakref
from collections import deque

from hacoord.replication import release
from hacoord.replication.release import CHUNK, Releaser, pieces


class Leaf:
    """A small object, as a partition or an event is."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.replicas = ["a", "b", "c"]


class Holder:
    """A big object, as a resource is (its partitions in one list)."""

    def __init__(self, leaves: list[Leaf]) -> None:
        self.name = "r"
        self.leaves = leaves


class Slotted:
    """An object with slots, as an event is (its data may list many partitions)."""

    __slots__ = ("items", "__weakref__")

    def __init__(self, items: list[Leaf]) -> None:
        self.items = items


class Freed:
    """Counts the leaves freed so far."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, leaf: Leaf) -> Leaf:
        weakref.finalize(leaf, self._one)
        return leaf

    def _one(self) -> None:
        self.count += 1


def state_like(freed: Freed) -> dict[str, object]:
    """Shaped like a member's state and feed: objects holding long lists, a dict of a few big
    things, a tuple (replication factor, partitions), a deque of events."""
    def leaves(count: int) -> list[Leaf]:
        return [freed.watch(Leaf(i)) for i in range(count)]
    return {
        "resources": {f"r{i}": Holder(leaves(3000)) for i in range(5)},
        "routing": {"r": (3, leaves(2000))},
        "events": deque(leaves(1500)),
        "small": [freed.watch(Leaf(-1))],
        "slotted": Slotted(leaves(1000)),
    }


TOTAL = 5 * 3000 + 2000 + 1500 + 1 + 1000


def test_each_step_frees_a_bounded_amount_and_all_of_it_goes() -> None:
    freed = Freed()
    root = [state_like(freed)]
    worst = steps = 0
    before = 0
    for _ in pieces(root):
        steps += 1
        worst = max(worst, freed.count - before)
        before = freed.count
    assert freed.count == TOTAL
    assert 0 < worst <= CHUNK
    assert steps >= TOTAL // CHUNK  # it did go a piece at a time


def test_what_another_holder_keeps_is_left_whole() -> None:
    freed = Freed()
    structure = state_like(freed)
    kept = structure["resources"]["r2"]  # a reader still answering from the old state
    root = [structure]
    del structure
    for _ in pieces(root):
        pass
    assert len(kept.leaves) == 3000 and [leaf.index for leaf in kept.leaves[:3]] == [0, 1, 2]
    assert freed.count == TOTAL - 3000
    del kept
    assert freed.count == TOTAL


def test_a_releaser_frees_on_its_thread() -> None:
    freed = Freed()
    releaser = Releaser(name="test-release")
    releaser.release(state_like(freed))
    assert releaser.wait_idle(30.0)
    assert freed.count == TOTAL


def test_outside_a_member_release_only_drops_the_reference() -> None:
    assert release._releaser is None  # a member process configures it; the tests do not
    freed = Freed()
    release.release(state_like(freed))
    assert freed.count == TOTAL
