"""Scale: a 3-member cluster coordinating 1,000 heartbeating data nodes and 100,000 partitions.

``python -m bench.scale`` (``--help`` for the knobs; about 15 minutes with the defaults) starts
real members on 127.0.0.1 in a temporary directory, exactly as ``hacoord serve`` runs them
(journal fsync on, cluster secret on), and measures, with these running throughout:

* ``--nodes`` data nodes heartbeating once a second (the liveness bench's load generator,
  following the leader a forwarded answer names, as ``Client`` does);
* a probe: one small write (a node's metrics) every 50 ms, retried on 503 and connection errors
  as a client would; its latency is from the first attempt to the acknowledgement.

Phases: the baseline (probe writes and ``GET /livez`` on the idle cluster with the nodes
heartbeating), one resource of ``--partitions`` partitions x RF 3, a read of the whole routing
table, its deletion, ``--resources`` resources totalling the same size, ``--idle`` seconds of
nothing else, a clean and a SIGKILL restart of a follower (time to ready), a follower killed
and started again after the leader compacted its log (so it is sent the whole state as a
snapshot and decodes it off its loop: time to ready and to the install), and a SIGKILL of the
leader (time to the first acknowledged write and the restarted member's time to ready).

For every phase: elections (Raft terms gained, over the members), the event loop's lag on every
member (``hacoord_event_loop_lag_seconds``: the count above 20 ms and above 100 ms and the worst
bucket), the worst and p99 probe latency and their ratio to the idle p50 measured in the same
run, and heartbeats refused or lost. At the end: RSS (now and peak) per member, snapshot write
time and size. Results land in ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.liveness import Connection, LoadStats, heartbeat_load, percentile, register
from bench.plots import plot_file
from hacoord.core.backup import decode_backup
from hacoord.replication.restore import restore
from hacoord.testing.cluster import LocalCluster, bearer

PROBE_PATH = "/v1/nodes/n00000"  # a node that heartbeats (a silent one would be judged down)
LAG_BUCKETS = (0.02, 0.1)  # lag above these counts as a stall (the 20 ms; the log's 100 ms)


@dataclass
class Probe:
    """Probe writes: (when started, latency to the acknowledgement, attempts)."""

    samples: list[tuple[float, float, int]] = field(default_factory=list)
    failures: int = 0

    def window(self, start: float, end: float) -> list[float]:
        return [lat for t, lat, _ in self.samples if start <= t < end]


async def probe_writes(ports: dict[str, int], probe: Probe, stop: asyncio.Event,
                       interval: float = 0.05, give_up: float = 30.0, token: str | None = None) -> None:
    """A write every ``interval`` seconds to whichever member leads, retried until acknowledged
    (sent with ``token``)."""
    conns = {m: Connection("127.0.0.1", port, token) for m, port in ports.items()}
    members = sorted(ports)
    target = members[0]
    loop = asyncio.get_running_loop()
    seq = 0
    while not stop.is_set():
        seq += 1
        body = json.dumps({"metrics": {"seq": seq}}).encode()
        started = loop.time()
        attempts = 0
        while loop.time() - started < give_up:
            attempts += 1
            try:
                status, _, named = await asyncio.wait_for(
                    conns[target].request("PATCH", PROBE_PATH, body), timeout=5)
            except (OSError, IndexError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                conns[target].close()
                target = members[(members.index(target) + 1) % len(members)]
                await asyncio.sleep(0.01)
                continue
            if named in conns:
                target = named
            if status == 200:
                probe.samples.append((started, loop.time() - started, attempts))
                break
            await asyncio.sleep(0.01)
        else:
            probe.failures += 1
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
    for conn in conns.values():
        conn.close()


def step_ms(steps: str | None) -> float:
    """The milliseconds of the longest step a member's lag sample names ("raft tick 25 ms
    (9 ms on a core), apply X 20 ms": 25)."""
    found = re.match(r".*? (\d+) ms", steps) if steps else None
    return float(found.group(1)) if found else 0.0


