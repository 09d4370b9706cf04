"""Invariants checked after every applied change: clean runs report none; a broken state is
counted, logged and shown in /metrics, and the member keeps applying."""

from __future__ import annotations

import logging
import random

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hacoord.core import ClusterState, apply
from hacoord.core.validate import check_changes
from hacoord.testing.inprocess import InProcessCluster
from tests.unit.scenarios import random_commands


def violations(api: httpx.Client) -> float:
    text = api.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "hacoord_invariant_violations")
    return family.samples[0].value


def test_random_command_sequences_never_trip_the_incremental_check() -> None:
    for seed in range(5):
        state = ClusterState()
        for command in random_commands(random.Random(seed), 120):
            outcome = apply(state, command)
            if outcome.ok:
                assert check_changes(state, outcome.events) == [], (seed, command)


def test_a_broken_state_is_counted_logged_and_shown(caplog: pytest.LogCaptureFixture) -> None:
    with InProcessCluster(1) as cluster, httpx.Client(transport=cluster.transport,
                                                      base_url=cluster.url("m1")) as api:
        for i in range(3):
            api.post("/v1/nodes", json={"id": f"n{i}", "address": f"127.0.0.1:{i + 1}"})
        api.post("/v1/resources", json={"name": "a", "partitions": 2, "replicas": 2})
        assert violations(api) == 0
        # Corrupt the state behind apply's back, as a bug would: a leader outside its replicas.
        part = cluster.replicators["m1"].state.resources["a"].partitions[0]
        outsider = next(f"n{i}" for i in range(3) if f"n{i}" not in part.replicas)
        part.replicas.append(part.replicas[0])  # and a repeated replica
        with caplog.at_level(logging.ERROR, logger="hacoord.replication.invariants"):
            moved = api.post("/v1/resources/a/partitions/0/move",
                             json={"from": part.replicas[1], "to": outsider})
        assert moved.status_code == 200  # the member keeps applying
        assert violations(api) >= 1
        assert any("repeated replica" in r.getMessage() for r in caplog.records)
        assert api.get("/v1/status").json()["member"]["invariant_violations"] >= 1
