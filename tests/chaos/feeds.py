"""Applied sequences on all members are prefixes of one another, checked from their change feeds.

Each member keeps the events of every change it applied, by revision (``GET /v1/watch``). While
the nemesis works, a sampler reads each live member's feed from where it left off; a revision
reported by two members must carry the same events on both (same change, same order), so that
whatever each member applied is a prefix of what the most advanced one applied. A member that
restarted or installed a snapshot keeps events only after its new floor; the sampler resumes there
(it cannot see what the snapshot skipped; the final digests cover that).

The feeds also tell the fencing checker every partition route a member applied, by revision.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

import httpx

from hacoord.protocol.events import (
    PARTITION_EVENTS,
    PartitionChanged,
    PartitionsAdded,
    ResourceCreated,
    parse_event,
)
from hacoord.testing.cluster import LocalCluster
from tests.chaos.checker import Route

FLOOR = re.compile(r"oldest: after (\d+)")


class FeedSampler:
    """Reads every member's change feed incrementally and compares them revision by revision."""

    def __init__(self, cluster: LocalCluster, interval: float = 0.5, page: int = 5000) -> None:
        self.cluster = cluster
        self.interval = interval
        self.page = page
        self.last: dict[str, int | None] = {m: 0 for m in cluster.members}
        self.first: dict[int, tuple[str, str]] = {}  # revision -> (member, digest of its events)
        self.compared = 0
        self.problems: list[str] = []
        self.routes: list[Route] = []
        self._lock = threading.Lock()

    def run(self, stop: threading.Event, limit: int = 100_000) -> None:
        """Sample every ``interval`` until ``stop`` is set (bounded by ``limit`` sweeps)."""
        with self.cluster.http(timeout=1.0) as http:
            for _ in range(limit):
                if stop.is_set():
                    return
                self.sweep(http)
                stop.wait(self.interval)

    def sweep(self, http: httpx.Client, pages: int = 20) -> None:
        """Read what each live member applied since the last sweep."""
        for member in list(self.cluster.members.values()):
            if member.alive():
                for _ in range(pages):
                    if not self._pull(http, member.id, member.url):
                        break

    def _pull(self, http: httpx.Client, member_id: str, url: str) -> bool:
        """One page of ``member_id``'s feed; True if there may be more."""
        params: dict[str, Any] = {"timeout": 0, "limit": self.page}
        self.last.setdefault(member_id, 0)  # a member added during the run
        if self.last[member_id] is not None:
            params["since"] = self.last[member_id]
        try:
            response = http.get(url + "/v1/watch", params=params)
        except httpx.HTTPError:
            return False  # paused, killed or busy: next sweep
        if response.status_code == 410:  # restarted or installed a snapshot: resume at its floor
            match = FLOOR.search(response.text)
            self.last[member_id] = int(match.group(1)) if match else None
            return match is not None
        if response.status_code != 200:
            return False
        data = response.json()
        events = data["events"]
        if not events:
            self.last[member_id] = int(data["since"])
            return False
        by_revision: dict[int, list[dict[str, Any]]] = {}
        for event in events:
            by_revision.setdefault(int(event["revision"]), []).append(event)
        for revision, applied in sorted(by_revision.items()):
            self._compare(member_id, revision, applied)
        self.last[member_id] = max(by_revision)
        return True

    def _compare(self, member_id: str, revision: int, events: list[dict[str, Any]]) -> None:
        digest = hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()
        with self._lock:
            first = self.first.get(revision)
            if first is None:
                self.first[revision] = (member_id, digest)
                for event in events:
                    data = (parse_event(event["type"], event["data"])
                            if event["type"] in PARTITION_EVENTS else None)
                    if isinstance(data, PartitionChanged):
                        self.routes.append((revision, data.resource, data.partition,
                                            tuple(data.replicas), data.leader, data.epoch))
                    elif isinstance(data, ResourceCreated | PartitionsAdded):
                        name, start, partitions = data.slice()
                        for i, p in enumerate(partitions, start):
                            self.routes.append((revision, name, i, tuple(p["replicas"]),
                                                p["leader"], int(p["epoch"])))
            elif first[1] != digest:
                self.problems.append(f"revision {revision}: {member_id} applied other events than "
                                     f"{first[0]} (applied sequences diverge)")
            elif first[0] != member_id:
                self.compared += 1
