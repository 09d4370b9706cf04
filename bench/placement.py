"""Benchmark placement: full placement and incremental rebalance plans on a large cluster.

Run with ``python -m bench.placement`` (``--help`` for sizes). Default: 10,000 partitions x RF 3
on 100 nodes in 5 zones. It reports, each as the median of ``--repeat`` runs:

* full placement: ``place_resource`` for the whole resource;
* incremental plans (``plan_rebalance``) after one node is added, one node fails (status down)
  and one node is drained (excluded), with replicas moved against the lower bound
  (``moved / lower bound``, target <= 1.05), leadership changes, and the balance figures before
  and after the plan;
* peak memory of each step (tracemalloc, measured in a separate run so it does not slow the
  timings);

and, for every time, its ratio to a baseline measured in the same run on the same state: a full
copy of the state through ``to_dict``/``from_dict`` (what any plan that starts from a copy would
pay at least). The machine is shared and noisy: compare ratios, not absolute figures across runs.
Results go to ``bench/results/placement.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacoord.core import ClusterState, apply, commands
from hacoord.placement import place_resource, plan_rebalance, replica_targets
from hacoord.placement.balance import figures

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
    for step, subject, exclude in [("plan after adding a node", added, frozenset()),
                                   ("plan after a node fails (down)", failed, frozenset()),
                                   ("plan after draining a node (excluded)", state, frozenset({"n042"}))]:
        took, plan = _timed(lambda s=subject, e=exclude: plan_rebalance(s, exclude=e), repeat)
        rows.append({"step": step, "time_s": took,
                     "peak_bytes": _peak(lambda s=subject, e=exclude: plan_rebalance(s, exclude=e)),
                     "plan": plan})
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
    head = (f"{'step':42} {'time ms':>9} {'x copy':>7} {'peak MB':>8} {'moved':>6} {'bound':>6} "
            f"{'ratio':>6} {'leaders':>7} {'max/mean':>8} {'dev':>4} {'ldr m/m':>7}")
    lines = [head, "-" * len(head)]
    for row in result["rows"]:
        after = row["figures_after"]
        ratio = row.get("moved_over_lower_bound")
        lines.append(
            f"{row['step']:42} {row['time_s'] * 1000:9.1f} {row['time_over_copy']:7.2f} "
            f"{row['peak_bytes'] / 2**20:8.1f} {row.get('moved', ''):>6} {row.get('lower_bound', ''):>6} "
            f"{'' if ratio is None else f'{ratio:.3f}':>6} {row.get('leader_changes', ''):>7} "
            f"{after['replicas_max_over_mean']:8.4f} {after['max_deviation']:4d} "
            f"{after['leaders_max_over_mean']:7.3f}")
    base = result["baseline"]
    lines.append(f"baseline: {base['step']} = {base['time_s'] * 1000:.1f} ms; targets: full < 1 s, "
                 "incremental < 50 ms, moved / lower bound <= 1.05")
    lines.append("max/mean: replicas per capacity over the cluster's; dev: largest distance from an "
                 "integer target; ldr m/m: leaderships per capacity, max over mean")
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
