"""Liveness at scale: many data nodes heartbeating against a local 3-member cluster.

``python -m bench.liveness`` (``--help`` for the knobs) starts real members on 127.0.0.1 in a
temporary directory, exactly as ``hacoord serve`` runs them, then:

1. baseline: the leader's CPU share over a window of ``--seconds`` with the cluster idle;
2. registers ``--nodes`` data nodes;
3. load: every node heartbeats once per ``--period`` seconds (spread evenly over the period) for
   ``--seconds``, to the leader (as the client does once it knows it; ``--via spread`` starts them
   spread over the members and follows the leader a forwarded answer names, ``--via followers``
   forwards every one), over ``--connections`` keep-alive HTTP connections (per member); and the
   leader's CPU share over that window;
4. reads back what the leader committed meanwhile: every liveness transition is a false one (each
   node heartbeated throughout), so they must be 0 -- as long as the load kept its schedule; it
   says when it fell behind (then the nodes really were silent for a while).

CPU share is utime+stime from ``/proc/<pid>/stat`` over the window divided by the window (1.0 is
one core busy). The load generator is a small asyncio HTTP/1.1 client written for this (no
per-request framework cost: the generator shares the machine's cores with the members).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hacoord.testing.cluster import LocalCluster, bearer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time (with ``token``, if given, as
    its bearer token)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes, str | None]:
        """Status, body and the leader a forwarding member names (``X-Hacoord-Leader``)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}"
                              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                              .encode() + body)
            status = int((await self.reader.readline()).split()[1])
            length, leader = 0, None
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-hacoord-leader":
                    leader = value.strip().decode()
            return status, await self.reader.readexactly(length), leader
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadStats:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    forwarded: int = 0
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    last_ok: dict[int, float] = field(default_factory=dict)
    max_gap: float = 0.0


async def register(host: str, port: int, nodes: int, connections: int, token: str | None = None) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(nodes):
        queue.put_nowait(i)

    async def worker() -> None:
        conn = Connection(host, port, token)
        while not queue.empty():
            i = queue.get_nowait()
            body = json.dumps({"id": f"n{i:05d}", "address": f"10.1.{i // 250}.{i % 250}:9000",
                               "zone": f"z{i % 3}"}).encode()
            status, answer, _ = await conn.request("POST", "/v1/nodes", body)
            if status != 201:
                raise RuntimeError(f"registering n{i:05d}: {status} {answer[:200]!r}")
        conn.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, nodes))))


