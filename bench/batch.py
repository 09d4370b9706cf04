"""Registering many data nodes: one request per node against ``POST /v1/batch/nodes``.

``python -m bench.batch`` starts a local 3-member cluster (HTTPS, tokens) and registers
``--nodes`` nodes each way through one client: one ``node_add`` per node (a client waiting for
each answer, as a provisioning script would), then ``node_add_batch`` in batches of
``--batch``. It prints nodes/s for each and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hacoord.client import NodeInfo
from hacoord.testing.cluster import running_cluster


def specs(count: int, prefix: str) -> list[dict[str, object]]:
    return [{"id": f"{prefix}{k}", "address": f"10.{k // 60000}.{k // 250 % 240}.{k % 250 + 1}:9000",
             "zone": f"z{k % 3}"} for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes registered each way")
    parser.add_argument("--batch", type=int, default=1000, help="nodes per batch request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, running_cluster(Path(root)) as cluster:
        cluster.leader()
        with cluster.client(timeout=10.0, deadline=60.0) as client:
            started = time.monotonic()
            for spec in specs(args.nodes, "one-"):
                client.node_add(str(spec["id"]), str(spec["address"]), zone=str(spec["zone"]))
            one_by_one = args.nodes / (time.monotonic() - started)
            started = time.monotonic()
            batch = specs(args.nodes, "many-")
            registered = 0
            for at in range(0, len(batch), args.batch):
                results = client.node_add_batch(batch[at:at + args.batch])
                registered += sum(isinstance(r, NodeInfo) for r in results)
            batched = args.nodes / (time.monotonic() - started)
            assert registered == args.nodes, registered
    report = {"nodes": args.nodes, "batch": args.batch, "one_by_one_per_s": round(one_by_one, 1),
              "batched_per_s": round(batched, 1), "ratio": round(batched / one_by_one, 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
