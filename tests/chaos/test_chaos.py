"""The chaos suite (``make chaos``): fixed-seed scenarios, one fault each, histories checked offline.

Process faults only so far (SIGKILL, SIGSTOP/SIGCONT, restarts); network partitions, one-way loss
and slow links need a proxy or network namespaces and are not in this suite yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.runner import Scenario, run

pytestmark = pytest.mark.chaos

SCENARIOS = [
    Scenario("kill-leader", "kill_leader", seed=1),
    Scenario("kill-random", "kill_random", seed=2),
    Scenario("restart-leader-fast", "restart_leader_fast", seed=3),
    Scenario("kill-all", "kill_all", seed=4),
    Scenario("pause-leader", "pause_leader", seed=5),
    Scenario("pause-follower", "pause_follower", seed=6),
    Scenario("lagging-member-snapshot", "lagging_member", seed=7,
             member_args=("--log-compaction-min-entries", "50")),
    Scenario("overload-no-fault", "none", seed=8, clients_per_member=5, read_share=0.1),
    Scenario("kill-leader-5", "kill_leader", seed=9, size=5),
    Scenario("pause-leader-5", "pause_leader", seed=10, size=5),
    Scenario("kill-random-5", "kill_random", seed=11, size=5),
    Scenario("registers-kill-leader", "kill_leader", seed=13, workload="register"),
    Scenario("registers-pause-leader", "pause_leader", seed=14, workload="register"),
    Scenario("registers-restart-leader-fast", "restart_leader_fast", seed=15, workload="register"),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_keeps_every_promise(scenario: Scenario, tmp_path: Path) -> None:
    outcome = run(scenario, tmp_path)
    where = f" (history and logs in {outcome.artifacts}; seed {scenario.seed})"
    assert not outcome.problems, "\n".join(outcome.problems) + where
    print(f"{scenario.name}: {outcome.stats}, recovery {outcome.recovery:.3f}s, leader "
          f"{outcome.leader_before} -> {outcome.leader_after}")


CANARY_ARGS = ("--log-compaction-min-entries", "200", "--unsafe-stale-reads")


@pytest.mark.parametrize(("workload", "finding"), [("set", "stale read"),
                                                   ("register", "not linearizable")])
def test_the_checker_catches_stale_consistent_reads(workload: str, finding: str,
                                                    tmp_path: Path) -> None:
    """Canary: members that answer "consistent" reads from their own state (followers learn of a
    commit one message after the leader acknowledged it), read by clients at their home member
    while a follower is paused and resumed, must be caught serving stale reads. Proves the suite
    can fail."""
    canary = Scenario(f"canary-stale-reads-{workload}", "pause_follower", seed=12, read_share=0.5,
                      workload=workload, member_args=CANARY_ARGS, read_from_home=True)
    outcome = run(canary, tmp_path)
    assert any(finding in p for p in outcome.problems), outcome.problems
