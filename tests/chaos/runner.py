"""One chaos run: a real cluster, clients recording every operation, a nemesis, then checks.

Modelled on Jepsen (record everything while faults are injected, check the history offline) and
etcd's robustness tests (one fault per run, health before and after, equal state digests at the
end). Everything is bounded in time; a failing run saves its history, timeline and member logs
and names the seed that replays it.

After the heal the runner waits for one agreed leader and equal digests, then looks up what
became of every unknown write (:mod:`tests.chaos.resolve`) before the workload's checks, and
compares what each member applied, revision by revision, from their change feeds
(:mod:`tests.chaos.feeds`, sampled during the whole run).
"""

from __future__ import annotations

import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hacoord.client import HacoordError
from hacoord.testing.cluster import LocalCluster
from tests.chaos.checker import check_one_leader_per_term, check_revisions
from tests.chaos.feeds import FeedSampler
from tests.chaos.fenced import FencingWorkload
from tests.chaos.history import History
from tests.chaos.membership import MembershipWorkload
from tests.chaos.nemesis import HANDED_OVER, NETWORK_FAULTS, LinkFault, Nemesis
from tests.chaos.network import ProxiedCluster
from tests.chaos.release import previous_release
from tests.chaos.resolve import resolve
from tests.chaos.storage import STORAGE_FAULTS, SmallDisk, StorageNemesis
from tests.chaos.workloads import Context, RegisterWorkload, SetWorkload, Workload

ARTIFACTS = Path("chaos-artifacts")


@dataclass
class Scenario:
    """A fault, held for ``hold`` seconds, under ``clients_per_member`` clients per member."""

    name: str
    fault: str
    seed: int
    size: int = 3
    hold: float = 6.0
    clients_per_member: int = 2
    warmup: float = 2.0
    cooldown: float = 3.0
    read_share: float = 0.3
    member_args: tuple[str, ...] = ("--log-compaction-min-entries", "200")
    #: "set": unique adds + consistent reads; "register": read/write/cas; "fencing": partition
    #: ownership with fencing epochs (see tests.chaos.fenced); "membership": the same while data
    #: nodes join and drain away through two-phase moves (tests.chaos.membership).
    workload: str = "set"
    registers: int = 4
    #: Send each client's reads to its home member only (not to the leader it learnt): a
    #: follower then answers consistent reads from its own state once the leader gave it a
    #: read index (and the canary's members, from their own state at once).
    read_from_home: bool = False
    #: How slow links misbehave (delay range, loss probability).
    link: LinkFault | None = None
    #: How long a client keeps retrying one operation; a short one leaves writes unknown when
    #: a fault hits them, for the resolution of unknown writes to work on.
    client_deadline: float = 10.0


@dataclass
class Outcome:
    """What a run found. ``problems`` empty means every check held."""

    scenario: Scenario
    problems: list[str]
    history: History
    recovery: float | None = None
    leader_before: str | None = None
    leader_after: str | None = None
    artifacts: Path | None = None
    stats: dict[str, int] = field(default_factory=dict)
    #: The longest time without an acknowledged write from the fault's start to its heal.
    worst_write_gap: float | None = None
    #: Terms begun (elections held) while the fault lasted, and after its heal (pre-vote's
    #: promise: at most one); None where no leader was seen to count from.
    elections_in_fault: int | None = None
    elections_after_heal: int | None = None
    #: Seconds from the fault's start to the first sighting of a leader of a newer term (the
    #: leader watcher polls every 0.1 s); None if none was seen before the heal.
    failover: float | None = None
    #: Seconds to replace a member: removed, its successor added, started and ready.
    replaced_in: float | None = None


READS = ("read", "routing")


