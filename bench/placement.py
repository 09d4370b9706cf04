"""Benchmark placement: full placement and incremental rebalance plans on a large cluster.

Run with ``python -m bench.placement`` (``--help`` for sizes). Default: 10,000 partitions x RF 3
on 100 nodes in 5 zones. It reports, each as the median of ``--repeat`` runs:

* full placement: ``place_resource`` for the whole resource;
* incremental plans (``plan_rebalance``) after one node is added, one node fails (status down)
  and one node is drained (excluded), with replicas moved against the lower bound
  (``moved / lower bound``, target <= 1.05), leadership changes, and the balance figures before
  and after the plan;
* the same with the planner's controller arguments: a failed node held (its re-replication
  delayed), a node added while another is cordoned (held), a node added with the first 16 of its
  moves in flight (pinned, the state showing them done), and a node added to a resource that
  balances on a node metric (``disk``: random partition sizes, each node reporting the sizes of
  the replicas it holds, the new node nothing), with the metric's max / mean per capacity after;
* peak memory of each step (tracemalloc, measured in a separate run so it does not slow the
  timings);

and, for every time, its ratio to a baseline measured in the same run on the same state: a full
copy of the state through ``to_dict``/``from_dict`` (what any plan that starts from a copy would
pay at least). The machine is shared and noisy: compare ratios, not absolute figures across runs.
Results go to ``bench/results/placement.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacoord.core import ClusterState, apply, commands
from hacoord.placement import place_resource, plan_rebalance, replica_targets
from hacoord.placement.balance import figures
from hacoord.testing import apply_plan

RESULTS = Path(__file__).parent / "results" / "placement.json"
TARGETS = {"full_s": 1.0, "incremental_s": 0.05, "moved_over_lower_bound": 1.05}


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _cluster(nodes: int, zones: int) -> ClusterState:
    state = ClusterState()
    for i in range(nodes):
        address = f"10.0.{i // 250}.{i % 250}:7000"
        command = commands.RegisterNode(node_id=f"n{i:03d}", address=address, zone=f"z{i % zones}")
        assert apply(state, command).ok
    return state


def _report_sizes(state: ClusterState, resource: str, metric: str, rng: random.Random,
                  silent: frozenset[str] | set[str] = frozenset()) -> None:
    """Give each partition of ``resource`` a random size (1 to 3 GB, a few of 10 to 30 GB) and
    have every node but the ``silent`` ones report the sizes of the replicas it holds."""
    for node in state.nodes.values():
        node.metrics = {} if node.id in silent else {metric: 0.0}
    for part in state.resources[resource].partitions:
        size = rng.uniform(1e9, 3e9) * (10 if rng.random() < 0.02 else 1)
        for node_id in part.replicas:
            if node_id not in silent:
                state.nodes[node_id].metrics[metric] += size


def _state_figures(state: ClusterState) -> dict[str, Any]:
    targets = replica_targets(state)
    counts, leaders = state.replica_counts(), state.leader_counts()
    return figures(targets, [counts[n] for n in targets.nodes], [leaders[n] for n in targets.nodes]).to_dict()


def run(nodes: int, zones: int, partitions: int, rf: int, repeat: int) -> dict[str, Any]:
    state = _cluster(nodes, zones)
    full_s, assignment = _timed(lambda: place_resource(state, "bench", partitions, rf), repeat)
    full_peak = _peak(lambda: place_resource(state, "bench", partitions, rf))
    assert apply(state, commands.CreateResource(name="bench", partitions=partitions, replication_factor=rf,
                                                assignment=assignment)).ok
    copy_s, _ = _timed(lambda: ClusterState.from_dict(state.to_dict()), repeat)

    rows: list[dict[str, Any]] = [{
        "step": "full placement (place_resource)",
        "time_s": full_s,
        "peak_bytes": full_peak,
        "figures_after": _state_figures(state),
    }]
    steady_s, steady = _timed(lambda: plan_rebalance(state), repeat)
    rows.append({"step": "plan on the placed cluster (no change)", "time_s": steady_s,
                 "peak_bytes": _peak(lambda: plan_rebalance(state)), "plan": steady})

    added = ClusterState.from_dict(state.to_dict())
    assert apply(added, commands.RegisterNode(node_id="new", address="10.9.9.9:7000", zone="z0")).ok
    failed = ClusterState.from_dict(state.to_dict())
    assert apply(failed, commands.SetNodeState(node_id="n007", status="down")).ok
    # In flight: the first 16 moves after the node was added, shown done in the state (as the
    # controller shows them to the planner) and pinned.
    first = plan_rebalance(added).moves[:16]
    pinned = frozenset((m.resource, m.partition) for m in first)

    def in_flight() -> ClusterState:
        return apply_plan(added, dataclasses.replace(plan_rebalance(added), moves=first, leader_changes=()))

    def metric() -> ClusterState:
        subject = ClusterState.from_dict(added.to_dict())
        _report_sizes(subject, "bench", "disk", random.Random(4), silent={"new"})
        return subject

    # Each extra state is built for its step only, so that every step runs with the same heap
    # (a larger live heap makes each garbage collection pass during a plan longer).
    for step, subject, args in [
            ("plan after adding a node", lambda: added, {}),
            ("plan after a node fails (down)", lambda: failed, {}),
            ("plan after draining a node (excluded)", lambda: state, {"exclude": frozenset({"n042"})}),
            ("plan after a node fails, held (re-replication waits)", lambda: failed,
             {"hold": frozenset({"n007"})}),
            ("plan after adding a node, another cordoned (held)", lambda: added,
             {"hold": frozenset({"n013"})}),
            ("plan after adding a node, 16 moves in flight (pinned)", in_flight, {"pinned": pinned}),
            ("plan after adding a node, balance on a metric", metric, {"balance_metric": {"bench": "disk"}})]:
        built = subject()
        took, plan = _timed(lambda s=built, a=args: plan_rebalance(s, **a), repeat)
        rows.append({"step": step, "time_s": took,
                     "peak_bytes": _peak(lambda s=built, a=args: plan_rebalance(s, **a)),
                     "plan": plan})
        del built
    for row in rows:
        row["time_over_copy"] = row["time_s"] / copy_s
        plan = row.pop("plan", None)
        if plan is not None:
            row.update({
                "moved": len(plan.moves),
                "lower_bound": plan.lower_bound,
                "moved_over_lower_bound": len(plan.moves) / plan.lower_bound if plan.lower_bound else None,
                "leader_changes": len(plan.leader_changes),
                "stuck": len(plan.stuck),
                "figures_before": plan.before.to_dict(),
                "figures_after": plan.after.to_dict(),
                "metrics": [m.to_dict() for m in plan.metrics],
            })
    return {
        "config": {"nodes": nodes, "zones": zones, "partitions": partitions, "replication_factor": rf,
                   "repeat": repeat},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "baseline": {"step": "copy state via to_dict/from_dict", "time_s": copy_s},
        "targets": TARGETS,
        "rows": rows,
    }


def _table(result: dict[str, Any]) -> str:
    head = (f"{'step':54} {'time ms':>9} {'x copy':>7} {'peak MB':>8} {'moved':>6} {'bound':>6} "
            f"{'ratio':>6} {'leaders':>7} {'max/mean':>8} {'dev':>4} {'ldr m/m':>7} {'metric m/m':>11}")
    lines = [head, "-" * len(head)]
    for row in result["rows"]:
        after = row["figures_after"]
        ratio = row.get("moved_over_lower_bound")
        metric = " ".join(f"{m['max_over_mean_before']:.2f}>{m['max_over_mean_after']:.2f}"
                          for m in row.get("metrics", []))
        lines.append(
            f"{row['step']:54} {row['time_s'] * 1000:9.1f} {row['time_over_copy']:7.2f} "
            f"{row['peak_bytes'] / 2**20:8.1f} {row.get('moved', ''):>6} {row.get('lower_bound', ''):>6} "
            f"{'' if ratio is None else f'{ratio:.3f}':>6} {row.get('leader_changes', ''):>7} "
            f"{after['replicas_max_over_mean']:8.4f} {after['max_deviation']:4d} "
            f"{after['leaders_max_over_mean']:7.3f} {metric:>11}")
    base = result["baseline"]
    lines.append(f"baseline: {base['step']} = {base['time_s'] * 1000:.1f} ms; targets: full < 1 s, "
                 "incremental < 50 ms, moved / lower bound <= 1.05")
    lines.append("max/mean: replicas per capacity over the cluster's; dev: largest distance from an "
                 "integer target; ldr m/m: leaderships per capacity, max over mean; metric m/m: metric "
                 "per capacity, max over mean, before > after (estimated)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--zones", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.nodes, args.zones, args.partitions, args.rf, args.repeat)
    print(_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
