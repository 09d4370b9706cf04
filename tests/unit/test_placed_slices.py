"""A placement handed back in pickled slices gives any range of its partitions as the plain list
would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hacoord.server.placed import PlacedSlices


@given(st.integers(0, 50), st.integers(0, 40), st.integers(1, 9), st.integers(0, 100),
       st.integers(0, 30))
def test_take_gives_the_same_rows_as_slicing_the_list(start: int, length: int, step: int,
                                                      begin: int, count: int) -> None:
    assignment = [[f"n{i}", f"m{i}"] for i in range(start, start + length)]
    placed = PlacedSlices.of(start, assignment, step)
    assert (placed.start, placed.end) == (start, start + length)
    assert len(placed.pieces) == -(-length // step)
    expected = assignment[begin - start:begin - start + count] if begin >= start else []
    assert placed.take(begin, count) == expected