def worst_write_gap(history: History, start: float, end: float) -> float:
    """The longest stretch within [start, end] in which no write was acknowledged."""
    acked = sorted(op.completed for op in history.ops
                   if op.status == "ok" and op.f not in READS and op.completed is not None
                   and start <= op.completed <= end)
    edges = [start, *acked, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def first_traceback(log: Path, context: int = 3, most: int = 60) -> str | None:
    """The first traceback in ``log`` (any line that says "Traceback": exception groups and
    JSON records too) with the lines logged just before it, or None.

    Quoted in the failure so that a CI run, whose artifacts are gone, still shows it."""
    if not log.exists():
        return None
    lines = log.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and end - start < most and (
            lines[end].startswith((" ", "\t")) or lines[end - 1].startswith(" ")):
        end += 1  # the frames, then the exception's own line
    return "\n".join(lines[max(0, start - context):end])


def make_workload(scenario: Scenario) -> Workload:
    if scenario.workload == "register":
        return RegisterWorkload(scenario.read_share, scenario.registers)
    if scenario.workload == "fencing":
        return FencingWorkload()
    if scenario.workload == "membership":
        return MembershipWorkload()
    if scenario.workload == "set":
        return SetWorkload(scenario.read_share)
    raise ValueError(f"unknown workload {scenario.workload!r}")


def make_cluster(scenario: Scenario, root: Path) -> LocalCluster:
    """Network faults need every Raft link behind the proxy; the others run members as users do."""
    if scenario.fault in NETWORK_FAULTS:
        return ProxiedCluster(root, scenario.size, scenario.member_args, seed=scenario.seed)
    return LocalCluster(root, scenario.size, scenario.member_args)


#: A leader seen by polling: (when, term, member).
Sighting = tuple[float, int, str]


def _watch_leaders(cluster: LocalCluster, seen: list[Sighting], stop: threading.Event) -> None:
    with cluster.http(timeout=0.5) as http:
        for _ in range(100_000):
            if stop.is_set():
                return
            for member in list(cluster.members.values()):
                if not member.alive():
                    continue
                try:
                    status = http.get(member.url + "/v1/status").json()["member"]
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
                if status["role"] == "leader":
                    seen.append((time.monotonic(), status["term"], status["member_id"]))
            time.sleep(0.1)


def _client_threads(scenario: Scenario, cluster: LocalCluster, workload: Workload, history: History,
                    rng: random.Random, stop: threading.Event) -> list[threading.Thread]:
    """Two (``clients_per_member``) clients per member, each starting at its home member."""
    members = list(cluster.members.values())
    threads = []
    for k in range(scenario.clients_per_member * len(members)):
        home = members[k % len(members)]
        endpoints = [home.url] + [m.url for m in members if m is not home]
        client = cluster.client(endpoints=endpoints, timeout=1.0, deadline=scenario.client_deadline)
        reader = cluster.client(endpoints=[home.url], timeout=1.0, deadline=scenario.client_deadline) \
            if scenario.read_from_home else client
        name = f"c{k}"
        threads.append(threading.Thread(target=workload.client_loop, name=name, args=(
            name, client, reader, history, random.Random(rng.random()), stop)))
    return threads


def run(scenario: Scenario, root: Path) -> Outcome:
    """Run ``scenario`` in ``root``; never raises for a failed check (see ``Outcome.problems``)."""
    rng = random.Random(scenario.seed)
    history = History()
    cluster = make_cluster(scenario, root)
    victim, disk = None, None
    if scenario.fault in STORAGE_FAULTS:
        victim = rng.choice(sorted(cluster.members))
        if scenario.fault == "disk_full":
            disk = SmallDisk(cluster.members[victim].data_dir)
            disk.mount()
    # The rolling upgrade starts every member on the previous release (the nemesis restarts
    # them on this one).
    if scenario.fault == "rolling_upgrade":
        cluster.start(prefix=previous_release(root))
    else:
        cluster.start()
    workload = make_workload(scenario)
    stop, watch_stop = threading.Event(), threading.Event()
    leaders: list[Sighting] = []
    sampler = FeedSampler(cluster)
    threads: list[threading.Thread] = []
    outcome = Outcome(scenario, [], history)
    try:
        outcome.leader_before = cluster.leader()
        with cluster.client(timeout=2.0, deadline=20.0) as setup:
            workload.setup(setup)
        threads = _client_threads(scenario, cluster, workload, history, rng, stop)
        threads += workload.background(cluster.client, history, rng, stop)
        watchers = [threading.Thread(target=_watch_leaders, args=(cluster, leaders, watch_stop)),
                    threading.Thread(target=sampler.run, args=(watch_stop,))]
        for thread in [*threads, *watchers]:
            thread.start()
        time.sleep(scenario.warmup)
        storage = StorageNemesis(cluster, rng, history, disk) if victim is not None else None
        nemesis = Nemesis(cluster, rng, history, scenario.link)
        injected = time.monotonic()
        if storage is not None and victim is not None:
            storage.inject(scenario.fault, victim)
            time.sleep(scenario.hold)
            storage.heal(scenario.fault)
        else:
            nemesis.inject(scenario.fault)
            nemesis.hold(scenario.fault, scenario.hold)
            nemesis.heal(scenario.fault)
            outcome.replaced_in = nemesis.replaced_in
            outcome.worst_write_gap = worst_write_gap(history, injected, time.monotonic())
        healed = time.monotonic()
        term_at_heal = _term_as_of(leaders, healed)
        outcome.failover = _failover(leaders, injected, healed)
        outcome.recovery = _first_write_after(cluster, healed, history)
        time.sleep(scenario.cooldown)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        outcome.leader_after = cluster.leader(timeout=20)
        term_after = cluster.status(outcome.leader_after)["member"]["term"]
        outcome.elections_in_fault, outcome.elections_after_heal = _elections(
            _term_as_of(leaders, injected), term_at_heal, term_after)
        if outcome.elections_after_heal is not None and outcome.elections_after_heal > 1:
            outcome.problems.append(f"{outcome.elections_after_heal} elections after the heal "
                                    f"(term {term_at_heal} -> {term_after}): at most one")
        if scenario.fault in HANDED_OVER and outcome.elections_in_fault not in (None, 1):
            outcome.problems.append(f"{outcome.elections_in_fault} elections while the leader "
                                    "handed over: one (its successor stands once, and wins)")
        watch_stop.set()
        for thread in watchers:
            thread.join(timeout=10)
        if storage is not None:
            cluster.converged(timeout=30)  # the victim, too, caught up
            outcome.problems += storage.problems(scenario.fault)
        else:
            outcome.problems += nemesis.problems(scenario.fault, outcome.leader_after)
        cluster.converged(timeout=30)
        outcome.problems += _check(scenario, cluster, workload, history, sampler, rng)
        outcome.problems += check_one_leader_per_term((term, who) for _, term, who in leaders)
        if outcome.recovery is None or outcome.recovery > 10.0:
            outcome.problems.append(f"no leader and successful write within 10 s of the heal "
                                    f"(took {outcome.recovery})")
        outcome.stats = _stats(history, workload, sampler)
        if scenario.read_from_home and "--unsafe-stale-reads" not in scenario.member_args:
            outcome.stats["follower_reads"] = served = sum(
                cluster.status(m)["member"]["read_index"]["for_followers"] for m in cluster.live())
            if not served:
                outcome.problems.append("no follower served a consistent read from its own state")
        if outcome.stats["ok"] < 50:
            outcome.problems.append(f"only {outcome.stats['ok']} operations succeeded: no real load")
    except AssertionError as exc:  # a wait timed out: the cluster did not recover
        outcome.problems.append(f"cluster did not recover: {exc}")
    finally:
        stop.set()
        watch_stop.set()
        for member in cluster.members.values():  # a paused member must not block the stop
            if member.alive() and member.proc is not None:
                member.proc.send_signal(signal.SIGCONT)
        cluster.stop_all()
        if disk is not None:
            disk.unmount()
    for member in [*cluster.members.values(), *cluster.retired.values()]:  # whole logs
        quoted = first_traceback(member.log_path)
        if quoted is not None:
            outcome.problems.append(f"a member logged a traceback: {member.id}\n{quoted}")
    if outcome.problems:
        outcome.artifacts = _save(scenario, root, history)
    return outcome


def _check(scenario: Scenario, cluster: LocalCluster, workload: Workload, history: History,
           sampler: FeedSampler, rng: random.Random) -> list[str]:
    """The offline checks, once the cluster has healed and converged."""
    with cluster.http(timeout=2.0) as http:
        sampler.sweep(http)  # every member up to the end
    members = {m.id: cluster.client(endpoints=[m.url], timeout=2.0, deadline=5.0)
               for m in cluster.members.values()}
    try:
        with cluster.client(timeout=2.0, deadline=10.0) as leader:
            resolved_at, problems = resolve(history.ops, leader, members, rng)
    finally:
        for client in members.values():
            client.close()
    final = {n["id"] for n in cluster.members[cluster.leader()].get("/v1/nodes")["nodes"]}
    context = Context(final_nodes=final, routes=list(sampler.routes), resolved_at=resolved_at)
    problems += workload.check(history.ops, context)
    problems += check_revisions(history.ops)
    problems += sampler.problems
    if not sampler.compared:
        problems.append("the change feeds of the members were never compared")
    # (No revision == element count check: the liveness monitor also commits transitions
    # for the elements, which are nodes that never heartbeat.)
    return problems


def _stats(history: History, workload: Workload, sampler: FeedSampler) -> dict[str, int]:
    stats = {s: sum(1 for op in history.ops if op.status == s) for s in ("ok", "fail", "unknown")}
    for verdict in ("applied", "not_applied"):
        stats[verdict] = sum(1 for op in history.ops if op.resolved == verdict)
    stats["feed_revisions_compared"] = sampler.compared
    return {**stats, **workload.stats()}


def _term_as_of(leaders: list[Sighting], moment: float) -> int | None:
    """The term of the last leader seen at or before ``moment`` (None: none was seen)."""
    seen = [term for when, term, _ in list(leaders) if when <= moment]
    return max(seen) if seen else None


def _failover(leaders: list[Sighting], injected: float, healed: float) -> float | None:
    """Seconds from ``injected`` to the first leader of a newer term seen before ``healed``."""
    term = _term_as_of(leaders, injected)
    if term is None:
        return None
    newer = [when for when, seen, _ in list(leaders) if seen > term and injected < when <= healed]
    return min(newer) - injected if newer else None


def _elections(before: int | None, at_heal: int | None,
               after: int) -> tuple[int | None, int | None]:
    """Terms begun during the fault and after its heal, from the leaders' terms at the fault's
    start, at its heal and at the end (a term begins with each election, won or not)."""
    in_fault = None if before is None or at_heal is None else at_heal - before
    after_heal = None if at_heal is None else after - at_heal
    return in_fault, after_heal


def _first_write_after(cluster: LocalCluster, healed: float, history: History) -> float | None:
    """Seconds from the heal to the first write acknowledged by the cluster (a probe of its own)."""
    probe = cluster.client(timeout=1.0, deadline=10.0)
    try:
        probe.node_add(f"probe-{int(healed * 1000)}", address="127.0.0.1:1")
    except HacoordError as exc:
        history.note(f"probe write after heal failed: {exc}")
        return None
    finally:
        probe.close()
    return time.monotonic() - healed


def _save(scenario: Scenario, root: Path, history: History) -> Path:
    target = ARTIFACTS / f"{scenario.name}-seed{scenario.seed}"
    shutil.rmtree(target, ignore_errors=True)
    timeline = history.save(target)
    for log in root.glob("*.log"):
        shutil.copy(log, target / log.name)
    (target / "replay.txt").write_text(
        f"pytest tests/chaos -m chaos -k {scenario.name}  # seed {scenario.seed}\n")
    return timeline.parent


Runner = Callable[[Scenario, Path], Outcome]
