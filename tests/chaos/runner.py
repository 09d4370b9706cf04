"""One chaos run: a real cluster, clients recording every operation, a nemesis, then checks.

Modelled on Jepsen (record everything while faults are injected, check the history offline) and
etcd's robustness tests (one fault per run, health before and after, equal state digests at the
end). Everything is bounded in time; a failing run saves its history, timeline and member logs
and names the seed that replays it.
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

from hacoord.client import Client, Conflict, HacoordError
from tests.chaos.checker import check_one_leader_per_term, check_registers, check_set
from tests.chaos.history import History
from tests.integration.harness import LocalCluster

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
    workload: str = "set"  # "set": unique adds + consistent reads; "register": read/write/cas
    registers: int = 4
    #: Send each client's reads to its home member only (not to the leader it learnt): a
    #: member that answers "consistent" reads from its own state is then read while it lags.
    read_from_home: bool = False


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


class Nemesis:
    """Injects one fault into ``cluster``, holds it, heals it, and says whether it did anything."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, history: History) -> None:
        self.cluster = cluster
        self.rng = rng
        self.history = history
        self.victims: list[str] = []

    def inject(self, fault: str) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        if fault in ("kill_leader", "restart_leader_fast"):
            self.victims = [leader]
            cluster.kill(leader, signal.SIGKILL)
            if fault == "restart_leader_fast":
                cluster.start(leader)  # back during the election it caused
        elif fault == "kill_random":
            self.victims = [self.rng.choice(sorted(cluster.members))]
            cluster.kill(self.victims[0], signal.SIGKILL)
        elif fault == "kill_all":
            self.victims = sorted(cluster.members)
            for member_id in self.victims:
                cluster.kill(member_id, signal.SIGKILL)
        elif fault == "pause_leader":
            self.victims = [leader]
            self._signal(leader, signal.SIGSTOP)
        elif fault == "pause_follower":
            self.victims = [self.rng.choice(sorted(m for m in cluster.members if m != leader))]
            self._signal(self.victims[0], signal.SIGSTOP)
        elif fault == "lagging_member":  # down long enough to need a snapshot
            self.victims = [self.rng.choice(sorted(m for m in cluster.members if m != leader))]
            cluster.kill(self.victims[0], signal.SIGKILL)
        elif fault != "none":
            raise ValueError(f"unknown fault {fault!r}")
        self.history.note(f"inject {fault} on {self.victims or 'nobody'} (leader was {leader})")

    def heal(self, fault: str) -> None:
        for member_id in self.victims:
            if fault in ("pause_leader", "pause_follower"):
                self._signal(member_id, signal.SIGCONT)
            elif not self.cluster.members[member_id].alive():
                self.cluster.start(member_id)
        self.history.note(f"heal {fault} on {self.victims or 'nobody'}")

    def _signal(self, member_id: str, sig: int) -> None:
        proc = self.cluster.members[member_id].proc
        assert proc is not None and proc.poll() is None, f"{member_id} is not running"
        proc.send_signal(sig)


def _client_loop(name: str, client: Client, reader: Client, history: History, rng: random.Random,
                 read_share: float, stop: threading.Event, limit: int = 5000) -> None:
    for i in range(limit):
        if stop.is_set():
            return
        if rng.random() < read_share:
            op = history.invoke(name, "read", None)
            try:
                nodes = reader.node_list(consistent=True)
                history.complete(op, "ok", result=[n.id for n in nodes])
            except HacoordError as exc:
                history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
        else:
            element = f"e-{name}-{i}"
            op = history.invoke(name, "add", element)
            try:
                client.node_add(element, address="127.0.0.1:1")
                history.complete(op, "ok")
            except HacoordError as exc:  # the add may have been applied: unknown, not failed
                history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")


def _register_loop(name: str, client: Client, reader: Client, history: History,
                   rng: random.Random, read_share: float, stop: threading.Event, keys: int,
                   limit: int = 5000) -> None:
    """Read, write and compare-and-set the tag ``v`` of nodes ``reg-0..`` (one register each)."""
    for _ in range(limit):
        if stop.is_set():
            return
        key = f"reg-{rng.randrange(keys)}"
        roll = rng.random()
        if roll < read_share:
            op = history.invoke(name, "read", None)
            op.key = key
            try:
                history.complete(op, "ok", result=reader.node_show(key, consistent=True).tags.get("v"))
            except HacoordError as exc:
                history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            continue
        new = str(rng.randrange(5))
        if roll < read_share + (1 - read_share) / 2:
            op = history.invoke(name, "write", new)
            op.key = key
            expect = None
        else:
            expected = rng.choice([None, *map(str, range(5))])
            op = history.invoke(name, "cas", (expected, new))
            op.key = key
            expect = {"v": expected}
        try:
            client.node_set_state(key, tags={"v": new}, expect_tags=expect)
            history.complete(op, "ok", result=True)
        except Conflict as exc:
            if exc.code == "precondition_failed":
                history.complete(op, "ok", result=False)
            else:
                history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
        except HacoordError as exc:  # timeouts and lost answers: maybe applied
            history.complete(op, "unknown", error=f"{type(exc).__name__}: {exc}")