def held(samples: list[tuple[float, float, str | None]], start: float, end: float) -> dict[str, Any]:
    """Of a member's lag samples over 20 ms between ``start`` and ``end``: the steps that held
    its loop over 20 ms themselves, and how many samples had no such step (the member waited
    for a CPU shared with the others and the load generator, or ran many short steps)."""
    window = [step for t, _, step in samples if start <= t < end]
    return {"held_by_steps_over_20ms": [step for step in window if step_ms(step) > 20],
            "no_step_over_20ms": sum(1 for step in window if step_ms(step) <= 20)}


async def watch_own_lag(samples: list[tuple[float, float]], stop: asyncio.Event,
                        every: float = 0.01) -> None:
    """Record how late this process's loop wakes from a sleep of ``every`` (over 5 ms)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + every
        await asyncio.sleep(every)
        late = loop.time() - due
        if late > 0.005:
            samples.append((due, late))


def scrape(url: str, token: str | None = None) -> dict[str, Any]:
    """Term, loop-lag buckets and snapshot figures from one member's ``/metrics`` (read with
    ``token``)."""
    text = httpx.get(url + "/metrics", timeout=30, headers=bearer(token)).text
    out: dict[str, Any] = {"lag": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hacoord_event_loop_lag_seconds_bucket":
                out["lag"][float(sample.labels["le"])] = sample.value
            elif sample.name in ("hacoord_raft_term", "hacoord_snapshot_write_seconds",
                                 "hacoord_snapshot_index", "hacoord_snapshot_writes_total",
                                 "hacoord_raft_leader_changes_total", "hacoord_state_revision"):
                out[sample.name] = sample.value
    return out


def rss_mib(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", 0.0), "peak": fields.get("VmHWM", 0.0)}


class Bench:
    """The cluster, its background load, and the phase bookkeeping."""

    def __init__(self, cluster: LocalCluster, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args
        self.probe = Probe()
        self.phases: dict[str, dict[str, Any]] = {}
        #: (phase, start, end) on the event loop's clock, as the probe's samples are.
        self.phase_times: list[tuple[str, float, float]] = []
        self.idle_p50 = float("nan")
        #: Each member's event-loop lag samples over 20 ms, (loop clock, seconds).
        self.lag_samples: dict[str, list[tuple[float, float, str | None]]] = {}
        #: The time of the last lag sample collected from each member (its clock, as sent).
        self.lag_seen: dict[str, float] = {}
        #: This process's own loop lag samples over 5 ms: (loop clock, seconds).
        self.own_lag: list[tuple[float, float]] = []
        #: Wall clock minus the event loop's (monotonic) clock, to place the members' samples.
        self.wall_offset = time.time() - time.monotonic()

    def urls(self) -> dict[str, str]:
        return {m: member.url for m, member in self.cluster.members.items() if member.alive()}

    def scrape_all(self) -> dict[str, dict[str, Any]]:
        return {m: scrape(url, self.cluster.token) for m, url in self.urls().items()}

    def collect_lag(self) -> None:
        """Add every live member's loop-lag samples not collected yet: one
        ``/v1/status?lag=true`` per member and phase (each member keeps its last 10,000; a
        member killed during a phase loses the samples of that phase it took before)."""
        for member, url in self.urls().items():
            have = self.lag_samples.setdefault(member, [])
            answer = httpx.get(url + "/v1/status", timeout=30, headers=self.cluster.headers,
                               params={"lag": "true", "lag_since": self.lag_seen.get(member, 0.0)})
            samples = answer.json()["loop_lag"]["samples"]
            if samples:
                self.lag_seen[member] = samples[-1][0]  # the member's own time: asked as it is
            have.extend((t - self.wall_offset, lag, step) for t, lag, step in samples)

    async def phase(self, name: str, work: Any) -> Any:
        """Run ``work`` (a coroutine) and record what the cluster went through meanwhile."""
        loop = asyncio.get_running_loop()
        before = await asyncio.to_thread(self.scrape_all)
        start = loop.time()
        result = await work
        end = loop.time()
        self.phase_times.append((name, start, end))
        after = await asyncio.to_thread(self.scrape_all)
        await asyncio.to_thread(self.collect_lag)
        latencies = self.probe.window(start, end)
        lag = {}
        for member in sorted(after):
            b, a = before.get(member, {"lag": {}})["lag"], after[member]["lag"]
            if a.get(float("inf"), 0) < b.get(float("inf"), 0):
                b = {}  # the member restarted meanwhile: its counts began again
            total = a.get(float("inf"), 0) - b.get(float("inf"), 0)
            over = {f"over_{int(t * 1000)}ms": total - (a.get(t, 0) - b.get(t, 0)) for t in LAG_BUCKETS}
            worst = max((le for le in sorted(a) if a[le] - b.get(le, 0) > 0
                         and (a[le] - b.get(le, 0)) == total), default=0.0)
            lag[member] = {**over, "samples": total, "worst_bucket_s": worst,
                           **held(self.lag_samples.get(member, []), start, end)}
        terms_before = max(s.get("hacoord_raft_term", 0) for s in before.values())
        terms_after = max(s.get("hacoord_raft_term", 0) for s in after.values())
        record = {
            "seconds": end - start,
            "elections": terms_after - terms_before,
            "probe_writes": len(latencies),
            "probe_p50_ms": 1000 * percentile(latencies, 0.5),
            "probe_p99_ms": 1000 * percentile(latencies, 0.99),
            "probe_max_ms": 1000 * max(latencies, default=float("nan")),
            "probe_max_over_idle_p50": max(latencies, default=float("nan")) / self.idle_p50,
            # The bench's own loop (load generator and probe) late by this much at worst: a
            # probe write in flight then counts that wait as the cluster's.
            "bench_loop_lag_max_ms": 1000 * max(
                (lag for t, lag in self.own_lag if start <= t < end), default=0.0),
            "loop_lag": lag,
        }
        self.phases[name] = record
        print(f"{name}: {record['seconds']:.1f}s, elections {record['elections']}, probe "
              f"max {record['probe_max_ms']:.0f} ms (p99 {record['probe_p99_ms']:.0f} ms, bench's own "
              f"loop late {record['bench_loop_lag_max_ms']:.0f} ms at worst), lag>20ms "
              + ", ".join(f"{m} {v['over_20ms']:.0f}" for m, v in lag.items()), flush=True)
        return result


async def create(http: httpx.AsyncClient, url: str, name: str, partitions: int) -> float:
    started = time.monotonic()
    answer = await http.post(url + "/v1/resources", json={"name": name, "partitions": partitions,
                                                          "replicas": 3}, timeout=600)
    if answer.status_code != 201:
        raise RuntimeError(f"creating {name}: {answer.status_code} {answer.text[:300]}")
    return time.monotonic() - started


def current_leader(cluster: LocalCluster, timeout: float = 60.0) -> str:
    """The member the live members agree leads (``/v1/status`` without the state digest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = set()
        for m in cluster.live():
            try:
                views.add(httpx.get(cluster.members[m].url + "/v1/status", timeout=5,
                                    headers=cluster.headers).json()["leader"])
            except (httpx.HTTPError, ValueError, KeyError):
                views.add(None)
        if len(views) == 1 and (leader := views.pop()) in cluster.live():
            return leader
        time.sleep(0.1)
    raise RuntimeError(f"no agreed leader after {timeout:.0f}s")


def leader_url(cluster: LocalCluster) -> str:
    return cluster.members[current_leader(cluster)].url


async def leader_now(cluster: LocalCluster) -> str:
    """:func:`current_leader` on a thread. Its blocking requests (and a member's stop, which
    waits for the process) must not hold the loop the probe and the heartbeats share: while
    they did, every probe write in flight measured the bench's own wait as the cluster's."""
    return await asyncio.to_thread(current_leader, cluster)


async def leader_url_now(cluster: LocalCluster) -> str:
    """:func:`leader_url`, as :func:`leader_now` finds the leader."""
    return cluster.members[await leader_now(cluster)].url


async def wait_ready(url: str, timeout: float = 300.0) -> float:
    """Seconds until ``url`` answers ``/readyz`` 200."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                if (await http.get(url + "/readyz")).status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")


async def scenario(bench: Bench) -> dict[str, Any]:
    args, cluster = bench.args, bench.cluster
    ports = {m: member.api_port for m, member in cluster.members.items()}
    url = leader_url(cluster)
    port = int(url.rsplit(":", 1)[1])
    await register("127.0.0.1", port, args.nodes, 32, cluster.token)
    stop = asyncio.Event()
    leader_id = current_leader(cluster)
    beats = asyncio.create_task(heartbeat_load("127.0.0.1", ports, leader_id, "spread", args.nodes,
                                               1.0, 10**6, 32, stop, cluster.token))
    probing = asyncio.create_task(probe_writes(ports, bench.probe, stop, token=cluster.token))
    own_lag = asyncio.create_task(watch_own_lag(bench.own_lag, stop))
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=30, headers=cluster.headers) as http:
        await asyncio.sleep(args.baseline)
        bench.idle_p50 = percentile(bench.probe.window(0, float("inf")), 0.5)
        livez = []
        for _ in range(200):
            t = time.monotonic()
            await http.get(url + "/livez")
            livez.append(time.monotonic() - t)
        results["baseline"] = {"probe_p50_ms": 1000 * bench.idle_p50,
                               "livez_p50_ms": 1000 * statistics.median(livez)}
        await bench.phase("baseline", asyncio.sleep(args.baseline))

        url = await leader_url_now(cluster)
        results["create_one_s"] = await bench.phase(
            "create one resource", create(http, url, "big", args.partitions))

        async def read_routing() -> dict[str, Any]:
            times, size = [], 0
            for _ in range(3):
                t = time.monotonic()
                answer = await http.get(url + "/v1/routing", timeout=120)
                times.append(time.monotonic() - t)
                size = len(answer.content)
                assert answer.status_code == 200
            return {"first_s": times[0], "again_s": statistics.median(times[1:]), "bytes": size}

        results["routing_read"] = await bench.phase("read the routing table", read_routing())
        rss_big = {m: rss_mib(member.proc.pid) for m, member in cluster.members.items()
                   if member.proc is not None}
        results["rss_after_one_mib"] = rss_big

        async def backup() -> tuple[float, bytes]:
            t = time.monotonic()
            answer = await http.get(url + "/v1/backup", timeout=120)
            assert answer.status_code == 200, answer.text
            return time.monotonic() - t, answer.content

        took, taken = await bench.phase("take a backup", backup())
        results["backup"] = restore_aside(taken, took)

        async def delete() -> None:
            url = await leader_url_now(cluster)
            answer = await http.delete(url + "/v1/resources/big", timeout=120)
            assert answer.status_code == 200, answer.text

        await bench.phase("delete it", delete())
        each = -(-args.partitions // args.resources)

        async def create_many() -> list[float]:
            return [await create(http, await leader_url_now(cluster),
                                 f"r{k:02d}", each) for k in range(args.resources)]

        results["create_many_s"] = await bench.phase(f"create {args.resources} resources",
                                                     create_many())
        await bench.phase("idle", asyncio.sleep(args.idle))
        results["rss_mib"] = {m: rss_mib(member.proc.pid) for m, member in cluster.members.items()
                              if member.proc is not None}
        results["snapshots"] = {m: {k: v for k, v in s.items() if k.startswith("hacoord_snapshot")}
                                for m, s in (await asyncio.to_thread(bench.scrape_all)).items()}
        snapshot_files = {m: (member.data_dir / "raft.snapshot").stat().st_size
                          for m, member in cluster.members.items()
                          if (member.data_dir / "raft.snapshot").exists()}
        results["snapshot_bytes"] = snapshot_files

        async def restart(sig: int) -> float:
            leader = await leader_now(cluster)
            follower = next(m for m in cluster.live() if m != leader)
            await asyncio.to_thread(cluster.kill, follower, sig)
            await asyncio.to_thread(cluster.start, follower)
            return await wait_ready(cluster.members[follower].url)

        results["restart_clean_s"] = await bench.phase("restart a follower (SIGTERM)",
                                                       restart(signal.SIGTERM))
        results["restart_killed_s"] = await bench.phase("restart a follower (SIGKILL)",
                                                        restart(signal.SIGKILL))

        async def kill_leader() -> dict[str, float]:
            old = await leader_now(cluster)
            loop = asyncio.get_running_loop()
            mark = len(bench.probe.samples)
            killed = loop.time()
            cluster.kill(old, signal.SIGKILL)
            acked: list[float] = []
            for _ in range(6000):  # up to a minute
                acked = [t + lat for t, lat, _ in bench.probe.samples[mark:] if t + lat > killed]
                if acked:
                    break
                await asyncio.sleep(0.01)
            first_write = min(acked, default=float("nan")) - killed
            await asyncio.to_thread(cluster.start, old)
            return {"first_write_s": first_write,
                    "restart_to_ready_s": await wait_ready(cluster.members[old].url)}

        results["far_behind"] = await bench.phase(
            "a follower far behind (sent a snapshot)", far_behind(bench))
        results["leader_kill"] = await bench.phase("SIGKILL the leader", kill_leader())
    stop.set()
    # Bounded: a worker may be waiting on a connection to a member that was killed meanwhile.
    done, pending = await asyncio.wait([beats, probing, own_lag], timeout=30)
    for task in pending:
        task.cancel()
    heartbeats = beats.result() if beats in done else LoadStats()
    results["heartbeats"] = {"sent": heartbeats.sent, "by_status": heartbeats.by_status,
                             "errors": heartbeats.errors,
                             "p99_ms": 1000 * percentile(heartbeats.latencies, 0.99),
                             "max_gap_between_acks_s": heartbeats.max_gap}
    results["probe_failures"] = bench.probe.failures
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    member_args = ("--writes-per-client", "0", *args.member_arg)
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-scale-") as tmp:
        # Plain HTTP: the load generator speaks HTTP/1.1 on its own sockets (tokens are sent).
        cluster = LocalCluster(Path(tmp), 3, member_args, tls=False)
        cluster.start()
        try:
            current_leader(cluster)
            bench = Bench(cluster, args)
            results = asyncio.run(scenario(bench))
            stalls = [line for line in cluster.logs().splitlines() if "event loop stalled" in line]
        finally:
            cluster.stop_all()
    zero = min([t for t, _, _ in bench.probe.samples] + [s for _, s, _ in bench.phase_times],
               default=0.0)
    return {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count()},
            "phase_times": [(name, round(a - zero, 3), round(b - zero, 3))
                            for name, a, b in bench.phase_times],
            "probe_samples": [(round(t - zero, 3), round(lat, 5))
                              for t, lat, _ in bench.probe.samples],
            "lag_samples": {m: [(round(t - zero, 3), round(lag, 4), step) for t, lag, step in samples]
                            for m, samples in sorted(bench.lag_samples.items())},
            "settings": {"nodes": args.nodes, "partitions": args.partitions,
                         "resources": args.resources, "idle_s": args.idle,
                         "member_args": list(member_args)},
            "phases": bench.phases, **results, "stall_log_lines": stalls[-20:]}


INSTALLED = "installed a snapshot from the leader"


async def far_behind(bench: Bench) -> dict[str, Any]:
    """Kill a follower, write until the leader has compacted its log (so the follower's entries
    are gone from it), start the follower again: it is sent the whole state as a snapshot and
    decodes it off its loop. Returns the writes it took, the follower's time to ready and to
    the install, and the install's own log line."""
    cluster = bench.cluster
    leader = await leader_now(cluster)
    follower = next(m for m in cluster.live() if m != leader)
    await asyncio.to_thread(cluster.kill, follower, signal.SIGKILL)
    leader_url = cluster.members[leader].url
    snapshots = (await asyncio.to_thread(scrape, leader_url, cluster.token)).get(
        "hacoord_snapshot_writes_total", 0.0)
    stop = asyncio.Event()
    written = [0]

    async def writer(k: int) -> None:
        conn = Connection("127.0.0.1", cluster.members[leader].api_port, cluster.token)
        node = f"/v1/nodes/n{k:05d}"
        try:
            while not stop.is_set():
                status, _, _ = await conn.request("PATCH", node, json.dumps(
                    {"metrics": {"burst": written[0]}}).encode())
                if status == 200:
                    written[0] += 1
        finally:
            conn.close()

    writers = [asyncio.create_task(writer(k + 1)) for k in range(4)]
    try:
        for _ in range(600):  # a few minutes at most: compaction comes after 5,000 entries
            await asyncio.sleep(0.5)
            now = (await asyncio.to_thread(scrape, leader_url, cluster.token)).get(
                "hacoord_snapshot_writes_total", 0.0)
            if now > snapshots:
                break
        else:
            raise RuntimeError("the leader did not compact its log")
    finally:
        stop.set()
        await asyncio.gather(*writers, return_exceptions=True)
    member = cluster.members[follower]
    seen = member.log_path.read_text(errors="replace").count(INSTALLED)
    started = time.monotonic()
    await asyncio.to_thread(cluster.start, follower)
    ready = await wait_ready(member.url)
    line = ""
    for _ in range(1200):  # a minute at most
        text = member.log_path.read_text(errors="replace")
        if text.count(INSTALLED) > seen:
            line = next(x for x in reversed(text.splitlines()) if INSTALLED in x)
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"{follower} was not sent a snapshot")
    return {"member": follower, "writes": written[0], "to_ready_s": ready,
            "to_install_s": time.monotonic() - started, "install_log": line.strip()}


