"""Stateful property test of ``apply``: random valid and invalid commands, the contract after each.

After every step: the state is sound (``validate``), the step is sound (``validate_transition``),
a rejection changes nothing (digest included), an applied change raises the revision by exactly
one, a repeated request id returns the remembered outcome and changes nothing, and the state
round-trips through ``to_dict``/``from_dict`` and the codec. Each rule also predicts whether its
command must be applied or rejected, so a ``apply`` that refused everything would fail too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hacoord.core import ClusterState, apply, commands, decode_state, digest, encode_state
from hacoord.core.results import Applied, Rejected
from hacoord.core.validate import validate, validate_transition
from hacoord.placement import place_resource, replacements_for

NODE_IDS = ["n0", "n1", "n2", "n3", "n4", "n5", "node.6", "N_7"]
BAD_IDS = ["", "-lead", "has space", "x" * 64, 5, None, "ü"]
ADDRESSES = ["h:1", "10.0.0.1:8080", "[::1]:9000", "db-1.example.com:65535"]
BAD_ADDRESSES = ["h", "h:0", "h:65536", ":80", "h:80:1", 7, ""]
ZONES = ["z0", "z1", "z2", "default"]
BAD_ZONES = ["", "bad zone", 3]
CAPACITIES = [1, 2, 0.5, 3.0, 1e6, 0.001]
BAD_CAPACITIES = [0, -1, "x", math.nan, math.inf, True, 2e6, 0.0009, 5e-324, None]  # None last
TAGS = [{}, {"rack": "r1"}, {"rack": "r2", "disk": "ssd"}]
BAD_TAGS = [[1], {"bad key": "v"}, {"k": 1}, {"k": None}, "rack=r1"]
RESOURCES = ["r0", "r1", "r2", "orders", "users"]
BAD_RESOURCES = ["", "bad name", 9, None]
TAG_KEYS = ["rack", "disk", "role"]
METRIC_KEYS = ["cpu", "mem"]

PICK = st.integers(0, 1_000)
#: See ``CoordinatorMachine._rid``: mostly fresh request ids, sometimes none, sometimes a reused one.
RID_KIND = st.sampled_from([0, 1, 1, 1, 2, 2, 3])
KNOWN = st.sampled_from([True, True, True, False])
BAD_METRICS = [{"cpu": "high"}, {"cpu": True}, {"cpu": math.inf}, {"bad key": 1.0}, [1.0]]


def member(value: object, pool: list) -> bool:
    """``value in pool`` without ``True == 1`` or ``1 == 1.0`` counting as a match."""
    return any(type(value) is type(item) and value == item for item in pool)


def has_nan(value: object) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return has_nan(dataclasses.asdict(value))
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_nan(v) for v in value)
    return False


def clone(state: ClusterState) -> ClusterState:
    """A deep, independent copy (``to_dict`` shares the remembered outcomes, hence deepcopy)."""
    return ClusterState.from_dict(copy.deepcopy(state.to_dict()))


class CoordinatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ClusterState()
        self.clock = 1000.0
        self.rid_counter = 0
        #: request id -> outcome dict of the write that was applied with it.
        self.remembered: dict[str, dict] = {}
        #: commands that were applied with a request id, to replay verbatim.
        self.replayable: list[commands.Command] = []

    # --- helpers ---------------------------------------------------------------------------

    def _tick(self) -> float:
        self.clock += 1.5
        return self.clock

    def _rid(self, kind: int, pick: int) -> str:
        """0: none; 1-2: fresh; 3: reuse a remembered one (if any)."""
        if kind == 3 and self.remembered:
            rids = sorted(self.remembered)
            return rids[pick % len(rids)]
        if kind == 0:
            return ""
        self.rid_counter += 1
        return f"req-{self.rid_counter}"

    def _nodes(self) -> list[str]:
        return sorted(self.state.nodes)

    def _holds(self, node_id: str) -> bool:
        return any(node_id in p.replicas for r in self.state.resources.values() for p in r.partitions)

    def step(self, command, expect_ok: bool | None = None, expect_code: str | None = None,
             via_wire: bool = False):
        """Apply ``command`` and check the whole contract around it. Returns the outcome, or
        None when it was answered as a duplicate (whose checks are done here)."""
        if via_wire and isinstance(command, commands.Command) and not has_nan(command):
            wire = commands.encode(command)
            decoded = commands.decode(wire)
            assert not isinstance(decoded, commands.DecodeError), decoded
            assert commands.encode(decoded) == wire
            command = decoded
        before = clone(self.state)
        before_bytes = encode_state(self.state)
        before_digest = digest(self.state)
        rid = getattr(command, "request_id", "")
        duplicate_of = self.remembered.get(rid) if isinstance(rid, str) and rid else None

        outcome = apply(self.state, command)

        assert isinstance(outcome, Applied | Rejected)
        assert validate(self.state) == [], validate(self.state)
        assert validate_transition(before, self.state) == [], validate_transition(before, self.state)
        assert not (isinstance(outcome, Rejected) and outcome.code == "internal_error"), outcome

        if duplicate_of is not None and isinstance(command, commands.Command):
            assert outcome.duplicate is True and outcome.ok
            assert outcome.revision == duplicate_of["revision"]  # answered as the original write
            assert encode_state(self.state) == before_bytes
            assert digest(self.state) == before_digest
            return None
        assert outcome.duplicate is False

        if isinstance(outcome, Rejected):
            assert encode_state(self.state) == before_bytes
            assert digest(self.state) == before_digest
            assert outcome.revision == self.state.revision == before.revision
            assert rid not in self.state.requests or rid in before.requests
            if expect_ok:
                raise AssertionError(f"expected {command!r} to be applied, got {outcome!r}")
            if expect_code is not None:
                assert outcome.code == expect_code, (command, outcome)
            return outcome

        if expect_ok is False:
            raise AssertionError(f"expected {command!r} to be rejected, got {outcome!r}")
        if isinstance(command, commands.Barrier):
            assert outcome.revision == self.state.revision == before.revision
            assert outcome.result == {"revision": before.revision}
            assert digest(self.state) == before_digest
            return outcome
        assert self.state.revision == before.revision + 1
        assert outcome.revision == self.state.revision
        assert digest(self.state) != before_digest
        assert all(event.revision == outcome.revision for event in outcome.events)
        if rid:
            assert list(self.state.requests)[-1] == rid
            assert self.state.requests[rid]["revision"] == outcome.revision
            self.remembered[rid] = copy.deepcopy(outcome.to_dict())
            self.replayable.append(command)
        else:
            assert list(self.state.requests) == list(before.requests)
        return outcome

    # --- rules -----------------------------------------------------------------------------

    @initialize(count=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 6, 7]), zones=st.integers(1, 3),
                partitions=st.integers(0, 4), rf=st.integers(1, 3))
    def seed(self, count, zones, partitions, rf):
        for i in range(count):
            cmd = commands.RegisterNode(request_id=self._rid(1, 0), time=self._tick(),
                                        node_id=NODE_IDS[i], address=ADDRESSES[i % len(ADDRESSES)],
                                        zone=ZONES[i % zones], capacity=CAPACITIES[i % 3])
            self.step(cmd, expect_ok=True)
        if partitions and rf <= count:
            cmd = commands.CreateResource(request_id=self._rid(1, 0), time=self._tick(), name="seeded",
                                          partitions=partitions, replication_factor=rf,
                                          assignment=place_resource(self.state, "seeded", partitions, rf))
            self.step(cmd, expect_ok=True)

    @rule(
        node_id=st.sampled_from(NODE_IDS), address=st.sampled_from(ADDRESSES),
        zone=st.sampled_from(ZONES), capacity=st.sampled_from(CAPACITIES), tags=st.sampled_from(TAGS),
        fault=st.sampled_from([None] * 6 + ["id", "address", "zone", "capacity", "tags"]),
        bad_pick=PICK, rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans(),
    )
    def register_node(self, node_id, address, zone, capacity, tags, fault, bad_pick, rid_kind, rid_pick,
                      via_wire):
        bad = {"id": BAD_IDS, "address": BAD_ADDRESSES, "zone": BAD_ZONES, "capacity": BAD_CAPACITIES,
               "tags": BAD_TAGS}.get(fault)
        if fault == "id":
            node_id = bad[bad_pick % len(bad)]
        elif fault == "address":
            address = bad[bad_pick % len(bad)]
        elif fault == "zone":
            zone = bad[bad_pick % len(bad)]
        elif fault == "capacity":
            capacity = bad[bad_pick % len(bad)]
        elif fault == "tags":
            tags = bad[bad_pick % len(bad)]
        cmd = commands.RegisterNode(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                    node_id=node_id, address=address, zone=zone, capacity=capacity,
                                    tags=tags)
        if fault == "id":
            expect_ok, code = False, "invalid_argument"
        elif node_id in self.state.nodes:
            expect_ok, code = False, "already_exists"
        elif fault is not None:
            expect_ok, code = False, "invalid_argument"
        else:
            expect_ok, code = True, None
        outcome = self.step(cmd, expect_ok=expect_ok, expect_code=code, via_wire=via_wire)
        if outcome is not None and outcome.ok:
            node = self.state.nodes[node_id]
            assert (node.address, node.zone, node.capacity, node.status, node.tags) == (
                address, zone, float(capacity), "up", tags)
            assert node.registered_at == node.updated_at == cmd.time
            assert node.metrics == {}

    @rule(pick=PICK, known=KNOWN,
          force=st.sampled_from([True, True, False]),
          plan=st.sampled_from(["right", "right", "right", "empty", "self", "holder", "ghost",
                                "missing", "none", "not-dict", "bad-force"]),
          rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def remove_node(self, pick, known, force, plan, rid_kind, rid_pick, via_wire):
        # Prefer (two times in three) a node that holds replicas: that is where the plan matters.
        nodes = [n for n in self._nodes() if self._holds(n)] if pick % 3 else []
        nodes = nodes or self._nodes()
        node_id = nodes[pick % len(nodes)] if known and nodes else "ghost-node"
        if node_id not in self.state.nodes:
            cmd = commands.RemoveNode(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                      node_id=node_id, force=force)
            self.step(cmd, expect_ok=False, expect_code="not_found", via_wire=via_wire)
            return
        replacements = replacements_for(self.state, node_id) if plan != "empty" else {}
        before = clone(self.state)
        holds = self._holds(node_id)
        corrupted = False
        entries = [(r, i) for r in sorted(replacements) for i in sorted(replacements[r])]
        if entries and plan in ("self", "holder", "ghost", "missing", "none"):
            res, idx = entries[pick % len(entries)]
            part = self.state.resources[res].partitions[int(idx)]
            others = [n for n in part.replicas if n != node_id]
            if plan == "self":
                replacements[res][idx] = node_id
                corrupted = True
            elif plan == "holder" and others:
                replacements[res][idx] = others[0]
                corrupted = True
            elif plan == "ghost":
                replacements[res][idx] = "ghost-node"
                corrupted = True
            elif plan == "missing":
                del replacements[res][idx]
                corrupted = True
            elif plan == "none" and replacements[res][idx] is not None:
                replacements[res][idx] = None
                corrupted = True
        if plan == "empty" and holds:
            corrupted = True
        force_value: object = force
        if plan == "not-dict":
            replacements = [] if not holds else ["bad"]  # type: ignore[assignment]
        if plan == "bad-force":
            force_value = "yes"
        cmd = commands.RemoveNode(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                  node_id=node_id, force=force_value, replacements=replacements)
        if plan == "bad-force" or plan == "not-dict" and (force or not holds):
            expect_ok, code = False, "invalid_argument"
        elif holds and not force:
            expect_ok, code = False, "node_not_empty"
        elif corrupted:
            expect_ok, code = False, "stale_plan"
        else:
            expect_ok, code = True, None
        outcome = self.step(cmd, expect_ok=expect_ok, expect_code=code, via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        assert node_id not in self.state.nodes
        assert not self._holds(node_id)
        for res_name, res in before.resources.items():
            for i, part in enumerate(res.partitions):
                new = self.state.resources[res_name].partitions[i]
                if node_id in part.replicas:
                    assert new.epoch == part.epoch + 1
                    target = replacements[res_name][str(i)]
                    expected = [target if n == node_id else n for n in part.replicas if
                                n != node_id or target is not None]
                    assert new.replicas == expected
                    if new.replicas:
                        assert new.leader in new.replicas
                else:
                    assert new == part

    @rule(pick=PICK, known=KNOWN, status=st.sampled_from([None, "up", "suspect", "down", "down"]),
          tags=st.one_of(st.none(), st.dictionaries(st.sampled_from(TAG_KEYS),
                                                    st.one_of(st.none(), st.sampled_from(["a", "b"])),
                                                    max_size=3)),
          metrics=st.one_of(st.none(), st.dictionaries(
              st.sampled_from(METRIC_KEYS),
              st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False), st.integers(0, 100)),
              max_size=2)),
          extra=st.sampled_from(["none", "none", "address", "zone", "capacity"]),
          fault=st.sampled_from([None] * 5 + ["status", "tags", "metrics", "address", "zone", "capacity"]),
          bad_pick=PICK, rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def set_node_state(self, pick, known, status, tags, metrics, extra, fault, bad_pick, rid_kind,
                       rid_pick, via_wire):
        nodes = self._nodes()
        node_id = nodes[pick % len(nodes)] if known and nodes else "ghost-node"
        fields: dict = {}
        if extra == "address":
            fields["address"] = ADDRESSES[pick % len(ADDRESSES)]
        elif extra == "zone":
            fields["zone"] = ZONES[pick % len(ZONES)]
        elif extra == "capacity":
            fields["capacity"] = CAPACITIES[pick % len(CAPACITIES)]
        if fault == "status":
            status = ["sideways", "UP", 1, ""][bad_pick % 4]
        elif fault == "tags":
            tags = BAD_TAGS[bad_pick % 3]
        elif fault == "metrics":
            metrics = BAD_METRICS[bad_pick % len(BAD_METRICS)]
        elif fault == "address":
            fields["address"] = BAD_ADDRESSES[bad_pick % len(BAD_ADDRESSES)]
        elif fault == "zone":
            fields["zone"] = BAD_ZONES[bad_pick % len(BAD_ZONES)]
        elif fault == "capacity":
            fields["capacity"] = BAD_CAPACITIES[bad_pick % (len(BAD_CAPACITIES) - 1)]  # not None
        cmd = commands.SetNodeState(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                    node_id=node_id, status=status, tags=tags, metrics=metrics,
                                    **fields)
        known_node = node_id in self.state.nodes
        valid = known_node and fault is None
        code = "not_found" if not known_node else None if valid else "invalid_argument"
        before = clone(self.state)
        outcome = self.step(cmd, expect_ok=valid, expect_code=code, via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        node, old = self.state.nodes[node_id], before.nodes[node_id]
        expected_tags = dict(old.tags)
        for k, v in (tags or {}).items():
            if v is None:
                expected_tags.pop(k, None)
            else:
                expected_tags[k] = v
        expected_metrics = dict(old.metrics)
        for k, v in (metrics or {}).items():
            if v is None:
                expected_metrics.pop(k, None)
            else:
                expected_metrics[k] = float(v)
        assert node.tags == expected_tags
        assert node.metrics == expected_metrics
        assert node.status == (status or old.status)
        for key in ("address", "zone"):
            assert getattr(node, key) == fields.get(key, getattr(old, key))
        assert node.capacity == float(fields.get("capacity", old.capacity))
        assert node.updated_at == cmd.time
        # Leadership follows a status change, and only a status change.
        if node.status == old.status:
            assert {k: r.to_dict() for k, r in self.state.resources.items()} == {
                k: r.to_dict() for k, r in before.resources.items()}
            return
        for res in self.state.resources.values():
            for part in res.partitions:
                if node.status == "down" and part.leader == node_id:
                    others = [n for n in part.replicas if n != node_id]
                    assert all(self.state.nodes[n].status != "up" for n in others)
                if node.status == "up" and node_id in part.replicas:
                    assert self.state.nodes[part.leader].status != "down"
        if node.status == "suspect":  # a suspect node keeps its leaderships, and no one gains
            assert {k: r.to_dict() for k, r in self.state.resources.items()} == {
                k: r.to_dict() for k, r in before.resources.items()}

    def _check_leadership_follows(self, node_id: str, before: ClusterState) -> None:
        """After ``node_id``'s status changed by a session or a liveness judgement."""
        node, old = self.state.nodes[node_id], before.nodes[node_id]
        if node.status == old.status or node.status == "suspect":
            assert {k: r.to_dict() for k, r in self.state.resources.items()} == {
                k: r.to_dict() for k, r in before.resources.items()}
            return
        for name, res in self.state.resources.items():
            for i, part in enumerate(res.partitions):
                was = before.resources[name].partitions[i]
                if node.status == "down" and was.leader == node_id:
                    up = [n for n in part.replicas if n != node_id and self.state.nodes[n].status == "up"]
                    assert part.leader == (up[0] if up else node_id)
                if node.status == "up" and node_id in part.replicas:
                    assert self.state.nodes[part.leader].status != "down"
                if part.leader != was.leader:
                    assert part.epoch == was.epoch + 1

    @rule(pick=PICK, known=KNOWN, address=st.sampled_from([None, None, None, *ADDRESSES, "h:0", 7]),
          rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def start_node_session(self, pick, known, address, rid_kind, rid_pick, via_wire):
        nodes = self._nodes()
        node_id = nodes[pick % len(nodes)] if known and nodes else "ghost-node"
        cmd = commands.StartNodeSession(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                        node_id=node_id, address=address)
        if node_id not in self.state.nodes:
            expect_ok, code = False, "not_found"
        elif address is not None and not member(address, ADDRESSES):
            expect_ok, code = False, "invalid_argument"
        else:
            expect_ok, code = True, None
        before = clone(self.state)
        outcome = self.step(cmd, expect_ok=expect_ok, expect_code=code, via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        node, old = self.state.nodes[node_id], before.nodes[node_id]
        assert node.epoch == old.epoch + 1 == outcome.result["epoch"]
        assert node.status == "up" and node.updated_at == cmd.time
        assert node.address == (address if address is not None else old.address)
        self._check_leadership_follows(node_id, before)

    @rule(pick=PICK, known=KNOWN, status=st.sampled_from(["up", "suspect", "suspect", "down", "gone"]),
          epoch_kind=st.sampled_from(["current"] * 5 + ["older", "newer", "bad"]),
          term_kind=st.sampled_from(["same", "same", "higher", "higher", "lower", "bad"]),
          bad_pick=PICK, via_wire=st.booleans())
    def set_node_liveness(self, pick, known, status, epoch_kind, term_kind, bad_pick, via_wire):
        nodes = self._nodes()
        node_id = nodes[pick % len(nodes)] if known and nodes else "ghost-node"
        current = self.state.nodes[node_id].epoch if node_id in self.state.nodes else 1
        epoch: object = {"current": current, "older": current - 1, "newer": current + 1,
                         "bad": [0, -2, True, "1", 1.5][bad_pick % 5]}[epoch_kind]
        held = self.state.leader_term
        term: object = {"same": held, "higher": held + 1 + pick % 3, "lower": held - 1,
                        "bad": [True, "2", None, 1.5][bad_pick % 4]}[term_kind]
        cmd = commands.SetNodeLiveness(time=self._tick(), node_id=node_id, status=status,
                                       epoch=epoch, term=term)
        valid_epoch = type(epoch) is int and epoch >= 1
        valid_term = type(term) is int and term >= 0
        if node_id not in self.state.nodes:
            expect_ok, code = False, "not_found"
        elif status == "gone" or not valid_epoch or not valid_term:
            expect_ok, code = False, "invalid_argument"
        elif epoch != current:
            expect_ok, code = False, "stale_epoch"
        elif term < held:
            expect_ok, code = False, "stale_term"
        else:
            expect_ok, code = True, None
        before = clone(self.state)
        outcome = self.step(cmd, expect_ok=expect_ok, expect_code=code, via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        node = self.state.nodes[node_id]
        assert self.state.leader_term == term >= held
        assert node.status == status and node.epoch == current and node.updated_at == cmd.time
        self._check_leadership_follows(node_id, before)

    @rule(name=st.sampled_from(RESOURCES), partitions=st.sampled_from([1, 2, 3, 5]),
          rf=st.sampled_from([1, 2, 3, 3]),
          kind=st.sampled_from(["placed"] * 6 + ["name", "partitions", "rf", "unknown", "repeat", "empty",
                                                 "slice", "long-inner", "not-list", "int-node"]),
          bad_pick=PICK, rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def create_resource(self, name, partitions, rf, kind, bad_pick, rid_kind, rid_pick, via_wire):
        assignment: object = place_resource(self.state, name, partitions, rf)
        good_name = valid_p = valid_rf = True
        if kind == "name":
            name = BAD_RESOURCES[bad_pick % len(BAD_RESOURCES)]
            good_name = False
        elif kind == "partitions":
            partitions = [0, -1, True, "3", 100_001, 2.0][bad_pick % 6]
            valid_p = False
        elif kind == "rf":
            rf = [0, 16, True, "2", 1.0][bad_pick % 5]
            valid_rf = False
        enough = valid_rf and rf <= len(self.state.nodes)
        corrupt = False
        if kind == "unknown" and assignment and assignment[0]:
            assignment[0][-1] = "ghost-node"
            corrupt = True
        elif kind == "repeat" and assignment and len(assignment[0]) >= 2:
            assignment[0][1] = assignment[0][0]
            corrupt = True
        elif kind == "empty":
            assignment = []
            corrupt = True
        elif kind == "slice" and len(assignment) > 1:  # valid: the rest follows in AddPartitions
            assignment = assignment[:-1]
        elif kind == "long-inner" and assignment:
            extra = [n for n in self._nodes() if n not in assignment[0]]
            if extra:
                assignment[0].append(extra[0])
                corrupt = True
        elif kind == "not-list":
            assignment = {"0": assignment}
            corrupt = True
        elif kind == "int-node" and assignment and assignment[0]:
            assignment[0][0] = 7
            corrupt = True
        cmd = commands.CreateResource(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                      name=name, partitions=partitions, replication_factor=rf,
                                      assignment=assignment)
        if not good_name:
            expect_ok, code = False, "invalid_argument"
        elif name in self.state.resources:
            expect_ok, code = False, "already_exists"
        elif not valid_p or not valid_rf:
            expect_ok, code = False, "invalid_argument"
        elif not enough:
            expect_ok, code = False, "not_enough_nodes"
        elif corrupt:
            expect_ok, code = False, "stale_plan"
        else:
            expect_ok, code = True, None
        outcome = self.step(cmd, expect_ok=expect_ok, expect_code=code, via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        res = self.state.resources[name]
        assert res.replication_factor == rf and len(res.partitions) == len(assignment)
        assert res.creating == (len(assignment) < partitions)
        assert max(res.size, len(res.partitions)) == partitions
        assert res.created_at == cmd.time
        for part, replicas in zip(res.partitions, assignment, strict=True):
            assert part.replicas == replicas and part.leader == replicas[0] and part.epoch == 1
            assert len(set(replicas)) == rf

    @rule(pick=PICK, kind=st.sampled_from(["next", "next", "next", "gap", "again", "too-many",
                                           "complete", "unknown"]),
          rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def add_partitions(self, pick, kind, rid_kind, rid_pick, via_wire):
        creating = sorted(n for n, r in self.state.resources.items() if r.creating)
        done = sorted(n for n, r in self.state.resources.items() if not r.creating)
        if kind == "complete" and done:
            name = done[pick % len(done)]
        elif kind == "unknown" or not creating:
            name, kind = "never-created", "unknown"
        else:
            name = creating[pick % len(creating)]
            if kind == "complete":  # nothing is complete yet: extend the one being created
                kind = "next"
        res = self.state.resources.get(name)
        have = len(res.partitions) if res is not None else 0
        rf = res.replication_factor if res is not None else 1
        left = res.size - have if res is not None and res.creating else 1
        start = {"gap": have + 1, "again": max(have - 1, 0)}.get(kind, have)
        count = left + 1 if kind == "too-many" else 1 + pick % left
        assignment = place_resource(self.state, name, count, rf, start=start)
        expect = {"next": (True, None), "gap": (False, "stale_plan"),
                  "again": (False, "stale_plan"), "too-many": (False, "invalid_argument"),
                  "complete": (False, "conflict"), "unknown": (False, "not_found")}[kind]
        if any(len(r) < rf for r in assignment):  # nodes removed since: a plan that is stale
            expect = (False, expect[1] if kind != "next" else "stale_plan")
        cmd = commands.AddPartitions(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                     name=name, start=start, assignment=assignment)
        outcome = self.step(cmd, expect_ok=expect[0], expect_code=expect[1], via_wire=via_wire)
        if outcome is not None and outcome.ok:
            res = self.state.resources[name]
            assert len(res.partitions) == have + count
            assert res.creating == (have + count < res.size) or res.size == 0
            for part, replicas in zip(res.partitions[start:], assignment, strict=True):
                assert part.replicas == replicas and part.leader == replicas[0] and part.epoch == 1

    @rule(pick=PICK, kind=st.sampled_from(["existing", "existing", "unknown", "malformed"]),
          rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def delete_resource(self, pick, kind, rid_kind, rid_pick, via_wire):
        names = sorted(self.state.resources)
        if kind == "existing" and names:
            name: object = names[pick % len(names)]
        elif kind == "malformed":
            name = BAD_RESOURCES[pick % len(BAD_RESOURCES)]
        else:
            name = "never-created"
        cmd = commands.DeleteResource(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                      name=name)
        ok = name in self.state.resources
        code = None if ok else "invalid_argument" if kind == "malformed" else "not_found"
        outcome = self.step(cmd, expect_ok=ok, expect_code=code, via_wire=via_wire)
        if outcome is not None and outcome.ok:
            assert name not in self.state.resources

    @precondition(lambda self: self.state.resources)
    @rule(pick=PICK, pick2=PICK,
          kind=st.sampled_from(["valid", "valid", "valid", "holder", "not-holder", "bad-index",
                                "unknown-resource", "unknown-node", "malformed-node", "same"]),
          rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def move_partition(self, pick, pick2, kind, rid_kind, rid_pick, via_wire):
        names = sorted(self.state.resources)
        res_name = names[pick % len(names)]
        res = self.state.resources[res_name]
        index = pick2 % len(res.partitions)
        part = res.partitions[index]
        holders = list(part.replicas)
        others = [n for n in self._nodes() if n not in holders]
        src = holders[pick2 % len(holders)] if holders else None
        dst = others[pick % len(others)] if others else None
        resource: object = res_name
        partition: object = index
        if kind == "valid" and src and dst:
            expect = (True, None)
        elif kind == "holder" and src and len(holders) >= 2:
            dst = [n for n in holders if n != src][0]
            expect = (False, "conflict")  # the replicas as they are now forbid it
        elif kind == "same" and src:
            dst = src
            expect = (False, "conflict")
        elif kind == "not-holder" and dst:
            src = dst
            dst = [n for n in self._nodes() if n != src][0]
            expect = (False, "conflict")
        elif kind == "bad-index":
            partition = [-1, len(res.partitions), "0", True, None][pick % 5]
            src, dst = src or "n0", dst or "n1"
            expect = (False, "not_found")
        elif kind == "unknown-resource":
            resource = "never-created"
            src, dst = src or "n0", dst or "n1"
            expect = (False, "not_found")
        elif kind == "unknown-node" and src:
            dst = "ghost-node"
            expect = (False, "not_found")
        elif kind == "malformed-node" and src:
            dst = BAD_IDS[pick % len(BAD_IDS)]
            expect = (False, "invalid_argument")
        else:
            return
        before = clone(self.state)
        cmd = commands.MovePartition(request_id=self._rid(rid_kind, rid_pick), time=self._tick(),
                                     resource=resource, partition=partition, from_node=src, to_node=dst)
        outcome = self.step(cmd, expect_ok=expect[0], expect_code=expect[1], via_wire=via_wire)
        if outcome is None or not outcome.ok:
            return
        old = before.resources[res_name].partitions[index]
        new = self.state.resources[res_name].partitions[index]
        assert new.replicas == [dst if n == src else n for n in old.replicas]
        assert new.epoch == old.epoch + 1
        if old.leader == src:
            survivors_up = [n for n in new.replicas if n != dst and self.state.nodes[n].status == "up"]
            assert new.leader == (survivors_up[0] if survivors_up else dst)
        else:
            assert new.leader == old.leader
        for i, other in enumerate(self.state.resources[res_name].partitions):
            if i != index:
                assert other == before.resources[res_name].partitions[i]

    @rule(rid_kind=RID_KIND, rid_pick=PICK, via_wire=st.booleans())
    def barrier(self, rid_kind, rid_pick, via_wire):
        self.step(commands.Barrier(request_id=self._rid(rid_kind, rid_pick), time=self._tick()),
                  expect_ok=True, via_wire=via_wire)

    @precondition(lambda self: self.replayable)
    @rule(pick=PICK, via_wire=st.booleans())
    def replay_request(self, pick, via_wire):
        """A retried write (same command, same request id) is answered, not applied again."""
        cmd = self.replayable[pick % len(self.replayable)]
        via_wire = via_wire and not has_nan(cmd)
        before = encode_state(self.state)
        outcome = apply(self.state, cmd if not via_wire else commands.decode(commands.encode(cmd)))
        assert outcome.duplicate is True and outcome.ok
        # The original revision; node and partition results as they stand now, others verbatim.
        original = self.remembered[cmd.request_id]
        assert outcome.revision == original["revision"]
        if isinstance(cmd, commands.StartNodeSession):
            assert outcome.result["epoch"] == original["result"]["epoch"]  # not a later session's
        elif not isinstance(cmd, commands.RegisterNode | commands.SetNodeState | commands.MovePartition):
            assert outcome.to_dict() == original
        assert encode_state(self.state) == before

    @rule(raw=st.sampled_from([
        b"", b"{", b"not json", b"[]", b"null", b"42", b'"RegisterNode"',
        b'{"type":"Explode"}', b'{"request_id":"x"}', b'{"type":"Barrier","request_id":5}',
        b'{"type":"Barrier","time":"noon"}', b'{"type":"Barrier","time":NaN}',
        b'{"type":"Barrier","time":Infinity}', b'{"type":"Barrier","colour":"red"}',
        b'{"type":"RegisterNode","node_id":5,"address":"h:1"}',
        b'{"type":"RegisterNode","node_id":"n9","address":"h:1","capacity":"x"}',
        b'{"type":"RegisterNode","node_id":"n9","address":"h:1","tags":[1]}',
        b'{"type":"RegisterNode","node_id":"n9","address":"h:1","time":null}',
        b'{"type":"RegisterNode","node_id":"n9","address":"h:1","time":true}',
        b'{"type":"RemoveNode","node_id":"n0","force":1}',
        b'{"type":"CreateResource","name":"r9","partitions":"2","replication_factor":1}',
        b'{"type":"MovePartition","resource":"r0","partition":"0","from_node":"n0","to_node":"n1"}',
        b'{"type":"SetNodeState","node_id":"n0","status":"sideways"}',
        b'{"type":"SetNodeState","node_id":"n0","metrics":{"cpu":"high"}}',
        b'{"type":"DeleteResource","name":["r0"]}',
        b'\xff\xfe',
    ]), as_dict=st.booleans())
    def malformed(self, raw, as_dict):
        if as_dict:
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
            command = commands.from_dict(data)
        else:
            command = commands.decode(raw)
        outcome = self.step(command, expect_ok=False)
        assert outcome is not None
        assert outcome.code in ("invalid_argument", "not_found")

    @rule(bad_time=st.sampled_from(["noon", None, math.nan, math.inf, -math.inf, True, [1]]),
          which=st.sampled_from(["register", "barrier", "delete"]))
    def bad_time(self, bad_time, which):
        """A command whose time is not a finite number is refused before it changes anything."""
        if which == "register":
            cmd = commands.RegisterNode(time=bad_time, node_id=f"t{self.rid_counter}", address="h:1")
        elif which == "barrier":
            cmd = commands.Barrier(time=bad_time)
        else:
            names = sorted(self.state.resources) or ["never-created"]
            cmd = commands.DeleteResource(time=bad_time, name=names[0])
        self.step(cmd, expect_ok=False, expect_code="invalid_argument")

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def round_trips(self):
        data = self.state.to_dict()
        restored = ClusterState.from_dict(copy.deepcopy(data))
        assert restored.to_dict() == data
        assert list(restored.requests) == list(self.state.requests)
        raw = encode_state(self.state)
        assert encode_state(decode_state(raw)) == raw
        assert decode_state(raw).to_dict() == data

    @invariant()
    def remembered_requests_are_kept(self):
        for rid, outcome in self.remembered.items():
            assert self.state.requests[rid]["revision"] == outcome["revision"]


CoordinatorMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoordinatorMachine = CoordinatorMachine.TestCase
