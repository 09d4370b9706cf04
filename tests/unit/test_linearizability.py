"""The register linearizability checker (tests/chaos) against brute force on small histories."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.chaos.linearizability import INFINITY, RegOp, brute_force, check, step

VALUES = st.integers(min_value=0, max_value=2)


@st.composite
def op_strategy(draw: st.DrawFn) -> RegOp:
    start = draw(st.integers(0, 20))
    length = draw(st.integers(0, 8))
    unknown = draw(st.booleans()) and draw(st.booleans())
    f = draw(st.sampled_from(["read", "write", "cas"]))
    value = (draw(VALUES), draw(VALUES)) if f == "cas" else draw(VALUES)
    result = draw(st.booleans()) if f == "cas" else draw(VALUES)
    return RegOp(f, value if f != "read" else None, result, float(start),
                 INFINITY if unknown else float(start + length) + 0.5)


@settings(max_examples=400, deadline=None)
@given(st.lists(op_strategy(), max_size=6))
def test_search_agrees_with_brute_force(ops: list[RegOp]) -> None:
    assert check(ops, initial=0) == brute_force(ops, initial=0)


@st.composite
def linearizable_history(draw: st.DrawFn) -> list[RegOp]:
    """Run operations one at a time on a real register, then widen their intervals around the
    instant they took effect: such a history is linearizable by construction."""
    state, ops, t = 0, [], 0.0
    for _ in range(draw(st.integers(0, 12))):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        value = (draw(VALUES), draw(VALUES)) if f == "cas" else (draw(VALUES) if f == "write" else None)
        probe = RegOp(f, value, None, 0.0, INFINITY)
        result = state if f == "read" else (state == value[0] if f == "cas" else None)
        _, state = step(state, probe)
        t += 1.0
        before = draw(st.floats(0, 3))
        after = draw(st.floats(0, 3))
        unknown = f != "read" and draw(st.integers(0, 9)) == 0
        ops.append(RegOp(f, value, result, t - before, INFINITY if unknown else t + after))
    return ops


@settings(max_examples=200, deadline=None)
@given(linearizable_history())
def test_linearizable_histories_pass(ops: list[RegOp]) -> None:
    assert check(ops, initial=0)


def test_a_stale_read_is_caught() -> None:
    ops = [RegOp("write", 1, None, 0.0, 1.0), RegOp("read", None, 0, 2.0, 3.0)]
    assert not check(ops, initial=0)
    assert check([RegOp("write", 1, None, 0.0, 3.0), RegOp("read", None, 0, 2.0, 4.0)], initial=0)


def test_an_unknown_write_may_or_may_not_have_happened() -> None:
    maybe = RegOp("write", 2, None, 0.0, INFINITY)
    assert check([maybe, RegOp("read", None, 2, 5.0, 6.0)], initial=0)
    assert check([maybe, RegOp("read", None, 0, 5.0, 6.0)], initial=0)
    assert not check([maybe, RegOp("read", None, 2, 5.0, 6.0), RegOp("read", None, 0, 7.0, 8.0)],
                     initial=0)


def test_cas_outcomes_must_match_the_value() -> None:
    assert not check([RegOp("cas", (1, 2), True, 0.0, 1.0)], initial=0)
    assert check([RegOp("cas", (0, 2), True, 0.0, 1.0), RegOp("read", None, 2, 2.0, 3.0)], initial=0)
