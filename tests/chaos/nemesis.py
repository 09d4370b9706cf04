"""The nemesis: injects one fault, holds it, heals it, and says whether it had an effect.

Process faults use signals (SIGKILL, SIGSTOP/SIGCONT) and restarts. Network faults need a
:class:`tests.chaos.network.ProxiedCluster` (every Raft link through a proxy the test controls):

* ``isolate_leader``: no Raft traffic between the leader and anyone, either way;
* ``isolate_minority``: the leader and as many others as stay a minority (one more in a 5-member
  cluster) cut off from the rest, either way; traffic inside each side flows;
* ``one_way_loss``: nothing from one member reaches another (the leader and a follower, in a
  direction the seed picks), the other way untouched;
* ``slow_links``: every link delayed (a uniform draw per frame, order kept) and lossy (a lost
  frame comes one retransmission timeout late, as over TCP).

Membership changes under the load (admin calls, as an operator makes them):

* ``replace_member``: a follower SIGKILLed, removed, and replaced by a new member (a new id, new
  ports, an empty data directory) that is added once started and must catch up;
* ``remove_leader``: the leader removed (it hands over first), then stopped.

Afterwards every member must report the expected membership.

Heavy input (``large_create``): a resource of ``LARGE_PARTITIONS`` partitions x RF 3 created
under the load, which must neither depose the leader nor change its term; with
``large_create_kill_leader`` the leader is SIGKILLed half-way through the creation's slices and
the new leader's rebalancer must finish it. Either way every member ends with the whole resource.

The members' HTTP ports stay reachable throughout: clients may still talk to an isolated leader,
which cannot commit anything (its writes time out or it answers ``not_leader``).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass

import httpx

from hacoord.testing.cluster import LocalCluster, wait_for
from tests.chaos.history import History
from tests.chaos.network import Network

NETWORK_FAULTS = ("isolate_leader", "isolate_minority", "one_way_loss", "slow_links")
PROCESS_FAULTS = ("kill_leader", "kill_random", "restart_leader_fast", "kill_all", "pause_leader",
                  "pause_follower", "lagging_member", "rolling_restart")
HEAVY_FAULTS = ("large_create", "large_create_kill_leader")
MEMBERSHIP_FAULTS = ("replace_member", "remove_leader")
FAULTS = (*PROCESS_FAULTS, *NETWORK_FAULTS, *HEAVY_FAULTS, *MEMBERSHIP_FAULTS, "none")
#: The large resource: 40 slices of 500 partitions.
LARGE = "chaos-large"
LARGE_PARTITIONS = 20_000
#: Faults in which the leader hands over (Raft's TimeoutNow): one election, won at once.
HANDED_OVER = ("remove_leader",)
#: Faults after which the leader must have changed (partitions check that the majority elected
#: a leader of its own while they lasted).
DEPOSING = ("kill_leader", "pause_leader", "large_create_kill_leader", "remove_leader")


@dataclass(frozen=True)
class LinkFault:
    """How slow links misbehave: ``delay`` range in seconds, ``loss`` probability per frame."""

    delay: tuple[float, float] = (0.05, 0.2)
    loss: float = 0.05


class Nemesis:
    """Injects one fault into ``cluster``, holds it, heals it, and says whether it did anything."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, history: History,
                 link: LinkFault | None = None) -> None:
        self.cluster = cluster
        self.rng = rng
        self.history = history
        self.link = link or LinkFault()
        self.network: Network | None = getattr(cluster, "network", None)  # a ProxiedCluster's
        self.victims: list[str] = []
        self.leader: str | None = None
        self.cut_off: list[str] = []       # the side without a majority, for partitions
        self.elected: str | None = None    # the leader the majority elected meanwhile
        self.directions: list[str] = []    # "SRC>DST" of the links the fault acts on
        self.stats_before: dict[str, dict[str, int]] = {}
        self.stats_after: dict[str, dict[str, int]] = {}
        self.term_before: int | None = None
        self.created: list[str] = []  # what the large create's request answered
        self.expected_members: list[str] = []  # after a membership change
        self.replaced_in: float | None = None  # remove, add, new member ready (seconds)

    def inject(self, fault: str) -> None:
        cluster = self.cluster
        leader = self.leader = cluster.leader()
        followers = sorted(m for m in cluster.members if m != leader)
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
            self.victims = [self.rng.choice(followers)]
            self._signal(self.victims[0], signal.SIGSTOP)
        elif fault == "lagging_member":  # down long enough to need a snapshot
            self.victims = [self.rng.choice(followers)]
            cluster.kill(self.victims[0], signal.SIGKILL)
        elif fault in ("rolling_restart", "rolling_upgrade"):  # the upgrade: see the runner
            self._rolling_restart([*followers, leader])
        elif fault in NETWORK_FAULTS:
            self._inject_network(fault, leader, followers)
        elif fault in HEAVY_FAULTS:
            self._inject_large_create(leader, kill=fault == "large_create_kill_leader")
        elif fault in MEMBERSHIP_FAULTS:
            self._change_members(fault, leader, followers)
        elif fault != "none":
            raise ValueError(f"unknown fault {fault!r}")
        self.history.note(f"inject {fault} on {self.victims or 'nobody'} (leader was {leader})")

    def _rolling_restart(self, order: list[str]) -> None:
        """An upgrade's restart: each member in turn (the leader last) stopped cleanly, started
        again, and ready before the next one goes."""
        self.victims = order
        for member_id in order:
            member = self.cluster.members[member_id]
            self.history.note(f"rolling restart: stopping {member_id}")
            self.cluster.kill(member_id, signal.SIGTERM)
            self.cluster.start(member_id)
            wait_for(f"{member_id} ready again", lambda m=member: m.get("/readyz")["ready"],
                     timeout=30.0)
            self.history.note(f"rolling restart: {member_id} ready")

    def _change_members(self, fault: str, leader: str, followers: list[str]) -> None:
        cluster = self.cluster
        with cluster.client(timeout=5.0, deadline=30.0) as admin:
            if fault == "remove_leader":
                self.victims = [leader]
                answer = admin.member_remove(leader)
                self.history.note(f"removed the leader {leader}: changed={answer.changed}")
                cluster.kill(leader, signal.SIGTERM)
                cluster.retire(leader)
                self.expected_members = sorted(cluster.members)
                return
            dead = self.rng.choice(followers)
            self.victims = [dead]
            cluster.kill(dead, signal.SIGKILL)
            started = time.monotonic()
            admin.member_remove(dead)
            cluster.retire(dead)
            new_id = f"m{len(cluster.members) + len(cluster.retired) + 1}"
            new = cluster.add_member(new_id)
            cluster.start(new_id)
            answer = admin.member_add(new_id, f"127.0.0.1:{new.raft_port}", new.url)
            self.history.note(f"replaced {dead} by {new_id}: changed={answer.changed}")
            wait_for(f"{new_id} ready", lambda: new.get("/readyz")["ready"], timeout=60.0)
            self.replaced_in = time.monotonic() - started
            self.expected_members = sorted(cluster.members)

    def _membership_problems(self, fault: str) -> list[str]:
        problems = []
        for member_id in self.cluster.live():
            listed = sorted(m["id"] for m in
                            self.cluster.members[member_id].get("/v1/members")["members"])
            if listed != self.expected_members:
                problems.append(f"{fault}: {member_id} lists members {listed}, expected "
                                f"{self.expected_members}")
        return problems

    def _inject_network(self, fault: str, leader: str, followers: list[str]) -> None:
        network = self.network
        assert network is not None, f"{fault} needs a ProxiedCluster"
        self.stats_before = network.stats()
        if fault in ("isolate_leader", "isolate_minority"):
            extra = 0 if fault == "isolate_leader" else (len(self.cluster.members) - 1) // 2 - 1
            self.cut_off = [leader, *self.rng.sample(followers, extra)]
            rest = {m for m in self.cluster.members if m not in self.cut_off}
            network.partition(set(self.cut_off), rest)
            self.victims = list(self.cut_off)
            self.directions = [f"{a}>{b}" for a in self.cut_off for b in sorted(rest)]
        elif fault == "one_way_loss":
            follower = self.rng.choice(followers)
            src, dst = self.rng.choice([(leader, follower), (follower, leader)])
            network.one_way(src, dst)
            self.victims = [src, dst]
            self.directions = [f"{src}>{dst}"]
        else:  # slow_links
            members = sorted(self.cluster.members)
            network.degrade(members, self.link.delay, self.link.loss)
            self.victims = members
            self.directions = [f"{a}>{b}" for a in members for b in members if a != b]

    def _inject_large_create(self, leader: str, kill: bool) -> None:
        url = self.cluster.members[leader].url
        self.term_before = self.cluster.status(leader)["member"]["term"]
        self.victims = [leader]

        def create() -> None:
            try:
                answer = httpx.post(url + "/v1/resources", timeout=60, headers=self.cluster.headers,
                                    verify=self.cluster.verify, json={
                    "name": LARGE, "partitions": LARGE_PARTITIONS, "replicas": 3})
                self.created.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as exc:
                self.created.append(f"{type(exc).__name__}")

        threading.Thread(target=create, daemon=True).start()
        if not kill:
            return
        for _ in range(600):  # up to a minute: the first slice, then the leader dies
            resources = httpx.get(url + "/v1/resources", timeout=5,
                                  headers=self.cluster.headers,
                                  verify=self.cluster.verify).json()["resources"]
            if any(r["name"] == LARGE and r["creating"] for r in resources):
                self.cluster.kill(leader, signal.SIGKILL)
                self.history.note("the leader killed while creating " + LARGE)
                return
            time.sleep(0.1)

    def _large_resource_problems(self, fault: str, leader_after: str | None) -> list[str]:
        """Every member holds the whole large resource (within 30 s: a creation cut short is
        finished by the new leader's rebalancer); a create without a kill kept the term."""
        problems = []
        counts: dict[str, object] = {}
        for _ in range(300):
            counts = {}
            for member in self.cluster.live():
                resources = self.cluster.members[member].get("/v1/resources", timeout=10)["resources"]
                found = [r for r in resources if r["name"] == LARGE]
                counts[member] = (found[0]["partitions"], found[0]["creating"]) if found else None
            if set(counts.values()) == {(LARGE_PARTITIONS, False)}:
                break
            time.sleep(0.1)
        else:
            problems.append(f"{fault}: the large resource is not whole everywhere: {counts}")
        if fault == "large_create":
            term = self.cluster.status(self.cluster.leader())["member"]["term"]
            if leader_after != self.leader or term != self.term_before:
                problems.append(f"{fault}: creating {LARGE_PARTITIONS} partitions deposed the "
                                f"leader ({self.leader}, term {self.term_before} -> {leader_after}, "
                                f"term {term})")
            if not self.created or not self.created[0].startswith("201"):
                problems.append(f"{fault}: the create was answered {self.created}")
        return problems

    def hold(self, fault: str, seconds: float) -> None:
        """Keep the fault for ``seconds``; meanwhile, for a partition, note the leader the
        majority elects."""
        end = time.monotonic() + seconds
        if self.cut_off:
            majority = [m for m in self.cluster.live() if m not in self.cut_off]
            try:
                self.elected = self.cluster.leader(timeout=max(0.1, end - time.monotonic()),
                                                   among=majority)
                self.history.note(f"the majority {majority} elected {self.elected}")
            except AssertionError:
                self.elected = None
        time.sleep(max(0.0, end - time.monotonic()))

    def heal(self, fault: str) -> None:
        if fault in NETWORK_FAULTS and self.network is not None:
            self.stats_after = self.network.stats()
            self.network.heal()
        for member_id in self.victims:
            if fault in MEMBERSHIP_FAULTS:
                break  # the victims left the cluster for good
            if fault in ("pause_leader", "pause_follower"):
                self._signal(member_id, signal.SIGCONT)
            elif fault in (*PROCESS_FAULTS, *HEAVY_FAULTS) \
                    and not self.cluster.members[member_id].alive():
                self.cluster.start(member_id)
        self.history.note(f"heal {fault} on {self.victims or 'nobody'}")

    def problems(self, fault: str, leader_after: str | None) -> list[str]:
        """Fail the run if the fault injected nothing or had none of the effect it must have."""
        if fault != "none" and not self.victims:
            return [f"{fault}: nothing was injected"]
        if fault in DEPOSING and leader_after == self.leader:
            return [f"{fault}: the leader did not change ({self.leader})"]
        if fault in HEAVY_FAULTS:
            return self._large_resource_problems(fault, leader_after)
        if fault in MEMBERSHIP_FAULTS:
            return self._membership_problems(fault)
        if self.cut_off and self.elected in (None, *self.cut_off):
            return [f"{fault}: the majority elected no leader of its own while {self.cut_off} "
                    f"were cut off"]
        if fault in NETWORK_FAULTS:
            counts = {key: sum(self.stats_after[d][key] - self.stats_before[d][key]
                               for d in self.directions)
                      for key in ("held_frames", "delayed_frames", "retransmitted_frames")}
            wanted = ("delayed_frames", "retransmitted_frames") if fault == "slow_links" \
                else ("held_frames",)
            if not all(counts[key] for key in wanted):
                return [f"{fault}: the proxy did nothing to {self.directions}: {counts}"]
        return []

    def _signal(self, member_id: str, sig: int) -> None:
        proc = self.cluster.members[member_id].proc
        assert proc is not None and proc.poll() is None, f"{member_id} is not running"
        proc.send_signal(sig)