async def heartbeat_load(host: str, ports: dict[str, int], leader: str, via: str, nodes: int,
                         period: float, seconds: float, connections: int,
                         stop: asyncio.Event | None = None, token: str | None = None) -> LoadStats:
    """Node i heartbeats at t0 + i*period/nodes + k*period, for k while inside ``seconds`` (and
    until ``stop`` is set). With ``via`` leader, to the leader; spread: first to member i mod N,
    then wherever a forwarded answer says the leader is, or the next member when one does not
    answer (as the client does); followers: always
    to a follower. Requests carry ``token``."""
    members = sorted(ports)
    if via == "leader":
        start = [leader] * nodes
    elif via == "spread":
        start = [members[i % len(members)] for i in range(nodes)]
    else:
        followers = [m for m in members if m != leader]
        start = [followers[i % len(followers)] for i in range(nodes)]
    target = list(start)
    stats = LoadStats()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    bodies = [b'{"epoch":1}'] * nodes
    paths = [f"/v1/nodes/n{i:05d}/heartbeat" for i in range(nodes)]
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    total = int(seconds / period * nodes)

    async def produce() -> None:
        j = 0
        while j < total and not (stop is not None and stop.is_set()):
            now = loop.time()
            while j < total and t0 + j * period / nodes <= now:
                queue.put_nowait((j % nodes, t0 + j * period / nodes))
                j += 1
            await asyncio.sleep(0.005)
        for _ in range(connections):
            queue.put_nowait(None)

    async def worker() -> None:
        conns = {m: Connection(host, port, token) for m, port in ports.items()}
        while (job := await queue.get()) is not None:
            i, due = job
            start = loop.time()
            stats.lateness.append(start - due)
            stats.sent += 1
            try:
                status, _, named = await conns[target[i]].request("POST", paths[i], bodies[i])
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
                stats.errors += 1
                if via == "spread":  # unreachable (a killed member): the next one, as the
                    # client does; its answer names the leader
                    target[i] = members[(members.index(target[i]) + 1) % len(members)]
                continue
            end = loop.time()
            stats.latencies.append(end - start)
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
            if named is not None:
                stats.forwarded += 1
                if via == "spread" and named in conns:
                    target[i] = named
            if status == 200:
                if i in stats.last_ok:
                    stats.max_gap = max(stats.max_gap, end - stats.last_ok[i])
                stats.last_ok[i] = end
        for conn in conns.values():
            conn.close()

    await asyncio.gather(produce(), *(worker() for _ in range(connections)))
    return stats


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def liveness_events(url: str, since: int, token: str | None = None) -> list[dict[str, Any]] | None:
    """Every liveness judgement committed after revision ``since``, as the member recorded it
    (asked with ``token``); None if the member no longer keeps events that old (more than its
    feed holds)."""
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=10, headers=bearer(token)) as http:
        for _ in range(1000):  # bounded: pages of 10,000 events
            page = http.get(url + "/v1/watch", params={"since": since, "timeout": 0,
                                                       "limit": 10_000}).json()
            if "events" not in page:  # 410 compacted
                return None
            if not page["events"]:
                return found
            for event in page["events"]:
                since = max(since, event["revision"])
                if event["type"] == "NodeStateChanged" and event["data"].get("reason") == "liveness":
                    found.append(event["data"])
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    member_args = ("--suspect-after", str(args.suspect_after), "--down-after", str(args.down_after),
                   *args.member_arg)
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-liveness-") as tmp:
        # Plain HTTP: the load generator speaks HTTP/1.1 on its own sockets (tokens are sent).
        cluster = LocalCluster(Path(tmp), 3, member_args, tls=False)
        cluster.start()
        try:
            leader_id = cluster.leader()
            leader = cluster.members[leader_id]
            assert leader.proc is not None
            pid = leader.proc.pid
            time.sleep(1.0)  # let start-up work settle

            idle_start, idle_t = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            idle_cpu = (cpu_seconds(pid) - idle_start) / (time.monotonic() - idle_t)

            asyncio.run(register("127.0.0.1", leader.api_port, args.nodes, args.connections,
                                 cluster.token))
            status = cluster.status(leader_id)
            since, term_before = status["revision"], status["member"]["term"]

            followers = {m.id: m.proc.pid for m in cluster.members.values()
                         if m.id != leader_id and m.proc is not None}
            f_start = {m: cpu_seconds(p) for m, p in followers.items()}
            own_start = resource.getrusage(resource.RUSAGE_SELF)
            load_start, load_t = cpu_seconds(pid), time.monotonic()
            ports = {m.id: m.api_port for m in cluster.members.values()}
            stats = asyncio.run(heartbeat_load("127.0.0.1", ports, leader_id, args.via, args.nodes,
                                               args.period, args.seconds, args.connections,
                                               token=cluster.token))
            window = time.monotonic() - load_t
            load_cpu = (cpu_seconds(pid) - load_start) / window
            own_end = resource.getrusage(resource.RUSAGE_SELF)
            follower_cpu = {m: (cpu_seconds(p) - f_start[m]) / window for m, p in followers.items()}

            # Read back at once: the nodes have stopped, and would be (rightly) suspected soon.
            status = cluster.status(leader_id)
            judged = liveness_events(leader.url, since, cluster.token)
            nodes = httpx.get(leader.url + "/v1/nodes", timeout=10, headers=cluster.headers).json()["nodes"]
        finally:
            cluster.stop_all()
    heartbeats_ok = stats.by_status.get(200, 0)
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "settings": {"nodes": args.nodes, "period_s": args.period, "seconds": args.seconds,
                     "connections": args.connections, "via": args.via, "suspect_after_s": args.suspect_after,
                     "down_after_s": args.down_after, "member_args": args.member_arg},
        "heartbeats": {"sent": stats.sent, "ok": heartbeats_ok, "by_status": stats.by_status,
                       "errors": stats.errors, "forwarded": stats.forwarded,
                       "per_s": heartbeats_ok / window,
                       "p50_ms": 1000 * percentile(stats.latencies, 0.5),
                       "p99_ms": 1000 * percentile(stats.latencies, 0.99),
                       "max_ms": 1000 * max(stats.latencies, default=float("nan")),
                       "send_lateness_p99_ms": 1000 * percentile(stats.lateness, 0.99),
                       "send_lateness_max_s": max(stats.lateness, default=float("nan")),
                       "max_gap_between_acks_s": stats.max_gap},
        # Nothing else writes during the load: every revision is a (false) judgement, which
        # counts them even when there are more than the feed keeps.
        "false_transitions": {
            "suspect": None if judged is None else sum(1 for e in judged if e["status"] == "suspect"),
            "down": None if judged is None else sum(1 for e in judged if e["status"] == "down"),
            "up": None if judged is None else sum(1 for e in judged if e["status"] == "up"),
            "all": status["revision"] - since,
            "nodes_not_up_at_end": sum(1 for n in nodes if n["status"] != "up"),
        },
        "elections_during_load": status["member"]["term"] - term_before,
        "leader_cpu_share": {"idle_baseline": idle_cpu, "under_load": load_cpu,
                             "heartbeat_cost": load_cpu - idle_cpu},
        "follower_cpu_share_under_load": follower_cpu,
        "load_generator_cpu_share": ((own_end.ru_utime + own_end.ru_stime)
                                     - (own_start.ru_utime + own_start.ru_stime)) / window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--period", type=float, default=1.0, help="seconds between a node's heartbeats")
    parser.add_argument("--seconds", type=float, default=20.0, help="load window (and idle baseline)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--via", choices=["leader", "spread", "followers"], default="leader",
                        help="leader: heartbeats go to the leader; spread: node i starts at member "
                             "i mod 3 and moves to the leader a forwarded answer names (as the "
                             "client does); followers: every heartbeat is forwarded (worst case)")
    parser.add_argument("--suspect-after", type=float, default=3.0)
    parser.add_argument("--down-after", type=float, default=8.0)
    parser.add_argument("--member-arg", action="append", default=[],
                        help="extra argument for every member (e.g. --member-arg=--no-fsync)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/liveness.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    hb, false, cpu = result["heartbeats"], result["false_transitions"], result["leader_cpu_share"]
    print(f"{args.nodes} nodes, one heartbeat each per {args.period:g}s, for {args.seconds:g}s "
          f"(suspect after {args.suspect_after:g}s, down after {args.down_after:g}s)")
    other = {k: v for k, v in hb["by_status"].items() if k != 200}
    print(f"heartbeats via {args.via}: {hb['ok']} ok ({hb['per_s']:.0f}/s), forwarded {hb['forwarded']}, "
          f"other answers {other}, errors {hb['errors']}; p50 {hb['p50_ms']:.1f} ms, "
          f"p99 {hb['p99_ms']:.1f} ms, max {hb['max_ms']:.1f} ms; longest gap between a node's "
          f"acks {hb['max_gap_between_acks_s']:.2f}s")
    print(f"false transitions: {false['all']} (suspect {false['suspect']}, down {false['down']}), "
          f"nodes not up at the end {false['nodes_not_up_at_end']}; elections during the load "
          f"{result['elections_during_load']}")
    if hb["send_lateness_max_s"] + args.period >= args.suspect_after:
        print(f"NOTE: the load fell behind its schedule (a heartbeat left {hb['send_lateness_max_s']:.1f}s "
              "late): nodes went silent for real, so their judgements are not false ones")
    print(f"leader CPU share: idle {cpu['idle_baseline']:.3f}, under load {cpu['under_load']:.3f} "
          f"(heartbeats cost {cpu['heartbeat_cost']:.3f} of a core); followers "
          + ", ".join(f"{m} {v:.3f}" for m, v in sorted(result["follower_cpu_share_under_load"].items()))
          + f"; load generator {result['load_generator_cpu_share']:.3f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
