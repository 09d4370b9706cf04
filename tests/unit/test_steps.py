"""Long steps on the event loop: what is noted, what a collection adds, and what the lag monitor
says when the loop stalls."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import time

import pytest
from prometheus_client import CollectorRegistry

from hacoord.replication.steps import GcTimer, Steps, describe, process_age
from hacoord.server.looplag import LagMonitor


def test_the_longest_steps_are_kept_and_taken_once() -> None:
    steps = Steps()
    for k in range(100):
        steps.note(f"step {k}", 0.01 + k / 1000)
    steps.note("short", 0.001)  # below the threshold: not worth remembering
    taken = steps.take(3)
    assert [name for _, name, _ in taken] == ["step 99", "step 98", "step 97"]
    assert steps.take() == []


def test_a_step_that_waited_says_how_long_it_ran() -> None:
    steps = Steps()
    with steps.timed("waiting"):
        time.sleep(0.03)  # off the core, as a step waiting for one is
    taken = {name: (seconds, cpu) for seconds, name, cpu in steps.take(8)}
    assert taken["waiting"][1] is not None and taken["waiting"][1] < taken["waiting"][0] / 2
    named = describe([(0.023, "raft tick", 0.009), (0.012, "apply X", 0.012), (0.007, "y", None)])
    assert named == "raft tick 23 ms (9 ms on a core), apply X 12 ms, y 7 ms"


def test_a_garbage_collection_is_noted_with_its_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hacoord.replication.steps.NOTE_ABOVE", 0.0)
    steps = Steps()
    before = list(gc.callbacks)
    try:
        GcTimer(steps).install()
        GcTimer(steps).install()  # once per process, however often it is asked
        assert sum(isinstance(cb, GcTimer) for cb in gc.callbacks) == 1
        gc.collect()
        assert any(name == "gc generation 2" for _, name, _ in steps.take(8))
    finally:
        gc.callbacks[:] = before


def test_a_stall_is_measured_and_logged_with_what_ran(caplog: pytest.LogCaptureFixture) -> None:
    steps = Steps()
    registry = CollectorRegistry()
    monitor = LagMonitor(registry, steps, interval=0.01)

    async def scenario() -> None:
        await monitor.start()
        await asyncio.sleep(0.05)
        with steps.timed("a long apply"):
            time.sleep(0.25)  # holds the loop, as a heavy step on it would
        await asyncio.sleep(0.05)
        await monitor.stop()

    with caplog.at_level(logging.WARNING, logger="hacoord.server.looplag"):
        asyncio.run(scenario())
    assert monitor.stalls >= 1 and monitor.worst >= 0.2
    assert any("a long apply" in r.getMessage() for r in caplog.records)
    over = registry.get_sample_value("hacoord_event_loop_lag_seconds_bucket", {"le": "0.1"})
    total = registry.get_sample_value("hacoord_event_loop_lag_seconds_count")
    assert total is not None and over is not None and total - over >= 1


def test_lags_over_20_ms_are_kept_with_their_time_and_step_for_status() -> None:
    steps = Steps()
    monitor = LagMonitor(CollectorRegistry(), steps, interval=0.01)
    marks: dict[str, float] = {}

    async def scenario() -> None:
        await monitor.start()
        await asyncio.sleep(0.05)
        marks["before"] = time.time()
        with steps.timed("a slow step"):
            time.sleep(0.15)  # one stall
        await asyncio.sleep(0.05)
        marks["between"] = time.time()
        time.sleep(0.06)  # and a smaller one, over 20 ms
        await asyncio.sleep(0.05)
        await monitor.stop()

    asyncio.run(scenario())
    report = monitor.report()
    assert report["worst"] == monitor.worst and report["stalls"] == monitor.stalls >= 1
    stalls = [(t, step) for t, lag, step in report["samples"] if lag >= 0.14]
    assert any(marks["before"] < t < marks["between"] for t, _ in stalls), report
    assert any(steps is not None and steps.startswith("a slow step ") for _, steps in stalls)
    later = monitor.report(since=marks["between"])["samples"]
    assert later and all(t > marks["between"] for t, _, _ in later)
    assert len(later) < len(report["samples"])
    assert all(lag > 0.02 for _, lag, _ in report["samples"])


def test_process_age_counts_from_the_process_start() -> None:
    """A member logs its start-up times from its process start (imports included): a process
    started after this one is younger."""
    child = subprocess.run([sys.executable, "-c", "from hacoord.replication.steps import "
                            "process_age; print(process_age())"], capture_output=True, text=True,
                           check=True)
    own = process_age()
    assert own is not None and 0.0 <= float(child.stdout) <= own