def _watch_leaders(cluster: LocalCluster, seen: list[tuple[int, str]], stop: threading.Event) -> None:
    with httpx.Client(timeout=0.5) as http:
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
                    seen.append((status["term"], status["member_id"]))
            time.sleep(0.1)


def run(scenario: Scenario, root: Path) -> Outcome:
    """Run ``scenario`` in ``root``; never raises for a failed check (see ``Outcome.problems``)."""
    rng = random.Random(scenario.seed)
    history = History()
    cluster = LocalCluster(root, scenario.size, scenario.member_args)
    cluster.start()
    stop, watch_stop = threading.Event(), threading.Event()
    leaders: list[tuple[int, str]] = []
    threads: list[threading.Thread] = []
    outcome = Outcome(scenario, [], history)
    try:
        outcome.leader_before = cluster.leader()
        members = list(cluster.members.values())
        if scenario.workload == "register":
            setup = Client(cluster.endpoints, timeout=2.0, deadline=20.0)
            for i in range(scenario.registers):
                setup.node_add(f"reg-{i}", address="127.0.0.1:1")
        for k in range(scenario.clients_per_member * len(members)):
            home = members[k % len(members)]
            endpoints = [home.url] + [m.url for m in members if m is not home]
            client = Client(endpoints, timeout=1.0, deadline=10.0)
            reader = Client([home.url], timeout=1.0, deadline=10.0) if scenario.read_from_home \
                else client
            name = f"c{k}"
            seed_rng = random.Random(rng.random())
            if scenario.workload == "register":
                target, extra = _register_loop, (scenario.registers,)
            else:
                target, extra = _client_loop, ()
            threads.append(threading.Thread(target=target, name=name, args=(
                name, client, reader, history, seed_rng, scenario.read_share, stop, *extra)))
        watcher = threading.Thread(target=_watch_leaders, args=(cluster, leaders, watch_stop))
        for thread in [*threads, watcher]:
            thread.start()
        time.sleep(scenario.warmup)
        nemesis = Nemesis(cluster, rng, history)
        nemesis.inject(scenario.fault)
        time.sleep(scenario.hold)
        nemesis.heal(scenario.fault)
        healed = time.monotonic()
        outcome.recovery = _first_write_after(cluster, healed, history)
        time.sleep(scenario.cooldown)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        outcome.leader_after = cluster.leader(timeout=20)
        watch_stop.set()
        watcher.join(timeout=10)
        outcome.problems += _effect_problems(scenario, nemesis, outcome)
        cluster.converged(timeout=30)
        final = {n["id"] for n in cluster.members[cluster.leader()].get("/v1/nodes")["nodes"]}
        if scenario.workload == "register":
            outcome.problems += check_registers(history.ops, scenario.registers)
        else:
            outcome.problems += check_set(history.ops, final)
        outcome.problems += check_one_leader_per_term(leaders)
        if outcome.recovery is None or outcome.recovery > 10.0:
            outcome.problems.append(f"no leader and successful write within 10 s of the heal "
                                    f"(took {outcome.recovery})")
        # (No revision == element count check: the liveness monitor also commits transitions
        # for the elements, which are nodes that never heartbeat.)
        outcome.stats = {s: sum(1 for op in history.ops if op.status == s)
                         for s in ("ok", "fail", "unknown")}
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
    if "Traceback" in cluster.logs():
        outcome.problems.append("a member logged a traceback")
    if outcome.problems:
        outcome.artifacts = _save(scenario, root, history)
    return outcome


def _first_write_after(cluster: LocalCluster, healed: float, history: History) -> float | None:
    """Seconds from the heal to the first write acknowledged by the cluster (a probe of its own)."""
    probe = Client(cluster.endpoints, timeout=1.0, deadline=10.0)
    try:
        probe.node_add(f"probe-{int(healed * 1000)}", address="127.0.0.1:1")
    except HacoordError as exc:
        history.note(f"probe write after heal failed: {exc}")
        return None
    return time.monotonic() - healed


def _effect_problems(scenario: Scenario, nemesis: Nemesis, outcome: Outcome) -> list[str]:
    """Fail the run if the fault injected nothing."""
    if scenario.fault in ("kill_leader", "pause_leader", "restart_leader_fast"):
        if outcome.leader_after == outcome.leader_before and scenario.fault != "restart_leader_fast":
            return [f"{scenario.fault}: the leader did not change ({outcome.leader_before})"]
    if scenario.fault != "none" and not nemesis.victims:
        return [f"{scenario.fault}: nothing was injected"]
    return []


def _save(scenario: Scenario, root: Path, history: History) -> Path:
    target = ARTIFACTS / f"{scenario.name}-seed{scenario.seed}"
    shutil.rmtree(target, ignore_errors=True)
    timeline = history.save(target)
    for log in root.glob("m*.log"):
        shutil.copy(log, target / log.name)
    (target / "replay.txt").write_text(
        f"pytest tests/chaos -m chaos -k {scenario.name}  # seed {scenario.seed}\n")
    return timeline.parent


Runner = Callable[[Scenario, Path], Outcome]
