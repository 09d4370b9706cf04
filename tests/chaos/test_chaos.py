"""The chaos suite (``make chaos``): fixed-seed scenarios, one fault each, histories checked offline.

Faults (tests.chaos.nemesis): SIGKILL of the leader, of a random member, of everyone; a killed
leader restarted during the election; a rolling restart, and a rolling upgrade from the previous
release (tests.chaos.release); SIGSTOP of the leader or a follower; a member down long
enough to need a snapshot; overload without a fault; a resource of 20,000 partitions created
under the load (with and without the leader killed half-way); a dead follower replaced by a
new member, and the leader removed from the membership; and, through a userspace proxy on every Raft
link (tests.chaos.network, no root needed), the leader isolated, a minority with the leader cut
off, one-way loss between the leader and a follower, and slow lossy links everywhere.

Workloads (tests.chaos.workloads, tests.chaos.fenced): an add-only set, registers with
compare-and-set, and partition ownership with fencing epochs. Checks after every run
(tests.chaos.runner): linearizability (unknown writes resolved from the cluster's record of
applied request ids), nothing acknowledged lost, one revision per write, one leader per term,
members' change feeds agreeing revision by revision, equal digests, epochs growing per
partition and no stale epoch accepted, a leader and a write within 10 s of the heal, at most
one election after the heal (each run prints how many terms began during the fault and after
its heal), no traceback. The canary proves the checkers can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.release import ReleaseUnavailable
from tests.chaos.runner import Scenario, run
from tests.chaos.storage import SmallDisk

pytestmark = pytest.mark.chaos

SCENARIOS = [
    Scenario("kill-leader", "kill_leader", seed=1),
    Scenario("kill-random", "kill_random", seed=2),
    Scenario("restart-leader-fast", "restart_leader_fast", seed=3),
    Scenario("kill-all", "kill_all", seed=4),
    # Every member of five killed and started again: "recovery" is the restart to the first
    # acknowledged write (fast start).
    Scenario("kill-all-5", "kill_all", seed=36, size=5),
    Scenario("rolling-restart", "rolling_restart", seed=32, hold=0.0),
    Scenario("registers-rolling-restart-5", "rolling_restart", seed=33, size=5, hold=0.0,
             workload="register"),
    # Every member started on the previous release (tests.chaos.release), then restarted on
    # this one in turn: the cluster runs both releases side by side meanwhile.
    Scenario("rolling-upgrade", "rolling_upgrade", seed=37, hold=0.0),
    Scenario("registers-rolling-upgrade-5", "rolling_upgrade", seed=38, size=5, hold=0.0,
             workload="register"),
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
    # Network faults. A client deadline of one attempt leaves writes unknown when a fault hits
    # them: they are resolved from the applied request ids afterwards.
    Scenario("isolate-leader", "isolate_leader", seed=16, client_deadline=1.0),
    Scenario("registers-isolate-leader", "isolate_leader", seed=17, workload="register",
             client_deadline=1.0),
    Scenario("isolate-minority-5", "isolate_minority", seed=18, size=5, client_deadline=1.0),
    Scenario("registers-one-way-loss", "one_way_loss", seed=19, workload="register",
             client_deadline=1.0),
    Scenario("registers-slow-links", "slow_links", seed=20, workload="register", client_deadline=1.0),
    Scenario("slow-links-5", "slow_links", seed=21, size=5, client_deadline=1.0),
    # Consistent reads at each client's home member: followers answer them from their own
    # state once the leader confirmed a read index (linearizable, or the checks fail).
    Scenario("registers-follower-reads-pause-leader", "pause_leader", seed=34,
             workload="register", read_share=0.5, read_from_home=True),
    Scenario("follower-reads-isolate-leader", "isolate_leader", seed=35, read_share=0.5,
             read_from_home=True, client_deadline=1.0),
    # Partition ownership with fencing epochs, under process and network faults.
    Scenario("fencing-kill-leader", "kill_leader", seed=22, workload="fencing"),
    Scenario("fencing-isolate-minority-5", "isolate_minority", seed=23, size=5, workload="fencing"),
    Scenario("fencing-one-way-loss", "one_way_loss", seed=24, workload="fencing"),
    # Data nodes joining and draining away (two-phase moves by the leader's rebalancer).
    Scenario("membership-kill-leader", "kill_leader", seed=25, workload="membership", hold=8.0),
    # Coordinator membership changed under the load: a dead follower replaced by a new member
    # (remove, then add), and the leader removed (it hands over first).
    Scenario("replace-member", "replace_member", seed=39, hold=2.0),
    Scenario("registers-remove-leader-5", "remove_leader", seed=40, size=5, hold=2.0,
             workload="register"),
    # Heavy input: a resource of 20,000 partitions created under the load (the leader keeps its
    # term), and the same with the leader killed half-way (its successor finishes the creation).
    Scenario("large-create", "large_create", seed=30, hold=8.0),
    Scenario("large-create-kill-leader", "large_create_kill_leader", seed=31, hold=8.0),
    # Storage faults (tests.chaos.storage): a full disk (a tmpfs, root only), damaged files.
    Scenario("disk-full", "disk_full", seed=26, hold=6.0),
    Scenario("flip-journal-byte", "flip_journal_byte", seed=27),
    Scenario("truncate-journal-tail", "truncate_journal_tail", seed=28),
    Scenario("delete-snapshot", "delete_snapshot", seed=29),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_keeps_every_promise(scenario: Scenario, tmp_path: Path) -> None:
    if scenario.fault == "disk_full" and not SmallDisk.available():
        pytest.skip("mounting a small tmpfs needs root (CI runs the chaos suite as root)")
    try:
        outcome = run(scenario, tmp_path)
    except ReleaseUnavailable as exc:
        pytest.skip(f"the previous release is not to be had: {exc}")
    where = f" (history and logs in {outcome.artifacts}; seed {scenario.seed})"
    assert not outcome.problems, "\n".join(outcome.problems) + where
    gap = "" if outcome.worst_write_gap is None else \
        f", worst write gap {outcome.worst_write_gap:.3f}s"
    if outcome.failover is not None:
        gap += f", new leader seen after {outcome.failover:.2f}s"
    if outcome.replaced_in is not None:
        gap += f", member replaced in {outcome.replaced_in:.2f}s"
    print(f"{scenario.name}: {outcome.stats}, recovery {outcome.recovery:.3f}s{gap}, leader "
          f"{outcome.leader_before} -> {outcome.leader_after}, elections "
          f"{outcome.elections_in_fault} in the fault, {outcome.elections_after_heal} after the heal")


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
