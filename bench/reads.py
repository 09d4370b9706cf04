"""Consistent reads at the leader and at a follower, beside ``GET /livez``, on a fresh cluster.

Run with ``python -m bench.reads`` (``--help`` for the knobs). It starts a local 3-member cluster
(HTTPS and tokens, as ``hacoord serve`` runs by default), registers one node, and drives, with
wrk at ``--clients`` connections for ``--seconds`` each: ``GET /v1/nodes/bench-1?consistent=true``
at the leader, the same at a follower, and ``GET /livez`` at the leader (the HTTP stack alone).
It prints one JSON line.

To compare two commits, run it for each in turns, from inside that commit's checkout with
``PYTHONPATH`` set to it: the members run ``python -m hacoord``, which takes the package from
the working directory first, and the harness comes from the path. This file works from an older
checkout that lacks it::

    git worktree add /tmp/old <commit>
    (cd /tmp/old && PYTHONPATH=/tmp/old python "$OLDPWD/bench/reads.py")
    python -m bench.reads
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from pathlib import Path

import hacoord
from bench.run import _wrk
from hacoord.testing.cluster import LocalCluster


def measure(clients: int, seconds: float) -> dict[str, object]:
    """The three figures on a fresh cluster (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="hacoord-bench-reads-") as tmp:
        cluster = LocalCluster(Path(tmp), 3, ("--writes-per-client", "0"))
        cluster.start()
        try:
            leader = cluster.members[cluster.leader()]
            follower = next(m for m in cluster.members.values() if m.id != leader.id)
            with cluster.http(base_url=leader.url, timeout=10) as http:
                http.post("/v1/nodes", json={"id": "bench-1", "address": "127.0.0.1:1"})
            token = uuid.uuid4().hex[:8]
            path = "/v1/nodes/bench-1?consistent=true"
            return {
                "code": str(Path(hacoord.__file__).parent),
                "reads_at_leader": _wrk(leader.url + path, clients, seconds, "read", token,
                                        headers=cluster.headers),
                "reads_at_follower": _wrk(follower.url + path, clients, seconds, "read", token,
                                          headers=cluster.headers),
                "livez": _wrk(leader.url + "/livez", clients, seconds, "read", token,
                              headers=cluster.headers),
            }
        finally:
            cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="wrk connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per figure")
    args = parser.parse_args()
    print(json.dumps(measure(args.clients, args.seconds)))


if __name__ == "__main__":
    main()
