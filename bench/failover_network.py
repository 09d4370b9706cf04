"""Failover after a network isolation of the leader: from the cut to the first acknowledged write.

Run with ``python -m bench.failover_network`` (``--help`` for the knobs). It starts a local cluster
whose Raft links all go through the chaos suite's userspace proxy
(:class:`tests.chaos.network.ProxiedCluster`; HTTP stays direct), then, ``--rounds`` times:
writes once through the leader, cuts the leader off from every other member (both ways, no
frame crosses), writes in a tight loop against the other members (5 ms between attempts, 0.1 s
timeout each, exactly as ``bench.run`` measures SIGKILL failover) and records the time from the
cut to the first acknowledged write; then heals the network and waits until the old leader has
rejoined and every member has the same digest before the next round.

Unlike a SIGKILL, an isolation closes no connection: the followers notice only that heartbeats
stop (election timeout 0.3-0.6 s), as with a SIGSTOP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import _first_ack_after
from hacoord.testing.cluster import wait_for
from tests.chaos.network import ProxiedCluster


def isolation_rounds(cluster: ProxiedCluster, rounds: int) -> dict[str, Any]:
    """Isolate the leader ``rounds`` times; the samples are seconds from cut to first ack."""
    samples = []
    for round_no in range(rounds):
        leader = cluster.leader()
        with cluster.client(endpoints=[cluster.members[leader].url], timeout=2.0, deadline=10.0) as client:
            client.node_add(f"pre-iso-{round_no}", address="127.0.0.1:1")  # writable before
        others = {m for m in cluster.members if m != leader}
        t_cut = time.monotonic()
        cluster.network.partition({leader}, others)
        samples.append(_first_ack_after(cluster, leader, t_cut, f"iso{round_no}"))
        cluster.network.heal()
        wait_for("the old leader to rejoin: one leader and one term everywhere",
                 lambda: _settled(cluster), timeout=30)
        cluster.converged(timeout=30)
    ordered = sorted(samples)
    return {"fault": "isolate_leader", "members": len(cluster.members), "rounds": rounds,
            "min_s": ordered[0], "median_s": statistics.median(ordered),
            "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max_s": ordered[-1], "samples_s": [round(s, 4) for s in samples]}


def _settled(cluster: ProxiedCluster) -> bool:
    """Every member names the same leader in the same term (the rejoined member's higher term,
    from its elections alone, may cost one more election after the heal)."""
    views = {(s["leader"], s["member"]["term"]) for s in map(cluster.status, cluster.members)}
    return len(views) == 1 and None not in {leader for leader, _ in views}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="isolations per cluster size")
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5], choices=[3, 5])
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    results = []
    for size in args.members:
        with tempfile.TemporaryDirectory(prefix="hacoord-failover-") as tmp:
            cluster = ProxiedCluster(Path(tmp), size)
            cluster.start()
            try:
                cluster.leader()
                results.append(isolation_rounds(cluster, args.rounds))
            finally:
                cluster.stop_all()
    for fo in results:
        print(f"leader isolation, {fo['members']} members, {fo['rounds']} rounds: min {fo['min_s']:.3f}s "
              f"median {fo['median_s']:.3f}s p99 {fo['p99_s']:.3f}s max {fo['max_s']:.3f}s")
        print(f"  samples: {', '.join(f'{s:.3f}' for s in fo['samples_s'])}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
