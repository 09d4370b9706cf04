"""Benchmark a local 3-member cluster: write throughput/latency and leader-kill failover.

Run with ``make bench`` (or ``python -m bench.run --help``). It starts real members on
127.0.0.1 in a temporary directory, exactly as ``hacoord serve`` runs them, and reports:

* committed writes/s with p50/p99 latency for 1, 8 and 32 concurrent HTTP clients, each against
  a baseline measured in the same run on the same members: ``GET /livez`` at the same
  concurrency (the HTTP stack without Raft), so the ratio shows what replication costs here;
* failover: SIGKILL the leader while a client writes, time from the kill to the first
  acknowledged write (min/median/max over ``--kills`` rounds), the killed member restarted
  between rounds.

The machine is shared and noisy: compare ratios, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import LocalCluster, wait_for


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(url: str, clients: int, seconds: float, write: bool) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as http:
        async def worker(w: int) -> None:
            nonlocal failures
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                started = time.perf_counter()
                if write:
                    r = await http.patch(f"/v1/nodes/bench-{w % 16}",
                                         json={"metrics": {"seq": i}},
                                         headers={"x-request-id": f"b{clients}-{w}-{i}"})
                else:
                    r = await http.get("/livez")
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "ops": len(latencies),
        "failures": failures,
    }


def throughput(cluster: LocalCluster, seconds: float) -> list[dict[str, Any]]:
    leader = cluster.members[cluster.leader()]
    with httpx.Client(base_url=leader.url, timeout=10) as http:
        for w in range(16):
            http.post("/v1/nodes", json={"id": f"bench-{w}", "address": "127.0.0.1:1"})
    rows = []
    for clients in (1, 8, 32):
        writes = asyncio.run(_load(leader.url, clients, seconds, write=True))
        baseline = asyncio.run(_load(leader.url, clients, seconds, write=False))
        rows.append({"clients": clients, "writes": writes, "baseline_livez": baseline,
                     "write_vs_livez_throughput": writes["ops_per_s"] / baseline["ops_per_s"]})
    return rows


def _first_ack_after(cluster: LocalCluster, killed: str, t_kill: float, round_no: int) -> float:
    urls = [m.url for m in cluster.members.values() if m.id != killed]
    i = 0
    with httpx.Client(timeout=0.5) as http:
        while time.monotonic() - t_kill < 30:
            url = urls[i % len(urls)]
            i += 1
            try:
                r = http.post(url + "/v1/nodes", json={"id": f"fo-{round_no}-{i}",
                                                       "address": "127.0.0.1:1"})
                if r.status_code == 201:
                    return time.monotonic() - t_kill
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
    raise RuntimeError("no write acknowledged within 30 s of the kill")


def failover(cluster: LocalCluster, kills: int) -> dict[str, Any]:
    samples = []
    for round_no in range(kills):
        leader = cluster.leader()
        with httpx.Client(timeout=2) as http:  # the cluster is writable before the kill
            r = http.post(cluster.members[leader].url + "/v1/nodes",
                          json={"id": f"pre-{round_no}", "address": "127.0.0.1:1"})
            assert r.status_code == 201, r.text
        t_kill = time.monotonic()
        cluster.kill(leader, signal.SIGKILL)
        samples.append(_first_ack_after(cluster, leader, t_kill, round_no))
        cluster.start(leader)
        wait_for("the killed member to catch up", lambda: cluster.converged(), timeout=30)
    return {"kills": kills, "min_s": min(samples), "median_s": statistics.median(samples),
            "max_s": max(samples), "samples_s": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput point")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--member-arg", action="append", default=[],
                        help="extra argument for every member (e.g. --member-arg=--no-fsync)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-") as tmp:
        cluster = LocalCluster(Path(tmp), 3, tuple(args.member_arg))
        cluster.start()
        try:
            cluster.leader()
            result = {
                "machine": {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": __import__("os").cpu_count()},
                "throughput": throughput(cluster, args.seconds),
                "failover": failover(cluster, args.kills),
            }
        finally:
            cluster.stop_all()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'clients':>7} {'writes/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'livez/s':>8} {'ratio':>6}")
    for row in result["throughput"]:
        w, b = row["writes"], row["baseline_livez"]
        print(f"{row['clients']:>7} {w['ops_per_s']:>9.0f} {w['p50_ms']:>7.1f} {w['p99_ms']:>7.1f} "
              f"{b['ops_per_s']:>8.0f} {row['write_vs_livez_throughput']:>6.2f}")
    fo = result["failover"]
    print(f"failover over {fo['kills']} leader SIGKILLs: min {fo['min_s']:.3f}s "
          f"median {fo['median_s']:.3f}s max {fo['max_s']:.3f}s")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
