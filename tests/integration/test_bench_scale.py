"""``python -m bench.scale`` runs through every phase on a small cluster: a bench that breaks
(as one did when restores began refusing made-up cluster ids) is found here, not at the next
measurement. Nothing here is timed: only what each phase did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHASES = ["baseline", "create one resource", "read the routing table", "take a backup",
          "delete it", "create 3 resources", "idle", "restart a follower (SIGTERM)",
          "restart a follower (SIGKILL)", "a follower far behind (sent a snapshot)",
          "SIGKILL the leader"]


def test_the_scale_bench_runs_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--nodes", "20", "--partitions", "300",
         "--resources", "3", "--idle", "0", "--baseline", "1",
         # compacts after 200 entries, so the far-behind phase does not write 5,000
         "--member-arg=--log-compaction-min-entries", "--member-arg=200", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    result = json.loads(out.read_text())
    assert list(result["phases"]) == PHASES
    assert result["backup"]["partition_replicas"] == 300 * 3
    assert "installed a snapshot from the leader" in result["far_behind"]["install_log"]
    assert result["far_behind"]["writes"] > 0
    assert result["heartbeats"]["by_status"].get("200", 0) > 0
    assert len(result["create_many_s"]) == 3


def test_a_lag_sample_is_judged_by_its_longest_step() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.scale import step_ms
    finally:
        sys.path.remove(str(ROOT))
    assert step_ms("raft tick 23 ms (9 ms on a core), apply X 12 ms") == 23
    assert step_ms("gc generation 1 88 ms") == 88
    assert step_ms(None) == 0
