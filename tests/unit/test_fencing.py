"""``hacoord.fencing.EpochGuard``: a data node's record of partition epochs, which never goes back."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hacoord.fencing as fencing
from hacoord.fencing import EpochGuard, StalePartitionEpoch


def test_older_epochs_are_refused_equal_and_newer_pass() -> None:
    guard = EpochGuard()
    guard.check("orders", 0, 1)  # nothing known yet: anything passes
    assert guard.update("orders", 0, 5) == 5
    guard.check("orders", 0, 5)
    guard.check("orders", 0, 6)
    with pytest.raises(StalePartitionEpoch) as caught:
        guard.check("orders", 0, 4)
    assert (caught.value.resource, caught.value.partition, caught.value.epoch, caught.value.known) == (
        "orders", 0, 4, 5)
    assert "orders/0" in str(caught.value)
    guard.check("orders", 1, 1)  # other partitions and resources are separate
    guard.check("users", 0, 1)


def test_update_never_goes_back() -> None:
    guard = EpochGuard()
    guard.update("r", 3, 7)
    assert guard.update("r", 3, 2) == 7
    assert guard.known("r", 3) == 7
    with pytest.raises(StalePartitionEpoch):
        guard.check("r", 3, 6)


def test_forget_drops_one_resource() -> None:
    guard = EpochGuard()
    guard.update("r", 0, 9)
    guard.update("s", 0, 9)
    guard.forget("r")
    assert guard.known("r", 0) is None and guard.known("s", 0) == 9
    guard.check("r", 0, 1)  # re-created: starts again


@given(st.lists(st.tuples(st.sampled_from(["update", "check"]), st.integers(0, 2), st.integers(1, 20)),
                max_size=60))
def test_matches_a_running_maximum(steps: list[tuple[str, int, int]]) -> None:
    guard = EpochGuard()
    highest: dict[int, int] = {}
    for op, partition, epoch in steps:
        if op == "update":
            highest[partition] = max(highest.get(partition, epoch), epoch)
            assert guard.update("r", partition, epoch) == highest[partition]
        elif epoch < highest.get(partition, 0):
            with pytest.raises(StalePartitionEpoch):
                guard.check("r", partition, epoch)
        else:
            guard.check("r", partition, epoch)


def test_concurrent_updates_keep_the_maximum() -> None:
    guard = EpochGuard()

    def climb(start: int) -> None:
        for epoch in range(start, 2000, 4):
            guard.update("r", 0, epoch)

    threads = [threading.Thread(target=climb, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert guard.known("r", 0) == 1999


def test_imports_nothing_from_hacoord() -> None:
    tree = ast.parse(Path(fencing.__file__).read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith("hacoord")], modules
