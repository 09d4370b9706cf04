"""``/metrics`` parsed with prometheus_client's own parser; health in ``/v1/status``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hacoord.replication.base import MemberInfo
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.metrics import MemberCollector
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with InProcessCluster(1) as single, httpx.Client(transport=single.transport,
                                                      base_url=single.url("m1")) as client:
        yield client


def scrape(api: httpx.Client) -> dict[str, list]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: list, sample: str | None = None, **labels: str) -> float:
    """The value of the first sample with these labels (and, when given, this sample name).

    Name the sample for histograms and summaries: their first sample is a bucket or a count
    depending on the type, and a bucket's value depends on how long a request took.
    """
    return next(s.value for s in samples
                if (sample is None or s.name == sample)
                and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_follow_the_state_and_the_api(api: httpx.Client) -> None:
    api.post("/v1/nodes", json={"id": "a", "address": "127.0.0.1:1", "zone": "z1"})
    api.post("/v1/nodes", json={"id": "b", "address": "127.0.0.1:2", "zone": "z2"})
    api.post("/v1/resources", json={"name": "r", "partitions": 4, "replicas": 2})
    api.post("/v1/nodes", json={"id": "bad id"})  # a 400, counted under its route
    metrics = scrape(api)
    assert value(metrics["hacoord_raft_role"], role="leader") == 1.0
    assert value(metrics["hacoord_raft_role"], role="follower") == 0.0
    assert value(metrics["hacoord_state_revision"]) == 3.0
    assert value(metrics["hacoord_nodes"], status="up") == 2.0
    assert value(metrics["hacoord_partitions"], health="healthy") == 4.0
    assert value(metrics["hacoord_ready"]) == 1.0
    latency = metrics["hacoord_api_request_seconds"]
    assert value(latency, "hacoord_api_request_seconds_count",
                 route="/v1/nodes", method="POST", status="201") == 2
    assert any(s.labels.get("status") == "400" and s.name.endswith("_count") for s in latency)

    api.patch("/v1/nodes/a", json={"status": "down"})
    metrics = scrape(api)
    assert value(metrics["hacoord_nodes"], status="down") == 1.0
    assert value(metrics["hacoord_partitions"], health="under_replicated") == 4.0
    health = api.get("/v1/status").json()["health"]
    assert health["status"] == "under_replicated" and health["partitions"]["under_replicated"] == 4
    api.patch("/v1/nodes/b", json={"status": "down"})
    assert api.get("/v1/status").json()["health"]["partitions"]["unavailable"] == 4


def test_apply_moves_liveness_and_rebalancer_metrics(api: httpx.Client) -> None:
    for node_id, zone in (("a", "z1"), ("b", "z2"), ("c", "z1")):
        api.post("/v1/nodes", json={"id": node_id, "address": "127.0.0.1:1", "zone": zone})
    api.post("/v1/resources", json={"name": "r", "partitions": 4, "replicas": 2})
    metrics = scrape(api)
    assert value(metrics["hacoord_apply_seconds"], "hacoord_apply_seconds_count") >= 4  # commands applied
    assert value(metrics["hacoord_moves_in_flight"]) == 0.0
    assert value(metrics["hacoord_maintenance"]) == 0.0
    assert value(metrics["hacoord_liveness_tracked_nodes"]) == 3.0
    assert value(metrics["hacoord_liveness_transitions"], status="down") == 0.0
    assert "hacoord_rebalancer_commands" in metrics
    api.patch("/v1/rebalance", json={"maintenance": True, "reason": "test"})
    assert value(scrape(api)["hacoord_maintenance"]) == 1.0


def test_a_member_with_a_data_directory_reports_its_disk_space(tmp_path: Path) -> None:
    replicator = MemoryReplicator("m1", {"m1": MemberInfo("m1", "127.0.0.1:1", "http://m1.test")})
    names = {f.name for f in MemberCollector(replicator, lambda: 0).collect()}
    assert "hacoord_data_dir_free_bytes" not in names  # no data directory, no figure
    replicator.data_dir = tmp_path  # type: ignore[attr-defined]
    families = {f.name: f.samples[0].value for f in MemberCollector(replicator, lambda: 0).collect()
                if f.samples}
    disk = os.statvfs(tmp_path)
    assert families["hacoord_data_dir_size_bytes"] == disk.f_blocks * disk.f_frsize
    assert 0 < families["hacoord_data_dir_free_bytes"] <= families["hacoord_data_dir_size_bytes"]
