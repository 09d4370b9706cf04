"""``make soak DURATION=2h``: random scenarios back to back until the time is up.

Each round draws a seed, a fault (process or network, see tests.chaos.nemesis), a workload (set,
registers, fencing, or data nodes joining and draining away), a cluster size (5 members more often
than 3) and a client deadline (one attempt, so that faults leave unknown writes to resolve, or ten
seconds of retries), runs it with tighter snapshots (log compaction every 50 entries, so snapshot
installs are frequent), and stops at the first failure, printing the seed and the artifacts
directory that replay it.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.nemesis import FAULTS
from tests.chaos.runner import Scenario, run


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"duration like 90s, 15m or 2h, not {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("10m"))
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    args = parser.parse_args()
    master = random.Random(args.seed)
    deadline = time.monotonic() + args.duration
    rounds = 0
    while time.monotonic() < deadline:
        seed = master.randrange(1 << 30)
        rng = random.Random(seed)
        scenario = Scenario(
            name=f"soak-{rounds}", fault=rng.choice(FAULTS), seed=seed,
            size=rng.choice([3, 5, 5]), hold=rng.uniform(6, 15),
            clients_per_member=rng.choice([2, 2, 3]),
            workload=rng.choice(["set", "register", "fencing", "membership"]),
            client_deadline=rng.choice([1.0, 10.0]),
            member_args=("--log-compaction-min-entries", "50"))
        with tempfile.TemporaryDirectory(prefix="hacoord-soak-") as tmp:
            outcome = run(scenario, Path(tmp))
        rounds += 1
        verdict = "ok" if not outcome.problems else "FAILED"
        print(f"[{rounds}] {scenario.fault} x{scenario.size} {scenario.workload} seed={seed}: "
              f"{verdict} {outcome.stats}", flush=True)
        if outcome.problems:
            print("\n".join(outcome.problems))
            print(f"artifacts: {outcome.artifacts}; replay with the scenario above (seed {seed})")
            return 1
    print(f"soak: {rounds} scenarios, no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
