"""The client host of :mod:`tests.netns.test_hosts`: run inside the client's network namespace
(``ip netns exec NS python -m tests.netns.workload COMMAND ...``), it is the only thing that talks
to the members over the network.

Commands (each prints one JSON document on stdout):

* ``write``: the chaos suite's add-only set workload (:class:`tests.chaos.workloads.SetWorkload`,
  one client, node registrations ``e-<round>-<i>``, one request id per write) until the stop
  file appears or ``--max-seconds`` pass. Every finished operation is appended to the progress
  file as one JSON line (a :class:`tests.chaos.history.Op`), at most ``FLUSH_INTERVAL`` after it
  finished; at the end the report (the acknowledged ids, those whose answer was lost, the
  longest stretches between two acknowledged writes) is printed.
* ``leader``: wait until the members at ``--endpoints`` agree on a bootstrapped leader; its id.
* ``ready``: wait until every member at ``--endpoints`` answers ``/readyz`` with ready.
* ``first-status``: poll every member at ``--endpoints`` until each has answered
  ``/v1/status?digest=true`` once; each one's first answer (started before the members are, it
  sees their state as they start, before any new write).
* ``nodes``: the ids of every registered node (a consistent read).

Times are ``time.monotonic()``, which every process on the host shares.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from hacoord.client import Client
from hacoord.testing.cluster import bearer, trusting, wait_for
from tests.chaos.history import History, Op
from tests.chaos.workloads import SetWorkload

#: Seconds between two appends to the progress file (and checks of the stop file).
FLUSH_INTERVAL = 0.1
#: Rounds of the set workload's loop (each bounded in count itself) one ``write`` may run.
MAX_ROUNDS = 100
#: How many of the longest stretches between two acknowledged writes the report lists.
LONGEST_GAPS = 10


class Progress:
    """Appends the finished operations of a history to a JSON-lines file, in order."""

    def __init__(self, history: History, path: Path) -> None:
        self.history = history
        self.path = path
        self.flushed = 0

    def flush(self) -> None:
        """Append every finished operation not yet written (stopping at the first unfinished)."""
        lines = []
        for op in self.history.ops[self.flushed:]:
            if op.status == "pending":
                break
            lines.append(json.dumps(asdict(op), default=str) + "\n")
        if lines:
            with self.path.open("a") as f:
                f.writelines(lines)
            self.flushed += len(lines)


def read_progress(path: Path) -> list[Op]:
    """The operations a ``write`` run has appended to ``path`` so far (complete lines only)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [Op(**json.loads(line)) for line in text[:text.rfind("\n") + 1].splitlines()]


def watch(progress: Progress, stop_file: Path, until: float, stop: threading.Event) -> None:
    """Flush the progress every ``FLUSH_INTERVAL``; set ``stop`` once ``stop_file`` exists or
    ``until`` (monotonic) passed."""
    while not stop.wait(FLUSH_INTERVAL):
        progress.flush()
        if stop_file.exists() or time.monotonic() >= until:
            stop.set()


def client(args: argparse.Namespace) -> Client:
    """A client of every member at ``--endpoints`` with the admin token and the CA."""
    return Client(args.endpoints.split(","), ca=args.ca, token_file=args.token_file,
                  timeout=2.0, deadline=10.0)


def write(args: argparse.Namespace) -> dict[str, Any]:
    """Run the set workload until stopped; the report."""
    history = History()
    progress = Progress(history, Path(args.progress))
    stop = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True, args=(
        progress, Path(args.stop_file), time.monotonic() + args.max_seconds, stop))
    watcher.start()
    workload = SetWorkload(read_share=0.0)
    rng = random.Random(0)
    with client(args) as writer:
        for round_ in range(MAX_ROUNDS):
            if stop.is_set():
                break
            workload.client_loop(f"r{round_}", writer, writer, history, rng, stop)
    stop.set()
    watcher.join(timeout=5)
    progress.flush()
    acked = [op for op in history.ops if op.status == "ok"]
    times = [op.completed or 0.0 for op in acked]
    gaps = sorted(((t1 - t0, op0.value, op1.value) for t0, t1, op0, op1
                   in zip(times, times[1:], acked, acked[1:], strict=False)), reverse=True)
    return {"writes": len(history.ops), "acked": [op.value for op in acked],
            "unknown": [op.value for op in history.ops if op.status == "unknown"],
            "longest_gaps": [{"seconds": round(seconds, 3), "from": first, "to": then}
                             for seconds, first, then in gaps[:LONGEST_GAPS]]}


def get(args: argparse.Namespace, url: str, path: str) -> httpx.Response:
    """``GET path`` on the member at ``url`` with the admin token, trusting the CA."""
    token = Path(args.token_file).read_text().strip()
    return httpx.get(url + path, headers=bearer(token), verify=trusting(Path(args.ca)), timeout=2.0)


def leader(args: argparse.Namespace) -> str:
    """The member every member at ``--endpoints`` names leader, itself among them and
    bootstrapped (as :meth:`hacoord.testing.LocalCluster.leader` asks)."""
    urls = args.endpoints.split(",")

    def probe() -> str | None:
        statuses = [get(args, url, "/v1/status").raise_for_status().json() for url in urls]
        by_id = {s["member"]["member_id"]: s for s in statuses}
        views = {s["leader"] for s in statuses}
        agreed = views.pop() if len(views) == 1 else None
        return agreed if agreed in by_id and by_id[agreed]["bootstrapped"] else None

    return wait_for("one agreed leader", probe, timeout=args.timeout)


def ready(args: argparse.Namespace) -> list[str]:
    """Wait until every member at ``--endpoints`` is ready; their URLs."""
    urls = args.endpoints.split(",")
    wait_for("every member ready", lambda: all(get(args, url, "/readyz").status_code == 200
                                               for url in urls), timeout=args.timeout)
    return urls


def first_status(args: argparse.Namespace) -> dict[str, Any]:
    """Each member's first answer to ``/v1/status?digest=true``."""
    first: dict[str, Any] = {}

    def probe() -> bool:
        for url in args.endpoints.split(","):
            if url not in first:
                try:
                    first[url] = get(args, url, "/v1/status?digest=true").raise_for_status().json()
                except httpx.HTTPError:
                    continue
        return len(first) == len(args.endpoints.split(","))

    wait_for("a status from every member", probe, timeout=args.timeout)
    return first


def nodes(args: argparse.Namespace) -> list[str]:
    """Every registered node id (consistent)."""
    with client(args) as reader:
        return [node.id for node in reader.node_list(consistent=True)]


COMMANDS = {"write": write, "leader": leader, "ready": ready, "first-status": first_status,
            "nodes": nodes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netns.workload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--endpoints", required=True, help="The members' API URLs, comma-separated.")
    parser.add_argument("--ca", required=True, help="The CA file the members' certificates chain to.")
    parser.add_argument("--token-file", required=True, help="The admin token's file.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds a wait may take.")
    parser.add_argument("--progress", help="write: the JSON-lines file of finished operations.")
    parser.add_argument("--stop-file", help="write: stop once this file exists.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="write: stop after this.")
    args = parser.parse_args(argv)
    if args.command == "write" and not (args.progress and args.stop_file):
        parser.error("write needs --progress and --stop-file")
    json.dump(COMMANDS[args.command](args), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
