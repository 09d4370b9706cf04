"""After the run: ask the members' records of applied request ids what became of each write.

Every member keeps, for each recent request id it applied, the revision it was applied at
(``GET /v1/requests/{id}``, :meth:`hacoord.client.Client.request_status`). Once the cluster has
healed and converged, each unknown write is looked up through the leader (a consistent read: it
covers everything committed before it) and in every member's own record, which must all agree:

* applied at revision R: the write took effect, before the look-up;
* not applied: it never took effect (a refused compare-and-set is not recorded either: it had
  no effect).

A sample of acknowledged writes is looked up the same way: the recorded revision must be the one
their client was told, or a request id was applied twice, or an acknowledgement named another
change.
"""

from __future__ import annotations

import random
import time

from hacoord.client import Client, HacoordError
from tests.chaos.history import Op


def _records(request_id: str, leader: Client, members: dict[str, Client]) -> tuple[int | None, list[str]]:
    """The revision ``request_id`` was applied at (None: never), read through the leader, and
    the members whose own record says otherwise. Raises HacoordError if the leader cannot say."""
    revision = leader.request_status(request_id)
    disagree = []
    for member_id, client in members.items():
        try:
            own = client.request_status(request_id, consistent=False)
        except HacoordError:
            continue  # not answering: its digest was compared after the heal
        if own != revision:
            disagree.append(f"{member_id} says {own}")
    return revision, disagree


def resolve(ops: list[Op], leader: Client, members: dict[str, Client], rng: random.Random,
            sample: int = 50) -> tuple[float, list[str]]:
    """Resolve every unknown write in ``ops`` (setting ``resolved`` and ``revision``) and check a
    sample of acknowledged ones. ``leader`` reads consistently; ``members`` maps each member to a
    client of that member alone. Returns the time the records were read (applied writes took
    effect before it) and the problems found."""
    problems: list[str] = []
    unknown = [op for op in ops if op.status == "unknown" and op.request_id]
    acked = [op for op in ops if op.status == "ok" and op.request_id and op.revision is not None]
    unresolved = 0
    for op in unknown:
        try:
            revision, disagree = _records(op.request_id or "", leader, members)
        except HacoordError:
            unresolved += 1
            continue
        op.resolved = "applied" if revision is not None else "not_applied"
        op.revision = revision
        if disagree:
            problems.append(f"request {op.request_id} ({op.f} {op.value}): the leader's record says "
                            f"{revision}, {', '.join(disagree)}")
    resolved_at = time.monotonic()
    for op in rng.sample(acked, min(sample, len(acked))):
        try:
            revision, disagree = _records(op.request_id or "", leader, members)
        except HacoordError:
            unresolved += 1
            continue
        if revision != op.revision or disagree:
            problems.append(f"{op.process} {op.f} {op.value}: acknowledged at revision {op.revision}, "
                            f"recorded at {revision} {' '.join(disagree)}".rstrip())
    if unresolved:
        problems.append(f"{unresolved} writes could not be looked up after the heal")
    return resolved_at, problems