def restore_aside(taken: bytes, took: float) -> dict[str, Any]:
    """What a backup taken in ``took`` seconds holds, and how long restoring a member's data
    from it takes (in this process, after the phase, so that the members' figures do not pay
    for it)."""
    t = time.monotonic()
    header, state = decode_backup(taken)
    decode_s = time.monotonic() - t
    replicas = sum(len(p.replicas) for r in state.resources.values() for p in r.partitions)
    t = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        restore(taken, Path(scratch) / "m1")  # a new cluster id, as the first restore makes
    return {"s": took, "bytes": len(taken), "revision": header.revision,
            "partition_replicas": replicas, "decode_s": decode_s,
            "restore_s": time.monotonic() - t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="data nodes heartbeating at 1 Hz")
    parser.add_argument("--partitions", type=int, default=100_000,
                        help="partitions (x RF 3) of the one resource, and of the many together")
    parser.add_argument("--resources", type=int, default=30, help="how many resources share them")
    parser.add_argument("--idle", type=float, default=600.0, help="seconds of the idle phase")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of the baseline")
    parser.add_argument("--member-arg", action="append", default=[],
                        help="extra argument for every member")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("phases", "machine", "probe_samples", "phase_times")},
                     indent=2, default=str))
    print(f"written to {args.out}")
    for written in plot_file(args.out):
        print(f"plotted {written}")


if __name__ == "__main__":
    main()
